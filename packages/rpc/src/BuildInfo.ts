/**
 * What a program was built as: its version (package.json, or MCP_BUILD_VERSION at build time),
 * git commit and protocol version, as scripts/build.mjs baked them into the bundle with `define`,
 * or as the bins computed them when they run the sources (scripts/launch.mjs). Imports nothing:
 * `--version` answers from it before anything else is loaded.
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
