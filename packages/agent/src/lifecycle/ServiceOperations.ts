/**
 * Stop, start, restart and undeploy: roll-forward operations on a deployed service. Each is
 * journaled (a saga of kind stop/start/undeploy with no steps): the registry change it stands
 * for is written with the journal entry, so an agent that dies halfway finishes the operation
 * at its next start (StartupRecovery).
 */
import { Errors } from "@mcp/domain"
import { Effect, Metric, Option } from "effect"
import { randomUUID } from "node:crypto"
import { CertIssuer } from "../certs/CertIssuer.js"
import { ContainerRuntime, LABEL_NODE, LABEL_SERVICE } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { Registry, type SagaKind } from "../registry/Registry.js"
import { finishOpenRollbacks } from "./Compensation.js"
import { bringUp, takeDown } from "./Converge.js"
import * as ServiceEvents from "./ServiceEvents.js"
import { status } from "./Status.js"
import { describe, isRetryable, type PeerError, peerOf } from "./StepErrors.js"

/** Removes everything of a service: routes, DNS, containers, certificates, then its record. */
export const undeployBody = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const certs = yield* CertIssuer
    const settings = yield* NodeSettings
    yield* takeDown(service)
    for (const c of yield* runtime.list({ [LABEL_SERVICE]: service, [LABEL_NODE]: settings.node })) yield* runtime.remove(c.id)
    for (const c of (yield* registry.certificates).filter((c) => c.service === service)) {
      yield* certs.revoke({ hostname: c.hostname, certPath: c.certPath, keyPath: c.keyPath, serial: c.serial, notAfter: c.notAfter })
    }
    yield* registry.deleteService(service)
  })

/**
 * Finishes an undeploy of the service that failed or was cut off. Left open, it would be
 * finished at the next agent start and undo whatever happened to the service in between (a
 * redeploy would be deleted). Operations on a service apply in order, so each one first
 * finishes an open undeploy. Says whether there was one.
 */
export const finishOpenUndeploy = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const open = (yield* registry.sagasIn("running")).filter((s) => s.service === service && s.kind === "undeploy")
    for (const saga of open) {
      if (Option.isSome(yield* registry.service(service))) yield* undeployBody(service)
      yield* registry.endSaga(saga.id, "committed")
    }
    return open.length > 0
  })

const requireService = (service: string) =>
  Effect.flatMap(Registry, (registry) =>
    Effect.flatMap(registry.service(service), Option.match({
      onNone: () => Effect.fail(new Errors.ServiceNotFound({ service })),
      onSome: Effect.succeed
    }))
  )

/**
 * Runs `body` journaled. `record` (the registry change the operation stands for, such as the
 * active flag) is written in one transaction with the journal entry, so a restart that finds
 * the entry open always finds the state the operation was moving the service to.
 */
const journaledAs = <A, E, R, E2, R2>(service: string, kind: Exclude<SagaKind, "deploy">, record: Effect.Effect<void, E2, R2>, body: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const id = randomUUID()
    yield* registry.withTransaction(Effect.zipRight(registry.beginSaga(id, service, kind), record))
    const result = yield* body
    // Done: a journal that cannot record the end (a full disk) leaves the entry open, closed
    // again at the next start towards the same recorded state; the caller is told it is done.
    yield* registry.endSaga(id, "committed").pipe(
      Effect.catchAll((e) =>
        Effect.zipRight(
          Effect.logWarning(`${service}: the ${kind} is done, but the journal could not record its end (${e.message}); it is closed again at the next start`),
          Metric.increment(operationsUnclosed)
        ))
    )
    return result
  })

export const operationsUnclosed = Metric.counter("mcp_agent_operations_unclosed", {
  incremental: true,
  description: "Stops, starts and undeploys done whose journal entry could not be closed (a full disk); closed again at the next start"
})

/** A failure of a peer during `operation`, as the user sees it. */
const peerFailure = (service: string, operation: string) => (e: PeerError) =>
  new Errors.PeerFailed({ peer: peerOf(e), operation: `${operation} ${service}`, reason: describe(e), retryable: isRetryable(e) })

const done = { stop: "stopped", start: "started", restart: "restarted" } as const

/**
 * One operation on an existing service: an open undeploy is finished first, the operation's
 * work runs journaled as `kind` with `active` recorded, the event is logged and the status
 * returned. A missing service is reported as such; anything else names the peer that failed.
 */
const operate = <E extends PeerError, R>(
  service: string,
  operation: "stop" | "start" | "restart",
  kind: "stop" | "start",
  work: Effect.Effect<void, E, R>
) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    yield* finishOpenUndeploy(service)
    // A failed deploy whose rollback could not remove its containers may have left them on the
    // host ports the service's own containers publish: they go before those start again.
    if (kind === "start") yield* finishOpenRollbacks(service)
    yield* requireService(service)
    yield* journaledAs(service, kind, registry.setActive(service, kind === "start"), work)
    yield* ServiceEvents.recordDone("deploy", service, done[operation])
    return yield* status(service)
  }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, operation)(e))))

export const stop = (service: string) => operate(service, "stop", "stop", takeDown(service))

export const start = (service: string) => operate(service, "start", "start", bringUp(service))

/**
 * Journaled as a "start" from the first stop on: an agent that dies with the containers stopped
 * finishes the start when it comes back, instead of leaving an active service down.
 */
export const restart = (service: string) =>
  operate(service, "restart", "start", Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const settings = yield* NodeSettings
    for (const c of yield* registry.components(service)) {
      yield* runtime.stop(c.spec.name, settings.stopTimeoutSeconds).pipe(Effect.catchTag("ContainerNotFound", () => Effect.void))
      yield* registry.countRestart(service, c.name)
    }
    yield* bringUp(service)
  }))

export const undeploy = (service: string) =>
  Effect.gen(function* () {
    // A deploy whose rollback failed may have left containers holding host ports: they go first.
    yield* finishOpenRollbacks(service)
    // Undeploying again after a failed undeploy finishes that one.
    if (!(yield* finishOpenUndeploy(service))) {
      yield* requireService(service)
      yield* journaledAs(service, "undeploy", Effect.void, undeployBody(service))
    }
    yield* ServiceEvents.recordDone("deploy", service, "undeployed")
  }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, "undeploy")(e))))
