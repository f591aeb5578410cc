#!/usr/bin/env node
// Runs the bundle dist/mcp-agent.mjs (npm run build) when there is one, else the TypeScript sources
// through tsx; MCP_FROM_SOURCE=1 forces the sources (scripts/launch.mjs).
import { launch } from "../../../scripts/launch.mjs"

await launch("mcp-agent", new URL("../src/main.ts", import.meta.url))
