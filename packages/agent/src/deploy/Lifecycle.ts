/**
 * What the agent does to one service: deploy (a journaled saga with typed compensation of
 * ports, certificates, containers, routes and DNS), stop, start, restart, undeploy, and the
 * start-up work that finishes or compensates whatever a previous run left open.
 */
import { Deploy, Errors, Failures, Image, type ServiceDefinition, type Status } from "@mcp/domain"
import { Effect, Either, Option, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { CertIssuer, type IssuedCertificate, REUSE_MARGIN_MS } from "../certs/CertIssuer.js"
import { ContainerRuntime, type ContainerSpec, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../engine/ContainerRuntime.js"
import { backendHost, plan, type PlannedRoute, portRequests, type ServicePlan, explicitPorts } from "./ContainerPlan.js"
import { NodeSettings } from "../NodeSettings.js"
import { DnsRecords } from "../dns/DnsRecords.js"
import * as HealthGate from "./HealthGate.js"
import { PortAllocator, portKey } from "./PortAllocator.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { type ComponentRow, Registry, type RouteRow } from "../registry/Registry.js"
import * as Saga from "./Saga.js"

export type ProgressSink = (event: Deploy.DeployEvent) => Effect.Effect<void>

const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

/** Failures that come from a peer (engine, proxy, CA, DNS) name it, and may be retried. */
const isRetryable = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "retryable" in e ? Boolean(e.retryable) : typeof e === "object" && e !== null && "_tag" in e && e._tag !== "Unhealthy" && e._tag !== "PortsExhausted" && e._tag !== "ImageNotFound"

/** Names the external system behind an adapter error, for PeerFailed. */
const peerOf = (e: unknown): string => {
  if (typeof e !== "object" || e === null || !("_tag" in e)) return "agent"
  const fields = e as { _tag: string; proxy?: string; server?: string; issuer?: string }
  switch (fields._tag) {
    case "ProxyError": return fields.proxy ?? "proxy"
    case "DnsError": return fields.server ?? "DNS server"
    case "CertError": return fields.issuer ?? "certificate issuer"
    case "RuntimeError": case "ContainerNotFound": case "ImageNotFound": return "container engine"
    case "SqlError": return "registry"
    default: return "agent"
  }
}

interface RouteSnapshot {
  readonly listener: number
  readonly hostname: string
  readonly backend: string
  readonly mode: "l4" | "l7"
  readonly backendTls: boolean
  readonly tlsCert: string | undefined
  readonly tlsKey: string | undefined
}

export class Lifecycle extends Effect.Service<Lifecycle>()("@mcp/agent/Lifecycle", {
  effect: Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const proxy = yield* ProxyRoutes
    const certs = yield* CertIssuer
    const dns = yield* DnsRecords
    const allocator = yield* PortAllocator
    const settings = yield* NodeSettings
    const backend = backendHost(settings)

    const event = (kind: string, service: string, message: string) => registry.addEvent(kind, service, message).pipe(Failures.fatal("the agent registry"))

    // -------------------------------------------------------------------------------------------
    // Building blocks shared by deploy, start and recover.

    /** Creates and starts a component's container from its recorded spec. */
    const launch = (spec: ContainerSpec) =>
      Effect.gen(function* () {
        yield* runtime.remove(spec.name) // a leftover with the same name (a crash between create and record)
        const id = yield* runtime.create(spec)
        yield* runtime.start(id)
        return id
      })

    const routeSnapshot = (r: RouteRow, certByHost: ReadonlyMap<string, { certPath: string; keyPath: string }>): RouteSnapshot => ({
      listener: r.listener,
      hostname: r.hostname,
      backend: `${backend}:${r.hostPort}`,
      mode: r.mode,
      backendTls: r.backendTls,
      tlsCert: certByHost.get(r.hostname)?.certPath,
      tlsKey: certByHost.get(r.hostname)?.keyPath
    })

    const putRoute = (service: string, r: RouteSnapshot) =>
      proxy.put({
        listener: r.listener,
        hostname: r.hostname as never,
        backend: r.backend,
        mode: r.mode,
        backendTls: r.backendTls,
        service,
        ...(r.tlsCert === undefined ? {} : { tlsCert: r.tlsCert }),
        ...(r.tlsKey === undefined ? {} : { tlsKey: r.tlsKey })
      })

    const recordedCerts = Effect.map(registry.certificates, (rows) => new Map(rows.map((c) => [c.hostname, c] as const)))

    /** The routes recorded for a service, as the proxy should have them. */
    const recordedRoutes = (service: string) =>
      Effect.gen(function* () {
        const rows = yield* registry.serviceRoutes(service)
        const certByHost = yield* recordedCerts
        return rows.map((r) => routeSnapshot(r, certByHost))
      })

    /** Makes the proxy hold exactly `next` for the service, given it held `previous`. */
    const switchRoutes = (service: string, previous: ReadonlyArray<RouteSnapshot>, next: ReadonlyArray<RouteSnapshot>) =>
      Effect.gen(function* () {
        for (const r of next) yield* putRoute(service, r)
        const kept = new Set(next.map((r) => `${r.listener} ${r.hostname}`))
        for (const r of previous) if (!kept.has(`${r.listener} ${r.hostname}`)) yield* proxy.remove(r.listener, r.hostname)
      })

    const switchDns = (previous: ReadonlyArray<string>, next: ReadonlyArray<string>) =>
      Effect.gen(function* () {
        for (const name of next) yield* dns.put(name, settings.nodeAddress)
        for (const name of previous) if (!next.includes(name)) yield* dns.remove(name)
      })

    /** Recreates and starts the recorded containers of a service that the engine lacks. */
    const relaunchRecorded = (rows: ReadonlyArray<ComponentRow>) =>
      Effect.forEach(rows, (row) =>
        Effect.gen(function* () {
          const current = yield* Effect.either(runtime.inspect(row.spec.name))
          if (Either.isRight(current)) {
            if (current.right.state !== "running") yield* runtime.start(current.right.id)
            return
          }
          const id = yield* launch(row.spec)
          yield* registry.setContainer(row.service, row.name, id)
        })
      )

    /** Whether the registry has the service and it should be serving (not stopped). */
    const isActive = (service: string) => Effect.map(registry.service(service), (row) => Option.isSome(row) && row.value.active)

    /**
     * Compensations, looked up by step name; each works from journaled data and the registry.
     *
     * A compensation that keeps failing is retried at a later agent start, by which time the
     * service may have been redeployed, stopped or undeployed. So the proxy, DNS and container
     * compensations do not restore the journaled "previous" state: they converge on what the
     * registry says now (its committed routes, DNS names and containers, and only while the
     * service is active), and take away what the saga added. For a saga compensated right away
     * the two are the same, except for a stopped service, which must not get its routes back.
     */
    const compensators: Record<string, Saga.Compensator<never>> = {
      ports: () => Effect.void, // reserved ports are released with the saga (below)
      certs: ({ result }) =>
        Effect.forEach(((result as { issued?: Array<IssuedCertificate> } | null)?.issued ?? []), (c) => certs.revoke(c), { discard: true }),
      "retire-old": ({ intent }) => {
        const { service } = intent as { service: string }
        return Effect.flatMap(isActive(service), (active) => (active ? Effect.flatMap(registry.components(service), relaunchRecorded) : Effect.void))
      },
      containers: ({ intent }) => {
        const { sagaId } = intent as { sagaId: string }
        return Effect.flatMap(runtime.list({ [LABEL_DEPLOY]: sagaId }), (found) =>
          Effect.forEach(found, (c) => runtime.remove(c.id), { discard: true })
        )
      },
      routes: ({ intent }) =>
        Effect.gen(function* () {
          const { service, previous, next } = intent as { service: string; previous: Array<RouteSnapshot>; next: Array<RouteSnapshot> }
          const wanted = (yield* isActive(service)) ? yield* recordedRoutes(service) : []
          // Never take away a route the registry now gives to another service.
          const others = new Set((yield* registry.routes).filter((r) => r.service !== service).map((r) => `${r.listener} ${r.hostname}`))
          yield* switchRoutes(service, [...previous, ...next].filter((r) => !others.has(`${r.listener} ${r.hostname}`)), wanted)
        }),
      dns: ({ intent }) =>
        Effect.gen(function* () {
          const { service, previous, next } = intent as { service?: string; previous: Array<string>; next: Array<string> }
          if (service === undefined) return yield* switchDns(next, previous) // journaled before this intent named the service
          const records = yield* registry.dnsRecords
          const wanted = (yield* isActive(service)) ? records.filter((d) => d.service === service).map((d) => d.name) : []
          const others = new Set(records.filter((d) => d.service !== service).map((d) => d.name))
          yield* switchDns([...previous, ...next].filter((name) => !others.has(name)), wanted)
        })
    }

    const compensateSaga = (sagaId: string) =>
      Effect.gen(function* () {
        const failures = yield* Saga.compensate(registry, sagaId, compensators)
        yield* registry.releaseSagaPorts(sagaId)
        return failures
      })

    // -------------------------------------------------------------------------------------------
    // Deploy.

    const planFor = (def: ServiceDefinition.ServiceDefinition, ports: ReadonlyArray<number>, deployId: string) =>
      plan(def, ports, deployId, settings)

    const toDeployPlan = (def: ServiceDefinition.ServiceDefinition, p: ServicePlan, changes: Array<string>): Deploy.DeployPlan => ({
      service: def.name,
      node: settings.node,
      placementReason: "deploy sent to this agent",
      portsToAllocate: portRequests(def).length + explicitPorts(def).length,
      images: p.components.map((c) => c.image),
      routes: p.routes.map((r) => ({ component: r.component, ...(r.route === undefined ? {} : { route: r.route }), hostname: r.hostname, listener: r.listener, mode: r.mode, public: r.public })),
      dnsRecords: p.dnsNames.map((n) => `${n} A ${settings.nodeAddress}`),
      edgeRoutes: [],
      changes
    })

    const deploy = (def: ServiceDefinition.ServiceDefinition, options: { readonly dryRun: boolean }, progress: ProgressSink) =>
      Effect.gen(function* () {
        if (!options.dryRun) {
          yield* finishOpenUndeploy(def.name).pipe(Effect.mapError((e) => new Errors.DeployFailed({
            service: def.name, step: "undeploy", retryable: isRetryable(e),
            reason: `an earlier undeploy of ${def.name} is unfinished and could not be finished now: ${describe(e)}`
          })))
        }
        const existing = yield* registry.service(def.name)
        const oldComponents = yield* registry.components(def.name)
        const oldRoutes = yield* recordedRoutes(def.name)
        const oldDns = (yield* registry.dnsRecords).filter((d) => d.service === def.name).map((d) => d.name)
        const ownedPorts = yield* registry.servicePorts(def.name)

        if (options.dryRun) {
          const preview = planFor(def, portRequests(def).map(() => 0), "dry-run")
          const changes = Option.isNone(existing)
            ? [`new service on ${settings.node}`]
            : [
                `redeploy: ${oldComponents.length} component(s) replaced by ${preview.components.length}`,
                ...preview.components.flatMap((c) => {
                  const old = oldComponents.find((o) => o.name === c.name)
                  return old === undefined ? [`add component ${c.name}`] : old.image !== c.image ? [`${c.name}: ${old.image} -> ${c.image}`] : []
                })
              ]
          yield* progress(new Deploy.DeployPlanned({ plan: toDeployPlan(def, preview, changes) }))
          return Option.none()
        }

        // With a proxy that steers traffic, start new beside old and switch; otherwise recreate in place.
        const blueGreen = proxy.switchesTraffic && oldComponents.length > 0 && oldRoutes.length > 0
        const keep = new Map<string, number>()
        if (!blueGreen) for (const p of ownedPorts) if (p.sagaId === undefined) keep.set(portKey(p.component, p.route), p.port)

        const sagaId = randomUUID()
        yield* registry.beginSaga(sagaId, def.name, "deploy")
        const step = (name: string, status: "started" | "done" | "failed") =>
          progress(new Deploy.DeployStep({ node: settings.node, step: name, status, detail: "" }))

        // Each step's result feeds the next; a mutable holder keeps the saga's steps linear.
        const state = {
          routePorts: [] as ReadonlyArray<number>,
          explicit: [] as ReadonlyArray<number>,
          certByHost: new Map<string, { certPath: string; keyPath: string; serial: string; notAfter: string }>(),
          issued: [] as Array<IssuedCertificate>,
          containerIds: new Map<string, string>()
        }
        const planned = () => planFor(def, state.routePorts, sagaId)
        const newRoutes = () => planned().routes.map((r: PlannedRoute): RouteSnapshot => ({
          listener: r.listener,
          hostname: r.hostname,
          backend: `${backend}:${r.hostPort}`,
          mode: r.mode,
          backendTls: r.backendTls,
          tlsCert: state.certByHost.get(r.hostname)?.certPath,
          tlsKey: state.certByHost.get(r.hostname)?.keyPath
        }))

        const steps: Array<Saga.Step<unknown, never>> = [
          {
            name: "pull",
            intent: () => null,
            run: Effect.forEach(planFor(def, portRequests(def).map(() => 0), sagaId).components, (c) => runtime.ensureImage(c.image), { discard: true })
          },
          {
            name: "ports",
            intent: () => ({ sagaId }),
            run: Effect.gen(function* () {
              state.routePorts = yield* allocator.allocate(sagaId, def.name, portRequests(def), keep)
              const all = yield* registry.ports
              const explicit: Array<number> = []
              for (const p of explicitPorts(def)) {
                const holder = all.find((row) => row.port === p.hostPort)
                if (holder !== undefined && holder.service !== def.name) {
                  return yield* Effect.fail(new Errors.DeployFailed({
                    service: def.name, step: "ports", retryable: false,
                    reason: `host port ${p.hostPort} (from ports = "${p.mapping}") is held by service ${holder.service}`
                  }))
                }
                if (holder === undefined) yield* registry.reservePort({ port: p.hostPort, service: def.name, component: p.component, route: `explicit:${p.mapping}`, sagaId })
                explicit.push(p.hostPort)
              }
              state.explicit = explicit
              return { routePorts: state.routePorts, explicit }
            })
          },
          {
            name: "certs",
            intent: () => null,
            run: Effect.gen(function* () {
              const recorded = yield* recordedCerts
              for (const hostname of planned().certHostnames) {
                const have = recorded.get(hostname)
                if (have !== undefined && Date.parse(have.notAfter) - Date.now() > REUSE_MARGIN_MS) {
                  state.certByHost.set(hostname, have)
                  continue
                }
                const issued = yield* certs.issue(hostname)
                state.issued.push(issued)
                state.certByHost.set(hostname, issued)
                // Journal each certificate as soon as it exists (the last "done" record wins): if this
                // step fails or the agent dies before the step ends, compensation revokes what was
                // issued, with retries, and a revoke that keeps failing leaves the saga open.
                yield* registry.journal(sagaId, "certs", "done", { issued: state.issued })
              }
              return { issued: state.issued }
            })
          },
          ...(blueGreen || oldComponents.length === 0
            ? []
            : [{
                name: "retire-old",
                intent: () => ({ service: def.name }),
                run: Effect.forEach(oldComponents, (c) => runtime.remove(c.spec.name), { discard: true })
              }]),
          {
            name: "containers",
            intent: () => ({ sagaId }),
            run: Effect.suspend(() =>
              Effect.forEach(planned().components, (c) => Effect.map(launch(c.spec), (id) => state.containerIds.set(c.name, id)), { discard: true })
            )
          },
          {
            name: "health",
            intent: () => null,
            run: Effect.suspend(() => Effect.forEach(def.components, (c) => {
              if (c.health === undefined) return Effect.void
              const own = planned().routes.filter((r) => r.component === c.name)
              const target = c.health.route !== undefined ? own.find((r) => r.route === c.health!.route) : own[0]
              return Effect.provideService(HealthGate.gate({
                component: c.name,
                containerId: state.containerIds.get(c.name)!,
                check: c.health,
                hostPort: c.health.port ?? target?.hostPort,
                host: backend
              }), ContainerRuntime, runtime)
            }, { discard: true }))
          },
          {
            name: "routes",
            intent: () => ({ service: def.name, previous: oldRoutes, next: newRoutes() }),
            run: Effect.suspend(() => switchRoutes(def.name, oldRoutes, newRoutes()))
          },
          {
            name: "dns",
            intent: () => ({ service: def.name, previous: oldDns, next: planned().dnsNames }),
            run: Effect.suspend(() => switchDns(oldDns, planned().dnsNames))
          }
        ]

        const outcome = yield* Effect.either(Saga.run(registry, sagaId, steps, compensators, step).pipe(
          // The registry itself failing (disk full, corruption) is reported as its own step.
          Effect.catchTag("SqlError", (e) => Effect.fail(new Saga.StepFailed({ step: "registry", error: e as unknown, compensationErrors: [] })))
        ))
        if (Either.isLeft(outcome)) {
          const failure = outcome.left
          yield* registry.releaseSagaPorts(sagaId)
          const reason = describe(failure.error) + (failure.compensationErrors.length > 0 ? `; rollback incomplete (${failure.compensationErrors.join("; ")}), it is retried at the next agent start` : "")
          yield* event("deploy", def.name, `deploy failed at ${failure.step}: ${reason}`)
          return yield* Effect.fail(new Errors.DeployFailed({ service: def.name, step: failure.step, reason, retryable: isRetryable(failure.error) }))
        }

        // Commit: the registry and the saga's end in one transaction, so a crash sees both or neither.
        const p = planned()
        const now = new Date().toISOString()
        yield* registry.withTransaction(
          Effect.gen(function* () {
            yield* registry.commitDeploy({
              service: { name: def.name, definition: def, active: true, deployId: sagaId, deployedAt: now },
              components: p.components.map((c) => ({ service: def.name, name: c.name, image: c.image, spec: c.spec, containerId: state.containerIds.get(c.name), restarts: 0 })),
              routes: p.routes.map((r) => ({ listener: r.listener, hostname: r.hostname, service: def.name, component: r.component, route: r.route, mode: r.mode, hostPort: r.hostPort, backendTls: r.backendTls })),
              dns: p.dnsNames.map((name) => ({ name, service: def.name, address: settings.nodeAddress })),
              ports: [...state.routePorts, ...state.explicit]
            })
            for (const [hostname, c] of state.certByHost) yield* registry.putCertificate({ hostname, service: def.name, ...c })
            yield* registry.endSaga(sagaId, "committed")
          })
        )
        yield* event("deploy", def.name, `deployed ${p.components.map((c) => `${c.name} (${Image.imageVersion(c.image)})`).join(", ")}`)
        yield* cleanupAfterCommit(def.name)
        // The service was just committed: not finding it now is a bug, not a user error.
        return Option.some(yield* Effect.catchTag(status(def.name), "ServiceNotFound", Effect.die))
      }).pipe(Effect.withSpan("Lifecycle.deploy"))

    /** After a commit: remove containers of earlier deploys and certificates nothing uses. */
    const cleanupAfterCommit = (service: string) =>
      Effect.gen(function* () {
        const current = yield* registry.service(service)
        const deployId = Option.map(current, (s) => s.deployId)
        const found = yield* runtime.list({ [LABEL_SERVICE]: service, [LABEL_NODE]: settings.node })
        for (const c of found) {
          if (Option.isSome(deployId) && c.labels[LABEL_DEPLOY] === deployId.value) continue
          yield* runtime.stop(c.id, settings.stopTimeoutSeconds).pipe(Effect.catchTag("ContainerNotFound", () => Effect.void))
          yield* runtime.remove(c.id)
        }
      }).pipe(
        // A busy engine may refuse for a moment; the deploy is committed, so try a few times.
        Effect.retry(Schedule.spaced("500 millis").pipe(Schedule.intersect(Schedule.recurs(4)))),
        Effect.catchAll((e) => Effect.zipRight(Effect.logWarning(`cleanup of ${service} failed: ${describe(e)}`), event("deploy", service, `cleanup of old containers failed (retried at next start): ${describe(e)}`)))
      )

    // -------------------------------------------------------------------------------------------
    // Status.

    const status = (service: string) =>
      Effect.gen(function* () {
        const row = yield* registry.service(service)
        if (Option.isNone(row)) return yield* Effect.fail(new Errors.ServiceNotFound({ service }))
        const components = yield* registry.components(service)
        const routes = yield* registry.serviceRoutes(service)
        const comps = yield* Effect.forEach(components, (c) =>
          Effect.map(Effect.either(runtime.inspect(c.spec.name)), (info): Status.ComponentStatus => ({
            name: c.name,
            image: c.image,
            version: Image.imageVersion(c.image),
            state: Either.isLeft(info) ? "missing" : info.right.state === "running" ? "running" : info.right.state === "created" || info.right.state === "restarting" ? "starting" : "stopped",
            ...(Either.isRight(info) ? { containerId: info.right.id.slice(0, 12) } : {}),
            routes: routes.filter((r) => r.component === c.name).map((r) => ({ ...(r.route === undefined ? {} : { route: r.route }), hostname: r.hostname, listener: r.listener, mode: r.mode, hostPort: r.hostPort })),
            restarts: c.restarts + (Either.isRight(info) ? info.right.restartCount : 0),
            ...(Either.isRight(info) && info.right.startedAt !== undefined ? { startedAt: info.right.startedAt } : {})
          }))
        )
        return { service, node: settings.node as never, active: row.value.active, components: comps, warnings: [] } satisfies Status.ServiceStatus
      })

    const ps = Effect.flatMap(registry.services, (rows) => Effect.forEach(rows, (s) => Failures.fatal("the agent registry")(status(s.name))))

    // -------------------------------------------------------------------------------------------
    // Stop, start, restart, undeploy: roll-forward operations, journaled so a restart finishes them.

    /**
     * Finishes an undeploy of the service that failed or was cut off. Left open, it would be
     * finished at the next agent start and undo whatever happened to the service in between (a
     * redeploy would be deleted). Operations on a service apply in order, so each one first
     * finishes an open undeploy. Says whether there was one.
     */
    const finishOpenUndeploy = (service: string) =>
      Effect.gen(function* () {
        const open = (yield* registry.sagasIn("running")).filter((s) => s.service === service && s.kind === "undeploy")
        for (const saga of open) {
          if (Option.isSome(yield* registry.service(service))) yield* undeployBody(service)
          yield* registry.endSaga(saga.id, "committed")
        }
        return open.length > 0
      })

    const requireService = (service: string) =>
      Effect.flatMap(registry.service(service), Option.match({
        onNone: () => Effect.fail(new Errors.ServiceNotFound({ service })),
        onSome: Effect.succeed
      }))

    /**
     * Runs `body` journaled. `record` (the registry change the operation stands for, such as the
     * active flag) is written in one transaction with the journal entry, so a restart that finds
     * the entry open always finds the state the operation was moving the service to.
     */
    const withJournal = <A, E, R, E2>(service: string, kind: string, record: Effect.Effect<void, E2>, body: Effect.Effect<A, E, R>) =>
      Effect.gen(function* () {
        const id = randomUUID()
        yield* registry.withTransaction(Effect.zipRight(registry.beginSaga(id, service, kind), record))
        const result = yield* body
        yield* registry.endSaga(id, "committed")
        return result
      })

    const takeDown = (service: string) =>
      Effect.gen(function* () {
        // DNS first, then routes, so clients stop arriving before the containers go.
        for (const d of (yield* registry.dnsRecords).filter((d) => d.service === service)) yield* dns.remove(d.name)
        for (const r of yield* registry.serviceRoutes(service)) yield* proxy.remove(r.listener, r.hostname)
        for (const c of yield* registry.components(service)) {
          yield* runtime.stop(c.spec.name, settings.stopTimeoutSeconds).pipe(Effect.catchTag("ContainerNotFound", () => Effect.void))
        }
      })

    const bringUp = (service: string) =>
      Effect.gen(function* () {
        yield* relaunchRecorded(yield* registry.components(service))
        yield* switchRoutes(service, [], yield* recordedRoutes(service))
        yield* switchDns([], (yield* registry.dnsRecords).filter((d) => d.service === service).map((d) => d.name))
      })

    const peerFailure = (service: string, operation: string) => (e: unknown) =>
      new Errors.PeerFailed({ peer: peerOf(e), operation: `${operation} ${service}`, reason: describe(e), retryable: isRetryable(e) })

    const stop = (service: string) =>
      Effect.gen(function* () {
        yield* finishOpenUndeploy(service)
        yield* requireService(service)
        yield* withJournal(service, "stop", registry.setActive(service, false), takeDown(service))
        yield* event("deploy", service, "stopped")
        return yield* status(service)
      }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, "stop")(e))))

    const start = (service: string) =>
      Effect.gen(function* () {
        yield* finishOpenUndeploy(service)
        yield* requireService(service)
        yield* withJournal(service, "start", registry.setActive(service, true), bringUp(service))
        yield* event("deploy", service, "started")
        return yield* status(service)
      }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, "start")(e))))

    const restart = (service: string) =>
      Effect.gen(function* () {
        yield* finishOpenUndeploy(service)
        yield* requireService(service)
        // Journaled from the first stop on: an agent that dies with the containers stopped
        // finishes the "start" when it comes back, instead of leaving an active service down.
        yield* withJournal(service, "start", registry.setActive(service, true), Effect.gen(function* () {
          for (const c of yield* registry.components(service)) {
            yield* runtime.stop(c.spec.name, settings.stopTimeoutSeconds).pipe(Effect.catchTag("ContainerNotFound", () => Effect.void))
            yield* registry.countRestart(service, c.name)
          }
          yield* bringUp(service)
        }))
        yield* event("deploy", service, "restarted")
        return yield* status(service)
      }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, "restart")(e))))

    const undeployBody = (service: string) =>
      Effect.gen(function* () {
        yield* takeDown(service)
        for (const c of yield* runtime.list({ [LABEL_SERVICE]: service, [LABEL_NODE]: settings.node })) yield* runtime.remove(c.id)
        for (const c of (yield* registry.certificates).filter((c) => c.service === service)) {
          yield* certs.revoke({ hostname: c.hostname, certPath: c.certPath, keyPath: c.keyPath, serial: c.serial, notAfter: c.notAfter })
        }
        yield* registry.deleteService(service)
      })

    const undeploy = (service: string) =>
      Effect.gen(function* () {
        // Undeploying again after a failed undeploy finishes that one.
        if (!(yield* finishOpenUndeploy(service))) {
          yield* requireService(service)
          yield* withJournal(service, "undeploy", Effect.void, undeployBody(service))
        }
        yield* event("deploy", service, "undeployed")
      }).pipe(Effect.mapError((e) => (e instanceof Errors.ServiceNotFound ? e : peerFailure(service, "undeploy")(e))))

    // -------------------------------------------------------------------------------------------
    // Certificate renewal: a new certificate, pushed to the routes that serve the hostname,
    // then the old one deleted. Routes keep serving throughout (put replaces in place).

    const renewCertificate = (hostname: string) =>
      Effect.gen(function* () {
        const current = (yield* registry.certificates).find((c) => c.hostname === hostname)
        if (current === undefined) return
        const fresh = yield* certs.issue(hostname)
        yield* registry.putCertificate({ ...fresh, service: current.service })
        for (const r of yield* recordedRoutes(current.service)) {
          if (r.hostname === hostname) yield* putRoute(current.service, { ...r, tlsCert: fresh.certPath, tlsKey: fresh.keyPath })
        }
        yield* certs.revoke({ hostname, certPath: current.certPath, keyPath: current.keyPath, serial: current.serial, notAfter: current.notAfter })
        yield* event("cert", current.service, `renewed the certificate for ${hostname} (serial ${fresh.serial}, valid until ${fresh.notAfter})`)
      })

    // -------------------------------------------------------------------------------------------
    // Start-up: close what a previous run left open.

    /**
     * Deploy sagas still open are compensated; stop/start/undeploy are finished (they are
     * idempotent). Then containers that belong to no committed deploy are removed.
     */
    const resumeOpenWork = Effect.gen(function* () {
      // Deploys are compensated first: until then their containers may hold the host ports a
      // stop/start/undeploy finished below needs (an in-place redeploy reuses the old ports).
      const open = yield* registry.sagasIn("running")
      for (const saga of [...open.filter((s) => s.kind === "deploy"), ...open.filter((s) => s.kind !== "deploy")]) {
        const close: Effect.Effect<void, unknown> = saga.kind === "deploy"
            ? Effect.flatMap(compensateSaga(saga.id), (failures) => (failures.length > 0 ? Effect.fail(failures.join("; ")) : Effect.void))
            : Effect.gen(function* () {
                const row = yield* registry.service(saga.service)
                const exists = Option.isSome(row)
                // A stop or start finishes towards the service's recorded state, not its own kind:
                // a later operation (a deploy, a stop after a failed start) may have changed it.
                if (exists && (saga.kind === "stop" || saga.kind === "start")) yield* (row.value.active ? bringUp : takeDown)(saga.service)
                if (exists && saga.kind === "undeploy") yield* undeployBody(saga.service)
                yield* registry.endSaga(saga.id, "committed")
              })
        const outcome = yield* Effect.either(close)
        yield* event("recover", saga.service, Either.isLeft(outcome)
          ? `could not close the interrupted ${saga.kind} (${describe(outcome.left)}); retried at next start`
          : saga.kind === "deploy" ? "rolled back an interrupted deploy" : `finished an interrupted ${saga.kind}`)
      }
      yield* sweepOrphans
    })

    const sweepOrphans = Effect.gen(function* () {
      const services = new Map((yield* registry.services).map((s) => [s.name, s.deployId] as const))
      const running = new Set((yield* registry.sagasIn("running")).map((s) => s.id))
      for (const c of yield* runtime.list({ [LABEL_NODE]: settings.node })) {
        const service = c.labels[LABEL_SERVICE]
        const deployId = c.labels[LABEL_DEPLOY]
        if (service === undefined || deployId === undefined || running.has(deployId)) continue
        if (services.get(service) !== deployId) {
          yield* runtime.remove(c.id)
          yield* event("recover", service, `removed orphan container ${c.name}`)
        }
      }
      for (const p of yield* registry.ports) if (p.sagaId !== undefined && !running.has(p.sagaId)) yield* registry.releaseSagaPorts(p.sagaId)
    })

    return { deploy, status, ps, stop, start, restart, undeploy, resumeOpenWork, relaunchRecorded, bringUp, renewCertificate } as const
  })
}) {}
