/**
 * When the master asks again about the work it left open: cross-node sagas (a worker that did
 * not answer, a rollback that failed) and the old copies of moved services their node could not
 * remove. The promise is that its view converges within two heartbeat intervals once the fault is
 * gone, so an open item is asked about:
 *
 * - every heartbeat interval while it is young (opened less than `fastWindow` ago): most faults
 *   (a worker cut off, a proxy or container engine restarting) last seconds;
 * - at once when a node's heartbeats resume (its transition to healthy, `wake`): its worker is
 *   back. Woken rounds are `wakeSpacing` apart at least, and the wake-ups in between are answered
 *   together by one round at its end. A fleet that comes back or registers at once wakes the loop
 *   once per node, and a round for each (two database reads, and the race between the timer and
 *   the queue: about 300 µs of CPU) would cost every registration as much; spaced, a fleet
 *   registering at once makes a round per spacing;
 * - every reconcile interval after that, so a worker gone for good is not called every second.
 *
 * Checking costs two small reads of the master's database per heartbeat interval; calls to
 * workers happen only on those rounds that are due.
 */
import { Clock, Context, Duration, Effect, Layer, Metric, Queue } from "effect"

export interface RetrySettings {
  readonly heartbeatInterval: Duration.Duration
  readonly reconcileInterval: Duration.Duration
  /** How long after an item is first seen open it is asked about every heartbeat interval. */
  readonly fastWindow: Duration.Duration
  /** The least time between two rounds a wake-up starts (wake-ups in between count as one). */
  readonly wakeSpacing: Duration.Duration
}

/** The daemon's spacing of woken rounds: a tenth of the heartbeat interval, at most a second. */
export const wakeSpacingFor = (heartbeatInterval: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.seconds(1), Duration.millis(Duration.toMillis(heartbeatInterval) / 10))

/** A piece of open work: a saga left open, or a moved service's old copy not removed yet. */
export interface OpenItem {
  /** Stable while the item stays open (a saga's id; `copy <service> <node>`). */
  readonly id: string
  readonly service: string
}

/** What the rounds run against (CrossNodeSaga and the edge reconciler, in the daemon). */
export interface OpenWork {
  readonly pending: Effect.Effect<ReadonlyArray<OpenItem>, unknown>
  readonly retryServices: (services: ReadonlyArray<string>) => Effect.Effect<void, unknown>
}

const roundFailures = Metric.counter("mcp_open_work_round_failures", {
  incremental: true,
  description: "Rounds asking about open work that failed as a whole (the database could not be read); tried again next interval"
})

/**
 * Whether a round is due now: after a wake-up, while some open item is young, or once a
 * reconcile interval has passed since the last round. Pure: the loop below keeps the state.
 */
export const roundDue = (
  state: { readonly now: number; readonly woken: boolean; readonly lastRound: number; readonly firstSeen: ReadonlyMap<string, number> },
  settings: RetrySettings
) =>
  state.firstSeen.size > 0 && (
    state.woken ||
    [...state.firstSeen.values()].some((seen) => state.now - seen < Duration.toMillis(settings.fastWindow)) ||
    state.now - state.lastRound >= Duration.toMillis(settings.reconcileInterval)
  )

/** Wakes the loop (a node's heartbeats resumed); cheap, and wakes that pile up count as one. */
export class OpenWorkWakeups extends Context.Tag("@mcp/master/OpenWorkWakeups")<OpenWorkWakeups, Queue.Queue<void>>() {
  static readonly layer = Layer.effect(OpenWorkWakeups, Queue.sliding<void>(1))
}

/** The loop; runs until interrupted. Each failed round is logged and counted. */
export const run = (work: OpenWork, settings: RetrySettings) =>
  Effect.gen(function* () {
    const wakeups = yield* OpenWorkWakeups
    const firstSeen = new Map<string, number>()
    let lastRound = 0
    for (;;) {
      const woken = yield* Effect.raceFirst(Effect.as(Effect.sleep(settings.heartbeatInterval), false), Effect.as(Queue.take(wakeups), true))
      yield* Effect.gen(function* () {
        const open = yield* work.pending
        const now = yield* Clock.currentTimeMillis
        for (const id of firstSeen.keys()) if (!open.some((s) => s.id === id)) firstSeen.delete(id)
        for (const saga of open) if (!firstSeen.has(saga.id)) firstSeen.set(saga.id, now)
        if (!roundDue({ now, woken, lastRound, firstSeen }, settings)) return
        lastRound = now
        yield* work.retryServices([...new Set(open.map((s) => s.service))])
      }).pipe(
        Effect.catchAllCause((cause) =>
          Effect.zipRight(Metric.increment(roundFailures), Effect.logError("asking workers again about the work left open failed; tried again next interval", cause)))
      )
      if (woken) yield* Effect.sleep(settings.wakeSpacing)
    }
  })
