/**
 * `mcp-agent --config <file>`: runs one node's agent until SIGINT/SIGTERM. `--version` answers from
 * what the build baked in (or the bin computed for the sources) before anything else is loaded.
 */
import { buildInfo } from "@mcp/rpc/BuildInfo"
import { setFlagsFromString } from "node:v8"


const versionLine = () => {
  const info = buildInfo()
  return `${info.version} (commit ${info.commit}, protocol ${info.protocol})`
}

if (process.argv.slice(2).includes("--version")) {
  console.log(`mcp-agent ${versionLine()}`)
} else {
  // V8 tuned for a small footprint (heap growth, code and feedback kept), set before the daemon's
  // code is loaded and compiled: an idle daemon does little, and this keeps about 5 MiB less
  // resident (bench/footprint.ts). Set here because NODE_OPTIONS, where the release's units
  // give Node its flags, does not allow this V8 flag.
  setFlagsFromString("--optimize-for-size")
  const [{ main }, Agent, AgentConfig] = await Promise.all([import("@mcp/rpc/Daemon"), import("./daemon/Agent.js"), import("./daemon/AgentConfig.js")])
  main({ name: "mcp-agent", version: versionLine(), path: "/agent", decode: AgentConfig.decode, layer: Agent.layer })
}
