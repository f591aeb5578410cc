/**
 * `mcp-master --config <file>`: runs the master until SIGINT/SIGTERM. `--version` answers from
 * what the build baked in (or the bin computed for the sources) before anything else is loaded.
 */
import { buildInfo } from "@mcp/rpc/BuildInfo"
import { setFlagsFromString } from "node:v8"

/** How much V8 lets the old generation grow past what the last full GC left live, in percent. */
const HEAP_GROWING_PERCENT = 50

const versionLine = () => {
  const info = buildInfo()
  return `${info.version} (commit ${info.commit}, protocol ${info.protocol})`
}

if (process.argv.slice(2).includes("--version")) {
  console.log(`mcp-master ${versionLine()}`)
} else {
  // V8's old generation grows by at most half of what a full GC left live, set before the
  // daemon's code is loaded. Node's default lets it grow up to 4x: at 10,000 nodes the master's RSS
  // reached 335-423 MiB. --optimize-for-size, used before, held it near 210 MiB but collected so
  // eagerly that a heartbeat at N=1,000 cost about twice the CPU and a 100 x 30 `mcp ps` about
  // 0.25 s more. Growing by half kept 264 MiB at 10,000 nodes (held to 300) with heartbeats as
  // cheap as without a flag, within noise (bench/heartbeats.ts). Set here because NODE_OPTIONS,
  // where the release's units give Node its flags, does not allow this V8 flag.
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
  const [{ main }, Master, MasterConfig] = await Promise.all([import("@mcp/rpc/Daemon"), import("./daemon/Master.js"), import("./daemon/MasterConfig.js")])
  main({ name: "mcp-master", version: versionLine(), path: "/master", decode: MasterConfig.decode, layer: Master.layer })
}
