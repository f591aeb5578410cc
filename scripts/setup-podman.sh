#!/usr/bin/env bash
# Prepares this machine's container engine for MCP's agent and integration tests: Podman with
# runc, a project-local containers.conf, and a local busybox image (no registry is reachable).
#
# Idempotent; run as root. It never starts the API service: the test harness
# (test/support/Podman.ts) and the quick start do that in the foreground.
#
#   bash scripts/setup-podman.sh              # install if missing, write the conf, import the image
#   bash scripts/setup-podman.sh --conf-only  # only write the containers.conf
#   bash scripts/setup-podman.sh --image-only # only (re)check and import the busybox image
#   MCP_CONTAINERS_CONF=/path/containers.conf bash scripts/setup-podman.sh
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CONF="${MCP_CONTAINERS_CONF:-$REPO/.mcp-local/containers.conf}"
IMAGE="localhost/mcp-busybox:v1"
APPLETS=(sh httpd nc sleep echo cat wget mkdir ls env true false kill)

say() { printf '==> %s\n' "$*"; }

install_podman() {
  if command -v podman >/dev/null 2>&1; then
    say "podman already installed: $(podman --version)"
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "podman is missing and installing it needs root: apt-get install podman runc busybox-static" >&2
    exit 1
  fi
  say "installing podman runc busybox-static with apt (about 30 s)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q podman runc busybox-static
  say "installed: $(podman --version)"
}

write_conf() {
  mkdir -p "$(dirname "$CONF")"
  # crun fails on hybrid cgroups here ("cgroups in hybrid mode not supported"), there is no
  # systemd, and CAP_SYS_RESOURCE is missing, so the default ulimits must stay at or below ours.
  local want
  want='# Written by scripts/setup-podman.sh: settings this sandbox needs (see docs TEST_PEERS.md).
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"'
  if [ -f "$CONF" ] && [ "$(cat "$CONF")" = "$want" ]; then
    say "containers.conf up to date: $CONF"
  else
    printf '%s\n' "$want" >"$CONF"
    say "wrote containers.conf: $CONF"
  fi
}

build_image() {
  if CONTAINERS_CONF="$CONF" podman image exists "$IMAGE"; then
    say "image $IMAGE already present"
    return
  fi
  local busybox=/bin/busybox
  if ! [ -x "$busybox" ] || ! file_is_static "$busybox"; then
    if [ -x /usr/bin/busybox ] && file_is_static /usr/bin/busybox; then busybox=/usr/bin/busybox; else
      echo "a static busybox is needed to build $IMAGE: apt-get install busybox-static" >&2
      exit 1
    fi
  fi
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  mkdir -p "$work/rootfs/bin" "$work/rootfs/www" "$work/rootfs/tmp" "$work/rootfs/etc"
  cp "$busybox" "$work/rootfs/bin/busybox"
  local applet
  for applet in "${APPLETS[@]}"; do ln -s busybox "$work/rootfs/bin/$applet"; done
  echo '<html><body>mcp-busybox</body></html>' >"$work/rootfs/www/index.html"
  echo 'root:x:0:0:root:/:/bin/sh' >"$work/rootfs/etc/passwd"
  echo 'root:x:0:' >"$work/rootfs/etc/group"
  tar -C "$work/rootfs" -cf "$work/rootfs.tar" .
  CONTAINERS_CONF="$CONF" podman import --quiet \
    --change 'ENV PATH=/bin' --change 'CMD ["/bin/sh"]' \
    "$work/rootfs.tar" "$IMAGE" >/dev/null
  say "imported $IMAGE from $busybox (applets: ${APPLETS[*]})"
}

# busybox-static is statically linked; the dynamic one would fail inside the image.
file_is_static() {
  ! ldd "$1" >/dev/null 2>&1
}

mode="${1:-all}"
case "$mode" in
  all) install_podman; write_conf; build_image ;;
  --conf-only) write_conf ;;
  --image-only) write_conf; build_image ;;
  *) echo "usage: $0 [--conf-only|--image-only]" >&2; exit 2 ;;
esac
say "done (the API service is not started; start it with: CONTAINERS_CONF=$CONF podman system service --time=0 unix:///run/podman/podman.sock)"
