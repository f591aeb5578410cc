#!/usr/bin/env bash
# Quick start: installs what is missing (npm dependencies, Podman, HAProxy and the example image), builds
# the bundles, then runs MCP's main job on this machine (scripts/quickstart.ts). Pass --once to exit after it.
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_nodedir=/usr

if [ ! -d node_modules/@mcp/cli ]; then
  echo "==> installing dependencies (npm ci; native modules build from source, about a minute)"
  npm ci --no-audit --no-fund
fi
bash scripts/setup-podman.sh
# The node's TLS proxy, which the agent runs itself here ([proxy] managed = true).
if ! command -v haproxy >/dev/null 2>&1 && [ ! -x /usr/sbin/haproxy ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "HAProxy is missing and installing it needs root: apt-get install haproxy" >&2
    exit 1
  fi
  echo "==> installing HAProxy with apt (the node's TLS proxy)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy; }
fi
# The programs as they ship: the bundles in dist/, which the binaries run (a few seconds).
echo "==> building the bundles (npm run build)"
node scripts/build.mjs
exec node --import tsx scripts/quickstart.ts "$@"
