/**
 * Undoing a deploy saga from its journal: the compensator of each journaled step, by name, and
 * the ports the saga reserved released with it. Used when a step fails and, for a saga the agent
 * died in, at the next start.
 */
import { Effect } from "effect"
import type { CertIssuer } from "../certs/CertIssuer.js"
import type { DnsRecords } from "../dns/DnsRecords.js"
import type { ContainerRuntime } from "../engine/ContainerRuntime.js"
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

/** Steps without an entry (pull, health) leave nothing to undo. */
export const compensators: Readonly<Record<string, Saga.Compensator<Registry | ContainerRuntime | ProxyRoutes | DnsRecords | CertIssuer | NodeSettings>>> = {
  [Ports.journaled.name]: Saga.compensator(Ports.journaled),
  [Certs.journaled.name]: Saga.compensator(Certs.journaled),
  [RetireOld.journaled.name]: Saga.compensator(RetireOld.journaled),
  [Containers.journaled.name]: Saga.compensator(Containers.journaled),
  [Routes.journaled.name]: Saga.compensator(Routes.journaled),
  [Dns.journaled.name]: Saga.compensator(Dns.journaled)
}

/** Compensates an open deploy saga; gives the compensations that failed (the saga then stays open). */
export const compensateDeploy = (sagaId: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const failures = yield* Saga.compensate(registry, sagaId, compensators)
    yield* registry.releaseSagaPorts(sagaId)
    return failures
  })
