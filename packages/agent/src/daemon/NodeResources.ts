/** What this node has and uses, for heartbeats, `mcp node list` and placement. */
import type { Node } from "@mcp/domain"
import { Effect } from "effect"
import { statfs } from "node:fs/promises"
import * as os from "node:os"

export const read = (dataDir: string, containers: number): Effect.Effect<Node.Resources> =>
  Effect.map(
    Effect.promise(() => statfs(dataDir).catch(() => undefined)),
    (fs): Node.Resources => ({
      cpuCores: os.cpus().length,
      load1: os.loadavg()[0] ?? 0,
      memoryTotalBytes: os.totalmem(),
      memoryFreeBytes: os.freemem(),
      diskTotalBytes: fs === undefined ? 0 : fs.blocks * fs.bsize,
      diskFreeBytes: fs === undefined ? 0 : fs.bavail * fs.bsize,
      containers
    })
  )

/** The node's architecture in the names images use (amd64, arm64). */
export const arch = (): string => (process.arch === "x64" ? "amd64" : process.arch)
