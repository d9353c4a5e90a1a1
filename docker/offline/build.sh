#!/usr/bin/env bash
# Builds the offline sandbox image for machines without a container registry:
#   1. a Debian bookworm root filesystem from Debian's packages (debootstrap), `docker import`ed
#      as ocaas-sandbox-base:<hash of the package set>;
#   2. docker/offline/Dockerfile on top: the sandbox user, the shared entrypoint and the
#      stand-in gateway, tagged ocaas-sandbox:offline-<hash of every input>.
# Prints only the image tag on stdout (progress goes to stderr). Does nothing when the tag
# exists. `--print-tag` prints the tag without building.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
context=$(dirname "$here")
suite=bookworm
mirror=${OCAAS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
packages=tini,xvfb,x11vnc,fluxbox,xterm,python3,python3-cryptography,python3-jsonschema,python3-qrcode,git,procps,ca-certificates,chromium,fonts-dejavu-core,bash,less,hsetroot

base_hash=$(printf '%s\n' "$suite" "$packages" "apt-in-chroot" | sha256sum | cut -c1-16)
base=ocaas-sandbox-base:$base_hash
inputs_hash=$(cat "$here/build.sh" "$here/Dockerfile" "$here/gateway.py" "$here/gateway_ws.py" "$here/gateway_runs.py" "$here/gateway_state.py" "$here/gateway_admin.py" "$here/gateway_cron.py" "$here/openclaw-config.schema.json" "$here/openclaw" "$context/sandbox/entrypoint.sh" "$context/sandbox/write_config.py" \
  | { cat; printf '%s\n' "$base_hash"; } | sha256sum | cut -c1-16)
tag=ocaas-sandbox:offline-$inputs_hash

if [ "${1:-}" = "--print-tag" ]; then
  echo "$tag"
  exit 0
fi
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

# Parallel callers (test processes, a server) build once.
exec 9>"${TMPDIR:-/tmp}/ocaas-image-build.lock"
flock 9
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "$tag"
  exit 0
fi

if ! docker image inspect "$base" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "build.sh: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  [ "$(id -u)" = 0 ] || { echo "build.sh: building the base root filesystem needs root (debootstrap, chroot)" >&2; exit 1; }
  rootfs=$(mktemp -d "${TMPDIR:-/var/tmp}/ocaas-rootfs.XXXXXX")
  cleanup() {
    umount "$rootfs/proc" 2>/dev/null || true
    umount "$rootfs/dev" 2>/dev/null || true
    rm -rf "$rootfs"
  }
  trap cleanup EXIT
  echo "build.sh: debootstrap $suite into $rootfs" >&2
  debootstrap --variant=minbase "$suite" "$rootfs" "$mirror" >&2
  # The desktop packages go in with apt inside the new tree: apt orders their configuration
  # correctly where debootstrap's --include does not (dconf-service fails there).
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod +x "$rootfs/usr/sbin/policy-rc.d"
  printf 'Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n' >"$rootfs/etc/apt/apt.conf.d/90ocaas"
  mount -t proc proc "$rootfs/proc"
  mount --bind /dev "$rootfs/dev"
  echo "build.sh: installing ${packages//,/ }" >&2
  chroot "$rootfs" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive chroot "$rootfs" apt-get install -y -qq ${packages//,/ } >&2
  chroot "$rootfs" apt-get clean
  umount "$rootfs/proc" "$rootfs/dev"
  rm -f "$rootfs/usr/sbin/policy-rc.d"
  : >"$rootfs/etc/resolv.conf"
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  echo "build.sh: importing $base" >&2
  tar -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$base" >&2
  cleanup
  trap - EXIT
fi

echo "build.sh: building $tag" >&2
docker build --quiet --build-arg "BASE=$base" -t "$tag" -f "$here/Dockerfile" "$context" >&2
echo "$tag"
