/**
 * One actor per service: a fiber with a mailbox that runs the service's commands one at a time,
 * in order, so two deploys of one service never race while different services go in parallel.
 * Actors start on demand and stop when idle; one that dies is restarted with backoff.
 */
import { Deferred, Duration, Effect, type Exit, FiberMap, Option, Queue, Ref, Schedule } from "effect"

interface Job {
  readonly run: Effect.Effect<void>
}

export interface ActorStats {
  readonly service: string
  readonly pending: number
  readonly restarts: number
}

export class ServiceActors extends Effect.Service<ServiceActors>()("@mcp/agent/ServiceActors", {
  scoped: Effect.gen(function* () {
    const fibers = yield* FiberMap.make<string>()
    const mailboxes = yield* Ref.make(new Map<string, Queue.Queue<Job>>())
    const restarts = yield* Ref.make(new Map<string, number>())
    const idleAfter = Duration.seconds(60)

    /** Takes jobs until the mailbox stays empty for `idleAfter`, then retires the actor. */
    const loop = (service: string, mailbox: Queue.Queue<Job>): Effect.Effect<void> =>
      Effect.gen(function* () {
        while (true) {
          const job = yield* Queue.take(mailbox).pipe(Effect.timeout(idleAfter), Effect.option)
          if (job._tag === "None") {
            // Retire only if nothing arrived meanwhile; the check and removal are one step.
            const retired = yield* Ref.modify(mailboxes, (m) => {
              if (m.get(service) !== mailbox || Option.getOrElse(mailbox.unsafeSize(), () => 0) > 0) return [false, m]
              const next = new Map(m)
              next.delete(service)
              return [true, next]
            })
            if (retired) return
            continue
          }
          yield* job.value.run
        }
      })

    const supervised = (service: string, mailbox: Queue.Queue<Job>) =>
      loop(service, mailbox).pipe(
        Effect.tapErrorCause((cause) =>
          Effect.zipRight(
            Ref.update(restarts, (m) => new Map(m).set(service, (m.get(service) ?? 0) + 1)),
            Effect.logError(`actor for ${service} died; restarting`, cause)
          )
        ),
        Effect.retry(Schedule.exponential("100 millis", 2).pipe(Schedule.union(Schedule.spaced("10 seconds"))))
      )

    const mailboxFor = (service: string): Effect.Effect<Queue.Queue<Job>> =>
      Effect.gen(function* () {
        const existing = (yield* Ref.get(mailboxes)).get(service)
        if (existing !== undefined) return existing
        const mailbox = yield* Queue.unbounded<Job>()
        yield* Ref.update(mailboxes, (m) => new Map(m).set(service, mailbox))
        yield* FiberMap.run(fibers, service, supervised(service, mailbox))
        return mailbox
      })

    const lock = yield* Effect.makeSemaphore(1)

    /** Runs `effect` in the service's actor, after the commands already queued for it. */
    const submit = <A, E>(service: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
      Effect.gen(function* () {
        const done = yield* Deferred.make<A, E>()
        const job: Job = { run: Effect.flatMap(Effect.exit(effect), (exit: Exit.Exit<A, E>) => Deferred.done(done, exit)) }
        // Finding or creating the mailbox must not race with another submit or a retiring actor.
        const mailbox = yield* lock.withPermits(1)(mailboxFor(service))
        yield* Queue.offer(mailbox, job)
        return yield* Deferred.await(done)
      })

    const stats = Effect.gen(function* () {
      const boxes = yield* Ref.get(mailboxes)
      const counts = yield* Ref.get(restarts)
      return [...boxes.entries()].map(([service, q]): ActorStats => ({
        service,
        pending: Option.getOrElse(q.unsafeSize(), () => 0),
        restarts: counts.get(service) ?? 0
      }))
    })

    return { submit, stats } as const
  })
}) {}
