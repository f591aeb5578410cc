/**
 * Undoing a deploy saga from its journal: the compensator of each journaled step, by name, and
 * the ports the saga reserved released with it, but only once none of the saga's containers is
 * left: a container the engine refused to remove may still run and publish them. Used when a
 * step fails, before the next deploy or undeploy of the service, and at the next agent start.
 */
import type { Errors } from "@mcp/domain"
import { Effect, Either, Metric } from "effect"
import type { CertIssuer } from "../certs/CertIssuer.js"
import type { DnsRecords } from "../dns/DnsRecords.js"
import { ContainerRuntime, LABEL_DEPLOY } from "../engine/ContainerRuntime.js"
import type { NodeSettings } from "../NodeSettings.js"
import type { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { Registry } from "../registry/Registry.js"
import { Saga } from "@mcp/rpc"
import * as Certs from "./steps/Certs.js"
import * as Containers from "./steps/Containers.js"
import * as Dns from "./steps/Dns.js"
import * as Ports from "./steps/Ports.js"
import * as RetireOld from "./steps/RetireOld.js"
import * as Routes from "./steps/Routes.js"
import * as ServiceEvents from "./ServiceEvents.js"
import { describe } from "./StepErrors.js"

/** Steps without an entry (pull, health) leave nothing to undo. */
export const compensators: Readonly<Record<string, Saga.Compensator<Registry | ContainerRuntime | ProxyRoutes | DnsRecords | CertIssuer | NodeSettings>>> = {
  [Ports.journaled.name]: Saga.compensator(Ports.journaled),
  [Certs.journaled.name]: Saga.compensator(Certs.journaled),
  [RetireOld.journaled.name]: Saga.compensator(RetireOld.journaled),
  [Containers.journaled.name]: Saga.compensator(Containers.journaled),
  [Routes.journaled.name]: Saga.compensator(Routes.journaled),
  [Dns.journaled.name]: Saga.compensator(Dns.journaled)
}

/** How many host ports a failed rollback kept reserved because a container publishing them could not be removed. */
export const heldPorts = Metric.counter("mcp_deploy_rollback_held_ports", {
  incremental: true,
  description: "host ports kept reserved after a deploy's rollback could not remove the containers publishing them"
})

/** How leftovers read in a reason or an event. */
export const describeLeftovers = (leftovers: ReadonlyArray<Errors.DeployLeftover>) =>
  leftovers.map((l) => `container ${l.container} (host ports ${l.hostPorts.join(", ")})`).join(", ")

/**
 * After the compensation of `sagaId`: the ports it reserved are released once none of its
 * containers is left. When the compensation was complete, the containers step removed each of
 * them (or the engine said it was gone). When it was not, the engine is asked: a container still
 * there (or an engine that cannot say) keeps every port of the saga reserved, by the open saga,
 * so no other deploy is given a port a container may still publish; the compensation that
 * removes it later (the next deploy or undeploy of the service, the next agent start) releases
 * them. Gives the containers left, logged and counted.
 */
export const releaseSagaPorts = (sagaId: string, rollbackComplete: boolean) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    if (rollbackComplete) {
      yield* registry.releaseSagaPorts(sagaId)
      return []
    }
    const runtime = yield* ContainerRuntime
    const reserved = (yield* registry.ports).filter((p) => p.sagaId === sagaId).map((p) => p.port)
    const found = yield* Effect.either(runtime.list({ [LABEL_DEPLOY]: sagaId }))
    if (Either.isRight(found) && found.right.length === 0) {
      yield* registry.releaseSagaPorts(sagaId)
      return []
    }
    const leftovers: ReadonlyArray<Errors.DeployLeftover> = Either.isRight(found)
      ? found.right.map((c) => ({ container: c.name, hostPorts: [...new Set(c.ports.map((p) => p.hostPort))].sort((a, b) => a - b) }))
      : []
    if (reserved.length > 0) yield* Metric.incrementBy(heldPorts, reserved.length)
    yield* Effect.logWarning(
      Either.isRight(found)
        ? `saga ${sagaId}: the rollback left ${describeLeftovers(leftovers)}; host ports ${reserved.join(", ") || "(none)"} stay reserved until they are removed`
        : `saga ${sagaId}: the engine cannot list the containers the rollback may have left (${describe(found.left)}); host ports ${reserved.join(", ") || "(none)"} stay reserved until it can`
    )
    return leftovers
  })

/**
 * Compensates an open deploy saga; gives the compensations that failed (the saga then stays
 * open) and the containers it left, which keep its ports reserved.
 */
export const rollBack = (sagaId: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const failures = yield* Saga.compensate(registry, sagaId, compensators)
    const leftovers = yield* releaseSagaPorts(sagaId, failures.length === 0)
    return { failures, leftovers }
  })

/** `rollBack`, its failures read as text: the compensations that failed, then the containers left. */
export const compensateDeploy = (sagaId: string) =>
  Effect.map(rollBack(sagaId), ({ failures, leftovers }): ReadonlyArray<string> =>
    leftovers.length > 0 ? [...failures, `left ${describeLeftovers(leftovers)}, their host ports stay reserved`] : failures)

/**
 * Finishes the rollbacks of the service's earlier deploys that were left open (a compensation
 * kept failing), before a deploy or an undeploy of the service: what they still hold, containers
 * and the host ports those publish, is released now rather than at the next agent start. One that
 * fails again stays open for the next try; the operation goes on.
 */
export const finishOpenRollbacks = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const open = (yield* registry.sagasIn("running")).filter((s) => s.service === service && s.kind === "deploy")
    for (const saga of open) {
      const { failures, leftovers } = yield* rollBack(saga.id)
      yield* ServiceEvents.record("deploy", service, failures.length === 0
        ? "finished the rollback of an earlier failed deploy"
        : `the rollback of an earlier failed deploy is still incomplete (${failures.join("; ")})${leftovers.length > 0 ? `; left ${describeLeftovers(leftovers)}, their host ports stay reserved` : ""}; retried at the next deploy, undeploy or agent start`)
    }
  })
