#!/bin/sh
# Build the image and check that a container from it becomes healthy (its HEALTHCHECK runs
# `bridge health`, which asks /healthz where the config's listen.admin says), answers on
# 8443, reloads on SIGHUP, and stops with `stopped`. Not run in CI: it needs docker or podman.
#   deploy/docker-smoke.sh            (from the repository root)
set -eu
engine=${ENGINE:-$(command -v docker || command -v podman || true)}
[ -n "$engine" ] || { echo "docker-smoke: no docker or podman here" >&2; exit 2; }
"$engine" info >/dev/null 2>&1 || { echo "docker-smoke: $engine cannot reach its daemon" >&2; exit 2; }
image=bridge-smoke
name=bridge-smoke-$$
cd "$(dirname "$0")/.."
"$engine" build -t "$image" .
cleanup() { "$engine" rm -f "$name" >/dev/null 2>&1 || true; }
trap cleanup EXIT
"$engine" run -d --name "$name" -p 127.0.0.1::8443 "$image"
echo "docker-smoke: waiting for health"
i=0
until "$engine" exec "$name" bridge health -c /srv/bridge/conf/routes.yaml; do
    i=$((i + 1)); [ "$i" -lt 30 ] || { "$engine" logs "$name"; exit 1; }
    sleep 1
done
port=$("$engine" port "$name" 8443/tcp | head -n1 | sed 's/.*://')
# The default config proxies to http://app:9000, which is not there: 502 shows bridge answered.
code=$(curl -sk -o /dev/null -w '%{http_code}' "https://127.0.0.1:$port/")
echo "docker-smoke: GET / -> $code"
[ "$code" = 502 ]
"$engine" kill -s HUP "$name"
sleep 1
"$engine" exec "$name" bridge reload -c /srv/bridge/conf/routes.yaml --pid-file /srv/bridge/run/bridge.pid
"$engine" stop -t 20 "$name"
"$engine" logs "$name" 2>&1 | tail -n 1 | grep -q stopped
echo "docker-smoke: ok"
