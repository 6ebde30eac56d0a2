#!/usr/bin/env bash
# `make image`: containerize the Bento of MODEL (default: the champion) with podman as
#   textclf:<bento version> and textclf:latest.
# Usage: deploy/image/build.sh [MODEL]   (run from anywhere; uses the repository's .venv)
# Env: CA_BUNDLE   the CA certificates the package download trusts (default: the system bundle, which on
#                  these machines includes the TLS-inspecting proxy's CA); mounted as a build secret only.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
model=${1:-champion}
bin=$root/.venv/bin
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
# runc and raised ulimits: podman's default runtime (crun) fails on these machines, during builds too.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
export PATH=$bin:$PATH BENTOML_DO_NOT_TRACK=true HF_HUB_OFFLINE=1

[ -r "$ca_bundle" ] || { echo "build.sh: no CA bundle at $ca_bundle (set CA_BUNDLE)" >&2; exit 1; }
started=$SECONDS

"$here/base.sh"

cd "$root"
bento=$("$bin/python" "$here/bento.py" "$model")
version=${bento#*:}

# From /: BentoML 1.4.40 renders the Dockerfile template from a temporary copy of the Bento and refuses
# a template path outside the working directory ("Accessing file outside of current working directory",
# bentoml/BentoML#5566, open; /tmp is below /).
# --opt format=docker: the OCI image format has no HEALTHCHECK (buildah drops it); network=host: the
# package download goes out the way the host's does.
(cd / && "$bin/bentoml" containerize "$bento" --backend podman \
  --image-tag "textclf:$version" --image-tag textclf:latest \
  --opt format=docker --opt network=host --opt "secret=id=cabundle,src=$ca_bundle")

size=$(podman image inspect --format '{{.Size}}' "textclf:$version")
echo "image: localhost/textclf:$version and localhost/textclf:latest," \
  "$(numfmt --to=si "$size")B, built in $((SECONDS - started)) s"
