/**
 * bench/placement-learning: what a master that lost its placements (or never had them) spends
 * learning them back from heartbeats, round by round. N nodes (10,000) each report 3 services;
 * each round notes every node's services, as its heartbeats do, and writes what was noted
 * (HeartbeatRecords' write of a second), on a real SQLite file. The first round learns them all;
 * the next finds them known placed; the third is the floor: what a heartbeat round costs when
 * everything is known.
 *
 *   node --import tsx bench/placement-learning.ts [--nodes N]
 */
import { Names, type Node } from "@mcp/domain"
import { Context, Effect, Layer } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { layerSqlite, MasterDb } from "../packages/master/src/db/MasterDb.js"
import { HeartbeatRecords } from "../packages/master/src/nodes/HeartbeatRecords.js"

const i = process.argv.indexOf("--nodes")
const N = i < 0 ? 10_000 : Number(process.argv[i + 1])
const SERVICES_PER_NODE = 3
const dir = mkdtempSync(join(tmpdir(), "mcp-bench-learn-"))

const program = Effect.gen(function* () {
  const dbContext = yield* Layer.build(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(join(dir, "master.db")))))
  const db = Context.get(dbContext, MasterDb)
  const nodes = Array.from({ length: N }, (_, k) => `node-${k}`)
  for (const name of nodes) {
    const info: Node.NodeInfo = { name: Names.NodeName.make(name), role: "worker", addresses: ["10.0.0.1:7443"], arch: "x64", version: "bench" }
    yield* db.upsertNode(info, "register")
  }
  const records = Context.get(yield* Layer.build(HeartbeatRecords.Default.pipe(Layer.provide(Layer.succeedContext(dbContext)))), HeartbeatRecords)
  const reports = nodes.map((name) => Array.from({ length: SERVICES_PER_NODE }, (_, k) => ({ service: `${name}-s${k}` })))
  const round = (label: string) =>
    Effect.gen(function* () {
      const cpu0 = process.cpuUsage()
      const t0 = performance.now()
      nodes.forEach((name, k) => records.noteServices(name, reports[k]!, 0))
      yield* records.flush
      const wallMs = performance.now() - t0
      const cpu = process.cpuUsage(cpu0)
      const placed = (yield* db.placements).length
      console.log(`  ${label.padEnd(22)} ${wallMs.toFixed(0).padStart(6)} ms wall ${((cpu.user + cpu.system) / 1000).toFixed(0).padStart(6)} ms CPU   ${placed} placed`)
    })
  console.log(`${N} nodes x ${SERVICES_PER_NODE} services: each round notes every node's services and writes what was noted`)
  yield* round("1st heartbeats (learn)")
  yield* round("2nd heartbeats")
  yield* round("3rd heartbeats (floor)")
}).pipe(Effect.scoped, Effect.ensuring(Effect.sync(() => rmSync(dir, { recursive: true, force: true }))))

Effect.runPromise(program).catch((e) => {
  console.error(e)
  process.exitCode = 1
})
