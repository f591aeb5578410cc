/**
 * `mcp version [--json]` and `mcp --version`: the CLI's version, git commit and protocol version,
 * as scripts/build.mjs baked them into the bundle (or the bin computed them for the sources).
 * Imports nothing, so main.ts can answer without loading Effect.
 */
import { type BuildInfo, buildInfo } from "@mcp/rpc/BuildInfo"

export { type BuildInfo, buildInfo }

/** `mcp 0.1.0 (commit 2a5931193aea, protocol 3)`, or with json the three fields as a JSON object. */
export const formatVersion = (info: BuildInfo, json: boolean): string =>
  json ? JSON.stringify({ name: "mcp", ...info }, null, 2) : `mcp ${info.version} (commit ${info.commit}, protocol ${info.protocol})`
