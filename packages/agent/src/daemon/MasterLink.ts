/**
 * The agent's link to the master: registers at start, then heartbeats every interval with the
 * node's resources and a per-service summary. Tries each master address in order, registers
 * again when the master has forgotten the node, and never stops the agent when the master is
 * down: services keep running without it.
 */
import type { Node } from "@mcp/domain"
import type { Transport } from "@mcp/rpc"
import { Duration, Effect, Option, Ref, Schedule } from "effect"
import { RouteDomains } from "../certs/RouteDomains.js"
import { ContainerRuntime, LABEL_NODE } from "../engine/ContainerRuntime.js"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { FleetPolicy } from "./FleetPolicy.js"
import { makeControl } from "./MasterControl.js"
import * as NodeResources from "./NodeResources.js"

export interface MasterLinkOptions {
  readonly masters: ReadonlyArray<string>
  readonly ca: string
  readonly token: Transport.ClientOptions["token"]
  readonly clientCert: Transport.ClientOptions["clientCert"]
  readonly info: Node.NodeInfo
  readonly dataDir: string
}

export const run = (options: MasterLinkOptions) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const runtime = yield* ContainerRuntime
    const fleet = yield* FleetPolicy
    // Present when the agent's issuer signs public names; an agent without it has nothing to update.
    const routeDomains = yield* Effect.serviceOption(RouteDomains)
    const { firstAnswer } = yield* makeControl(options)
    const interval = yield* Ref.make(Duration.seconds(30))
    const registered = yield* Ref.make(false)

    // What a heartbeat reads from the engine gets half the interval (at least 500 ms): a hung
    // engine (one SIGKILLed while it held a container's lock answers nothing about that
    // container) must not hold back the heartbeat that says the node is alive.
    const engineDeadline = Effect.map(Ref.get(interval), (i) => Duration.max(Duration.millis(500), Duration.unsafeDivide(i, 2)))
    const fromEngine = <A, E extends { readonly message: string }, R>(what: string, read: Effect.Effect<A, E, R>, fallback: A) =>
      Effect.flatMap(engineDeadline, (deadline) =>
        read.pipe(
          Effect.timeoutFail({ duration: deadline, onTimeout: () => ({ message: `no answer from the container engine within ${Duration.format(deadline)}` }) }),
          // The heartbeat still goes out without it; the reason is logged.
          Effect.tapError((e) => Effect.logWarning(`heartbeat: cannot ${what}, sending none: ${e.message}`)),
          Effect.orElseSucceed(() => fallback)
        ))

    const resources = Effect.flatMap(
      fromEngine("count containers", Effect.map(runtime.list({ [LABEL_NODE]: options.info.name }), (cs) => cs.length), 0),
      (containers) => NodeResources.read(options.dataDir, containers)
    )

    const register = Effect.gen(function* () {
      const ack = yield* firstAnswer("register", (c) => Effect.flatMap(resources, (r) => c.Register({ info: options.info, resources: r })))
      yield* Ref.set(interval, Duration.millis(ack.heartbeatIntervalMs))
      // The fleet's rules come with every registration (a master restarted with a new [policy]
      // is re-registered with); a master that predates them leaves what the agent had.
      yield* fleet.update(ack)
      if (ack.allowedDomains !== undefined && Option.isSome(routeDomains)) yield* routeDomains.value.set(ack.allowedDomains)
      yield* Ref.set(registered, true)
      yield* Effect.logInfo(`registered with the master; heartbeat every ${ack.heartbeatIntervalMs} ms`)
    })

    const heartbeat = Effect.gen(function* () {
      const statuses = yield* fromEngine("read service status", lifecycle.ps, [])
      const services = statuses.map((s) => ({
        service: s.service,
        running: s.components.filter((c) => c.state === "running").length,
        expected: s.active ? s.components.length : 0
      }))
      const r = yield* resources
      // An answer later than the interval (at least 2 s) is a missed beat: the next one goes out.
      const deadline = Duration.max(Duration.seconds(2), yield* Ref.get(interval))
      const answer = yield* firstAnswer("heartbeat", (c) => c.Heartbeat({ node: options.info.name, resources: r, services }), undefined, deadline)
      if (!answer.known) {
        yield* Effect.logWarning("the master does not know this node (it restarted or lost it); registering again")
        yield* Ref.set(registered, false)
      } else if (answer.heartbeatIntervalMs !== undefined) {
        // The master spreads a large fleet's heartbeats by giving each node its next interval.
        yield* Ref.set(interval, Duration.millis(answer.heartbeatIntervalMs))
      }
    })

    // Jittered, so that when a master comes back (or loses its database) its agents do not all
    // register again in the same second.
    const retryRegistration = Schedule.exponential("1 second", 2).pipe(Schedule.union(Schedule.spaced("30 seconds")), Schedule.jittered)
    const beat = Effect.gen(function* () {
      if (!(yield* Ref.get(registered))) {
        yield* register.pipe(
          Effect.tapError((e) => Effect.logWarning(`cannot register with the master: ${e.message}; retrying`)),
          Effect.retry(retryRegistration)
        )
      }
      yield* heartbeat.pipe(Effect.catchAll((e) => Effect.logWarning(`heartbeat not delivered: ${e.message}`)))
    })
    // Each beat waits for the interval the master asked for at registration.
    yield* Effect.forever(Effect.zipRight(beat, Effect.flatMap(Ref.get(interval), Effect.sleep)))
  })
