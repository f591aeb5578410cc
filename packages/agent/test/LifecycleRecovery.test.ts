/**
 * What the agent does at start-up with work a previous run left open (interrupted deploys rolled
 * back, stops/starts/undeploys finished, orphan containers and stale port reservations swept), how
 * a deploy's compensation converges routes and DNS on what the registry says now, and certificate
 * renewal. Open work is made the way a crashed run leaves it: failed peer calls, or journal rows,
 * containers and port reservations written directly. A "restart" is a new agent over the same
 * peers and registry file.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Option } from "effect"
import { randomUUID } from "node:crypto"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime, type ContainerSpec, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../src/engine/ContainerRuntime.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import type { ProxyRoute } from "../src/proxy/ProxyRoutes.js"
import { Registry, type SagaKind } from "../src/registry/Registry.js"
import { definition, IMAGE, layerAgent, makePeers, type Peers, settings, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-recovery-")), "registry.db")
const noProgress = () => Effect.void

const withAgent = <A, E>(peers: Peers, file: string, body: Effect.Effect<A, E, Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl>) =>
  Effect.scoped(Effect.provide(body, layerAgent(peers, file)))

/** A new agent over the same peers and registry, doing its start-up work. */
const restartAgent = <A, E>(peers: Peers, file: string, after: Effect.Effect<A, E, Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl>) =>
  withAgent(peers, file, Effect.zipRight(Effect.flatMap(Lifecycle, (l) => l.resumeOpenWork), after))

const internal = (service: string) => `${service}.${settings.internalZone}`

const deploy = (def: ReturnType<typeof webService>) =>
  Effect.flatMap(Lifecycle, (l) => Effect.map(l.deploy(def, { dryRun: false }, noProgress), Option.getOrThrow))

/** A saga of `kind` begun and journaled up to the start of each given step, then cut off. */
const openSaga = (service: string, kind: SagaKind, started: (sagaId: string) => ReadonlyArray<readonly [step: string, intent: unknown]> = () => []) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const id = randomUUID()
    yield* registry.beginSaga(id, service, kind)
    for (const [step, intent] of started(id)) yield* registry.journal(id, step, "started", intent)
    return id
  })

/** A route as a deploy journals it (and puts it in the proxy). */
const routeSnapshot = (hostname: string, hostPort: number) => ({
  listener: 8443, hostname, backend: `127.0.0.1:${hostPort}`, mode: "l7" as const, backendTls: false, tlsCert: undefined, tlsKey: undefined
})

/** What a cut-off deploy's routes step left in the proxy. */
const putLeftoverRoute = (peers: Peers, service: string, hostname: string, hostPort: number) =>
  peers.proxy.put({ listener: 8443, hostname: hostname as ProxyRoute["hostname"], backend: `127.0.0.1:${hostPort}`, mode: "l7", backendTls: false, service })

const eventsOf = (kind: string) =>
  Effect.flatMap(Registry, (r) => Effect.map(r.events(1000), (rows) => rows.filter((e) => e.kind === kind).map((e) => [e.service, e.message])))

const dnsNames = (peers: Peers) => Effect.map(peers.dns.list, (m) => [...m.entries()].sort())
const proxyRoutes = (peers: Peers) =>
  Effect.map(peers.proxy.list, (routes) => routes.map((r) => [r.hostname, r.service, r.backend]).sort())
const containerStates = Effect.flatMap(MemoryRuntimeControl, (c) =>
  Effect.map(c.containers, (all) => all.map((x) => [x.spec.name, x.info.state]).sort())
)

const spec = (name: string, labels: Record<string, string>): ContainerSpec => ({
  name, image: IMAGE, cmd: undefined, env: [], volumes: [], ports: [], network: undefined, user: undefined, restart: undefined, labels
})

/** A running container made outside any deploy (a crashed run's leftovers, another node's, a user's). */
const runContainer = (name: string, labels: Record<string, string>) =>
  Effect.flatMap(ContainerRuntime, (rt) => Effect.flatMap(rt.create(spec(name, labels)), rt.start))

describe("compensating an interrupted deploy: routes", () => {
  it.live("removes the routes the deploy put, but not one the registry now gives another service", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      const shared = "shared.svc.mcp.internal"
      yield* withAgent(peers, file, Effect.gen(function* () {
        // A deploy of "a" put two routes and the agent died; then "b" was deployed with one of those hostnames.
        yield* openSaga("a", "deploy", () => [["routes", { service: "a", previous: [], next: [routeSnapshot(shared, 20900), routeSnapshot(internal("a"), 20901)] }]])
        yield* putLeftoverRoute(peers, "a", shared, 20900)
        yield* putLeftoverRoute(peers, "a", internal("a"), 20901)
        yield* deploy(webService("b", "", shared))
      }))
      const bRoutes = (yield* peers.proxy.list).filter((r) => r.hostname === shared && r.service === "b")
      expect(bRoutes).toHaveLength(1)

      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect((yield* peers.proxy.list).map((r) => [r.hostname, r.service, r.backend])).toEqual([[shared, "b", bRoutes[0]!.backend]])
        expect(yield* eventsOf("recover")).toEqual([["a", "rolled back an interrupted deploy"]])
        expect(yield* (yield* Registry).sagasIn("running")).toEqual([])
      }))
    }))
})

describe("compensating an interrupted deploy: DNS", () => {
  it.live("removes the names the deploy put, but not one the registry gives another service", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* deploy(webService("b"))
        // The journal names b's name too (the registry gave it to b after the saga was left open).
        yield* openSaga("a", "deploy", () => [["dns", { service: "a", previous: [], next: [internal("a"), internal("b")] }]])
        yield* peers.dns.put(internal("a"), settings.nodeAddress)
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* dnsNames(peers)).toEqual([[internal("b"), settings.nodeAddress]])
        expect(yield* eventsOf("recover")).toEqual([["a", "rolled back an interrupted deploy"]])
      }))
    }))

  it.live("an active service gets its committed name back; a stopped service's name stays away", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deploy(webService("a"))
        yield* deploy(webService("b"))
        yield* lifecycle.stop("b")
        // A redeploy of "a" under a new name got through its DNS step, then the agent died.
        yield* openSaga("a", "deploy", () => [["dns", { service: "a", previous: [internal("a")], next: [internal("a-v2")] }]])
        yield* peers.dns.put(internal("a-v2"), settings.nodeAddress)
        yield* peers.dns.remove(internal("a"))
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* dnsNames(peers)).toEqual([[internal("a"), settings.nodeAddress]])
      }))
    }))

  it.live("a stopped service whose redeploy was interrupted is left without its name", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* deploy(webService("a"))
        yield* (yield* Lifecycle).stop("a")
        expect((yield* peers.dns.list).size).toBe(0)
        // The redeploy put the name back before it was cut off; the registry still says stopped.
        yield* openSaga("a", "deploy", () => [["dns", { service: "a", previous: [internal("a")], next: [internal("a")] }]])
        yield* peers.dns.put(internal("a"), settings.nodeAddress)
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* dnsNames(peers)).toEqual([])
        expect(Option.getOrThrow(yield* (yield* Registry).service("a")).active).toBe(false)
      }))
    }))

  it.live("a DNS intent journaled before it named the service puts the previous names back", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* openSaga("a", "deploy", () => [["dns", { previous: [internal("a")], next: [internal("a-v2")] }]])
        yield* peers.dns.put(internal("a-v2"), settings.nodeAddress)
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* dnsNames(peers)).toEqual([[internal("a"), settings.nodeAddress]])
      }))
    }))
})

describe("certificate renewal", () => {
  const twoRoutes = definition(`name = "b"
[[components]]
name = "web"
image = "${IMAGE}"
cmd = ["httpd"]
[[components.routes]]
name = "main"
port = 8443
mode = "l7"
[[components.routes]]
name = "alt"
port = 8443
mode = "l7"
hostname = "b-alt.svc.mcp.internal"
`)

  it.live("issues a new certificate, serves it on the hostname's routes only, revokes the old one and records it", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, freshFile(), Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* deploy(webService("a"))
        yield* deploy(twoRoutes)
        const before = new Map((yield* registry.certificates).map((c) => [c.hostname, c]))
        const old = before.get(internal("b"))!
        const routesBefore = new Map<string, ProxyRoute>((yield* peers.proxy.list).map((r) => [r.hostname, r]))

        yield* lifecycle.renewCertificate(internal("b"))

        const after = new Map((yield* registry.certificates).map((c) => [c.hostname, c]))
        const fresh = after.get(internal("b"))!
        expect(fresh.service).toBe("b")
        expect(fresh.serial).not.toBe(old.serial)
        // The other hostnames keep their certificates.
        expect(after.get(internal("a"))).toEqual(before.get(internal("a")))
        expect(after.get("b-alt.svc.mcp.internal")).toEqual(before.get("b-alt.svc.mcp.internal"))
        expect((yield* peers.certs.live).map((c) => c.serial).sort()).toEqual(
          [before.get(internal("a"))!.serial, before.get("b-alt.svc.mcp.internal")!.serial, fresh.serial].sort()
        )
        const routes = new Map<string, ProxyRoute>((yield* peers.proxy.list).map((r) => [r.hostname, r]))
        expect(routes.get(internal("b"))).toEqual({ ...routesBefore.get(internal("b")), tlsCert: fresh.certPath, tlsKey: fresh.keyPath })
        expect(routes.get("b-alt.svc.mcp.internal")).toEqual(routesBefore.get("b-alt.svc.mcp.internal"))
        expect(routes.get(internal("a"))).toEqual(routesBefore.get(internal("a")))
        expect(yield* eventsOf("cert")).toEqual([
          ["b", `renewed the certificate for ${internal("b")} (serial ${fresh.serial}, valid until ${fresh.notAfter})`]
        ])
      }))
    }))

  it.live("a hostname without a recorded certificate is left alone", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, freshFile(), Effect.gen(function* () {
        yield* deploy(webService("a"))
        const live = yield* peers.certs.live
        yield* (yield* Lifecycle).renewCertificate("nothing.svc.mcp.internal")
        expect(yield* peers.certs.live).toEqual(live)
        expect(yield* eventsOf("cert")).toEqual([])
      }))
    }))
})

describe("resuming open work at start-up", () => {
  it.live("rolls back interrupted deploys first, then finishes stops and starts towards the recorded state, once each", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deploy(webService("b"))
        yield* deploy(webService("c"))
        yield* lifecycle.stop("c")
        // A stop of b that fails at the proxy, then a start of c that fails at the proxy: both stay open.
        yield* peers.faults.arm("proxy.remove")
        yield* Effect.flip(lifecycle.stop("b"))
        yield* Effect.sleep("5 millis")
        yield* peers.faults.arm("proxy.put")
        yield* Effect.flip(lifecycle.start("c"))
        yield* Effect.sleep("5 millis")
        // Last, a deploy of a new service cut off right after it began.
        yield* openSaga("a", "deploy")
        expect((yield* (yield* Registry).sagasIn("running")).map((s) => [s.service, s.kind])).toEqual([["b", "stop"], ["c", "start"], ["a", "deploy"]])
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* eventsOf("recover")).toEqual([
          ["a", "rolled back an interrupted deploy"],
          ["b", "finished an interrupted stop"],
          ["c", "finished an interrupted start"]
        ])
        expect(yield* (yield* Registry).sagasIn("running")).toEqual([])
        // b is down (its route went), c is up again with its route and name.
        expect((yield* proxyRoutes(peers)).map(([hostname, service]) => [hostname, service])).toEqual([[internal("c"), "c"]])
        expect(yield* dnsNames(peers)).toEqual([[internal("c"), settings.nodeAddress]])
        expect((yield* containerStates).map(([name, state]) => [name!.split("-")[0], state])).toEqual([["b", "exited"], ["c", "running"]])
      }))
    }))

  it.live("finishes an undeploy, including one cut off after the registry had already forgotten the service", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* deploy(webService("a"))
        yield* peers.faults.arm("proxy.remove")
        yield* Effect.flip((yield* Lifecycle).undeploy("a"))
        yield* Effect.sleep("5 millis")
        // The agent died between deleting the service and closing the journal entry.
        yield* openSaga("gone", "undeploy")
      }))
      yield* restartAgent(peers, file, Effect.gen(function* () {
        const registry = yield* Registry
        expect(yield* eventsOf("recover")).toEqual([["a", "finished an interrupted undeploy"], ["gone", "finished an interrupted undeploy"]])
        expect(yield* registry.sagasIn("running")).toEqual([])
        expect(yield* registry.services).toEqual([])
        expect(yield* peers.proxy.list).toEqual([])
        expect(yield* dnsNames(peers)).toEqual([])
        expect(yield* containerStates).toEqual([])
        expect(yield* peers.certs.live).toEqual([])
      }))
    }))

  it.live("a rollback that fails again leaves the deploy open with every failure named, and the next start closes it", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* openSaga("a", "deploy", () => [
          ["routes", { service: "a", previous: [], next: [routeSnapshot(internal("a"), 20900)] }],
          ["dns", { service: "a", previous: [], next: [internal("a")] }]
        ])
        yield* putLeftoverRoute(peers, "a", internal("a"), 20900)
        yield* peers.dns.put(internal("a"), settings.nodeAddress)
      }))
      // More failures than the compensation retries.
      yield* peers.faults.arm("proxy.remove", 100)
      yield* peers.faults.arm("dns.remove", 100)
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect(yield* eventsOf("recover")).toEqual([[
          "a",
          `could not close the interrupted deploy (dns: memory DNS: remove ${internal("a")} failed: injected fault; routes: memory proxy: remove failed: injected fault); retried at next start`
        ]])
        expect((yield* (yield* Registry).sagasIn("running")).map((s) => [s.service, s.kind])).toEqual([["a", "deploy"]])
      }))
      yield* peers.faults.clear
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect((yield* eventsOf("recover")).slice(1)).toEqual([["a", "rolled back an interrupted deploy"]])
        expect(yield* (yield* Registry).sagasIn("running")).toEqual([])
        expect(yield* peers.proxy.list).toEqual([])
        expect(yield* dnsNames(peers)).toEqual([])
      }))
    }))
})

describe("sweeping orphans at start-up", () => {
  it.live("removes this node's containers of no committed deploy, with an event, and leaves every other container alone", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      let kept: ReadonlyArray<string> = []
      yield* withAgent(peers, file, Effect.gen(function* () {
        yield* deploy(webService("a"))
        const node = settings.node
        // Orphans: an earlier deploy of a, and a service the registry does not know.
        yield* runContainer("a-web-old", { [LABEL_SERVICE]: "a", [LABEL_DEPLOY]: "old-deploy", [LABEL_NODE]: node })
        yield* runContainer("ghost-web", { [LABEL_SERVICE]: "ghost", [LABEL_DEPLOY]: "ghost-deploy", [LABEL_NODE]: node })
        // Not ours to judge: missing labels, or another node's.
        yield* runContainer("service-label-only", { [LABEL_SERVICE]: "a", [LABEL_NODE]: node })
        yield* runContainer("deploy-label-only", { [LABEL_DEPLOY]: "old-deploy", [LABEL_NODE]: node })
        yield* runContainer("node-label-only", { [LABEL_NODE]: node })
        yield* runContainer("other-node", { [LABEL_SERVICE]: "a", [LABEL_DEPLOY]: "old-deploy", [LABEL_NODE]: "other-node" })
        kept = (yield* containerStates).map(([name]) => name!).filter((n) => n !== "a-web-old" && n !== "ghost-web")
      }))
      expect(kept).toHaveLength(5) // a's own container and the four above
      yield* restartAgent(peers, file, Effect.gen(function* () {
        expect((yield* containerStates).map(([name]) => name)).toEqual(kept)
        expect(yield* eventsOf("recover")).toEqual([["a", "removed orphan container a-web-old"], ["ghost", "removed orphan container ghost-web"]])
        expect((yield* (yield* Lifecycle).status("a")).components.map((c) => c.state)).toEqual(["running"])
      }))
    }))

  it.live("keeps the containers of a deploy still open and releases the ports of sagas that ended", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      let committedPorts: ReadonlyArray<number> = []
      yield* withAgent(peers, file, Effect.gen(function* () {
        const registry = yield* Registry
        yield* deploy(webService("b"))
        committedPorts = (yield* registry.ports).map((p) => p.port)
        // A deploy of a cut off after it launched its container.
        const open = yield* openSaga("a", "deploy", (sagaId) => [["containers", { sagaId }]])
        yield* runContainer(`a-web-${open}`, { [LABEL_SERVICE]: "a", [LABEL_DEPLOY]: open, [LABEL_NODE]: settings.node })
        // A saga that ended, cut off before its port reservation was released.
        const ended = yield* openSaga("c", "deploy")
        yield* registry.reservePort({ port: 20990, service: "c", component: "web", route: undefined, sagaId: ended })
        yield* registry.endSaga(ended, "compensated")
      }))
      // The engine refuses removals, for longer than the compensation retries: a's saga stays open.
      yield* withAgent(peers, file, Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        for (let i = 0; i < 10; i++) yield* control.failNext("remove")
        yield* (yield* Lifecycle).resumeOpenWork
        const registry = yield* Registry
        expect((yield* registry.sagasIn("running")).map((s) => s.service)).toEqual(["a"])
        expect((yield* containerStates).map(([name]) => name!.split("-")[0])).toEqual(["a", "b"])
        expect((yield* registry.ports).map((p) => p.port)).toEqual(committedPorts)
        expect((yield* eventsOf("recover")).map(([service]) => service)).toEqual(["a"])
      }))
    }))
})
