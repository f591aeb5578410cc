/**
 * Assembles a master from its config: database, agent clients, node supervisors, service
 * coordinators and the RPC server for the CLI (/master) and agents (/control).
 */
import { NodeContext } from "@effect/platform-node"
import { buildInfo } from "@mcp/rpc/BuildInfo"
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import * as Daemon from "@mcp/rpc/Daemon"
import * as DirectCall from "@mcp/rpc/DirectCall"
import * as Exposition from "@mcp/rpc/Exposition"
import * as Failures from "@mcp/rpc/Failures"
import * as SecretFile from "@mcp/rpc/SecretFile"
import * as Transport from "@mcp/rpc/Transport"
import { ControlRpcs, MasterRpcs } from "@mcp/rpc/Contracts"
import { zoneFromDb } from "../dns/MasterZone.js"
import * as ZoneServer from "../dns/ZoneServer.js"
import { Duration, Effect, Layer, Option, Redacted } from "effect"
import { mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { AgentClients, AgentClientSettings, reasonOf } from "../fleet/AgentClients.js"
import type { MasterConfig } from "./MasterConfig.js"
import { layerAuditLog, layerSqlite, MasterDb } from "../db/MasterDb.js"
import * as CrossNodeSaga from "../services/CrossNodeSaga.js"
import * as OpenWorkRetry from "../services/OpenWorkRetry.js"
import { DeployActivity } from "../services/DeployActivity.js"
import * as Dashboard from "../dashboard/Dashboard.js"
import { EdgeReconciler } from "../edge/EdgeReconciler.js"
import * as EdgeResolver from "../edge/EdgeResolver.js"
import * as FleetCalls from "../fleet/FleetCalls.js"
import * as Control from "./handlers/Control.js"
import * as MasterHandlers from "./MasterHandlers.js"
import * as MasterMetrics from "./MasterMetrics.js"
import { ServiceCoordinators } from "../services/ServiceCoordinators.js"
import { HeartbeatRecords } from "../nodes/HeartbeatRecords.js"
import { NodeSupervisors, Prober, SupervisorSettings, TransitionSink } from "../nodes/NodeSupervisors.js"

/** This build's version, reported to the master and in NodeInfo (what `mcp agent upgrade` waits for). */
export const VERSION = buildInfo().version


/** A saga left open is asked about every heartbeat interval for this long, then every reconcile interval. */
const OPEN_WORK_FAST_WINDOW = Duration.minutes(1)

export const layer = (config: MasterConfig) => {
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 })
  const ca = readFileSync(config.tls.ca, "utf8")
  const db = MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(join(config.data_dir, "master.db"))))
  const clients = AgentClients.Default.pipe(
    Layer.provide(Layer.succeed(AgentClientSettings, {
      ca,
      token: Redacted.make(SecretFile.readSync(config.agent_token_file, "system token file (agent_token_file)").trim()),
      clientCert: config.client_cert === undefined ? undefined : { cert: readFileSync(config.client_cert.cert, "utf8"), key: Redacted.make(SecretFile.readSync(config.client_cert.key, "client certificate key ([client_cert] key)")) }
    }))
  )
  const probeTimeout = config.heartbeat.probe_timeout
  const prober = Layer.effect(Prober, Effect.map(AgentClients, (agents) => ({
    probe: (node: string, address: string) =>
      Effect.flatMap(agents.client(node, address), (agent) => agent.Health()).pipe(
        Effect.timeoutFail({ duration: probeTimeout, onTimeout: () => `no answer within ${Duration.toMillis(probeTimeout)} ms` }),
        Effect.mapError((e) => (typeof e === "string" ? e : reasonOf(e))),
        Effect.asVoid,
        Effect.withSpan("probe", { attributes: { node } })
      )
  })))
  const sink = Layer.effect(TransitionSink, Effect.map(Effect.all([MasterDb, OpenWorkRetry.OpenWorkWakeups]), ([db, wakeups]) => ({
    record: (t: { node: string; from: string; to: string; reason: string; at: Date }) =>
      Effect.gen(function* () {
        yield* Effect.logInfo(`node ${t.node}: ${t.from} -> ${t.to} (${t.reason})`)
        // The health and its event in one transaction: one commit (one fsync) per transition, not
        // two, and never the one without the other. A registration counts as the node's first
        // heartbeat, so a new node's registration makes one (unknown -> healthy).
        yield* Failures.fatal("the master database")(db.withTransaction(Effect.zipRight(
          db.setHealth(t.node, t.to as never),
          db.addEvent(t.node, "health", undefined, `${t.from} -> ${t.to}: ${t.reason}`)
        )))
        // Its heartbeats resumed: the sagas it left open are asked about now.
        if (t.to === "healthy" && t.from !== "healthy") yield* wakeups.offer(undefined)
      })
  })))
  const supervisors = NodeSupervisors.Default.pipe(
    Layer.provide(Layer.mergeAll(
      Layer.succeed(SupervisorSettings, {
        interval: config.heartbeat.interval,
        missThreshold: config.heartbeat.miss_threshold,
        probeTimeout,
        maxRate: config.heartbeat.max_rate,
        ...(config.heartbeat.detector === "phi" ? { phi: { threshold: config.heartbeat.phi_threshold } } : {})
      }),
      prober,
      sink
    ))
  )
  /** Known nodes (config, earlier registrations) are watched from the start. */
  const bootstrap = Layer.effectDiscard(
    Effect.gen(function* () {
      const store = yield* MasterDb
      const sup = yield* NodeSupervisors
      for (const n of config.nodes) {
        const known = yield* Failures.fatal("the master database")(store.node(n.name))
        const info = Option.match(known, {
          onNone: () => ({ name: n.name, role: n.role, addresses: n.addresses, arch: "unknown", version: "unknown" }),
          onSome: (row) => ({ ...row.info, role: n.role, addresses: n.addresses })
        })
        yield* Failures.fatal("the master database")(store.upsertNode(info, "config"))
      }
      for (const row of yield* Failures.fatal("the master database")(store.nodes)) yield* sup.watch(row.info.name, row.info.addresses)
    })
  )
  // Cross-node work: the saga for deploy/undeploy and the reconciler that finishes what an
  // unreachable edge node left undone, both running service work in the service's actor.
  const edgeSettings = Layer.succeed(CrossNodeSaga.EdgeSettings, {
    internalZone: config.internal_zone,
    allowedDomains: config.edge.allowed_domains,
    defaultEdge: config.edge.default_node
  })
  const crossNode = Layer.mergeAll(CrossNodeSaga.layer, EdgeReconciler.Default).pipe(
    Layer.provideMerge(Layer.mergeAll(edgeSettings, FleetCalls.layerAgents, EdgeResolver.layerResolver(config.edge.dns_servers), ServiceCoordinators.Default))
  )
  // At start, sagas a killed master left open are finished or undone first (each in its service's
  // actor, so before any new work on the service), then the reconciler converges the edges.
  const reconciling = Layer.scopedDiscard(
    Effect.gen(function* () {
      const saga = yield* CrossNodeSaga.CrossNodeSaga
      const reconciler = yield* EdgeReconciler
      yield* Effect.forkScoped(saga.recover)
      yield* Effect.forkScoped(reconciler.run(config.edge.reconcile_interval))
      // Sagas whose worker did not answer are finished once it does (each try is logged and counted).
      // Old copies of moved services that their node could not remove are open work too.
      const work: OpenWorkRetry.OpenWork = {
        pending: Effect.zipWith(saga.openSagas, reconciler.staleCopies, (sagas, copies) => [
          ...sagas.map((s) => ({ id: s.id, service: s.service })),
          ...copies.map((c) => ({ id: `copy ${c.service} ${c.node}`, service: c.service }))
        ]),
        retryServices: (services) =>
          Effect.gen(function* () {
            yield* saga.retryServices(services)
            yield* reconciler.retireCopiesNow
            // A saga finished now left its edge routes to the reconciler: they converge now,
            // not at its next round. Services whose sagas are still open wait for them.
            const stillOpen = new Set((yield* saga.openSagas).map((s) => s.service))
            yield* reconciler.reconcileServicesNow(services.filter((s) => !stillOpen.has(s)))
          })
      }
      yield* Effect.forkScoped(OpenWorkRetry.run(work, {
        heartbeatInterval: config.heartbeat.interval,
        reconcileInterval: config.edge.reconcile_interval,
        fastWindow: OPEN_WORK_FAST_WINDOW,
        wakeSpacing: OpenWorkRetry.wakeSpacingFor(config.heartbeat.interval)
      }))
    })
  )
  // The internal zone's DNS server ([dns]), answering from the records nodes register.
  const dns = config.dns
  const zoneServer = dns === undefined ? Layer.empty : Layer.scopedDiscard(
    Effect.gen(function* () {
      const store = yield* MasterDb
      const [dnsHost, dnsPort] = Daemon.splitHostPort(dns.listen)
      const served = yield* ZoneServer.serve({ host: dnsHost, port: dnsPort, zone: zoneFromDb(store, config.internal_zone, dnsHost) })
      yield* Effect.logInfo(`internal zone ${config.internal_zone} answered over DNS on ${dnsHost}:${served.port} (UDP and TCP)`)
    })
  )
  const handlers = MasterHandlers.layer({
    internalZone: config.internal_zone,
    heartbeatInterval: config.heartbeat.interval,
    missThreshold: config.heartbeat.miss_threshold,
    fanoutTimeout: config.fanout_timeout,
    version: VERSION,
    policy: config.policy,
    allowedDomains: config.edge.allowed_domains,
    dnsListen: dns?.listen
  }).pipe(
    Layer.provideMerge(reconciling),
    Layer.provideMerge(crossNode),
    Layer.provideMerge(zoneServer),
    // Deploys report their steps for the dashboard's live view.
    Layer.provide(Layer.effect(DeployActivity, Effect.map(Dashboard.DeployActivityWatch, (watch) => watch.service)))
  )
  const authenticator = Daemon.layerAuthenticator(config.auth)
  // Mutating calls are recorded in the master's event log (the audit trail, `mcp events`).
  // With its Admission: the same checks, answered at once for heartbeats (DirectCall.routeImmediate).
  const auth = AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(authenticator), Layer.provide(layerAuditLog))
  // The web dashboard under /ui (none with [dashboard] enabled = false).
  const dashboard = config.dashboard.enabled
    ? Dashboard.layer({ fanoutTimeout: config.fanout_timeout, version: VERSION }, { sampleInterval: config.dashboard.sample_interval, sessionTtl: config.dashboard.session_ttl }).pipe(
      Layer.provide(Layer.mergeAll(handlers, authenticator, layerAuditLog))
    )
    : Layer.succeed(Dashboard.Dashboard, { routes: [] })
  const [host, port] = Daemon.splitHostPort(config.listen)
  const server = Transport.layerServer(
    {
      host,
      port,
      tls: { cert: readFileSync(config.tls.cert, "utf8"), key: Redacted.make(SecretFile.readSync(config.tls.key, "TLS private key ([tls] key)")), ca, clientAuth: config.tls.client_auth }
    },
    [
      Transport.route("/master", MasterRpcs),
      Transport.route("/control", ControlRpcs),
      // The calls every node makes, so as many as the fleet is large: answered without RpcServer's
      // per-request machinery (the same schemas, middleware and handlers). A heartbeat is
      // answered without a fiber, unless spans are exported ([tracing]): the fiber path gives
      // each call its span.
      config.tracing === undefined
        ? DirectCall.routeImmediate("/control", ControlRpcs, "Heartbeat", Control.immediateHeartbeat({ heartbeatInterval: config.heartbeat.interval, missThreshold: config.heartbeat.miss_threshold }))
        : DirectCall.route("/control", ControlRpcs, "Heartbeat"),
      DirectCall.route("/control", ControlRpcs, "Register"),
      Exposition.route,
      Effect.map(Dashboard.Dashboard, (d) => d.routes)
    ]
  ).pipe(Layer.provide(Layer.mergeAll(handlers, auth, authenticator, dashboard)))
  // /metrics: on the HTTPS listener above (any valid token), and with [metrics] listen on loopback without one.
  const exposition = Exposition.layer({ name: "mcp-master", version: VERSION }, MasterMetrics.gauges)
  const loopbackMetrics = config.metrics === undefined ? Layer.empty : Exposition.layerLoopback(...Daemon.splitHostPort(config.metrics.listen))

  return Layer.merge(server, loopbackMetrics).pipe(
    Layer.provideMerge(exposition),
    Layer.provideMerge(bootstrap),
    Layer.provideMerge(supervisors),
    Layer.provideMerge(clients),
    Layer.provideMerge(HeartbeatRecords.Default),
    Layer.provideMerge(db),
    Layer.provideMerge(OpenWorkRetry.OpenWorkWakeups.layer),
    Layer.provideMerge(Dashboard.DeployActivityWatch.layer),
    Layer.provide(NodeContext.layer)
  )
}
