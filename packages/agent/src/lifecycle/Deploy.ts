/**
 * Deploy of one service on this node, as a journaled saga: pull, ports, certs, retire-old (in
 * place only), containers, health, routes, dns, each a module under steps/ with its own
 * compensation; then the commit, which records the new version and ends the saga in one
 * transaction. Routes and certificate hostnames of other services are refused before anything
 * changes; a failed step, or a commit the registry refuses, compensates every step the journal
 * shows; a dry run only plans.
 */
import { Deploy, Errors, Image, type ServiceDefinition } from "@mcp/domain"
import { Effect, Either, Option, Schedule } from "effect"
import { randomUUID } from "node:crypto"
import { ContainerRuntime, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { ProxyRoutes } from "../proxy/ProxyRoutes.js"
import { Registry } from "../registry/Registry.js"
import * as CertRevocation from "./CertRevocation.js"
import { compensators, describeLeftovers, finishOpenRollbacks, releaseSagaPorts, rollBack } from "./Compensation.js"
import { backendHost, explicitPorts, plan, portRequests, type ServicePlan } from "./ContainerPlan.js"
import { recordedDns, recordedRoutes, routeSnapshot } from "./Converge.js"
import { portKey } from "./PortAllocator.js"
import { Saga } from "@mcp/rpc"
import * as ServiceEvents from "./ServiceEvents.js"
import { finishOpenUndeploy } from "./ServiceOperations.js"
import { status } from "./Status.js"
import { describe, explain, isRetryable } from "./StepErrors.js"
import * as Certs from "./steps/Certs.js"
import * as Containers from "./steps/Containers.js"
import * as Dns from "./steps/Dns.js"
import * as Health from "./steps/Health.js"
import * as Ports from "./steps/Ports.js"
import * as Pull from "./steps/Pull.js"
import * as RetireOld from "./steps/RetireOld.js"
import * as Routes from "./steps/Routes.js"

export type ProgressSink = (event: Deploy.DeployEvent) => Effect.Effect<void>

const toDeployPlan = (settings: NodeSettings, def: ServiceDefinition.ServiceDefinition, p: ServicePlan, changes: Array<string>): Deploy.DeployPlan => ({
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

/** The plan before any port is allocated (ports 0): what it names, images and routes, is all it is used for. */
const unallocatedPlan = (def: ServiceDefinition.ServiceDefinition, settings: NodeSettings) => plan(def, portRequests(def).map(() => 0), "preview", settings)

/** What a deploy would do, sent as one DeployPlanned event; nothing is changed. */
const dryRun = (def: ServiceDefinition.ServiceDefinition, progress: ProgressSink) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const settings = yield* NodeSettings
    const existing = yield* registry.service(def.name)
    const oldComponents = yield* registry.components(def.name)
    const preview = unallocatedPlan(def, settings)
    const changes = Option.isNone(existing)
      ? [`new service on ${settings.node}`]
      : [
          `redeploy: ${oldComponents.length} component(s) replaced by ${preview.components.length}`,
          ...preview.components.flatMap((c) => {
            const old = oldComponents.find((o) => o.name === c.name)
            return old === undefined ? [`add component ${c.name}`] : old.image !== c.image ? [`${c.name}: ${old.image} -> ${c.image}`] : []
          })
        ]
    yield* progress(new Deploy.DeployPlanned({ plan: toDeployPlan(settings, def, preview, changes) }))
  })

/**
 * Routes and certificate hostnames the service would take that the registry gives another
 * service. Checked before anything changes: the proxy route or certificate of the other service
 * would be replaced first, and the commit refused only at the end.
 */
const claimedByOthers = (def: ServiceDefinition.ServiceDefinition) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const settings = yield* NodeSettings
    const preview = unallocatedPlan(def, settings)
    const routes = yield* registry.routes
    const certificates = yield* registry.certificates
    const problems: Array<string> = []
    for (const r of preview.routes) {
      const holder = routes.find((o) => o.listener === r.listener && o.hostname === r.hostname && o.service !== def.name)
      if (holder !== undefined) problems.push(`${r.hostname} on listener ${r.listener} is routed to service ${holder.service}`)
    }
    for (const hostname of preview.certHostnames) {
      // A certificate its service no longer routes is a leftover (of an agent before redeploys revoked them):
      // the deploy takes it over rather than being refused.
      const holder = certificates.find((c) => c.hostname === hostname && c.service !== def.name &&
        routes.some((r) => r.service === c.service && r.hostname === hostname))
      if (holder !== undefined) problems.push(`the certificate for ${hostname} belongs to service ${holder.service}`)
    }
    if (problems.length === 0) return
    return yield* Effect.fail(new Errors.DeployFailed({
      service: def.name, step: "plan", retryable: false,
      reason: `${[...new Set(problems)].join("; ")}: give ${def.name} another hostname, or undeploy the other service first`
    }))
  })

export const deploy = (def: ServiceDefinition.ServiceDefinition, options: { readonly dryRun: boolean }, progress: ProgressSink) =>
  Effect.gen(function* () {
    if (options.dryRun) {
      yield* claimedByOthers(def)
      yield* dryRun(def, progress)
      return Option.none()
    }
    const registry = yield* Registry
    const settings = yield* NodeSettings
    const proxy = yield* ProxyRoutes
    // An earlier deploy whose rollback failed may still hold containers and their host ports.
    yield* finishOpenRollbacks(def.name)
    yield* finishOpenUndeploy(def.name).pipe(Effect.mapError((e) => new Errors.DeployFailed({
      service: def.name, step: "undeploy", retryable: isRetryable(e),
      reason: `an earlier undeploy of ${def.name} is unfinished and could not be finished now: ${describe(e)}`
    })))
    yield* claimedByOthers(def).pipe(
      Effect.tapErrorTag("DeployFailed", (e) => ServiceEvents.record("deploy", def.name, `deploy refused: ${e.reason}`))
    )
    const oldComponents = yield* registry.components(def.name)
    const oldRoutes = yield* recordedRoutes(def.name)
    const oldDns = yield* recordedDns(def.name)
    const ownedPorts = yield* registry.servicePorts(def.name)

    // With a proxy that steers traffic, start new beside old and switch; otherwise recreate in place.
    const blueGreen = proxy.switchesTraffic && oldComponents.length > 0 && oldRoutes.length > 0
    const keep = new Map<string, number>()
    if (!blueGreen) for (const p of ownedPorts) if (p.sagaId === undefined) keep.set(portKey(p.component, p.route), p.port)

    const sagaId = randomUUID()
    yield* registry.beginSaga(sagaId, def.name, "deploy")
    const onStep = (name: string, status: "started" | "done" | "failed") =>
      progress(new Deploy.DeployStep({ node: settings.node, step: name, status, detail: "" }))

    const outcome = yield* Effect.either(
      Saga.sequence(registry, sagaId, compensators, onStep, (runStep) =>
        Effect.gen(function* () {
          yield* runStep(Pull.step(unallocatedPlan(def, settings).components.map((c) => c.image)))
          const ports = yield* runStep(Ports.step(def, sagaId, keep))
          const planned = plan(def, ports.routePorts, sagaId, settings)
          const certs = yield* runStep(Certs.step(sagaId, planned.certHostnames))
          if (!blueGreen && oldComponents.length > 0) yield* runStep(RetireOld.step(def.name, oldComponents))
          const containerIds = yield* runStep(Containers.step(sagaId, planned.components))
          yield* runStep(Health.step(def, planned.routes, containerIds, backendHost(settings)))
          yield* runStep(Routes.step(def.name, oldRoutes, planned.routes.map((r) => routeSnapshot(settings, r, certs.served))))
          yield* runStep(Dns.step(def.name, oldDns, planned.dnsNames))
          return { ports, planned, certs, containerIds }
        })
      ).pipe(
        // The registry itself failing (disk full, corruption) is reported as its own step.
        Effect.catchTag("SqlError", (e) => Effect.fail(new Saga.StepFailed({ step: "registry", error: e, compensationErrors: [] })))
      )
    )
    if (Either.isLeft(outcome)) {
      const failure = outcome.left
      // A registry failure stops the saga before or during its compensation: it was not complete.
      const leftovers = yield* releaseSagaPorts(sagaId, failure.step !== "registry" && failure.compensationErrors.length === 0)
      const reason = explain(failure.error, settings.dataDir) + rollbackNote(failure.compensationErrors, leftovers)
      yield* ServiceEvents.record("deploy", def.name, `deploy failed at ${failure.step}: ${reason}`)
      return yield* Effect.fail(new Errors.DeployFailed({
        service: def.name, step: failure.step, reason, retryable: isRetryable(failure.error), ...(leftovers.length > 0 ? { leftovers } : {})
      }))
    }

    // Commit: the registry and the saga's end in one transaction, so a crash sees both or neither.
    // A commit the registry refuses leaves the saga open with everything in place: undo it all.
    const { ports, planned: p, certs, containerIds } = outcome.right
    const now = new Date().toISOString()
    const committed = registry.withTransaction(
      Effect.gen(function* () {
        yield* registry.commitDeploy({
          service: { name: def.name, definition: def, active: true, deployId: sagaId, deployedAt: now },
          components: p.components.map((c) => ({ service: def.name, name: c.name, image: c.image, spec: c.spec, containerId: containerIds.get(c.name), restarts: 0 })),
          routes: p.routes.map((r) => ({ listener: r.listener, hostname: r.hostname, service: def.name, component: r.component, route: r.route, mode: r.mode, hostPort: r.hostPort, backendTls: r.backendTls })),
          dns: p.dnsNames.map((name) => ({ name, service: def.name, address: settings.nodeAddress })),
          ports: [...ports.routePorts, ...ports.explicit]
        })
        // Certificates the new version no longer serves are forgotten now, revoked after the commit.
        const revoking = yield* CertRevocation.recordUnserved(def.name, certs.served)
        // The service owns what it serves, a leftover of another service's it reused included.
        for (const c of certs.served.values()) yield* registry.putCertificate({ ...c, service: def.name })
        yield* registry.endSaga(sagaId, "committed")
        return revoking
      })
    )
    const commit = yield* Effect.either(committed)
    if (Either.isLeft(commit)) {
      const { failures, leftovers } = yield* rollBack(sagaId)
      const reason = `the registry refused to record the deploy (${explain(commit.left, settings.dataDir)})` + rollbackNote(failures, leftovers)
      yield* ServiceEvents.record("deploy", def.name, `deploy failed at commit: ${reason}`)
      return yield* Effect.fail(new Errors.DeployFailed({
        service: def.name, step: "commit", reason, retryable: isRetryable(commit.left), ...(leftovers.length > 0 ? { leftovers } : {})
      }))
    }
    yield* ServiceEvents.record("deploy", def.name, `deployed ${p.components.map((c) => `${c.name} (${Image.imageVersion(c.image)})`).join(", ")}`)
    yield* CertRevocation.finishAfterCommit(def.name, commit.right)
    yield* cleanupAfterCommit(def.name)
    // The service was just committed: not finding it now is a bug, not a user error.
    return Option.some(yield* Effect.catchTag(status(def.name), "ServiceNotFound", Effect.die))
  }).pipe(
    // The registry failing outside the saga (its start cannot be journaled: a full disk): nothing
    // ran, or what ran is undone at the next start from the journal; the user is told which disk.
    Effect.catchTag("SqlError", (e) =>
      Effect.flatMap(NodeSettings, (settings) =>
        Effect.fail(new Errors.DeployFailed({ service: def.name, step: "registry", reason: explain(e, settings.dataDir), retryable: true })))),
    Effect.withSpan("Lifecycle.deploy")
  )

/** What a failed deploy's reason adds about its rollback: the compensations that failed, the containers left and the ports they keep. */
const rollbackNote = (compensationErrors: ReadonlyArray<string>, leftovers: ReadonlyArray<Errors.DeployLeftover>) =>
  (compensationErrors.length > 0 ? `; rollback incomplete (${compensationErrors.join("; ")}), it is retried every 10 s while the agent runs, and at its next start` : "") +
  (leftovers.length > 0 ? `; the engine could not remove ${describeLeftovers(leftovers)}: those host ports stay reserved until the next deploy or undeploy of the service, or the next agent start, removes them` : "")

/** After a commit: remove containers of earlier deploys. */
const cleanupAfterCommit = (service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const settings = yield* NodeSettings
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
    Effect.catchAll((e) => Effect.zipRight(Effect.logWarning(`cleanup of ${service} failed: ${describe(e)}`), ServiceEvents.record("deploy", service, `cleanup of old containers failed (retried at next start): ${describe(e)}`)))
  )
