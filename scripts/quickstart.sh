#!/usr/bin/env bash
# Quick start: installs what is missing (npm dependencies, Podman and the example image), builds
# the bundles, then runs MCP's main job on this machine (scripts/quickstart.ts). Pass --once to exit after it.
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_nodedir=/usr

if [ ! -d node_modules/@mcp/cli ]; then
  echo "==> installing dependencies (npm ci; native modules build from source, about a minute)"
  npm ci --no-audit --no-fund
fi
bash scripts/setup-podman.sh
# The programs as they ship: the bundles in dist/, which the binaries run (a few seconds).
echo "==> building the bundles (npm run build)"
node scripts/build.mjs
exec node --import tsx scripts/quickstart.ts "$@"
