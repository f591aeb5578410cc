/**
 * bench/node-supervisors: what the master's node supervisors (NodeSupervisors.ts) hold per
 * watched node, and the CPU of one heartbeat's step, in process (no HTTP, no database).
 *
 * Floor, measured in the same run: the least "one supervised fiber per node" can hold, a fiber in
 * a FiberMap waiting forever plus a Ref of its record. The supervisors' own figure is set beside it.
 *
 *   node --expose-gc --import tsx bench/node-supervisors.ts [--nodes=10000] [--heartbeats=200000]
 */
import { Effect, FiberMap, Layer, Option, Ref } from "effect"
import { NodeSupervisors, Prober, SupervisorSettings, TransitionSink } from "../packages/master/src/nodes/NodeSupervisors.js"

const option = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback)
const NODES = option("nodes", 10_000)
const HEARTBEATS = option("heartbeats", 200_000)

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  console.error("run with node --expose-gc (heap figures need a collection before each reading)")
  process.exit(2)
}
const heapAfterGc = () => {
  gc()
  gc()
  return process.memoryUsage().heapUsed
}
const kib = (bytes: number) => (bytes / NODES / 1024).toFixed(2)

/** KiB of heap per node that `watchAll` adds, once its fibers have started. */
const perNode = (watchAll: Effect.Effect<void>) =>
  Effect.gen(function* () {
    yield* Effect.sleep("100 millis")
    const before = heapAfterGc()
    yield* watchAll
    yield* Effect.sleep("500 millis")
    return heapAfterGc() - before
  })

const floor = Effect.scoped(Effect.gen(function* () {
  const fibers = yield* FiberMap.make<string>()
  const records: Array<Ref.Ref<{ readonly node: string }>> = []
  return yield* perNode(Effect.gen(function* () {
    for (let i = 0; i < NODES; i++) {
      records.push(yield* Ref.make({ node: `node-${i}` }))
      yield* FiberMap.run(fibers, `node-${i}`, Effect.never)
    }
  }))
}))

const supervisors = Effect.gen(function* () {
  const s = yield* NodeSupervisors
  const bytes = yield* perNode(Effect.gen(function* () {
    for (let i = 0; i < NODES; i++) yield* s.watch(`node-${i}`, ["127.0.0.1:1"])
  }))
  const cpu = process.cpuUsage()
  for (let i = 0; i < HEARTBEATS; i++) {
    if (Option.isNone(yield* s.heartbeat(`node-${i % NODES}`))) throw new Error(`node-${i % NODES} is not watched`)
  }
  const used = process.cpuUsage(cpu)
  return { bytes, heartbeatUs: (used.user + used.system) / HEARTBEATS }
}).pipe(
  Effect.provide(NodeSupervisors.Default.pipe(Layer.provide(Layer.mergeAll(
    // max_rate on, as a large fleet would run; a threshold no node reaches in the run.
    Layer.succeed(SupervisorSettings, { interval: "10 seconds", missThreshold: 100, probeTimeout: "1 second", maxRate: 1_000 }),
    Layer.succeed(Prober, { probe: () => Effect.void }),
    Layer.succeed(TransitionSink, { record: () => Effect.void })
  )))),
  Effect.scoped
)

const main = Effect.gen(function* () {
  console.log(`bench/node-supervisors: ${NODES} nodes watched, ${HEARTBEATS} heartbeats stepped, node ${process.version}`)
  const floorBytes = yield* floor
  const s = yield* supervisors
  console.log(`  floor (a FiberMap fiber waiting forever and a Ref, per node): ${kib(floorBytes)} KiB`)
  console.log(`  NodeSupervisors.watch:                                         ${kib(s.bytes)} KiB per node (${(s.bytes / floorBytes).toFixed(1)}x the floor, ${(s.bytes / 2 ** 20).toFixed(1)} MiB in all)`)
  console.log(`  NodeSupervisors.heartbeat:                                     ${s.heartbeatUs.toFixed(1)} us of CPU each`)
})

Effect.runPromise(main).then(() => process.exit(0))
