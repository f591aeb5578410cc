/**
 * Keyed actors: one fiber with a mailbox per key, running that key's jobs one at a time in order,
 * while different keys run in parallel. Actors start on demand, retire when idle and are
 * restarted with backoff if they die. Shared runtime (in `@mcp/rpc`, not the pure domain): the
 * agent and the master key them by service name.
 */
import { Deferred, Duration, Effect, type Exit, FiberMap, Option, Queue, Ref, Schedule } from "effect"

interface Job {
  readonly run: Effect.Effect<void>
}

export interface ActorStats {
  readonly key: string
  readonly pending: number
  readonly restarts: number
}

export interface KeyedActors {
  /** Runs `effect` in the key's actor, after the jobs already queued for it. */
  readonly submit: <A, E>(key: string, effect: Effect.Effect<A, E>) => Effect.Effect<A, E>
  readonly stats: Effect.Effect<ReadonlyArray<ActorStats>>
}

/** Scoped: the actors' fibers end with the scope. */
export const make = (options: { readonly idleAfter?: Duration.DurationInput } = {}) =>
  Effect.gen(function* () {
    const fibers = yield* FiberMap.make<string>()
    const mailboxes = yield* Ref.make(new Map<string, Queue.Queue<Job>>())
    const restarts = yield* Ref.make(new Map<string, number>())
    const idleAfter = Duration.decode(options.idleAfter ?? "60 seconds")
    const lock = yield* Effect.makeSemaphore(1)

    /** Takes jobs until the mailbox stays empty for `idleAfter`, then retires the actor. */
    const loop = (key: string, mailbox: Queue.Queue<Job>): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          const job = yield* Queue.take(mailbox).pipe(Effect.timeout(idleAfter), Effect.option)
          if (job._tag === "None") {
            // Retire only if nothing arrived meanwhile. Under the lock submit takes to find the
            // mailbox and post to it, so no job can be posted to a mailbox that is being retired.
            const retired = yield* lock.withPermits(1)(Ref.modify(mailboxes, (m) => {
              if (m.get(key) !== mailbox || Option.getOrElse(mailbox.unsafeSize(), () => 0) > 0) return [false, m]
              const next = new Map(m)
              next.delete(key)
              return [true, next]
            }))
            if (retired) return
            continue
          }
          yield* job.value.run
        }
      })

    const supervised = (key: string, mailbox: Queue.Queue<Job>) =>
      loop(key, mailbox).pipe(
        Effect.tapErrorCause((cause) =>
          Effect.zipRight(
            Ref.update(restarts, (m) => new Map(m).set(key, (m.get(key) ?? 0) + 1)),
            Effect.logError(`actor for ${key} died; restarting`, cause)
          )
        ),
        Effect.retry(Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("10 seconds"))))
      )

    const mailboxFor = (key: string): Effect.Effect<Queue.Queue<Job>> =>
      Effect.gen(function* () {
        const existing = (yield* Ref.get(mailboxes)).get(key)
        if (existing !== undefined) return existing
        const mailbox = yield* Queue.unbounded<Job>()
        yield* Ref.update(mailboxes, (m) => new Map(m).set(key, mailbox))
        yield* FiberMap.run(fibers, key, supervised(key, mailbox))
        return mailbox
      })

    /** Runs `effect` in the key's actor, after the commands already queued for it. */
    const submit = <A, E>(key: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<A, E>()
        const job: Job = { run: Effect.flatMap(Effect.exit(effect), (exit: Exit.Exit<A, E>) => Deferred.done(done, exit)) }
        // Finding or creating the mailbox and posting to it must not race with another submit or
        // a retiring actor: a job posted to a mailbox just retired would never run.
        yield* lock.withPermits(1)(Effect.flatMap(mailboxFor(key), (mailbox) => Queue.offer(mailbox, job)))
        return yield* Deferred.await(done)
      })

    const stats = Effect.gen(function* () {
      const boxes = yield* Ref.get(mailboxes)
      const counts = yield* Ref.get(restarts)
      return [...boxes.entries()].map(([key, q]): ActorStats => ({
        key: key,
        // A negative size counts fibers waiting to take: nothing is pending then.
        pending: Math.max(0, Option.getOrElse(q.unsafeSize(), () => 0)),
        restarts: counts.get(key) ?? 0
      }))
    })

    return { submit, stats } satisfies KeyedActors
  })
