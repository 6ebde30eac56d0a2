#!/usr/bin/env bash
# Exit 0 when this machine can build and run the textclf image (`make image`, `make test-image`);
# otherwise print why on stdout and exit 1. CI (.ci/run) runs the image test only where this passes.
set -uo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}

if ! command -v podman >/dev/null; then
  echo "podman is not installed (make image-tools installs it with apt-get)"
  exit 1
fi
if ! problem=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>&1 >/dev/null); then
  echo "podman cannot run here: $(printf '%s\n' "$problem" | tail -1)"
  exit 1
fi
if [ "$(id -u)" -ne 0 ] && ! podman image exists localhost/textclf-base:bookworm; then
  echo "the base image is missing and deploy/image/base.sh needs root (debootstrap) to make it"
  exit 1
fi
exit 0
