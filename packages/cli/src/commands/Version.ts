/**
 * `mcp version [--json]` and `mcp --version`: the CLI's version, git commit and protocol version,
 * as scripts/build.mjs baked them into the bundle (or the bin computed them for the sources).
 * Imports nothing, so main.ts can answer without loading Effect.
 */
declare const __MCP_VERSION__: string | undefined
declare const __MCP_COMMIT__: string
declare const __MCP_PROTOCOL__: number

export interface BuildInfo {
  readonly version: string
  readonly commit: string
  readonly protocol: number
}

export const buildInfo = (): BuildInfo =>
  typeof __MCP_VERSION__ === "string"
    ? { version: __MCP_VERSION__, commit: __MCP_COMMIT__, protocol: __MCP_PROTOCOL__ }
    : (globalThis as { __mcpBuildInfo?: () => BuildInfo }).__mcpBuildInfo?.() ?? { version: "unknown", commit: "unknown", protocol: 0 }

/** `mcp 0.1.0 (commit 2a5931193aea, protocol 2)`, or with json the three fields as a JSON object. */
export const formatVersion = (info: BuildInfo, json: boolean): string =>
  json ? JSON.stringify({ name: "mcp", ...info }, null, 2) : `mcp ${info.version} (commit ${info.commit}, protocol ${info.protocol})`
