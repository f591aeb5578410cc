/**
 * The master's node supervisors: one supervised fiber per watched node, in a FiberMap, that owns
 * the node's heartbeat timer, drives `Health.stepHealth` and carries out its probes and transitions.
 */
import { HeartbeatCadence, Health, type Operations, PhiAccrual } from "@mcp/domain"
import { Cause, Clock, Context, Duration, Effect, Either, Fiber, FiberMap, Metric, Option, Random } from "effect"
import * as DeadlineTimer from "./DeadlineTimer.js"

type HealthStatus = Health.HealthStatus

export interface SupervisorConfig {
  /**
   * Expected time between heartbeats; each one re-arms a deadline this far ahead. With `maxRate`,
   * the shortest interval a node is given.
   */
  readonly interval: Duration.DurationInput
  /**
   * Heartbeats per second the whole fleet may send ([heartbeat] max_rate): each heartbeat is
   * answered with the node's next interval, `interval` stretched as the fleet grows and by up to
   * CADENCE_JITTER (HeartbeatCadence), and the node's deadline follows the interval it was given.
   * Absent: every node keeps `interval`, with no jitter.
   */
  readonly maxRate?: number
  /**
   * Beside the fixed miss threshold, a phi-accrual detector ([heartbeat] detector = "phi"): after
   * each heartbeat the node is suspected (and probed) when phi of its silence reaches `threshold`,
   * judged against its own recent arrivals (PhiAccrual.ts), rather than after missThreshold
   * deadlines. Once suspected, deadlines pass every interval as with the fixed threshold, so a node
   * whose heartbeats are lost but which answers probes is probed every missThreshold intervals.
   */
  readonly phi?: { readonly threshold: number }
  /** Missed deadlines before a probe (and between re-probes while unhealthy). */
  readonly missThreshold: number
  /** Time allowed for each address of a probe. */
  readonly probeTimeout: Duration.DurationInput
}

export class SupervisorSettings extends Context.Tag("@mcp/master/SupervisorSettings")<
  SupervisorSettings,
  SupervisorConfig
>() {}

/** One attempt to reach one of a node's addresses; fails with a human-readable reason. */
export interface Prober {
  readonly probe: (node: string, address: string) => Effect.Effect<void, string>
}
export const Prober = Context.GenericTag<Prober>("@mcp/master/Prober")

export interface HealthTransition {
  readonly node: string
  readonly from: HealthStatus
  readonly to: HealthStatus
  readonly reason: string
  readonly at: Date
}

/** Where status changes go: the master persists the node's health and logs an event. */
export interface TransitionSink {
  readonly record: (t: HealthTransition) => Effect.Effect<void>
}
export const TransitionSink = Context.GenericTag<TransitionSink>("@mcp/master/TransitionSink")

export interface ProbeOutcome {
  /** The address that answered, or the last one tried when none did. */
  readonly address: string
  readonly ok: boolean
  readonly reason?: string
}

export interface NodeHealth {
  readonly status: HealthStatus
  readonly missed: number
  readonly lastHeartbeat: Date | undefined
  readonly lastProbe: ProbeOutcome | undefined
  /** The interval the node was last given, ms. */
  readonly intervalMs: number
  /** When the next heartbeat is due; a miss is counted if none has come by then. */
  readonly deadline: Date
}

/** How far a node's interval is stretched at most, so that nodes registered together drift apart. */
export const CADENCE_JITTER = 0.1

/**
 * The phi detector judges a node's arrivals in thousandths of the interval it was given, not in
 * milliseconds: the interval changes as the fleet grows and varies by CADENCE_JITTER from one
 * heartbeat to the next, and a heartbeat on time is always 1000 apart from the previous one.
 */
export const PHI_UNIT = 1000

/**
 * The phi detector's settings besides the threshold (in PHI_UNITs): the last 100 arrivals; at
 * least a twentieth of an interval as deviation (a clockwork node must not be suspected a few
 * milliseconds late); no extra pause: a missing heartbeat is what the detector exists to
 * notice, and a probe settles it.
 */
export const phiPolicy = (threshold: number): PhiAccrual.PhiPolicy => ({ threshold, windowSize: 100, minStdDevMs: PHI_UNIT / 20, acceptablePauseMs: 0 })

export interface NodeHealthEntry extends NodeHealth {
  readonly node: string
}

// ---------------------------------------------------------------------------------------------
// Internals

/**
 * What the node fiber is woken for. A heartbeat steps the node's record itself (in one
 * synchronous step, as the fiber steps deadlines and probe results), and wakes the fiber only when
 * there is something to carry out: a transition to record. A healthy node's heartbeat, nearly
 * all of them, wakes nothing.
 */
type Mail =
  | { readonly _tag: "HeartbeatStepped" }
  /** The deadline timer found the node's deadline `at` passed with no heartbeat since. */
  | { readonly _tag: "Deadline"; readonly at: number }
  | { readonly _tag: "ProbeDone"; readonly event: Health.HealthEvent; readonly outcome: ProbeOutcome }

type PendingTransition = Omit<HealthTransition, "node">

/**
 * What survives a crash of the node fiber, so the next incarnation resumes where it stopped.
 * Replaced whole by each step, except by a heartbeat that changes nothing but its time, the
 * interval given and the deadline (a healthy node with no deadline missed and no probe out, the
 * fixed threshold): those three fields are written in place. A record per heartbeat lived until
 * the node's next heartbeat, seconds later, so V8 moved every one to its old generation and
 * collected it there. With HeartbeatRecords' slots, which do the same for resources, a master of
 * 10,000 nodes taking 2,000 heartbeats a second promoted 0.3 MB/s instead of 1.3
 * (bench/heartbeats.ts, --trace-gc-nvp): its old generation fills about four times slower.
 */
interface NodeRecord {
  readonly health: Health.HealthState
  readonly addresses: ReadonlyArray<string>
  deadlineAt: number
  /** The interval the node was last given: the deadline moves by this much. */
  intervalMs: number
  /** Its heartbeats' arrivals, for the phi detector, in PHI_UNITs of the interval given before each. */
  readonly arrivals: PhiAccrual.PhiState
  /** With the phi detector: the armed deadline is the moment of suspicion, not a missed interval. */
  readonly suspicionArmed: boolean
  /** Transitions decided but not yet recorded (a crash in the sink must not lose them). */
  readonly pending: ReadonlyArray<PendingTransition>
  /** Clock millis of its last heartbeat; undefined: none since it was watched. */
  lastHeartbeat: number | undefined
  readonly lastProbe: ProbeOutcome | undefined
  readonly restarts: number
  readonly lastError: string | undefined
  /** The node fiber's life: "running" once an incarnation started, "restarting" while it backs off after a crash. */
  readonly phase: "starting" | "running" | "restarting"
}

/**
 * A watched node: its record, its mail and its place in the deadline timer. The mail is a plain
 * array and a resume callback rather than a Queue: a fiber waiting on a Queue holds about 3 KiB
 * more (the queue, its taker's Deferred), which is 30 MiB at 10,000 nodes, and only the node's own
 * fiber ever takes from it.
 */
interface Cell {
  readonly node: string
  /**
   * Read and replaced (or, by a heartbeat that changes only its time, interval and deadline,
   * written in place: NodeRecord) only in synchronous steps, nothing yielding between reading it
   * and writing it, so a heartbeat and the node fiber never interleave within a step; a plain
   * field rather than a Ref so that a heartbeat can be stepped without running an effect.
   */
  record: NodeRecord
  /**
   * Heartbeats received since the node was watched (mcp_heartbeats_received_total, MasterMetrics.ts):
   * a number in the cell rather than an Effect counter tagged by node, which kept a series for
   * every node ever watched and, at 10,000 nodes, was most of what a scrape of /metrics cost.
   */
  heartbeats: number
  /** Mail not yet taken by the node fiber, oldest first. */
  readonly mail: Array<Mail>
  /** Resumes the node fiber while it waits for mail. */
  waiting: (() => void) | undefined
  /** The earliest time this node has an entry in the deadline timer for; Infinity when none. */
  armedFor: number
  /** The probe under way (a child of the node fiber), interrupted when the life that launched it ends. */
  probe: Fiber.RuntimeFiber<void> | undefined
  /** Unwatched: its timer entries fall away and nothing is posted to it any more. */
  gone: boolean
}

/** Replaces the cell's record with what `f` makes of it, in one synchronous step; returns what `f` says besides. */
const step = <A>(cell: Cell, f: (r: NodeRecord) => readonly [A, NodeRecord]): A => {
  const [result, next] = f(cell.record)
  cell.record = next
  return result
}

/** Hands `mail` to the node fiber, waking it if it waits. */
const post = (cell: Cell, mail: Mail) => {
  if (cell.gone) return
  cell.mail.push(mail)
  const resume = cell.waiting
  if (resume !== undefined) {
    cell.waiting = undefined
    resume()
  }
}

/** The node fiber's next mail: at once if some is there, else once some is posted. */
const nextMail = (cell: Cell): Effect.Effect<Mail> =>
  Effect.suspend(() => {
    const first = cell.mail.shift()
    if (first !== undefined) return Effect.succeed(first)
    return Effect.flatMap(
      Effect.async<void>((resume) => {
        cell.waiting = () => resume(Effect.void)
        return Effect.sync(() => {
          cell.waiting = undefined
        })
      }),
      () => nextMail(cell)
    )
  })

/** Delay before the `restarts`th restart of a crashed node fiber: 0.1 s doubling, at most 10 s, 0.8-1.2 jittered. */
const restartDelayMs = (restarts: number, random: number) => Math.min(10_000, 100 * 2 ** Math.max(0, restarts - 1)) * (0.8 + 0.4 * random)

const describeDefect = (defect: unknown): string => (defect instanceof Error ? defect.message : String(defect))

/**
 * Feeds one event to the state machine: the actions, and the record with the new state, `patch`
 * applied and the transitions (stamped `at`) queued for recording, kept together.
 */
const stepRecord = (
  r: NodeRecord,
  event: Health.HealthEvent,
  policy: Health.HealthPolicy,
  at: number,
  patch: Partial<NodeRecord>
): readonly [ReadonlyArray<Health.HealthAction>, NodeRecord] => {
  const next = Health.stepHealth(r.health, event, policy)
  const transitions = next.actions.flatMap((a) => (a._tag === "Transition" ? [{ from: a.from, to: a.to, reason: a.reason, at: new Date(at) }] : []))
  return [next.actions, { ...r, ...patch, health: next.state, pending: transitions.length === 0 ? r.pending : [...r.pending, ...transitions] }]
}

/** What a heartbeat at `at` sets besides the health: its time, the interval given, and the next deadline. */
const heartbeatPatch = (r: NodeRecord, at: number, intervalMs: number, phiThreshold: number | undefined): Partial<NodeRecord> => {
  if (phiThreshold === undefined) return { deadlineAt: at + intervalMs, intervalMs, lastHeartbeat: at }
  const policy = phiPolicy(phiThreshold)
  // On the detector's clock, a heartbeat that came one given interval after the last is PHI_UNIT later.
  const last = r.arrivals.lastArrival
  const arrival = last === undefined || r.lastHeartbeat === undefined ? 0 : last + ((at - r.lastHeartbeat) / r.intervalMs) * PHI_UNIT
  const arrivals = PhiAccrual.recordArrival(r.arrivals, arrival, policy)
  return {
    deadlineAt: at + Math.ceil((PhiAccrual.suspectAfterMs(arrivals, policy) / PHI_UNIT) * intervalMs),
    intervalMs,
    lastHeartbeat: at,
    arrivals,
    suspicionArmed: true
  }
}

/** What the event log says when the phi detector suspects a node: the silence against its usual cadence. */
const suspicionReason = (r: NodeRecord, now: number, threshold: number): string => {
  const { mean } = PhiAccrual.statistics(r.arrivals, phiPolicy(threshold))
  const silent = r.lastHeartbeat === undefined ? "" : `silent ${((now - r.lastHeartbeat) / 1000).toFixed(1)} s, `
  return `phi ${threshold} reached (${silent}heartbeats usually ${((mean / PHI_UNIT) * r.intervalMs / 1000).toFixed(1)} s apart)`
}

/** Probes after missed heartbeats, by node and result: ok when an address answered, failed when none did. */
export const probes = Metric.counter("mcp_node_probes", { incremental: true, description: "probes of nodes that missed heartbeats, by node and result" })
const countProbe = (node: string, result: "ok" | "failed") => Metric.increment(Metric.tagged(Metric.tagged(probes, "node", node), "result", result))

export class NodeSupervisors extends Effect.Service<NodeSupervisors>()("@mcp/master/NodeSupervisors", {
  scoped: Effect.gen(function* () {
    const config = yield* SupervisorSettings
    const prober = yield* Prober
    const sink = yield* TransitionSink
    const interval = Duration.toMillis(config.interval)
    const policy: Health.HealthPolicy = { missThreshold: config.missThreshold }
    const probeTimeout = Duration.decode(config.probeTimeout)

    const fibers = yield* FiberMap.make<string>()
    // Node fibers are forked with what this service was built with, not with the fiber that asked
    // for the watch (a Register's RPC fiber): a fork inherits its parent's fiber refs, and a node
    // fiber would have kept its request's span and context alive for as long as it watched.
    const runNode = yield* FiberMap.runtime(fibers)<never>()
    // Guarded so that watch and unwatch of one node never interleave with each other. The map is
    // changed in place under that guard: copying it for each node registered made registering N
    // nodes cost N^2 (50 million entries copied for 10,000). Readers take what they need from it
    // at once (a cell, or the entries), never holding it across a yield.
    const cells = new Map<string, Cell>()
    const guard = yield* Effect.makeSemaphore(1)

    // Every node's deadline is an entry of one timer (DeadlineTimer.ts). A heartbeat moves the
    // deadline later without touching the timer: when the entry falls due, it is set again for the
    // deadline then, and the node fiber is woken only for a deadline that really passed. A deadline
    // moved earlier (phi, or a shorter interval given) gets an entry of its own; the later one falls
    // away when it comes.
    const deadlines = yield* DeadlineTimer.make<Cell>((cell, at) =>
      Effect.gen(function* () {
        if (cell.gone || at !== cell.armedFor) return // unwatched, or an earlier entry took over
        cell.armedFor = Infinity
        const { deadlineAt } = cell.record
        if (deadlineAt > at) return arm(cell, deadlineAt)
        post(cell, { _tag: "Deadline", at })
      })
    )
    /** Makes sure the timer wakes this node by `deadlineAt`. */
    const arm = (cell: Cell, deadlineAt: number) => {
      if (cell.armedFor <= deadlineAt) return
      cell.armedFor = deadlineAt
      deadlines.schedule(deadlineAt, cell)
    }

    /** Tries each address in order; the first that answers wins, otherwise every reason is kept. */
    const probeAll = (node: string, addresses: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        const failures: Array<string> = []
        for (const address of addresses) {
          const attempt = yield* prober.probe(node, address).pipe(
            Effect.timeoutFail({ duration: probeTimeout, onTimeout: () => `timed out after ${Duration.format(probeTimeout)}` }),
            // A prober that crashes has still failed to reach this address; try the next one.
            Effect.catchAllDefect((defect) => Effect.fail(`prober crashed: ${describeDefect(defect)}`)),
            Effect.either
          )
          if (Either.isRight(attempt)) {
            yield* countProbe(node, "ok")
            return { _tag: "ProbeDone", event: Health.HealthEvent.ProbeSucceeded(), outcome: { address, ok: true } } satisfies Mail
          }
          failures.push(`${address}: ${attempt.left}`)
        }
        yield* countProbe(node, "failed")
        const reason = failures.length === 0 ? "no address to probe" : failures.join("; ")
        return {
          _tag: "ProbeDone",
          event: Health.HealthEvent.ProbeFailed({ reason }),
          outcome: { address: addresses[addresses.length - 1] ?? "", ok: false, reason }
        } satisfies Mail
      })

    // What a node fiber does, written once for every node (each takes the node's cell) rather
    // than built anew per node: a suspended node fiber then holds its cell and its place in the
    // loop, not a set of closures of its own.

    const launchProbe = (cell: Cell) =>
      Effect.gen(function* () {
        const { addresses } = cell.record
        cell.probe = yield* probeAll(cell.node, addresses).pipe(
          Effect.map((done) => post(cell, done)),
          Effect.annotateLogs({ node: cell.node }),
          Effect.fork
        )
      })

    // Head first, dropped only once recorded: a crash mid-way leaves the rest for the next life.
    const recordPending = (cell: Cell): Effect.Effect<void> =>
      Effect.gen(function* () {
        const { pending } = cell.record
        const next = pending[0]
        if (next === undefined) return
        yield* sink.record({ node: cell.node, ...next }).pipe(Effect.annotateLogs({ node: cell.node }))
        cell.record = { ...cell.record, pending: cell.record.pending.slice(1) }
        yield* recordPending(cell)
      })

    const carryOut = (cell: Cell, actions: ReadonlyArray<Health.HealthAction>) =>
      Effect.gen(function* () {
        yield* recordPending(cell)
        if (actions.some((a) => a._tag === "Probe")) yield* launchProbe(cell)
      })

    const handle = (cell: Cell, mail: Mail): Effect.Effect<void> =>
      Effect.gen(function* () {
        switch (mail._tag) {
          case "HeartbeatStepped":
            // Heartbeats stepped the record: record their transitions.
            return yield* recordPending(cell)
          case "Deadline": {
            const at = yield* Clock.currentTimeMillis
            // Judged in the same atomic step as the miss, so a heartbeat cannot slip in between.
            const actions = step(cell, (r): readonly [ReadonlyArray<Health.HealthAction> | undefined, NodeRecord] => {
              if (r.deadlineAt !== mail.at) return [undefined, r] // heartbeats moved the deadline: wait for that one
              const event = r.suspicionArmed && config.phi !== undefined
                ? Health.HealthEvent.Suspected({ reason: suspicionReason(r, mail.at, config.phi.threshold) })
                : Health.HealthEvent.DeadlineMissed()
              return stepRecord(r, event, policy, at, { deadlineAt: r.deadlineAt + r.intervalMs, suspicionArmed: false })
            })
            // The timer is set again before any (possibly slow) sink call, so deadlines stay on time.
            arm(cell, cell.record.deadlineAt)
            if (actions === undefined) return
            return yield* carryOut(cell, actions)
          }
          case "ProbeDone": {
            cell.probe = undefined
            const at = yield* Clock.currentTimeMillis
            const actions = step(cell, (r) =>
              stepRecord(r, mail.event, policy, at, { lastProbe: mail.outcome, lastError: mail.outcome.ok ? r.lastError : mail.outcome.reason }))
            return yield* carryOut(cell, actions)
          }
        }
      })

    /** Mail after mail, for as long as the node is watched: a chain of flatMaps rather than a generator, which a waiting fiber would hold. */
    const serveMail = (cell: Cell): Effect.Effect<never> => Effect.flatMap(nextMail(cell), (mail) => Effect.zipRight(handle(cell, mail), serveMail(cell)))

    /** One life of a node fiber. Its deadline stays in the timer for the next life; its probe does not (supervise). */
    const incarnation = (cell: Cell): Effect.Effect<never> =>
      Effect.zipRight(
        Effect.gen(function* () {
          // Resume: record what the previous life decided but did not record, re-send a probe it lost.
          const start = cell.record = { ...cell.record, phase: "running" as const }
          arm(cell, start.deadlineAt)
          yield* recordPending(cell)
          if (start.health.probing) yield* launchProbe(cell)
        }),
        serveMail(cell)
      )

    /**
     * A crash (defect) is logged, counted and restarted after a backoff (restartDelayMs, from the
     * node's count of restarts); interruption is not caught. A probe under way is the node fiber's
     * child, so it is interrupted with it, and here with the life that launched it.
     */
    const supervise = (cell: Cell): Effect.Effect<never> =>
      Effect.catchAllDefect(incarnation(cell), (defect) =>
        Effect.gen(function* () {
          const probe = cell.probe
          cell.probe = undefined
          if (probe !== undefined) yield* Fiber.interrupt(probe)
          yield* Effect.logError("node supervisor crashed; restarting", Cause.die(defect)).pipe(Effect.annotateLogs({ node: cell.node }))
          const { restarts } = cell.record = {
            ...cell.record,
            restarts: cell.record.restarts + 1,
            lastError: `supervisor crashed: ${describeDefect(defect)}`,
            phase: "restarting" as const
          }
          yield* Effect.sleep(Duration.millis(restartDelayMs(restarts, yield* Random.next)))
          return yield* supervise(cell)
        }))

    const watch = (node: string, addresses: ReadonlyArray<string>, initial?: HealthStatus): Effect.Effect<void> =>
      guard.withPermits(1)(
        Effect.gen(function* () {
          const existing = cells.get(node)
          if (existing !== undefined) {
            existing.record = { ...existing.record, addresses }
            yield* Effect.sync(() => runNode(node, supervise(existing), { onlyIfMissing: true }))
            return
          }
          const now = yield* Clock.currentTimeMillis
          const cell: Cell = {
            node,
            heartbeats: 0,
            record: {
              health: { ...Health.initialHealth, status: initial ?? Health.initialHealth.status },
              addresses,
              deadlineAt: now + interval,
              intervalMs: interval,
              arrivals: PhiAccrual.initial(PHI_UNIT),
              suspicionArmed: false,
              pending: [],
              lastHeartbeat: undefined,
              lastProbe: undefined,
              restarts: 0,
              lastError: undefined,
              phase: "starting"
            },
            mail: [],
            waiting: undefined,
            armedFor: Infinity,
            probe: undefined,
            gone: false
          }
          yield* Effect.sync(() => runNode(node, supervise(cell), { onlyIfMissing: true }))
          cells.set(node, cell)
        })
      )

    const cadence = config.maxRate === undefined ? undefined : { minIntervalMs: interval, maxRate: config.maxRate, jitter: CADENCE_JITTER }
    /** The interval a node is given now, with `nodes` watched; its first is drawn over a whole interval (HeartbeatCadence). */
    const nextInterval = (nodes: number, first: boolean, random: number): number =>
      cadence === undefined ? interval : (first ? HeartbeatCadence.firstIntervalMs : HeartbeatCadence.nextIntervalMs)(cadence, nodes, random)

    /**
     * A heartbeat from `node` at `at` (clock millis), `random` in [0, 1) drawn for its interval's
     * jitter: the interval it is given until the next one, or undefined when it is not watched.
     * Synchronous, for the master's immediate heartbeat path (Control.ts); `heartbeat` is the same
     * step with the time and the draw taken from the fiber's Clock and Random.
     */
    const heartbeatAt = (node: string, at: number, random: number): number | undefined => {
      const cell = cells.get(node)
      if (cell === undefined) return undefined
      const intervalMs = nextInterval(cells.size, cell.record.lastHeartbeat === undefined, random)
      cell.heartbeats++
      // The heartbeat of a healthy node with no deadline missed and no probe out, with the fixed
      // threshold, moves its time, interval and deadline in place (NodeRecord): stepHealth would
      // give the same health and no action.
      const r = cell.record
      if (config.phi === undefined && r.health.status === "healthy" && r.health.missed === 0 && !r.health.probing) {
        r.lastHeartbeat = at
        r.intervalMs = intervalMs
        r.deadlineAt = at + intervalMs
        // A shorter interval (a fleet that shrank) can move the deadline before the timer's entry.
        arm(cell, r.deadlineAt)
        return intervalMs
      }
      // Stepped here rather than in the node fiber: waking that fiber for every heartbeat was
      // most of a heartbeat's cost. It is woken when there is something for it to do.
      const [transitions, deadlineAt] = step(cell, (r) => {
        const [actions, next] = stepRecord(r, Health.HealthEvent.HeartbeatReceived(), policy, at, heartbeatPatch(r, at, intervalMs, config.phi?.threshold))
        return [[actions.length > 0, next.deadlineAt] as const, next]
      })
      // A deadline moved earlier (phi, or a shorter interval) gets its timer entry here; a later one waits for the entry it has.
      arm(cell, deadlineAt)
      if (transitions) post(cell, { _tag: "HeartbeatStepped" })
      return intervalMs
    }

    /** A heartbeat from `node`: the interval it is given until the next one, or None when it is not watched. */
    const heartbeat = (node: string): Effect.Effect<Option.Option<number>> =>
      Effect.zipWith(Clock.currentTimeMillis, Random.next, (at, random) => Option.fromNullable(heartbeatAt(node, at, random)))

    const unwatch = (node: string): Effect.Effect<void> =>
      guard.withPermits(1)(
        Effect.gen(function* () {
          yield* FiberMap.remove(fibers, node)
          const cell = cells.get(node)
          if (cell === undefined) return
          cell.gone = true
          cell.mail.length = 0
          cells.delete(node)
        })
      )

    const view = (r: NodeRecord): NodeHealth => ({
      status: r.health.status,
      missed: r.health.missed,
      lastHeartbeat: r.lastHeartbeat === undefined ? undefined : new Date(r.lastHeartbeat),
      lastProbe: r.lastProbe,
      intervalMs: r.intervalMs,
      deadline: new Date(r.deadlineAt)
    })

    const records = Effect.sync(() =>
      [...cells].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([node, cell]) => ({ node, record: cell.record }))
    )

    const health = (node: string): Effect.Effect<Option.Option<NodeHealth>> =>
      Effect.sync(() => Option.map(Option.fromNullable(cells.get(node)), (cell) => view(cell.record)))

    const snapshot: Effect.Effect<ReadonlyArray<NodeHealthEntry>> = Effect.map(records, (all) =>
      all.map(({ node, record }) => ({ node, ...view(record) }))
    )

    /**
     * Calls `f` with each watched node, its last heartbeat (clock millis; undefined: none since
     * the master started), its status and the heartbeats received since it was watched, in no
     * particular order. Synchronous and allocating nothing per node, for the dashboard's sample
     * every few seconds and each scrape of /metrics: at 10,000 nodes, the sorted snapshot and the
     * collection of what it allocated held the event loop about 240 ms each time (CPU profile of
     * bench/heartbeats.ts).
     */
    const eachNode = (f: (node: string, lastHeartbeat: number | undefined, status: HealthStatus, heartbeats: number) => void): void =>
      cells.forEach((cell, node) => f(node, cell.record.lastHeartbeat, cell.record.health.status, cell.heartbeats))

    /**
     * What `mcp tree` shows: one child per watched node with its fiber's life (running,
     * restarting after a crash, stopped), the node's health, restarts and last error; the parent
     * counts the live node fibers and sums their restarts.
     */
    const tree: Effect.Effect<Operations.SupervisionNode> = Effect.gen(function* () {
      const all = yield* records
      const children = yield* Effect.forEach(all, ({ node, record }) =>
        Effect.map(FiberMap.has(fibers, node), (alive): Operations.SupervisionNode => ({
          name: node,
          // A cell whose fiber is gone from the map has stopped for good (it is only restarted on a defect).
          state: `${alive ? record.phase : "stopped"}, node ${record.health.status}`,
          restarts: record.restarts,
          ...(record.lastError === undefined ? {} : { lastError: record.lastError }),
          children: []
        })))
      const live = yield* FiberMap.size(fibers)
      const restarting = all.filter(({ record }) => record.phase === "restarting").length
      return {
        name: "NodeSupervisors",
        state: `${live} node fiber${live === 1 ? "" : "s"} supervised${restarting > 0 ? `, ${restarting} restarting` : ""}`,
        restarts: all.reduce((n, { record }) => n + record.restarts, 0),
        children
      }
    })

    return { watch, heartbeat, heartbeatAt, unwatch, health, snapshot, eachNode, tree } as const
  })
}) {}
