/**
 * What the agent does to one service, as one service: deploy (Deploy.ts, a journaled saga with
 * a module per step under steps/), status, stop/start/restart/undeploy (ServiceOperations.ts),
 * certificate renewal, and at start-up closing what a previous run left open
 * (StartupRecovery.ts). Each of those is an Effect over the agent's ports; this service binds
 * them to the ports it was built with, so callers (RPC handlers, actors, boot, the monitor)
 * need nothing else.
 */
import type { HttpClient } from "@effect/platform"
import { Effect } from "effect"
import { CertIssuer } from "../certs/CertIssuer.js"
import { DnsRecords } from "../dns/DnsRecords.js"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { Registry } from "../registry/Registry.js"
import { renewCertificate } from "./CertificateRenewal.js"
import { bringUp, relaunchRecorded } from "./Converge.js"
import { deploy } from "./Deploy.js"
import { PortAllocator } from "./PortAllocator.js"
import { restart, start, stop, undeploy } from "./ServiceOperations.js"
import { closeOpenSaga, type OpenSaga, openSagas, resumeOpenWork } from "./StartupRecovery.js"
import { ps, status } from "./Status.js"

/** What the operations run against. */
type Ports = Registry | ContainerRuntime | ProxyRoutes | CertIssuer | DnsRecords | PortAllocator | NodeSettings | HttpClient.HttpClient

export class Lifecycle extends Effect.Service<Lifecycle>()("@mcp/agent/Lifecycle", {
  effect: Effect.gen(function* () {
    const context = yield* Effect.context<Ports>()
    const bound = <A, E>(effect: Effect.Effect<A, E, Ports>): Effect.Effect<A, E> => Effect.provide(effect, context)
    return {
      deploy: (...args: Parameters<typeof deploy>) => bound(deploy(...args)),
      status: (service: string) => bound(status(service)),
      ps: bound(ps),
      stop: (service: string) => bound(stop(service)),
      start: (service: string) => bound(start(service)),
      restart: (service: string) => bound(restart(service)),
      undeploy: (service: string) => bound(undeploy(service)),
      resumeOpenWork: bound(resumeOpenWork),
      openSagas: bound(openSagas),
      closeOpenSaga: (saga: OpenSaga) => bound(closeOpenSaga(saga)),
      relaunchRecorded: (...args: Parameters<typeof relaunchRecorded>) => bound(relaunchRecorded(...args)),
      bringUp: (service: string) => bound(bringUp(service)),
      renewCertificate: (hostname: string) => bound(renewCertificate(hostname))
    } as const
  })
}) {}
