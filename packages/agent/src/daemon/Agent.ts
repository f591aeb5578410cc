/**
 * Assembles an agent from its config: the registry, the engine, the proxy, CA and DNS ports,
 * the lifecycle and actors, and the RPC server. `main.ts` runs it; tests build it directly.
 */
import type { CommandExecutor, FileSystem, HttpClient } from "@effect/platform"
import { NodeContext, NodeHttpClient } from "@effect/platform-node"
import { AgentRpcs, AuthMiddleware, Daemon, SecretFile, Transport } from "@mcp/rpc"
import { buildInfo } from "@mcp/rpc/BuildInfo"
import * as Exposition from "@mcp/rpc/Exposition"
import * as Tracing from "@mcp/rpc/Tracing"
import { Context, Effect, Layer, Metric, Redacted } from "effect"
import { mkdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import type { AgentConfig } from "./AgentConfig.js"
import * as AgentHandlers from "./AgentHandlers.js"
import * as AgentMetrics from "./AgentMetrics.js"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import type * as AcmeIssuer from "../certs/AcmeIssuer.js"
import { BootSequencer } from "../boot/BootSequencer.js"
import * as CertRenewer from "../certs/CertRenewer.js"
import { type CertError, CertIssuer } from "../certs/CertIssuer.js"
import * as DnsRecords from "../dns/DnsRecords.js"
import * as EdgeRoutes from "../edge/EdgeRoutes.js"
import * as DockerRuntime from "../engine/DockerRuntime.js"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import * as LocalCaIssuer from "../certs/LocalCaIssuer.js"
import * as RouteDomains from "../certs/RouteDomains.js"
import { SupervisedChildren } from "./SupervisedChildren.js"
import * as FleetPolicy from "./FleetPolicy.js"
import * as MasterLink from "./MasterLink.js"
import * as Monitor from "../monitor/Monitor.js"
import * as NodeResources from "./NodeResources.js"
import * as OpenWorkRetry from "../lifecycle/OpenWorkRetry.js"
import * as PortAllocator from "../lifecycle/PortAllocator.js"
import * as BackendAddress from "../proxy/BackendAddress.js"
import * as ManualRoutes from "../proxy/ManualRoutes.js"
import * as ProxyRoutes from "../proxy/ProxyRoutes.js"
import { layerAuditLog, layerSqlite, Registry } from "../registry/Registry.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"

/** This build's version, reported to the master and in NodeInfo (what `mcp agent upgrade` waits for). */
export const VERSION = buildInfo().version

/**
 * The proxy, DNS and ACME adapters are loaded with import() once the config has chosen one, so a
 * node runs only the code of the ones it uses: the bundle splits each into its own chunk, and an
 * idle agent does not hold the others' code in memory (acme-client alone brings node-forge, axios
 * and mime-db, about 600 KB). A chunk that cannot be read is a broken install: a defect.
 */
const adapter = <M, A, E, R>(load: () => Promise<M>, make: (module: M) => Layer.Layer<A, E, R>): Layer.Layer<A, E, R> =>
  Layer.unwrapEffect(Effect.map(Effect.promise(load), make))

/** The agent's services (everything but the network edge), over a given engine layer. */
export const layerCore = <E, R>(config: AgentConfig, runtime: Layer.Layer<ContainerRuntime, E, R>) => {
  mkdirSync(config.data_dir, { recursive: true, mode: 0o700 })
  const registry = Registry.Default.pipe(Layer.provideMerge(layerSqlite(join(config.data_dir, "registry.db"))))
  const settings = Layer.succeed(NodeSettings, {
    node: config.node,
    nodeAddress: config.node_address,
    internalZone: config.internal_zone,
    bindAddress: config.ports.bind,
    imageRegistry: config.image_registry,
    stopTimeoutSeconds: config.stop_timeout_seconds,
    dataDir: config.data_dir
  })
  const ports = PortAllocator.layer({ min: config.ports.min, max: config.ports.max })
  // The deploy policy: the strict defaults until a master pushes its own at registration.
  // The public domains start as the operator's own [certs] allowed_domains (like RouteDomains),
  // until a master pushes its [edge] allowed_domains; an edge publishes names under them only.
  const domains = config.certs.kind === "local-ca" ? config.certs.allowed_domains ?? [] : []
  const adapters = layerTracedPorts.pipe(
    Layer.provideMerge(Layer.mergeAll(runtime, layerProxy(config), layerDns(config), layerCerts(config), settings, FleetPolicy.layer({ ...FleetPolicy.initial, allowedDomains: domains })))
  )
  const lifecycle = Lifecycle.Default.pipe(Layer.provide(ports))
  const edge = EdgeRoutes.layer({ role: config.role, listener: config.edge.listener, backendNetworks: config.proxy.backend_networks ?? [] })
  return Layer.mergeAll(BootSequencer.Default, lifecycle, ServiceActors.Default, edge).pipe(
    Layer.provideMerge(Layer.mergeAll(lifecycle, ServiceActors.Default)),
    Layer.provideMerge(adapters),
    Layer.provideMerge(registry)
  )
}

/** The peers the agent calls, each call in a span (`engine.create`, `proxy.put`, ...), over the adapters configured. */
const layerTracedPorts = Layer.effectContext(
  Effect.gen(function* () {
    const context = yield* Effect.context<ContainerRuntime | ProxyRoutes.ProxyRoutes | DnsRecords.DnsRecords | CertIssuer>()
    return Context.make(ContainerRuntime, Tracing.traced("engine", Context.get(context, ContainerRuntime))).pipe(
      Context.add(ProxyRoutes.ProxyRoutes, Tracing.traced("proxy", Context.get(context, ProxyRoutes.ProxyRoutes))),
      Context.add(DnsRecords.DnsRecords, Tracing.traced("dns", Context.get(context, DnsRecords.DnsRecords))),
      Context.add(CertIssuer, Tracing.traced("certs", Context.get(context, CertIssuer)))
    )
  })
)

const secretFile = (path: string, what: string) => Redacted.make(SecretFile.readSync(path, what).trim())

/** The proxy named in [proxy]; none records routes only. */
export const layerProxy = (
  config: AgentConfig
): Layer.Layer<ProxyRoutes.ProxyRoutes | SupervisedChildren, ProxyRoutes.ProxyError, FileSystem.FileSystem | CommandExecutor.CommandExecutor | HttpClient.HttpClient> => {
  const p = config.proxy
  const nothingSupervised = Layer.succeed(SupervisedChildren, { list: Effect.succeed([]) })
  switch (p.kind) {
    case "none":
      return Layer.merge(ProxyRoutes.layerRecordOnly, nothingSupervised)
    case "haproxy": {
      const options = {
        dir: p.dir,
        masterSocket: p.master_socket,
        statsSocket: p.stats_socket,
        ...(p.bind === undefined ? {} : { bindAddress: p.bind }),
        ...(p.backend_ca === undefined ? {} : { backendCaFile: p.backend_ca })
      }
      if (p.managed) return adapter(() => import("../proxy/ManagedHaproxy.js"), (ManagedHaproxy) => ManagedHaproxy.layer({ haproxy: options }))
      // The agent owns the config HAProxy runs with: make sure it exists before the first route.
      return Layer.merge(
        nothingSupervised,
        adapter(() => import("../proxy/HaproxyRoutes.js"), (HaproxyRoutes) =>
          Layer.effect(ProxyRoutes.ProxyRoutes, Effect.zipRight(HaproxyRoutes.ensureConfig(options), HaproxyRoutes.make(options))))
      )
    }
    case "caddy": {
      const options = {
        adminUrl: p.admin_url,
        ...(p.bind === undefined ? {} : { listenerBind: p.bind }),
        ...(p.backend_ca === undefined ? {} : { backendCaFile: p.backend_ca })
      }
      return Layer.merge(nothingSupervised, adapter(() => import("../proxy/CaddyRoutes.js"), (CaddyRoutes) => CaddyRoutes.layer(options)))
    }
  }
}

export const layerDns = (config: AgentConfig): Layer.Layer<DnsRecords.DnsRecords, DnsRecords.DnsError, HttpClient.HttpClient> => {
  const d = config.dns
  switch (d.kind) {
    case "none":
      return DnsRecords.layerNone
    case "powerdns": {
      // Secret files are read here, before the adapter loads: a missing one stops the start as before.
      const options = {
        apiUrl: d.api_url,
        apiKey: secretFile(d.api_key_file, "PowerDNS API key file (api_key_file)"),
        zone: config.internal_zone,
        ...(d.server === undefined ? {} : { server: d.server }),
        ...(d.ttl === undefined ? {} : { ttl: d.ttl })
      }
      return adapter(() => import("../dns/PowerDnsRecords.js"), (PowerDnsRecords) => PowerDnsRecords.layer(options))
    }
    case "master": {
      const master = config.master
      if (master === undefined) return Layer.fail(new DnsRecords.DnsError({ server: "the master's zone", operation: "start", reason: `[dns] kind = "master" needs [master] addresses and token_file in the agent's config` }))
      const options = {
        node: config.node,
        zone: config.internal_zone,
        masters: master.addresses,
        ca: readFileSync(config.tls.ca, "utf8"),
        token: secretFile(master.token_file, "system token file ([master] token_file)"),
        // The node's own certificate, as the agent's link to the master presents it (mTLS masters).
        clientCert: { cert: readFileSync(config.tls.cert, "utf8"), key: Redacted.make(SecretFile.readSync(config.tls.key, "TLS private key ([tls] key)")) }
      }
      return adapter(() => import("../dns/MasterRecords.js"), (MasterRecords) => MasterRecords.layer(options))
    }
    case "rfc2136": {
      const options = {
        server: d.server,
        zone: config.internal_zone,
        keyName: d.key_name,
        keySecret: secretFile(d.key_secret_file, "TSIG secret file (key_secret_file)"),
        ...(d.ttl === undefined ? {} : { ttl: d.ttl })
      }
      return adapter(() => import("../dns/Rfc2136Records.js"), (Rfc2136Records) => Rfc2136Records.layer(options))
    }
  }
}

/**
 * [certs]: the issuer, and RouteDomains, the public domains the local CA signs for besides the
 * internal zone; whatever learns the fleet's allowed domains at run time replaces them with its `set`.
 */
export const layerCerts = (
  config: AgentConfig
): Layer.Layer<CertIssuer | RouteDomains.RouteDomains, CertError, FileSystem.FileSystem | HttpClient.HttpClient> => {
  const c = config.certs
  const domains = RouteDomains.layer(c.kind === "local-ca" ? c.allowed_domains ?? [] : [])
  switch (c.kind) {
    case "local-ca":
      return LocalCaIssuer.layerWithRouteDomains(config.data_dir, {
        ...(c.ca_dir === undefined ? {} : { caDir: c.ca_dir }),
        internalZone: config.internal_zone,
        // A ca_dir holding the CA the daemons trust for RPC is refused at start.
        platformCaFile: config.tls.ca
      }).pipe(Layer.provideMerge(domains))
    case "acme": {
      const dns = config.dns
      const solverOptions = c.challenge === "dns-01" && dns.kind === "powerdns"
        ? {
          apiUrl: dns.api_url,
          apiKey: secretFile(dns.api_key_file, "PowerDNS API key file (api_key_file)"),
          zone: config.internal_zone,
          ...(dns.server === undefined ? {} : { server: dns.server })
        }
        : undefined
      const challenge: Effect.Effect<AcmeIssuer.AcmeChallenge, never, HttpClient.HttpClient> =
        solverOptions !== undefined
          ? Effect.promise(() => import("../dns/PowerDnsRecords.js")).pipe(
              Effect.flatMap((PowerDnsRecords) => PowerDnsRecords.makeTxtSolver(solverOptions)),
              Effect.map((solver) => ({ kind: "dns-01", solver }))
            )
          : Effect.succeed({ kind: "http-01", serve: { port: c.http_port, ...(c.http_host === undefined ? {} : { host: c.http_host }) } })
      const caBundle = c.ca_bundle === undefined ? {} : { caBundle: readFileSync(c.ca_bundle, "utf8") }
      return Layer.merge(domains, Layer.unwrapEffect(
        Effect.zipWith(challenge, Effect.promise(() => import("../certs/AcmeIssuer.js")), (challenge, AcmeIssuer) =>
          AcmeIssuer.layer({
            directoryUrl: c.directory_url,
            dataDir: config.data_dir,
            challenge,
            ...(c.email === undefined ? {} : { email: c.email }),
            ...caBundle
          }))
      ))
    }
  }
}

/**
 * Every socket the engine may be reached at (as DockerRuntime looks for it): whichever one it
 * found, a container mounting it would own the node, so the deploy policy forbids them all.
 */
export const engineSockets = (configured: string | undefined, env: Readonly<Record<string, string | undefined>>): ReadonlyArray<string> => {
  const unix = (p: string | undefined) => (p !== undefined && p.startsWith("unix://") ? p.slice("unix://".length) : p)
  const xdg = env["XDG_RUNTIME_DIR"]
  return [unix(configured), unix(env["DOCKER_HOST"]), xdg === undefined || xdg === "" ? undefined : `${xdg}/podman/podman.sock`, ...DockerRuntime.WELL_KNOWN_SOCKETS]
    .filter((p): p is string => p !== undefined && p.startsWith("/"))
}

export const layerServer = (config: AgentConfig) => {
  const [host, port] = Daemon.splitHostPort(config.listen)
  const handlers = AgentHandlers.layer({
    role: config.role,
    addresses: config.addresses ?? [config.listen],
    nodeAddress: config.node_address,
    version: VERSION,
    dataDir: config.data_dir,
    engineSockets: engineSockets(config.runtime.socket, process.env)
  }).pipe(Layer.provide(ManualRoutes.layerRules({
    ports: { min: config.ports.min, max: config.ports.max },
    rpcPort: Number(port),
    backendNetworks: BackendAddress.networks(config.proxy.backend_networks ?? [])
  })))
  // Mutating calls are recorded in the registry's event log (the audit trail, `mcp events`).
  // Changes come from the master (its admin system token): a user's deploy, stop or logs
  // straight to the agent would skip the master's placement, hostname and policy checks.
  const authenticator = Daemon.layerAuthenticator(config.auth)
  const auth = AuthMiddleware.layerServer({ guestMayRead: false, usersMayOperate: false }).pipe(Layer.provide(authenticator), Layer.provide(layerAuditLog))
  // /metrics: on the HTTPS listener (any valid token, a guest's too: it reads, never changes), and
  // with [metrics] listen on loopback without one.
  const exposition = Exposition.layer({ name: "mcp-agent", version: VERSION }, AgentMetrics.gauges)
  const loopbackMetrics = config.metrics === undefined ? Layer.empty : Exposition.layerLoopback(...Daemon.splitHostPort(config.metrics.listen))
  const https = Transport.layerServer(
    {
      host,
      port,
      tls: {
        cert: readFileSync(config.tls.cert, "utf8"),
        key: Redacted.make(SecretFile.readSync(config.tls.key, "TLS private key ([tls] key)")),
        ca: readFileSync(config.tls.ca, "utf8"),
        clientAuth: config.tls.client_auth
      }
    },
    [Transport.route("/agent", AgentRpcs), Exposition.route]
  ).pipe(Layer.provide(Layer.mergeAll(handlers, auth, authenticator)))
  return Layer.merge(https, loopbackMetrics).pipe(Layer.provideMerge(exposition))
}


/** The whole agent: core, then open work closed, then the server. */
export const layer = (config: AgentConfig) => {
  const core = layerCore(config, DockerRuntime.layer({ configured: config.runtime.socket, env: process.env }, config.runtime))
  const resume = Layer.effectDiscard(
    Effect.gen(function* () {
      const lifecycle = yield* Lifecycle
      yield* lifecycle.resumeOpenWork
      // Edge routes a crash left half set up (or half removed) are closed before any RPC arrives.
      const edge = yield* EdgeRoutes.EdgeRoutes
      yield* edge.resumeOpenWork
    })
  )
  return layerServer(config).pipe(
    Layer.provideMerge(layerMasterLink(config)),
    Layer.provideMerge(layerMonitor(config)),
    Layer.provideMerge(layerCertRenewal),
    Layer.provideMerge(layerOpenWorkRetry),
    Layer.provideMerge(layerBoot(config)),
    Layer.provideMerge(resume),
    Layer.provideMerge(core),
    // Provided once: health checks, PowerDNS, Caddy and ACME share one HTTP connection pool for the agent's life.
    // node:http's, not undici's: undici is about 2 MB of JavaScript and a WebAssembly parser an
    // idle agent would keep in memory, for a few local requests now and then.
    Layer.provide(Layer.merge(NodeContext.layer, NodeHttpClient.layer))
  )
}

/** Runs the boot sequence (stages from [[boot.sequence]]) for the agent's life, after open work is closed. */
export const layerBoot = (config: AgentConfig) =>
  Layer.scopedDiscard(
    Effect.flatMap(BootSequencer, (boot) =>
      Effect.forkScoped(
        boot.run({
          checkInterval: config.boot.check_interval,
          restartAfter: config.boot.restart_after,
          stages: config.boot.sequence.map((s) => ({
            name: s.name,
            services: s.services,
            timeout: s.timeout,
            onFailure: s.on_failure,
            checks: s.checks.map((c) => ({
              service: c.service,
              kind: c.kind,
              ...(c.path === undefined ? {} : { path: c.path }),
              ...(c.route === undefined ? {} : { route: c.route }),
              ...(c.port === undefined ? {} : { port: c.port }),
              ...(c.server === undefined ? {} : { server: c.server }),
              ...(c.command === undefined ? {} : { command: c.command })
            }))
          }))
        })
      )
    )
  )

/** A certificate the renewal fiber looks after: a service route's, or an edge route's. */
export type RenewableCertificate =
  | { readonly kind: "service"; readonly service: string; readonly hostname: string; readonly notAfter: string }
  | { readonly kind: "edge"; readonly hostname: string; readonly notAfter: string }

/** What the renewal fiber lists each round: the registry's service route certificates, then the edge routes'. */
export const renewableCertificates = <E1, E2>(
  services: Effect.Effect<ReadonlyArray<{ readonly service: string; readonly hostname: string; readonly notAfter: string }>, E1>,
  edges: Effect.Effect<ReadonlyArray<{ readonly hostname: string; readonly notAfter: string }>, E2>
): Effect.Effect<ReadonlyArray<RenewableCertificate>, E1 | E2> =>
  Effect.zipWith(services, edges, (services, edges): ReadonlyArray<RenewableCertificate> => [
    ...services.map((c) => ({ kind: "service" as const, service: c.service, hostname: c.hostname, notAfter: c.notAfter })),
    ...edges.map((c) => ({ kind: "edge" as const, hostname: c.hostname, notAfter: c.notAfter }))
  ])

/**
 * Renews route certificates before they expire (30 days before, checked twice a day). A service
 * route's renewal runs in its service's actor so it never races a deploy of that service; an
 * edge route's runs in its hostname's actor (EdgeRoutes), so it never races a setup or removal.
 * One fiber for both: a CA's rate limits and the proxy's reloads prefer one queue.
 */
export const layerCertRenewal = Layer.scopedDiscard(
  Effect.gen(function* () {
    const registry = yield* Registry
    const lifecycle = yield* Lifecycle
    const actors = yield* ServiceActors
    const edge = yield* EdgeRoutes.EdgeRoutes
    yield* Effect.forkScoped(
      CertRenewer.runRenewer({
        every: "12 hours",
        list: renewableCertificates(registry.certificates, edge.certificates),
        renew: (cert: RenewableCertificate): Effect.Effect<void, unknown> =>
          cert.kind === "edge"
            ? edge.renewCertificate(cert.hostname)
            : actors.submit(cert.service, lifecycle.renewCertificate(cert.hostname))
      })
    )
  })
)

/**
 * Closes, every 10 s, work a failure left open while the agent runs (OpenWorkRetry): a deploy
 * whose rollback met its engine down waited for the next agent start before.
 */
export const layerOpenWorkRetry = Layer.scopedDiscard(
  Effect.forkScoped(
    Effect.forever(Effect.zipRight(
      Effect.sleep("10 seconds"),
      // A round that fails (the registry unreadable) is logged and counted; the next one tries again.
      OpenWorkRetry.retryRound.pipe(Effect.catchAllCause((cause) =>
        Effect.zipRight(Metric.increment(OpenWorkRetry.openWorkLeft), Effect.logError("closing open work failed; tried again in 10 s", cause))))
    ))
  )
)

/**
 * Compares the registry with the engine every `[monitor] interval` for the agent's life, after
 * open work is closed; its findings become events and the `warnings` of ps/status.
 */
export const layerMonitor = (config: AgentConfig) => Monitor.layer(Monitor.fromConfig(config.monitor))

/** Registers and heartbeats with the master when the config names one; a fiber for the agent's life. */
export const layerMasterLink = (config: AgentConfig) => {
  const master = config.master
  if (master === undefined) return Layer.empty
  return Layer.scopedDiscard(
    Effect.forkScoped(
      MasterLink.run({
        masters: master.addresses,
        ca: readFileSync(config.tls.ca, "utf8"),
        token: secretFile(master.token_file, "system token file ([master] token_file)"),
        clientCert: { cert: readFileSync(config.tls.cert, "utf8"), key: Redacted.make(SecretFile.readSync(config.tls.key, "TLS private key ([tls] key)")) },
        info: { name: config.node, role: config.role, addresses: config.addresses ?? [config.listen], arch: NodeResources.arch(), version: VERSION, nodeAddress: config.node_address },
        dataDir: config.data_dir
      })
    )
  )
}
