/**
 * `mcp-master --config <file>`: runs the master until SIGINT/SIGTERM. `--version` answers from
 * what the build baked in (or the bin computed for the sources) before anything else is loaded.
 */
import { buildInfo } from "@mcp/rpc/BuildInfo"
import { setFlagsFromString } from "node:v8"


const versionLine = () => {
  const info = buildInfo()
  return `${info.version} (commit ${info.commit}, protocol ${info.protocol})`
}

if (process.argv.slice(2).includes("--version")) {
  console.log(`mcp-master ${versionLine()}`)
} else {
  // V8 tuned for a small footprint (heap growth, code and feedback kept), set before the daemon's
  // code is loaded and compiled: an idle daemon does little, and this keeps about 5 MiB less
  // resident (bench/footprint.ts). Set here because NODE_OPTIONS, where the release's units
  // give Node its flags, does not allow this V8 flag. It is a trade, measured under load with
  // bench/heartbeats.ts (saturating heartbeats): without it a heartbeat cost about a quarter less
  // CPU at N=1,000 (0.21 ms against 0.28) and less than half at N=10,000, but the master's RSS
  // at N=10,000 reached 423 MiB against 209-222, over the 300 MiB it is held to.
  setFlagsFromString("--optimize-for-size")
  const [{ main }, Master, MasterConfig] = await Promise.all([import("@mcp/rpc/Daemon"), import("./daemon/Master.js"), import("./daemon/MasterConfig.js")])
  main({ name: "mcp-master", version: versionLine(), path: "/master", decode: MasterConfig.decode, layer: Master.layer })
}
