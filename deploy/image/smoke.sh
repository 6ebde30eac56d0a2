#!/usr/bin/env bash
# A one-minute check of a built image by hand (tests/integration/test_image.py is the full one):
# start it on a free loopback port with a fresh key ring and this machine's data key mounted read-only,
# wait for /readyz (the cold start), classify with a token, get a 401 without one, stop it with SIGTERM.
# Usage: deploy/image/smoke.sh [IMAGE]   (default localhost/textclf:latest; run as root, or rootless podman)
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bin=$(cd "$here/../.." && pwd)/.venv/bin
image=${1:-localhost/textclf:latest}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
key_file=${TEXTCLF_DATA_KEY_FILE:-${TEXTCLF_HOME:-$HOME/.textclf}/data.key}
[ -r "$key_file" ] || { echo "smoke.sh: no data key at $key_file (make auth)" >&2; exit 1; }

work=$(mktemp -d)
name=textclf-smoke-$$
cleanup() {
  podman rm -f -t 0 "$name" >/dev/null 2>&1 || true
  if [ "$(id -u)" -eq 0 ]; then rm -rf "$work"; else podman unshare rm -rf "$work"; fi
}
trap cleanup EXIT

# The project's own commands make the key ring and the token; TEXTCLF_HOME keeps their audit lines here.
export TEXTCLF_HOME=$work/home
"$bin/textclf" auth init --auth-dir "$work/auth" 2>/dev/null
token=$("$bin/textclf" token --auth-dir "$work/auth" --sub smoke --scope classify 2>/dev/null)
install -m 0600 "$key_file" "$work/data.key"
# The server runs as uid 1034 (BentoML's `bentoml` user) and the key files are 0600.
if [ "$(id -u)" -eq 0 ]; then
  chown -R 1034:1034 "$work/auth" "$work/data.key"
else
  podman unshare chown -R 1034:1034 "$work/auth" "$work/data.key"
fi

port=$("$bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
started=$(date +%s.%N)
podman run -d --name "$name" --network host --no-healthcheck \
  -v "$work/auth:/run/secrets/textclf/auth:ro" -e TEXTCLF_AUTH_DIR=/run/secrets/textclf/auth \
  -v "$work/data.key:/run/secrets/textclf/data.key:ro" -e TEXTCLF_DATA_KEY_FILE=/run/secrets/textclf/data.key \
  "$image" serve --host 127.0.0.1 --port "$port" >/dev/null
until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/readyz")" = 200 ]; do
  [ "$(podman inspect --format '{{.State.Running}}' "$name")" = true ] || { podman logs "$name" | tail -5; exit 1; }
  sleep 0.1
done
echo "ready after $(awk "BEGIN { printf \"%.1f\", $(date +%s.%N) - $started }") s on $url"

curl -sf "$url/classify" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"texts": ["I still have not received my new card"]}'
echo
unauthorized=$(curl -s -o /dev/null -w '%{http_code}' "$url/classify" -H 'content-type: application/json' -d '{}')
[ "$unauthorized" = 401 ] || { echo "smoke.sh: no token got $unauthorized, not 401" >&2; exit 1; }
podman stop -t 30 "$name" >/dev/null
echo "401 without a token; stopped with exit code $(podman inspect --format '{{.State.ExitCode}}' "$name")"
