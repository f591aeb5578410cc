#!/usr/bin/env bash
# Quick start: install dependencies if needed, then run MCP's main job on this machine.
# Today that is validating the example service definitions; later it deploys them.
set -euo pipefail
cd "$(dirname "$0")/.."
export npm_config_nodedir=/usr

if [ ! -d node_modules/@mcp/cli ]; then
  echo "==> installing dependencies (npm ci; native modules build from source, about a minute)"
  npm ci --no-audit --no-fund
fi

echo "==> validating the example service definitions"
node packages/cli/bin/mcp.js validate --internal-zone svc.mcp.metacircular.net test/fixtures/services/good/*.toml
