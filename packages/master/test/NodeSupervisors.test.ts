import { describe, expect, it } from "@effect/vitest"
import { HeartbeatCadence } from "@mcp/domain"
import { Context, Duration, Effect, Layer, Logger, LogLevel, Option, Random, Ref, type Scope, TestClock } from "effect"
import {
  CADENCE_JITTER,
  type HealthTransition,
  NodeSupervisors,
  Prober,
  type SupervisorConfig,
  SupervisorSettings,
  TransitionSink
} from "../src/nodes/NodeSupervisors.js"
import * as DeadlineTimer from "../src/nodes/DeadlineTimer.js"
import { advance, settle } from "./ClockSteps.js"

type Answer = "ok" | "fail" | "hang"

const INTERVAL = 1_000
const THRESHOLD = 3
const PROBE_TIMEOUT = 500

/**
 * A supervisor with a fake prober (answers per node and address, "fail" by default) and a sink
 * that collects transitions; `crashNext` makes the sink die that many times first.
 */
const harnessWith = (extra: Partial<SupervisorConfig>) => Effect.gen(function* () {
  const answers = yield* Ref.make(new Map<string, Answer>())
  const probes = yield* Ref.make<ReadonlyArray<string>>([])
  const transitions = yield* Ref.make<ReadonlyArray<HealthTransition>>([])
  const crashNext = yield* Ref.make(0)
  const context = yield* Layer.build(
    NodeSupervisors.Default.pipe(
      Layer.provide(
        Layer.mergeAll(
          Layer.succeed(SupervisorSettings, {
            interval: `${INTERVAL} millis`,
            missThreshold: THRESHOLD,
            probeTimeout: `${PROBE_TIMEOUT} millis`,
            ...extra
          }),
          Layer.succeed(Prober, {
            probe: (node, address) =>
              Effect.gen(function* () {
                yield* Ref.update(probes, (all) => [...all, `${node}@${address}`])
                const answer = (yield* Ref.get(answers)).get(`${node}@${address}`) ?? "fail"
                if (answer === "hang") return yield* Effect.never
                if (answer === "fail") return yield* Effect.fail("connection refused")
              })
          }),
          Layer.succeed(TransitionSink, {
            record: (t) =>
              Effect.gen(function* () {
                const crash = yield* Ref.getAndUpdate(crashNext, (n) => Math.max(0, n - 1))
                if (crash > 0) return yield* Effect.die(new Error("event log unavailable"))
                yield* Ref.update(transitions, (all) => [...all, t])
              })
          })
        )
      )
    )
  )
  const supervisors = Context.get(context, NodeSupervisors)
  return {
    supervisors,
    probes,
    crashNext,
    answer: (node: string, address: string, answer: Answer) =>
      Ref.update(answers, (m) => new Map(m).set(`${node}@${address}`, answer)),
    transitions: Ref.get(transitions),
    /** "from->to" for each recorded transition, in order. */
    moves: Effect.map(Ref.get(transitions), (all) => all.map((t) => `${t.from}->${t.to}`)),
    status: (node: string) =>
      Effect.map(supervisors.health(node), Option.match({ onNone: () => "unwatched", onSome: (h) => h.status }))
  }
})
const harness = harnessWith({})

const now = TestClock.currentTimeMillis

const test = (name: string, body: Effect.Effect<void, never, Scope.Scope>, timeout?: number) =>
  it.effect(name, () => body.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None)), timeout)

describe("NodeSupervisors", () => {
  test(
    "unknown -> healthy on the first heartbeat",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* settle
      expect(yield* h.status("n1")).toBe("unknown")
      expect(yield* h.supervisors.heartbeat("n1")).toEqual(Option.some(INTERVAL))
      yield* settle
      const health = Option.getOrThrow(yield* h.supervisors.health("n1"))
      expect(health.status).toBe("healthy")
      expect(health.lastHeartbeat?.getTime()).toBe(0)
      const [t] = yield* h.transitions
      expect(t).toEqual({ node: "n1", from: "unknown", to: "healthy", reason: "heartbeat received", at: new Date(0) })
    })
  )

  test(
    "regular heartbeats keep a node healthy without a single probe",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      // Each heartbeat moves the deadline one interval on: none is ever missed.
      const missedBeforeEach: Array<number> = []
      for (let elapsed = 0; elapsed < 10_000; elapsed += 900) {
        yield* advance(900)
        missedBeforeEach.push(Option.getOrThrow(yield* h.supervisors.health("n1")).missed)
        yield* h.supervisors.heartbeat("n1")
      }
      yield* settle
      expect(missedBeforeEach.every((missed) => missed === 0)).toBe(true)
      expect(yield* h.moves).toEqual(["unknown->healthy"])
      expect(yield* h.probes).toEqual([])
      const health = Option.getOrThrow(yield* h.supervisors.health("n1"))
      expect(health.missed).toBe(0)
      expect(health.lastHeartbeat?.getTime()).toBe(yield* now)
      expect(health.deadline.getTime()).toBe((yield* now) + health.intervalMs)
    })
  )

  test(
    "three missed deadlines make it suspect; a probe failing on every address makes it unhealthy",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000", "n1-b:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(2_900)
      expect(yield* h.status("n1")).toBe("healthy")
      expect(Option.getOrThrow(yield* h.supervisors.health("n1")).missed).toBe(2)
      expect(yield* h.probes).toEqual([])
      yield* advance(100)
      expect(yield* h.status("n1")).toBe("unhealthy")
      expect(yield* h.probes).toEqual(["n1@n1-a:7000", "n1@n1-b:7000"])
      const all = yield* h.transitions
      expect(all.map((t) => `${t.from}->${t.to}`)).toEqual(["unknown->healthy", "healthy->suspect", "suspect->unhealthy"])
      expect(all[1]!.reason).toBe("3 heartbeats missed")
      expect(all[2]!.reason).toBe("probe failed: n1-a:7000: connection refused; n1-b:7000: connection refused")
      const health = Option.getOrThrow(yield* h.supervisors.health("n1"))
      expect(health.lastProbe).toEqual({
        address: "n1-b:7000",
        ok: false,
        reason: "n1-a:7000: connection refused; n1-b:7000: connection refused"
      })
      const tree = yield* h.supervisors.tree
      expect(tree).toEqual({
        name: "NodeSupervisors",
        state: "1 node fiber supervised",
        restarts: 0,
        children: [
          {
            name: "n1",
            state: "running, node unhealthy",
            restarts: 0,
            lastError: "n1-a:7000: connection refused; n1-b:7000: connection refused",
            children: []
          }
        ]
      })
    })
  )

  test(
    "unhealthy -> healthy on a heartbeat",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"], "unhealthy")
      yield* settle
      expect(yield* h.status("n1")).toBe("unhealthy")
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      expect(yield* h.moves).toEqual(["unhealthy->healthy"])
      expect(Option.getOrThrow(yield* h.supervisors.health("n1")).missed).toBe(0)
    })
  )

  test(
    "an unhealthy node is probed again every three misses and comes back when the probe answers",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(3_000)
      expect(yield* h.status("n1")).toBe("unhealthy")
      expect(yield* h.probes).toHaveLength(1)
      yield* h.answer("n1", "n1-a:7000", "ok")
      yield* advance(2_900)
      expect(yield* h.status("n1")).toBe("unhealthy")
      expect(yield* h.probes).toHaveLength(1)
      yield* advance(100)
      expect(yield* h.probes).toHaveLength(2)
      expect(yield* h.status("n1")).toBe("healthy")
      const all = yield* h.transitions
      expect(all.map((t) => `${t.from}->${t.to}`)).toEqual([
        "unknown->healthy",
        "healthy->suspect",
        "suspect->unhealthy",
        "unhealthy->healthy"
      ])
      expect(all[3]).toMatchObject({ reason: "probe answered", at: new Date(6_000) })
      expect(Option.getOrThrow(yield* h.supervisors.health("n1")).lastProbe).toEqual({ address: "n1-a:7000", ok: true })
    })
  )

  test(
    "a probe that fails on the first address and answers on the second brings the node back",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.answer("n1", "n1-b:7000", "ok")
      yield* h.supervisors.watch("n1", ["n1-a:7000", "n1-b:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(3_000)
      expect(yield* h.moves).toEqual(["unknown->healthy", "healthy->suspect", "suspect->healthy"])
      expect((yield* h.transitions)[2]!.reason).toBe("probe answered")
      expect(Option.getOrThrow(yield* h.supervisors.health("n1")).lastProbe).toEqual({ address: "n1-b:7000", ok: true })
    })
  )

  test(
    "a first address that hangs is given up after the probe timeout, and the second answers",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.answer("n1", "n1-a:7000", "hang")
      yield* h.answer("n1", "n1-b:7000", "ok")
      yield* h.supervisors.watch("n1", ["n1-a:7000", "n1-b:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(3_400)
      expect(yield* h.status("n1")).toBe("suspect")
      expect(yield* h.probes).toEqual(["n1@n1-a:7000"])
      yield* advance(100)
      expect(yield* h.status("n1")).toBe("healthy")
      expect(yield* h.probes).toEqual(["n1@n1-a:7000", "n1@n1-b:7000"])
      const all = yield* h.transitions
      expect(all[2]).toMatchObject({ from: "suspect", to: "healthy", at: new Date(3_500) })
      expect(Option.getOrThrow(yield* h.supervisors.health("n1")).lastProbe).toEqual({ address: "n1-b:7000", ok: true })
    })
  )

  test(
    "watching a watched node again replaces its addresses for the next probe",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.answer("n1", "n1-new:7000", "ok")
      yield* h.supervisors.watch("n1", ["n1-old:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* h.supervisors.watch("n1", ["n1-new:7000"], "unhealthy")
      yield* advance(3_000)
      expect(yield* h.probes).toEqual(["n1@n1-new:7000"])
      expect(yield* h.moves).toEqual(["unknown->healthy", "healthy->suspect", "suspect->healthy"])
    })
  )

  test(
    "a flapping node records the exact sequence of transitions",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      // Silent for three deadlines: the probe fails at once.
      yield* advance(3_000)
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      // Two misses only: nothing happens.
      yield* advance(2_500)
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      // Silent again, but this time the probe hangs and a heartbeat arrives while it is out;
      // the probe's eventual failure must not undo the heartbeat.
      yield* h.answer("n1", "n1-a:7000", "hang")
      yield* advance(3_200)
      expect(yield* h.status("n1")).toBe("suspect")
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(500)
      // Silent once more (the probe was out at 11_700), and it fails after its timeout.
      yield* advance(2_900)
      expect(yield* h.status("n1")).toBe("suspect")
      yield* advance(100)
      expect(yield* h.status("n1")).toBe("unhealthy")
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      expect(yield* h.moves).toEqual([
        "unknown->healthy",
        "healthy->suspect",
        "suspect->unhealthy",
        "unhealthy->healthy",
        "healthy->suspect",
        "suspect->healthy",
        "healthy->suspect",
        "suspect->unhealthy",
        "unhealthy->healthy"
      ])
      expect((yield* h.transitions).map((t) => t.at.getTime())).toEqual([
        0, 3_000, 3_000, 3_000, 8_500, 8_700, 11_700, 12_200, 12_200
      ])
    })
  )

  test(
    "unwatch interrupts the node fiber: no more transitions, heartbeats are refused",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* h.supervisors.unwatch("n1")
      yield* advance(10_000)
      expect(yield* h.moves).toEqual(["unknown->healthy"])
      expect(yield* h.probes).toEqual([])
      expect(yield* h.supervisors.heartbeat("n1")).toEqual(Option.none())
      expect(yield* h.supervisors.health("n1")).toEqual(Option.none())
      expect((yield* h.supervisors.tree).children).toEqual([])
      expect(yield* h.supervisors.snapshot).toEqual([])
    })
  )

  test(
    "unwatch also interrupts a probe that is out",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.answer("n1", "n1-a:7000", "hang")
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      yield* advance(3_100)
      expect(yield* h.status("n1")).toBe("suspect")
      yield* h.supervisors.unwatch("n1")
      yield* advance(5_000)
      expect(yield* h.moves).toEqual(["unknown->healthy", "healthy->suspect"])
    })
  )

  test(
    "heartbeat of a node that is not watched returns false",
    Effect.gen(function* () {
      const h = yield* harness
      expect(yield* h.supervisors.heartbeat("ghost")).toEqual(Option.none())
      expect(yield* h.supervisors.health("ghost")).toEqual(Option.none())
    })
  )

  test(
    "last heartbeat to unhealthy takes interval * threshold + the probe's time",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.answer("n1", "n1-a:7000", "hang")
      yield* h.answer("n1", "n1-b:7000", "hang")
      yield* h.supervisors.watch("n1", ["n1-a:7000", "n1-b:7000"])
      yield* advance(700)
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      const lastHeartbeat = yield* now
      const expected = INTERVAL * THRESHOLD + 2 * PROBE_TIMEOUT
      yield* advance(expected - 100)
      expect(yield* h.status("n1")).toBe("suspect")
      yield* advance(100)
      expect(yield* h.status("n1")).toBe("unhealthy")
      const unhealthy = (yield* h.transitions).find((t) => t.to === "unhealthy")!
      expect(unhealthy.at.getTime() - lastHeartbeat).toBe(expected)
      expect(unhealthy.reason).toBe(
        "probe failed: n1-a:7000: timed out after 500ms; n1-b:7000: timed out after 500ms"
      )
    })
  )

  test(
    "a crashed node fiber is restarted, counted, and resumes without losing the transition",
    Effect.gen(function* () {
      const h = yield* harness
      yield* Ref.set(h.crashNext, 1)
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      expect(yield* h.moves).toEqual([])
      let tree = yield* h.supervisors.tree
      expect(tree).toMatchObject({ state: "1 node fiber supervised, 1 restarting", restarts: 1 })
      expect(tree.children[0]).toMatchObject({
        name: "n1",
        state: "restarting, node healthy",
        restarts: 1,
        lastError: "supervisor crashed: event log unavailable"
      })
      // Backoff before the restart is about 100 ms (jittered).
      yield* advance(200)
      expect(yield* h.moves).toEqual(["unknown->healthy"])
      // The restarted fiber keeps the deadline it had: it still notices silence on time.
      yield* advance(2_800)
      expect(yield* h.moves).toEqual(["unknown->healthy", "healthy->suspect", "suspect->unhealthy"])
      tree = yield* h.supervisors.tree
      expect(tree.children[0]).toMatchObject({ state: "running, node unhealthy", restarts: 1 })
      expect(tree.restarts).toBe(1)
    })
  )

  test(
    "snapshot lists every watched node by name",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n2", ["n2-a:7000"])
      yield* h.supervisors.watch("n1", ["n1-a:7000"], "healthy")
      yield* h.supervisors.heartbeat("n2")
      yield* settle
      expect(yield* h.supervisors.snapshot).toEqual([
        { node: "n1", status: "healthy", missed: 0, lastHeartbeat: undefined, lastProbe: undefined, intervalMs: INTERVAL, deadline: new Date(INTERVAL) },
        { node: "n2", status: "healthy", missed: 0, lastHeartbeat: new Date(0), lastProbe: undefined, intervalMs: INTERVAL, deadline: new Date(INTERVAL) }
      ])
    })
  )

  test(
    "eachNode gives every watched node's last heartbeat time (none for a node not heard from), status and heartbeats since it was watched",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n2", ["n2-a:7000"])
      yield* h.supervisors.watch("n1", ["n1-a:7000"], "unhealthy")
      yield* h.supervisors.heartbeat("n2")
      yield* TestClock.adjust(1_000)
      yield* h.supervisors.heartbeat("n2")
      yield* settle
      const seen: Array<readonly [string, number | undefined, string, number]> = []
      h.supervisors.eachNode((node, at, status, heartbeats) => seen.push([node, at, status, heartbeats]))
      expect(seen.sort(([a], [b]) => a.localeCompare(b))).toEqual([["n1", undefined, "unhealthy", 0], ["n2", 1_000, "healthy", 2]])
      // Watched anew, a node counts from zero: its series starts again, as after a master restart.
      yield* h.supervisors.unwatch("n2")
      yield* h.supervisors.watch("n2", ["n2-a:7000"])
      const again: Array<number> = []
      h.supervisors.eachNode((node, _, __, heartbeats) => node === "n2" && again.push(heartbeats))
      expect(again).toEqual([0])
    })
  )
})

describe("NodeSupervisors with max_rate: the interval each node is given", () => {
  // Small enough that a few hundred simulated nodes already stretch the interval: what costs
  // test time is the number of heartbeats simulated (every TestClock wake-up is a real timer turn).
  const MAX_RATE = 5
  const cadence = { minIntervalMs: INTERVAL, maxRate: MAX_RATE, jitter: CADENCE_JITTER }
  const ROUNDS = 6

  /**
   * N agents that all register at t = 0 (a fleet booting) and then heartbeat after whatever
   * interval each answer gives them, for ROUNDS base intervals of simulated time. Returns every
   * heartbeat's time, and the intervals given.
   */
  const fleet = (h: Effect.Effect.Success<ReturnType<typeof harnessWith>>, nodes: number, silent?: string, silentFrom?: number) =>
    Effect.gen(function* () {
      const base = HeartbeatCadence.baseIntervalMs(cadence, nodes)
      const arrivals: Array<number> = []
      const given: Array<number> = []
      const names = Array.from({ length: nodes }, (_, i) => `n${i}`)
      for (const name of names) yield* h.supervisors.watch(name, [`${name}-a:7000`])
      const agent = (name: string) =>
        Effect.gen(function* () {
          while (true) {
            const at = yield* now
            if (name === silent && at >= silentFrom!) return
            const interval = Option.getOrThrow(yield* h.supervisors.heartbeat(name))
            arrivals.push(at)
            given.push(interval)
            yield* Effect.sleep(Duration.millis(interval))
          }
        })
      yield* Effect.forEach(names, (name) => Effect.forkScoped(agent(name)), { discard: true })
      for (let t = 0; t < ROUNDS * base; t += 1_000) {
        yield* TestClock.adjust(1_000)
        yield* settle
      }
      return { base, arrivals: arrivals.sort((a, b) => a - b), given }
    })

  /** The most heartbeats in any window [t, t + width) with t on a whole second from `from`. */
  const busiest = (arrivals: ReadonlyArray<number>, from: number, to: number, width: number) => {
    let most = 0
    for (let t = from; t + width <= to; t += 1_000) most = Math.max(most, arrivals.filter((a) => a >= t && a < t + width).length)
    return most
  }

  for (const nodes of [5, 50, 200]) {
    test(
      `${nodes} nodes booting together: after their first interval, no more than max_rate heartbeats per second on average over any base interval, and never a burst`,
      Effect.gen(function* () {
        const h = yield* harnessWith({ maxRate: MAX_RATE })
        const { base, arrivals, given } = yield* fleet(h, nodes)
        // Every interval given is at least the base, which grows with the fleet (never below the configured one).
        expect(base).toBe(Math.max(INTERVAL, (nodes * 1000) / MAX_RATE))
        expect(Math.min(...given.slice(nodes))).toBeGreaterThanOrEqual(base)
        // From the longest first interval on, every node is on intervals of at least the base:
        // each node sends at most one heartbeat in any window of that length.
        const steadyFrom = Math.ceil((base * (1 + CADENCE_JITTER)) / 1000) * 1000
        const end = ROUNDS * base
        const perBase = busiest(arrivals, steadyFrom, end, base)
        expect(perBase).toBeLessThanOrEqual(Math.max(nodes, (MAX_RATE * base) / 1000))
        // Spread over the interval, not bunched: no second holds more than its share plus four
        // standard deviations of a random spread (a fleet in step would put all N in a second or two).
        const share = Math.min(MAX_RATE, nodes)
        expect(busiest(arrivals, steadyFrom, end, 1_000)).toBeLessThanOrEqual(Math.ceil(share + 4 * Math.sqrt(share)) + 1)
        // And the load is not below what the rate allows by much either: the fleet still heartbeats.
        const steady = arrivals.filter((a) => a >= steadyFrom && a < end).length
        expect((steady * 1000) / (end - steadyFrom)).toBeGreaterThan(0.8 * share)
      }).pipe(Effect.withRandom(Random.make(`cadence-${nodes}`))),
      // Simulated minutes of hundreds of agents' heartbeats, moved a second at a time.
      120_000
    )
  }

  test(
    "a node that falls silent is seen unhealthy within the documented bound: miss_threshold of its longest interval, plus the probe",
    Effect.gen(function* () {
      const h = yield* harnessWith({ maxRate: MAX_RATE })
      const nodes = 50
      const silentFrom = 15_000
      yield* fleet(h, nodes, "n7", silentFrom)
      const last = Option.getOrThrow(yield* h.supervisors.health("n7")).lastHeartbeat!.getTime()
      const toUnhealthy = (yield* h.transitions).find((t) => t.node === "n7" && t.to === "unhealthy")
      expect(toUnhealthy).toBeDefined()
      const bound = HeartbeatCadence.detectionBoundMs(cadence, nodes, { missThreshold: THRESHOLD, probeTimeoutMs: PROBE_TIMEOUT, addresses: 1, deadlineLatenessMs: DeadlineTimer.ROUND_MS })
      expect(toUnhealthy!.at.getTime() - last).toBeLessThanOrEqual(bound)
      // Not before its own interval was missed miss_threshold times: nobody else was suspected.
      expect(toUnhealthy!.at.getTime() - last).toBeGreaterThanOrEqual(THRESHOLD * HeartbeatCadence.baseIntervalMs(cadence, nodes))
      expect((yield* h.transitions).filter((t) => t.to !== "healthy").map((t) => t.node)).toEqual(["n7", "n7"])
    }).pipe(Effect.withRandom(Random.make("cadence-silent"))),
    120_000
  )

  test(
    "a heartbeat that brings the deadline earlier (the fleet shrank, the interval with it) is held to the earlier one",
    Effect.gen(function* () {
      const h = yield* harnessWith({ maxRate: 1 })
      // Ten nodes at one heartbeat a second: n1 is given up to 11 s, and its timer is set for that.
      const others = Array.from({ length: 9 }, (_, i) => `n${i + 2}`)
      for (const n of ["n1", ...others]) yield* h.supervisors.watch(n, [`${n}-a:7000`])
      const long = Option.getOrThrow(yield* h.supervisors.heartbeat("n1"))
      // Drawn over [0.1, 1.1] x 10 s; this seed draws one longer than the 3 new intervals that follow.
      expect(long).toBeGreaterThan(6_000)
      yield* settle
      // Past the deadline set at watch: the timer is now set for the long one.
      yield* advance(1_200)
      for (const n of others) yield* h.supervisors.unwatch(n)
      // Alone now, it is given about 1 s, then falls silent.
      const short = Option.getOrThrow(yield* h.supervisors.heartbeat("n1"))
      expect(short).toBeLessThanOrEqual(INTERVAL * 1.1)
      const last = yield* now
      yield* settle
      let probedAt: number | undefined
      for (let t = 0; t < 12_000 && probedAt === undefined; t += 100) {
        yield* advance(100)
        if ((yield* h.probes).length > 0) probedAt = yield* now
      }
      // Probed after miss_threshold of its new deadlines, not after its old, longer one.
      expect(probedAt).toBeDefined()
      expect(probedAt! - last).toBeGreaterThanOrEqual(THRESHOLD * INTERVAL)
      expect(probedAt! - last).toBeLessThanOrEqual(THRESHOLD * short + 200)
    }).pipe(Effect.withRandom(Random.make("shrinking fleet"))),
    60_000
  )
})

describe("NodeSupervisors with the phi detector", () => {
  const beats = (h: Effect.Effect.Success<ReturnType<typeof harnessWith>>, gaps: ReadonlyArray<number>) =>
    Effect.gen(function* () {
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      for (const gap of gaps) {
        yield* advance(gap)
        yield* h.supervisors.heartbeat("n1")
        yield* settle
      }
    })

  test(
    "a node that heartbeat like clockwork is suspected soon after its usual interval, well before miss_threshold intervals, and the event says why",
    Effect.gen(function* () {
      const h = yield* harnessWith({ phi: { threshold: 8 } })
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* beats(h, Array.from({ length: 30 }, () => INTERVAL))
      const last = yield* now
      let suspectedAt: number | undefined
      for (let t = 0; t < THRESHOLD * INTERVAL + PROBE_TIMEOUT && suspectedAt === undefined; t += 100) {
        yield* advance(100)
        if ((yield* h.status("n1")) !== "healthy") suspectedAt = (yield* now) - last
      }
      expect(suspectedAt).toBeGreaterThan(INTERVAL)
      expect(suspectedAt).toBeLessThan(2 * INTERVAL)
      yield* advance(PROBE_TIMEOUT + 100)
      expect(yield* h.status("n1")).toBe("unhealthy")
      const suspicion = (yield* h.transitions).find((t) => t.to === "suspect")
      expect(suspicion?.reason).toMatch(/^phi 8 reached \(silent 1\.\d s, heartbeats usually 1\.0 s apart\)$/)
    }),
    30_000
  )

  test(
    "a node whose heartbeats come 300 ms early or late is never suspected, and a lost one is noticed later than for a regular node",
    Effect.gen(function* () {
      const h = yield* harnessWith({ phi: { threshold: 8 } })
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* beats(h, Array.from({ length: 30 }, (_, i) => (i % 2 === 0 ? INTERVAL - 300 : INTERVAL + 300)))
      expect(yield* h.moves).toEqual(["unknown->healthy"])
      expect(yield* h.probes).toEqual([])
      // Silent now: past the clockwork node's moment of suspicion (under 2 intervals), still trusted.
      yield* advance(2 * INTERVAL)
      expect(yield* h.status("n1")).toBe("healthy")
      yield* advance(2 * INTERVAL)
      expect(yield* h.status("n1")).not.toBe("healthy")
    }),
    30_000
  )

  test(
    "judged in the interval the node was given: a node given 2 s by max_rate, heartbeating on time, is never suspected, and a silent one is, a little after 2 s",
    Effect.gen(function* () {
      // One node at 0.5 heartbeats a second for the fleet: it is given 2-2.2 s.
      const h = yield* harnessWith({ phi: { threshold: 8 }, maxRate: 0.5 })
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      for (let i = 0; i < 20; i++) {
        const given = Option.getOrThrow(yield* h.supervisors.heartbeat("n1"))
        yield* settle
        if (i > 0) expect(given).toBeGreaterThanOrEqual(2 * INTERVAL)
        yield* advance(given)
      }
      expect(yield* h.moves).toEqual(["unknown->healthy"])
      const last = Option.getOrThrow(yield* h.supervisors.health("n1")).lastHeartbeat!.getTime()
      let suspectedAt: number | undefined
      for (let t = 0; t < 6 * INTERVAL && suspectedAt === undefined; t += 100) {
        yield* advance(100)
        if ((yield* h.status("n1")) !== "healthy") suspectedAt = (yield* now) - last
      }
      expect(suspectedAt).toBeGreaterThan(2 * INTERVAL)
      expect(suspectedAt).toBeLessThan(3.5 * INTERVAL)
    }).pipe(Effect.withRandom(Random.make("phi-scaled"))),
    30_000
  )
})
