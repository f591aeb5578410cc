/**
 * At agent start, closing what a previous run left open: deploy sagas, then certificate renewal
 * sagas, are compensated; journaled stop/start/undeploy operations and certificate revokes are
 * finished (they are idempotent); then containers that belong to no committed deploy are removed
 * and ports of ended sagas released.
 */
import { Effect, Either, Option } from "effect"
import { ContainerRuntime, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { Registry, type SagaKind } from "../registry/Registry.js"
import { compensateRenewal } from "./CertificateRenewal.js"
import * as CertRevocation from "./CertRevocation.js"
import { compensateDeploy } from "./Compensation.js"
import { bringUp, takeDown } from "./Converge.js"
import * as ServiceEvents from "./ServiceEvents.js"
import { undeployBody } from "./ServiceOperations.js"
import { describe } from "./StepErrors.js"

/**
 * The open sagas, deploys first: until they are compensated their containers may hold the host
 * ports a stop/start/undeploy finished after them needs (an in-place redeploy reuses the old
 * ports). Renewals next, so that the operations finished after them find the proxy as recorded.
 */
export const openSagas = Effect.map(Effect.flatMap(Registry, (registry) => registry.sagasIn("running")), (open) => {
  const rank = (kind: string) => (kind === "deploy" ? 0 : kind === "renew" ? 1 : 2)
  return [...open].sort((a, b) => rank(a.kind) - rank(b.kind))
})

export const resumeOpenWork = Effect.gen(function* () {
  for (const saga of yield* openSagas) {
    const outcome = yield* Effect.either(closeOpenSaga(saga))
    yield* ServiceEvents.record("recover", saga.service, Either.isLeft(outcome) ? `${notClosed(saga, outcome.left)}; retried at next start` : closed[saga.kind])
  }
  yield* sweepOrphans
})

export type OpenSaga = { readonly id: string; readonly service: string; readonly kind: SagaKind }

/** What a failure to close `saga` is told as. */
export const notClosed = (saga: OpenSaga, error: unknown) =>
  `could not close the interrupted ${saga.kind === "renew" ? "certificate renewal" : saga.kind === "revoke" ? "certificate revoke" : saga.kind} (${describe(error)})`

/** Closes one saga a run left open: compensates a deploy or a renewal, finishes a stop, start, undeploy or revoke. */
export const closeOpenSaga = (saga: OpenSaga) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const failed = (failures: ReadonlyArray<string>) => (failures.length > 0 ? Effect.fail(failures.join("; ")) : Effect.void)
    const close: Effect.Effect<void, unknown, Effect.Effect.Context<ReturnType<typeof undeployBody>>> = saga.kind === "deploy"
      ? Effect.flatMap(compensateDeploy(saga.id), failed)
      : saga.kind === "renew"
      ? Effect.flatMap(compensateRenewal(saga.id), failed)
      : saga.kind === "revoke"
      ? CertRevocation.finish(saga.id)
      : Effect.gen(function* () {
          const row = yield* registry.service(saga.service)
          const exists = Option.isSome(row)
          // A stop or start finishes towards the service's recorded state, not its own kind:
          // a later operation (a deploy, a stop after a failed start) may have changed it.
          if (exists && (saga.kind === "stop" || saga.kind === "start")) yield* (row.value.active ? bringUp : takeDown)(saga.service)
          if (exists && saga.kind === "undeploy") yield* undeployBody(saga.service)
          yield* registry.endSaga(saga.id, "committed")
        })
    return yield* close
  })

/** What closing each kind of saga did, as its event says. */
export const closed: Record<SagaKind, string> = {
  deploy: "rolled back an interrupted deploy",
  renew: "rolled back an interrupted certificate renewal",
  revoke: "deleted the certificates an interrupted deploy or renewal no longer serves",
  stop: "finished an interrupted stop",
  start: "finished an interrupted start",
  undeploy: "finished an interrupted undeploy"
}

const sweepOrphans = Effect.gen(function* () {
  const registry = yield* Registry
  const runtime = yield* ContainerRuntime
  const settings = yield* NodeSettings
  const services = new Map((yield* registry.services).map((s) => [s.name, s.deployId] as const))
  const running = new Set((yield* registry.sagasIn("running")).map((s) => s.id))
  for (const c of yield* runtime.list({ [LABEL_NODE]: settings.node })) {
    const service = c.labels[LABEL_SERVICE]
    const deployId = c.labels[LABEL_DEPLOY]
    if (service === undefined || deployId === undefined || running.has(deployId)) continue
    if (services.get(service) !== deployId) {
      yield* runtime.remove(c.id)
      yield* ServiceEvents.record("recover", service, `removed orphan container ${c.name}`)
    }
  }
  for (const p of yield* registry.ports) if (p.sagaId !== undefined && !running.has(p.sagaId)) yield* registry.releaseSagaPorts(p.sagaId)
})
