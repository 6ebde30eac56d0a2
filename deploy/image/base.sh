#!/usr/bin/env bash
# Make the two local images the textclf image is built from, once, and reuse them while their inputs match:
#   localhost/textclf-base:bookworm   Debian bookworm minbase + python3 (3.11) + CA certificates + the
#                                      HEALTHCHECK script: what the served image starts FROM
#                                      (bentofile.yaml: docker.base_image)
#   localhost/textclf-tools:bookworm  only the uv binary, bind-mounted into the build step that installs the
#                                      Python packages (deploy/image/Dockerfile.template), so it never
#                                      lands in a layer of the served image (38 MB)
# No registry is reachable from these machines (python:3.11-slim, BentoML's default, cannot be pulled), so
# the base is made with debootstrap from the Debian mirror apt already uses. Each image is also tagged with
# a hash of what made it (this script, the healthcheck, the uv version): a changed input builds it again,
# an unchanged one costs a `podman image exists`. The host's (proxy) CA certificates are NOT put in the
# base: the build mounts them as a secret for the one step that downloads packages.
# Needs root (debootstrap), podman, and CONTAINERS_CONF pointing at deploy/image/containers.conf.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
suite=bookworm
base=localhost/textclf-base
tools=localhost/textclf-tools
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
uv_bin=${UV:-$(command -v uv || true)}
[ -x "$uv_bin" ] || { echo "base.sh: no uv on PATH (bentoml build installs it into the venv)" >&2; exit 1; }

# The uv version BentoML's Dockerfile accepts without installing its own: 0.13.4 or later.
uv_version=$("$uv_bin" --version | awk '{print $2}')
if ! printf '0.13.4\n%s\n' "$uv_version" | sort -V -C; then
  echo "base.sh: uv $uv_version is older than 0.13.4, which BentoML 1.4's Dockerfile needs" >&2
  exit 1
fi

base_key=$(cat "${BASH_SOURCE[0]}" "$here/healthcheck.py" | sha256sum | cut -c1-12)
tools_key=$(printf '%s\n' "$uv_version" | cat "${BASH_SOURCE[0]}" - | sha256sum | cut -c1-12)

# Give the fixed tag (the one bentofile.yaml names) to the image of the current key, and drop the images
# of earlier keys (one still under a built textclf image stays: podman refuses, which is fine).
retag() {
  podman tag "$1:$2" "$1:$suite"
  local old
  for old in $(podman images --format '{{.Tag}}' "$1"); do
    [ "$old" = "$2" ] || [ "$old" = "$suite" ] || podman rmi "$1:$old" >/dev/null 2>&1 || true
  done
}

if podman image exists "$tools:$tools_key"; then
  echo "base.sh: reusing $tools:$tools_key (uv $uv_version)"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  install -m 0755 "$uv_bin" "$work/uv"
  tar -C "$work" -c uv | podman import -q --change "LABEL textclf.key=$tools_key" - "$tools:$tools_key" >/dev/null
  rm -rf "$work"
  trap - EXIT
  echo "base.sh: built $tools:$tools_key (uv $uv_version)"
fi
retag "$tools" "$tools_key"

# REBUILD_BASE=1: a fresh debootstrap (Debian's security updates) even though the script did not change.
if [ "${REBUILD_BASE:-0}" != 1 ] && podman image exists "$base:$base_key"; then
  echo "base.sh: reusing $base:$base_key"
  retag "$base" "$base_key"
  exit 0
fi

command -v debootstrap >/dev/null || { echo "base.sh: no debootstrap (make image-tools)" >&2; exit 1; }
# Named explicitly: without it debootstrap warns and goes on with packages it could not verify.
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || { echo "base.sh: no $keyring (make image-tools installs debian-archive-keyring)" >&2; exit 1; }
rootfs=$(mktemp -d /var/tmp/textclf-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base.sh: debootstrap $suite into $rootfs (about a minute)"
# minbase: dpkg, apt and the required set; python3 is the 3.11 the Bento's venv is made from.
debootstrap --variant=minbase --keyring="$keyring" --include=python3,ca-certificates "$suite" "$rootfs" "$mirror" \
  >"$rootfs.log" 2>&1 ||
  { tail -20 "$rootfs.log" >&2; rm -f "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
# Nothing the server reads: package lists and caches, docs, man pages, translations.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/* \
  "$rootfs"/var/log/*.log "$rootfs"/var/log/apt/* "$rootfs"/tmp/* "$rootfs"/var/tmp/*
install -m 0755 "$here/healthcheck.py" "$rootfs/usr/local/bin/textclf-healthcheck"

tar --numeric-owner -C "$rootfs" -c . | podman import -q \
  --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
  --change "ENV LANG=C.UTF-8" \
  --change "LABEL textclf.key=$base_key" \
  --change 'CMD ["/bin/bash"]' \
  - "$base:$base_key" >/dev/null
retag "$base" "$base_key"
echo "base.sh: built $base:$base_key ($(podman image inspect --format '{{.Size}}' "$base:$base_key" | numfmt --to=si)B)"
