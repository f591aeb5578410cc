#!/usr/bin/env bash
# Makes the Debian node image the systemd, release and SSH tests run nodes from: a bookworm
# minbase rootfs with systemd and OpenSSH's server (debootstrap, from the Debian mirror this
# machine's apt already uses), imported into Podman as localhost/debian-node:bookworm-sshd (the
# tag names what it holds: an older image without sshd keeps its own tag and is not reused).
# Idempotent: nothing happens when the image exists.
# Needs root, apt and Podman (scripts/setup-podman.sh). Downloads only Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."

image="${MCP_DEBIAN_NODE_IMAGE:-localhost/debian-node:bookworm-sshd}"
conf="${MCP_CONTAINERS_CONF:-$(pwd)/.mcp-local/containers.conf}"
export CONTAINERS_CONF="$conf"

if podman image exists "$image" 2>/dev/null; then
  echo "==> image $image already present"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing the Debian node image $image; make it with: sudo bash scripts/setup-debian-node.sh" >&2
  exit 1
fi

# The mirror apt already uses: the first URIs of a deb822 source, else the first deb line.
mirror="$(grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)"
if [ -z "$mirror" ]; then
  mirror="$(grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | grep -v security | head -1 | awk '{print $2}' || true)"
fi
if [ -z "$mirror" ]; then
  echo "no Debian mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list" >&2
  exit 1
fi

command -v debootstrap >/dev/null || { echo "==> installing debootstrap"; DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap; }
rootfs="/var/tmp/mcp-debian-node/rootfs-sshd"
if [ ! -x "$rootfs/sbin/init" ]; then
  echo "==> debootstrap bookworm from $mirror into $rootfs (about a minute)"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,openssh-server bookworm "$rootfs" "$mirror"
fi
echo "==> importing $rootfs as $image"
tar -C "$rootfs" -c . | podman import - "$image" >/dev/null
echo "==> done: $image"
