//! Every gateway config in the repository replays a request that already reached a replica
//! (nginx's `non_idempotent`) only for checkout, the one idempotent write (issue 10). Any
//! other POST that reached a replica may have taken effect there; a replay would apply it twice.
//!
//! Checked: the local stack's nginx template (as the runner renders it), the compose
//! gateway's nginx.conf, and the Helm chart's Ingress routes (values and template). Any other
//! file under `deploy/` that mentions `non_idempotent` is an unchecked gateway and fails.

use std::path::{Path, PathBuf};

use stack::{PortLayout, StackConfig};

/// The only route prefix whose requests may be replayed after they reached a replica.
const CHECKOUT: &str = "/orders/checkout/";
const REPLAY: &str = "non_idempotent";

fn repo(path: &str) -> PathBuf {
    StackConfig::default_workspace().join(path)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// One nginx directive: `name args;` or `name args { children }`.
#[derive(Debug)]
struct Directive {
    name: String,
    args: Vec<String>,
    block: Vec<Directive>,
}

/// Words, quoted strings and the punctuation `{ } ;` of an nginx config, comments dropped.
fn tokens(conf: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = conf.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '#' => while chars.next_if(|c| *c != '\n').is_some() {},
            '{' | '}' | ';' => out.push(c.to_string()),
            '"' | '\'' => {
                let text: String = chars.by_ref().take_while(|q| *q != c).collect();
                out.push(text);
            }
            c if c.is_whitespace() => {}
            c => {
                let mut word = c.to_string();
                while let Some(next) = chars.next_if(|n| !n.is_whitespace() && !"{};".contains(*n))
                {
                    word.push(next);
                }
                out.push(word);
            }
        }
    }
    out
}

fn parse_block(tokens: &mut std::vec::IntoIter<String>) -> Vec<Directive> {
    let mut block = Vec::new();
    let mut words: Vec<String> = Vec::new();
    while let Some(t) = tokens.next() {
        match t.as_str() {
            ";" | "{" => {
                let mut words = std::mem::take(&mut words).into_iter();
                let name = words.next().expect("a directive has a name");
                let children = if t == "{" {
                    parse_block(tokens)
                } else {
                    Vec::new()
                };
                block.push(Directive {
                    name,
                    args: words.collect(),
                    block: children,
                });
            }
            "}" => break,
            _ => words.push(t),
        }
    }
    assert!(words.is_empty(), "unterminated directive {words:?}");
    block
}

fn parse(conf: &str) -> Vec<Directive> {
    parse_block(&mut tokens(conf).into_iter())
}

/// Every proxying `location` with the `proxy_next_upstream` in force there: a block's own, else
/// the enclosing block's (nginx's inheritance).
fn locations(block: &[Directive], inherited: &[String], out: &mut Vec<(String, Vec<String>)>) {
    for d in block.iter().filter(|d| !d.block.is_empty()) {
        let next_upstream = d
            .block
            .iter()
            .find(|c| c.name == "proxy_next_upstream")
            .map_or(inherited, |c| &c.args[..]);
        if d.name == "location" && d.block.iter().any(|c| c.name == "proxy_pass") {
            out.push((d.args.join(" "), next_upstream.to_vec()));
        }
        locations(&d.block, next_upstream, out);
    }
}

/// Problems of one nginx config: a replayed route other than checkout, or no checkout route.
fn nginx_violations(conf: &str) -> Vec<String> {
    let mut found = Vec::new();
    locations(&parse(conf), &[], &mut found);
    let mut problems: Vec<String> = found
        .iter()
        .filter(|(path, next)| next.iter().any(|a| a == REPLAY) && path != CHECKOUT)
        .map(|(path, next)| {
            format!(
                "location {path} replays non-idempotent requests: {}",
                next.join(" ")
            )
        })
        .collect();
    if !found.iter().any(|(path, _)| path == CHECKOUT) {
        problems.push(format!("no location {CHECKOUT}"));
    }
    problems
}

#[test]
fn local_gateway_replays_only_checkout() {
    let conf = stack::nginx::render(Path::new("/p"), &PortLayout::default(), 2, 65_536);
    assert_eq!(nginx_violations(&conf), Vec::<String>::new());
}

#[test]
fn compose_gateway_replays_only_checkout() {
    let conf = read(&repo("deploy/compose/nginx.conf"));
    assert_eq!(nginx_violations(&conf), Vec::<String>::new());
}

#[test]
fn the_checker_catches_a_replayed_write() {
    let conf = "http { server { proxy_next_upstream error non_idempotent;
        location /orders/checkout/ { proxy_pass http://order; }
        location /stock/ { proxy_pass http://stock; }
        location = /health { return 200 'ok'; } } }";
    assert_eq!(
        nginx_violations(conf),
        ["location /stock/ replays non-idempotent requests: error non_idempotent"]
    );
    let fixed = conf.replace(
        "location /stock/ {",
        "location /stock/ { proxy_next_upstream error;",
    );
    assert_eq!(nginx_violations(&fixed), Vec::<String>::new());
}

/// Problems of the chart: values' routes and the Ingress template that renders them.
fn helm_violations(values: &str, template: &str) -> Vec<String> {
    let values: serde_json::Value = serde_norway::from_str(values).expect("values.yaml parses");
    let ingress = &values["ingress"];
    let mut problems = Vec::new();
    let annotation = "nginx.ingress.kubernetes.io/proxy-next-upstream";
    if ingress["annotations"].get(annotation).is_some() {
        problems.push(format!(
            "ingress.annotations sets {annotation} for every route"
        ));
    }
    let routes = ingress["routes"].as_array().cloned().unwrap_or_default();
    for route in &routes {
        let paths: Vec<&str> = route["paths"]
            .as_array()
            .map(|p| p.iter().filter_map(|p| p["path"].as_str()).collect())
            .unwrap_or_default();
        let next = route["proxyNextUpstream"].as_str().unwrap_or_default();
        if next.split_whitespace().any(|a| a == REPLAY) && paths != [CHECKOUT] {
            problems.push(format!(
                "route {} replays non-idempotent requests on {paths:?}",
                route["name"]
            ));
        }
    }
    if !routes.iter().any(|r| r["paths"][0]["path"] == CHECKOUT) {
        problems.push(format!("no route for {CHECKOUT}"));
    }
    // The template must take each Ingress's policy from its route, and set it nowhere else.
    let set_by_template: Vec<&str> = template
        .lines()
        .filter(|l| l.contains(&format!("{annotation}:")))
        .collect();
    if set_by_template
        != [format!(
            "    {annotation}: {{{{ $route.proxyNextUpstream | quote }}}}"
        )]
    {
        problems.push(format!(
            "the template does not set {annotation} from its route only: {set_by_template:?}"
        ));
    }
    problems
}

#[test]
fn helm_ingress_replays_only_checkout() {
    let chart = repo("deploy/helm/webshop");
    let values = read(&chart.join("values.yaml"));
    let template = read(&chart.join("templates/ingress.yaml"));
    assert_eq!(helm_violations(&values, &template), Vec::<String>::new());
}

#[test]
fn the_helm_checker_catches_a_replayed_write() {
    let template = read(&repo("deploy/helm/webshop/templates/ingress.yaml"));
    let values = "ingress:
  annotations: {nginx.ingress.kubernetes.io/proxy-next-upstream: error non_idempotent}
  routes:
    - name: all
      proxyNextUpstream: error timeout non_idempotent
      paths: [{path: /orders/checkout/, service: order}, {path: /stock/, service: stock}]";
    let problems = helm_violations(values, &template);
    assert_eq!(problems.len(), 2, "{problems:?}");
}

/// The files above are every gateway config: no other file under deploy/ may use
/// `non_idempotent` unchecked.
#[test]
fn no_other_gateway_config_replays_requests() {
    let checked = [
        "deploy/nginx/nginx.conf.template",
        "deploy/compose/nginx.conf",
        "deploy/helm/webshop/values.yaml",
        "deploy/helm/webshop/templates/ingress.yaml",
        "deploy/check.sh",
    ]
    .map(repo);
    let mut pending = vec![repo("deploy")];
    let mut unchecked = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/ lists").flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if !checked.contains(&path)
                && std::fs::read_to_string(&path).is_ok_and(|t| t.contains(REPLAY))
            {
                unchecked.push(path);
            }
        }
    }
    assert_eq!(unchecked, Vec::<PathBuf>::new());
}
