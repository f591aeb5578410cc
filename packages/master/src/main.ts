/**
 * `mcp-master --config <file>`: runs the master until SIGINT/SIGTERM. `--version` answers from
 * what the build baked in (or the bin computed for the sources) before anything else is loaded.
 */
import { buildInfo } from "@mcp/rpc/BuildInfo"
import { setFlagsFromString } from "node:v8"

/** How much V8 lets the old generation grow past what the last full GC left live, in percent. */
const HEAP_GROWING_PERCENT = 50

/** A node flag for V8's allocation-site pretenuring given on the command line (MCP_NODE_FLAGS), which then stands. */
const PRETENURING_FLAG = /^--(no-)?allocation[-_]site[-_]pretenuring$/

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
  // No allocation-site pretenuring. V8 decides per site of allocation, from what survived a young
  // collection, to allocate its objects straight in the old generation. In some runs a master of
  // 10,000 nodes then kept about a fifth of what heartbeats allocated past every young collection,
  // HTTP requests' and responses' objects mostly (a heap sampling profile): at 2,000 heartbeats/s
  // it promoted 6-9 MB/s instead of 0.3, with a full GC every few seconds, and the round trip's
  // p99 was 20-83 ms instead of 3-7. That was 5 of 20 runs of bench/heartbeats.ts with V8's
  // default, none of 12 without (--trace-gc-nvp). Given on the command line,
  // MCP_NODE_FLAGS=--allocation-site-pretenuring keeps V8's default.
  if (!process.execArgv.some((flag) => PRETENURING_FLAG.test(flag))) setFlagsFromString("--no-allocation-site-pretenuring")
  const [{ main }, Master, MasterConfig] = await Promise.all([import("@mcp/rpc/Daemon"), import("./daemon/Master.js"), import("./daemon/MasterConfig.js")])
  main({ name: "mcp-master", version: versionLine(), path: "/master", decode: MasterConfig.decode, layer: Master.layer })
}
