#!/bin/bash
# Container health check without curl: one HTTP GET to the service's own port via bash's
# /dev/tcp. Healthy iff the status line says 200. Usage: healthcheck [PATH] (default /health/ready).
set -euo pipefail
path=${1:-/health/ready}
port=${HTTP_ADDR:-0.0.0.0:8080}
port=${port##*:}
exec 3<>"/dev/tcp/127.0.0.1/${port}"
printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
IFS= read -r -t 3 status <&3
[[ $status =~ ^HTTP/1\.[01]\ 200 ]]
