#!/usr/bin/env bash
# Quick start: installs what is missing (npm dependencies, Podman and the example image), then
# runs MCP's main job on this machine (scripts/quickstart.ts). Pass --once to exit after it.
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_nodedir=/usr

if [ ! -d node_modules/@mcp/cli ]; then
  echo "==> installing dependencies (npm ci; native modules build from source, about a minute)"
  npm ci --no-audit --no-fund
fi
bash scripts/setup-podman.sh
exec node --import tsx scripts/quickstart.ts "$@"
