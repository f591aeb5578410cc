/**
 * Stop, start, restart and undeploy as a user sees them: the typed error (which peer failed,
 * what was being done, whether retrying may help), the events the registry records, and the
 * state containers, routes, DNS and certificates end in. Also how an undeploy left open by a
 * failure is finished by whatever the user does next to the service.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Effect, Layer, Metric, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as CertIssuer from "../src/certs/CertIssuer.js"
import { ContainerNotFound, ContainerRuntime, LABEL_SERVICE, RuntimeError } from "../src/engine/ContainerRuntime.js"
import { NodeSettings } from "../src/NodeSettings.js"
import * as DnsRecords from "../src/dns/DnsRecords.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import * as ServiceEvents from "../src/lifecycle/ServiceEvents.js"
import * as ServiceOperations from "../src/lifecycle/ServiceOperations.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import * as PortAllocator from "../src/lifecycle/PortAllocator.js"
import * as ProxyRoutes from "../src/proxy/ProxyRoutes.js"
import { layerSqlite, Registry } from "../src/registry/Registry.js"
import { IMAGE, layerAgent, makePeers, type Peers, settings, webService } from "./Harness.js"
import { layerPlatform } from "./Platform.js"

type Env = Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-lifecycle-ops-")), "registry.db")
const noProgress = () => Effect.void

/** A fresh agent over fresh peers (the proxy recreates in place, the harness default for ops). */
const withAgent = <A, E>(body: (peers: Peers) => Effect.Effect<A, E, Env>) =>
  Effect.gen(function* () {
    const peers = yield* makePeers({ switchesTraffic: false })
    return yield* Effect.scoped(Effect.provide(body(peers), layerAgent(peers, freshFile())))
  })

const deployed = (name: string) =>
  Effect.flatMap(Lifecycle, (l) => Effect.map(l.deploy(webService(name), { dryRun: false }, noProgress), Option.getOrThrow))

/** The events recorded for a service, as [kind, message]. */
const eventsOf = (service: string) =>
  Effect.map(Effect.flatMap(Registry, (r) => r.events(1000)), (rows) => rows.filter((e) => e.service === service).map((e) => [e.kind, e.message]))

const openSagas = Effect.map(Effect.flatMap(Registry, (r) => r.sagasIn("running")), (rows) => rows.map((s) => [s.service, s.kind]))

const committedSagas = (service: string) =>
  Effect.map(Effect.flatMap(Registry, (r) => r.sagasIn("committed")), (rows) => rows.filter((s) => s.service === service).map((s) => s.kind))

const containersOf = (service: string) =>
  Effect.map(Effect.flatMap(MemoryRuntimeControl, (c) => c.containers), (all) =>
    all.filter((c) => c.spec.labels[LABEL_SERVICE] === service).map((c) => ({ id: c.info.id, state: c.info.state })))

const hostnamesRouted = (peers: Peers) => Effect.map(peers.proxy.list, (routes) => routes.map((r) => r.hostname).sort())
const dnsNames = (peers: Peers) => Effect.map(peers.dns.list, (m) => [...m.keys()].sort())

const peerFailed = <A, E>(effect: Effect.Effect<A, E, Env>) =>
  Effect.map(Effect.flip(effect), (e) => {
    expect(e).toBeInstanceOf(Errors.PeerFailed)
    return e as Errors.PeerFailed
  })

/** Makes the registry refuse a statement, as a full disk or a corrupt file would. */
const refuse = (name: string, on: string) =>
  Effect.flatMap(Registry, (r) => r.sql.unsafe(`CREATE TRIGGER ${name} BEFORE ${on} BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`))
const allow = (name: string) => Effect.flatMap(Registry, (r) => r.sql.unsafe(`DROP TRIGGER ${name}`))

/** Leaves an undeploy of `service` open: its certificate revoke fails after the containers went. */
const failedUndeploy = (peers: Peers, service: string) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    yield* peers.faults.arm("cert.revoke")
    const error = yield* peerFailed(lifecycle.undeploy(service))
    expect(error.peer).toBe("memory CA")
    expect(yield* openSagas).toEqual([[service, "undeploy"]])
  })

describe("stop, start, restart and undeploy", () => {
  it.live("fail on an unknown service with its ServiceNotFound, untouched", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        for (const op of [lifecycle.stop, lifecycle.start, lifecycle.restart, lifecycle.undeploy]) {
          const error = yield* Effect.flip(op("ghost"))
          expect(error).toEqual(new Errors.ServiceNotFound({ service: "ghost" }))
        }
        expect(yield* openSagas).toEqual([])
      })
    ))
})

describe("stop", () => {
  it.live("takes the service's DNS, routes and containers down, marks it inactive and records 'stopped'", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* deployed("api")
        const status = yield* lifecycle.stop("web")
        expect(status.active).toBe(false)
        expect(status.components.map((c) => c.state)).toEqual(["stopped"])
        // Only web goes: api keeps serving.
        expect(yield* hostnamesRouted(peers)).toEqual(["api.svc.mcp.internal"])
        expect(yield* dnsNames(peers)).toEqual(["api.svc.mcp.internal"])
        expect((yield* containersOf("web")).map((c) => c.state)).toEqual(["exited"])
        expect((yield* containersOf("api")).map((c) => c.state)).toEqual(["running"])
        expect(yield* eventsOf("web")).toContainEqual(["deploy", "stopped"])
        expect(yield* openSagas).toEqual([])
        expect(yield* committedSagas("web")).toContain("stop")
      })
    ))

  it.live("a proxy failure names the proxy and the operation, and may be retried", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* peers.faults.arm("proxy.remove")
        const error = yield* peerFailed(lifecycle.stop("web"))
        expect(error).toMatchObject({ peer: "memory proxy", operation: "stop web", retryable: true, reason: "memory proxy: remove failed: injected fault" })
        // The journal stays open, so the next agent start finishes the stop.
        expect(yield* openSagas).toEqual([["web", "stop"]])
        expect(yield* eventsOf("web")).not.toContainEqual(["deploy", "stopped"])
      })
    ))

  it.live("a DNS failure names the DNS server", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* peers.faults.arm("dns.remove")
        const error = yield* peerFailed(lifecycle.stop("web"))
        expect(error).toMatchObject({
          peer: "memory DNS", operation: "stop web", retryable: true,
          reason: "memory DNS: remove web.svc.mcp.internal failed: injected fault"
        })
      })
    ))

  it.live("an engine failure names the container engine and carries the engine's own retryable verdict", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        yield* control.failNext("stop")
        const busy = yield* peerFailed(lifecycle.stop("web"))
        expect(busy).toMatchObject({
          peer: "container engine", operation: "stop web", retryable: true,
          reason: "container engine: stop failed: injected fault (memory runtime)"
        })
        yield* control.failNext("stop", new RuntimeError({ operation: "stop", reason: "permission denied", retryable: false }))
        const refused = yield* peerFailed(lifecycle.stop("web"))
        expect(refused).toMatchObject({ peer: "container engine", operation: "stop web", retryable: false })
      })
    ))

  it.live("a registry that refuses the write fails the stop as a registry failure, before anything is taken down", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* refuse("no_active", "UPDATE OF active ON services")
        const error = yield* peerFailed(lifecycle.stop("web"))
        expect(error).toMatchObject({ peer: "registry", operation: "stop web" })
        expect(error.reason).not.toBe("")
        expect(yield* hostnamesRouted(peers)).toEqual(["web.svc.mcp.internal"])
        expect(yield* openSagas).toEqual([]) // the journal entry went with the refused transaction
      })
    ))

  it.live("a stop done whose event or journal end cannot be written is reported done, each miss counted", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        // Its caller (the master) would otherwise keep routing to a service that stopped.
        const unwritten = ServiceEvents.eventsUnwritten
        const unclosed = ServiceOperations.operationsUnclosed
        const [eventsBefore, closedBefore] = [(yield* Metric.value(unwritten)).count, (yield* Metric.value(unclosed)).count]
        yield* refuse("no_events", "INSERT ON events")
        yield* refuse("no_close", "UPDATE OF state ON sagas")
        const status = yield* lifecycle.stop("web")
        expect(status.active).toBe(false)
        expect(yield* hostnamesRouted(peers)).toEqual([])
        expect((yield* Metric.value(unwritten)).count).toBe(eventsBefore + 1)
        expect((yield* Metric.value(unclosed)).count).toBe(closedBefore + 1)
        // The entry stays open, and is closed towards the same recorded state at the next start.
        expect(yield* openSagas).toEqual([["web", "stop"]])
      })
    ))
})

describe("start", () => {
  it.live("brings a stopped service back: same containers, its own routes and DNS only, records 'started'", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* deployed("api")
        const [original] = yield* containersOf("web")
        yield* lifecycle.stop("web")
        yield* lifecycle.stop("api")
        const status = yield* lifecycle.start("web")
        expect(status.active).toBe(true)
        expect(status.components.map((c) => c.state)).toEqual(["running"])
        // The stopped container is started again, not recreated (its filesystem survives a stop/start).
        expect(yield* containersOf("web")).toEqual([{ id: original!.id, state: "running" }])
        // api stays stopped: none of its routes or names come back.
        expect(yield* hostnamesRouted(peers)).toEqual(["web.svc.mcp.internal"])
        expect(yield* dnsNames(peers)).toEqual(["web.svc.mcp.internal"])
        expect(yield* eventsOf("web")).toContainEqual(["deploy", "started"])
        expect(yield* openSagas).toEqual([])
        expect(yield* committedSagas("web")).toContain("start")
      })
    ))

  it.live("leaves a container that is already running alone and removes no DNS name", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        const before = yield* control.calls
        // Start only puts names: a DNS server refusing removals cannot matter to it.
        yield* peers.faults.arm("dns.remove")
        const status = yield* lifecycle.start("web")
        expect(status.components.map((c) => c.state)).toEqual(["running"])
        const after = yield* control.calls
        expect(after.start - before.start).toBe(0)
        expect(after.create - before.create).toBe(0)
        expect(yield* dnsNames(peers)).toEqual(["web.svc.mcp.internal"])
      })
    ))

  it.live("an image gone from the engine fails the start as a container-engine failure that retrying will not fix", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const runtime = yield* ContainerRuntime
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        yield* lifecycle.stop("web")
        const [container] = yield* containersOf("web")
        yield* runtime.remove(container!.id)
        yield* control.removeImage(IMAGE)
        const error = yield* peerFailed(lifecycle.start("web"))
        expect(error).toMatchObject({
          peer: "container engine", operation: "start web", retryable: false,
          reason: `image ${IMAGE} is not available: not present on this engine`
        })
      })
    ))

  it.live("a container that vanishes under the engine is a container-engine failure that may be retried", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        yield* lifecycle.stop("web")
        yield* control.failNext("start", new ContainerNotFound({ container: "web-web" }))
        const error = yield* peerFailed(lifecycle.start("web"))
        expect(error).toMatchObject({ peer: "container engine", operation: "start web", retryable: true, reason: "container web-web does not exist" })
      })
    ))
})

describe("restart", () => {
  it.live("stops and starts every container, counts the restart and records 'restarted'", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        const [original] = yield* containersOf("web")
        const before = yield* control.calls
        const status = yield* lifecycle.restart("web")
        const after = yield* control.calls
        expect(status.components.map((c) => [c.state, c.restarts])).toEqual([["running", 1]])
        expect([after.stop - before.stop, after.start - before.start]).toEqual([1, 1])
        expect(yield* containersOf("web")).toEqual([{ id: original!.id, state: "running" }])
        expect(yield* hostnamesRouted(peers)).toEqual(["web.svc.mcp.internal"])
        expect(yield* eventsOf("web")).toContainEqual(["deploy", "restarted"])
        expect((yield* lifecycle.restart("web")).components[0]!.restarts).toBe(2)
        expect(yield* openSagas).toEqual([])
      })
    ))

  it.live("brings a stopped service back up and active", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* lifecycle.stop("web")
        const status = yield* lifecycle.restart("web")
        expect(status.active).toBe(true)
        expect(status.components.map((c) => c.state)).toEqual(["running"])
        expect(yield* hostnamesRouted(peers)).toEqual(["web.svc.mcp.internal"])
        expect(yield* dnsNames(peers)).toEqual(["web.svc.mcp.internal"])
      })
    ))

  it.live("a proxy failure while bringing it back names the proxy and 'restart <service>'", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* peers.faults.arm("proxy.put")
        const error = yield* peerFailed(lifecycle.restart("web"))
        expect(error).toMatchObject({ peer: "memory proxy", operation: "restart web", retryable: true })
        // Journaled as a start: the next agent start brings the service up.
        expect(yield* openSagas).toEqual([["web", "start"]])
      })
    ))
})

describe("undeploy", () => {
  it.live("removes the containers, routes, DNS and certificates of that service only, and records 'undeployed'", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* deployed("web")
        yield* deployed("api")
        yield* lifecycle.undeploy("web")
        expect(yield* containersOf("web")).toEqual([])
        expect(yield* hostnamesRouted(peers)).toEqual(["api.svc.mcp.internal"])
        expect(yield* dnsNames(peers)).toEqual(["api.svc.mcp.internal"])
        expect((yield* peers.certs.live).map((c) => c.hostname)).toEqual(["api.svc.mcp.internal"])
        expect((yield* registry.certificates).map((c) => c.hostname)).toEqual(["api.svc.mcp.internal"])
        expect((yield* registry.services).map((s) => s.name)).toEqual(["api"])
        expect(yield* eventsOf("web")).toContainEqual(["deploy", "undeployed"])
        expect(yield* committedSagas("web")).toContain("undeploy")
      })
    ))

  it.live("a certificate authority failure names the CA and 'undeploy <service>', and leaves the undeploy open", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deployed("web")
        yield* peers.faults.arm("cert.revoke")
        const error = yield* peerFailed(lifecycle.undeploy("web"))
        expect(error).toMatchObject({ peer: "memory CA", operation: "undeploy web", retryable: true })
        expect(error.reason).toContain("injected fault")
        expect(yield* openSagas).toEqual([["web", "undeploy"]])
        expect(yield* eventsOf("web")).not.toContainEqual(["deploy", "undeployed"])
      })
    ))

  it.live("undeploying again after a failed undeploy finishes it", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* deployed("web")
        yield* failedUndeploy(peers, "web")
        yield* lifecycle.undeploy("web")
        expect(yield* registry.services).toEqual([])
        expect(yield* peers.certs.live).toEqual([])
        expect(yield* openSagas).toEqual([])
        expect(yield* eventsOf("web")).toContainEqual(["deploy", "undeployed"])
      })
    ))
})

describe("an undeploy left open", () => {
  it.live("is finished before a stop, start or restart of the service, which then find no service", () =>
    Effect.gen(function* () {
      for (const op of ["stop", "start", "restart"] as const) {
        yield* withAgent((peers) =>
          Effect.gen(function* () {
            const lifecycle = yield* Lifecycle
            const registry = yield* Registry
            yield* deployed("web")
            yield* failedUndeploy(peers, "web")
            const error = yield* Effect.flip(lifecycle[op]("web"))
            expect(error, op).toEqual(new Errors.ServiceNotFound({ service: "web" }))
            expect(yield* registry.services, op).toEqual([])
            expect(yield* peers.certs.live, op).toEqual([])
            expect(yield* openSagas, op).toEqual([])
          })
        )
      }
    }))

  it.live("is finished before a deploy of the service, which then starts afresh", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const registry = yield* Registry
        yield* deployed("web")
        const [oldCert] = yield* peers.certs.live
        yield* failedUndeploy(peers, "web")
        yield* deployed("web")
        expect(yield* openSagas).toEqual([])
        expect((yield* peers.certs.live).map((c) => c.serial)).not.toContain(oldCert!.serial)
        expect((yield* registry.services).map((s) => s.name)).toEqual(["web"])
        expect((yield* containersOf("web")).map((c) => c.state)).toEqual(["running"])
      })
    ))

  it.live("after the service was already deleted is closed from the registry alone, without the engine", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        yield* deployed("web")
        // Everything is undone, but the registry refuses to close the journal entry: done all the same.
        yield* refuse("no_close", "UPDATE OF state ON sagas")
        yield* lifecycle.undeploy("web")
        expect(yield* registry.services).toEqual([])
        expect(yield* openSagas).toEqual([["web", "undeploy"]])
        yield* allow("no_close")
        // Nothing is left to undo, so an engine that is briefly unavailable does not matter.
        yield* control.failNext("list")
        const next = yield* Effect.flip(lifecycle.stop("web"))
        expect(next).toEqual(new Errors.ServiceNotFound({ service: "web" }))
        expect(yield* openSagas).toEqual([])
      })
    ))

  it.live("of another service is left alone by operations on this one", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* deployed("web")
        yield* deployed("api")
        yield* failedUndeploy(peers, "web")
        for (const op of [lifecycle.stop, lifecycle.start, lifecycle.restart]) yield* op("api")
        expect((yield* registry.services).map((s) => s.name)).toEqual(["api", "web"])
        expect(yield* openSagas).toEqual([["web", "undeploy"]])
        expect(yield* hostnamesRouted(peers)).toEqual(["api.svc.mcp.internal"])
      })
    ))
})

/** An agent whose port range holds a single port, to run it out of ports. */
const layerOnePort = (peers: Peers, file: string) =>
  Lifecycle.Default.pipe(
    Layer.provide(PortAllocator.layer({ min: 20000, max: 20000 }, () => Effect.succeed(true))),
    Layer.provideMerge(Layer.mergeAll(
      peers.runtime,
      Layer.succeed(ProxyRoutes.ProxyRoutes, peers.proxy),
      Layer.succeed(CertIssuer.CertIssuer, peers.certs),
      Layer.succeed(DnsRecords.DnsRecords, peers.dns),
      Layer.succeed(NodeSettings, settings)
    )),
    Layer.provideMerge(Registry.Default.pipe(Layer.provideMerge(layerSqlite(file)))),
    Layer.provide(layerPlatform)
  )

describe("deploy failures that retrying will not fix", () => {
  it.live("a service that never gets healthy", () =>
    withAgent(() =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* control.scriptExec(() => ({ exitCode: 1, output: "" }))
        const def = webService("web", `[components.health]\nkind = "exec"\ncommand = ["true"]\ninterval = "20ms"\ntimeout = "200ms"\nretries = 1`)
        const error = yield* Effect.flip(lifecycle.deploy(def, { dryRun: false }, noProgress))
        expect(error).toMatchObject({ _tag: "DeployFailed", step: "health", retryable: false })
      })
    ))

  it.live("a node out of ports", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* Effect.scoped(Effect.provide(Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        const error = yield* Effect.flip(lifecycle.deploy(webService("api"), { dryRun: false }, noProgress))
        expect(error).toMatchObject({ _tag: "DeployFailed", step: "ports", retryable: false })
      }), layerOnePort(peers, freshFile())))
    }))

  it.live("a peer failure during a deploy may be retried", () =>
    withAgent((peers) =>
      Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* peers.faults.arm("dns.put")
        const error = yield* Effect.flip(lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        expect(error).toMatchObject({ _tag: "DeployFailed", step: "dns", retryable: true })
      })
    ))
})
