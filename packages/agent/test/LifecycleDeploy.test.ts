/**
 * The deploy path of Lifecycle as a user sees it: the dry-run plan, the step events, blue-green
 * versus in-place redeploys, explicit host ports, certificate reuse, the health check's target,
 * how a failure is reported, what a commit records and leaves running, and `status`.
 */
import { describe, expect, it, vi } from "@effect/vitest"
import { Deploy, Errors } from "@mcp/domain"
import { Cause, Effect, Exit, Logger, Option, type Scope } from "effect"
import { mkdtempSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime, LABEL_COMPONENT, LABEL_DEPLOY } from "../src/engine/ContainerRuntime.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import * as OpenWorkRetry from "../src/lifecycle/OpenWorkRetry.js"
import { ServiceActors } from "../src/lifecycle/ServiceActors.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { Registry } from "../src/registry/Registry.js"
import { definition, IMAGE, layerAgent, makePeers, type Peers, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-lifecycle-deploy-")), "registry.db")
const noProgress = () => Effect.void

type Env = Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl | ServiceActors | Scope.Scope
const withAgent = <A, E>(peers: Peers, body: Effect.Effect<A, E, Env>, file = freshFile()) =>
  Effect.scoped(Effect.provide(body, layerAgent(peers, file)))

/** A progress sink that keeps every event, and the DeployStep events as "step status". */
const recorder = () => {
  const events: Array<Deploy.DeployEvent> = []
  const sink = (e: Deploy.DeployEvent) => Effect.sync(() => void events.push(e))
  const steps = () => events.flatMap((e) => (e._tag === "DeployStep" ? [`${e.step} ${e.status}`] : []))
  return { events, sink, steps }
}

const ok = (names: ReadonlyArray<string>) => names.flatMap((n) => [`${n} started`, `${n} done`])

const DB_IMAGE = "localhost/mcp-db:v7"

/** Two components: web with an internal and a public named L7 route, db with an L4 route and an explicit host port. */
const shop = (images: { readonly web?: string; readonly db?: string } = {}) =>
  definition(`name = "shop"
[[components]]
name = "web"
image = "${images.web ?? IMAGE}"
[[components.routes]]
port = 8443
mode = "l7"
[[components.routes]]
name = "admin"
port = 9443
mode = "l7"
hostname = "shop.example.com"
public = true
[[components]]
name = "db"
image = "${images.db ?? DB_IMAGE}"
ports = ["127.0.0.1:18080:80"]
[[components.routes]]
port = 5432
mode = "l4"
hostname = "shopdb.svc.mcp.internal"
`)

/** A service with an explicit host port and one route. */
const withExplicitPort = (name: string, env = "") => webService(name, `ports = ["127.0.0.1:18080:80"]\n${env}`)

/**
 * A deploy of web (with an explicit host port) whose DNS step fails once its container runs, the
 * engine then refusing the next `removeFailures` removes (4: the rollback's try and 3 retries).
 * Returns its failure.
 */
const deployLeavingItsContainer = (peers: Peers, removeFailures: number) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const control = yield* MemoryRuntimeControl
    yield* peers.faults.arm("dns.put")
    const progress = (e: Deploy.DeployEvent) =>
      e._tag === "DeployStep" && e.step === "dns" && e.status === "failed"
        ? Effect.forEach(Array.from({ length: removeFailures }), () => control.failNext("remove"), { discard: true })
        : Effect.void
    return yield* Effect.flip(lifecycle.deploy(withExplicitPort("web"), { dryRun: false }, progress))
  })

/** Everything a deploy could write: registry, engine, proxy, DNS, CA. */
const snapshot = (peers: Peers) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const control = yield* MemoryRuntimeControl
    return {
      services: yield* registry.services,
      components: yield* registry.allComponents,
      ports: yield* registry.ports,
      routes: yield* registry.routes,
      certificates: yield* registry.certificates,
      running: yield* registry.sagasIn("running"),
      committed: yield* registry.sagasIn("committed"),
      events: yield* registry.events(100),
      containers: yield* control.containers,
      proxy: yield* peers.proxy.list,
      dns: [...(yield* peers.dns.list).entries()],
      certs: yield* peers.certs.live
    }
  })

/** What a user is told about a failed deploy. */
const failure = (e: unknown) => {
  expect(e).toBeInstanceOf(Errors.DeployFailed)
  const { reason, retryable, service, step } = e as Errors.DeployFailed
  return { service, step, retryable, reason }
}

const deployEvents = Effect.map(Effect.flatMap(Registry, (r) => r.events(100)), (rows) =>
  rows.map((e) => [e.kind, e.service, e.message])
)

describe("dry run", () => {
  it.live("a new service: the plan lists ports, images, routes, DNS records and 'new service', and nothing is written", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        const before = yield* snapshot(peers)
        const progress = recorder()
        const result = yield* lifecycle.deploy(shop({ web: "localhost/shop-web:v2" }), { dryRun: true }, progress.sink)
        expect(Option.isNone(result)).toBe(true)
        // The plan is the only event: no step ran.
        expect(progress.events.map((e) => e._tag)).toEqual(["DeployPlanned"])
        const plan = (progress.events[0] as Deploy.DeployPlanned).plan
        expect(plan).toStrictEqual({
          service: "shop",
          node: "test-node",
          placementReason: "deploy sent to this agent",
          // three routes and one explicit mapping
          portsToAllocate: 4,
          images: ["localhost/shop-web:v2", DB_IMAGE],
          routes: [
            { component: "web", hostname: "shop.svc.mcp.internal", listener: 8443, mode: "l7", public: false },
            { component: "web", route: "admin", hostname: "shop.example.com", listener: 9443, mode: "l7", public: true },
            { component: "db", hostname: "shopdb.svc.mcp.internal", listener: 5432, mode: "l4", public: false }
          ],
          dnsRecords: ["shop.svc.mcp.internal A 10.0.0.5"],
          edgeRoutes: [],
          changes: ["new service on test-node"]
        })
        expect(yield* snapshot(peers)).toEqual(before)
        // Not even an image pull.
        expect((yield* control.calls).ensureImage).toBe(0)
      }))
    }))

  it.live("a redeploy: the changes name the component count, each changed image and each added component, and nothing changes", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* control.addImage("localhost/mcp-worker:v3")
        const twoComponents = (webImage: string, extra: string) => definition(`name = "app"
[[components]]
name = "web"
image = "${webImage}"
[[components.routes]]
port = 8443
mode = "l7"
[[components]]
name = "worker"
image = "localhost/mcp-worker:v3"
${extra}`)
        yield* lifecycle.deploy(twoComponents(IMAGE, ""), { dryRun: false }, noProgress)
        const before = yield* snapshot(peers)
        const progress = recorder()
        yield* lifecycle.deploy(
          twoComponents("localhost/mcp-busybox:v2", `[[components]]\nname = "db"\nimage = "${DB_IMAGE}"`),
          { dryRun: true },
          progress.sink
        )
        expect(progress.events.map((e) => e._tag)).toEqual(["DeployPlanned"])
        const plan = (progress.events[0] as Deploy.DeployPlanned).plan
        // The unchanged worker adds no line.
        expect(plan.changes).toEqual([
          "redeploy: 2 component(s) replaced by 3",
          "web: localhost/mcp-busybox:v1 -> localhost/mcp-busybox:v2",
          "add component db"
        ])
        expect(plan.images).toEqual(["localhost/mcp-busybox:v2", "localhost/mcp-worker:v3", DB_IMAGE])
        expect(plan.portsToAllocate).toBe(1)
        expect(yield* snapshot(peers)).toEqual(before)
      }))
    }))
})

describe("deploy steps", () => {
  it.live("a new service runs pull, ports, certs, containers, health, routes, dns, each reported started then done", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const progress = recorder()
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, progress.sink)
        expect(progress.events.map((e) => e._tag === "DeployStep" ? [e.node, e.step, e.status, e.detail] : e._tag)).toEqual(
          ok(["pull", "ports", "certs", "containers", "health", "routes", "dns"]).map((s) => ["test-node", ...s.split(" "), ""])
        )
      }))
    }))

  it.live("without a traffic-switching proxy a redeploy retires the old containers before starting new ones on the same ports", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        const first = Option.getOrThrow(yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        const progress = recorder()
        const second = Option.getOrThrow(yield* lifecycle.deploy(webService("web", `env = ["V=2"]`), { dryRun: false }, progress.sink))
        expect(progress.steps()).toEqual(ok(["pull", "ports", "certs", "retire-old", "containers", "health", "routes", "dns"]))
        expect(second.components[0]!.routes[0]!.hostPort).toBe(first.components[0]!.routes[0]!.hostPort)
        expect((yield* control.containers).map((c) => c.spec.env)).toEqual([["V=2", `PORT=${first.components[0]!.routes[0]!.hostPort}`]])
      }))
    }))

  it.live("with a traffic-switching proxy a redeploy starts the new version on fresh ports beside the old, switches, then removes the old", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        const first = Option.getOrThrow(yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        const oldPort = first.components[0]!.routes[0]!.hostPort
        const progress = recorder()
        const second = Option.getOrThrow(yield* lifecycle.deploy(webService("web", `env = ["V=2"]`), { dryRun: false }, progress.sink))
        expect(progress.steps()).toEqual(ok(["pull", "ports", "certs", "containers", "health", "routes", "dns"]))
        const newPort = second.components[0]!.routes[0]!.hostPort
        expect(newPort).not.toBe(oldPort)
        expect((yield* peers.proxy.list).map((r) => r.backend)).toEqual([`127.0.0.1:${newPort}`])
        // Only the new deploy's container remains, and the old port is released.
        const deployId = Option.getOrThrow(yield* registry.service("web")).deployId
        expect((yield* control.containers).map((c) => [c.spec.labels[LABEL_DEPLOY], c.info.state])).toEqual([[deployId, "running"]])
        expect((yield* registry.ports).map((p) => [p.port, p.sagaId])).toEqual([[newPort, undefined]])
      }))
    }))

  it.live("a service without routes is recreated in place even when the proxy switches traffic (nothing to switch)", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        const worker = (env: string) => definition(`name = "jobs"\n[[components]]\nname = "worker"\nimage = "${IMAGE}"\nenv = ["${env}"]\n`)
        yield* lifecycle.deploy(worker("V=1"), { dryRun: false }, noProgress)
        const progress = recorder()
        yield* lifecycle.deploy(worker("V=2"), { dryRun: false }, progress.sink)
        expect(progress.steps()).toEqual(ok(["pull", "ports", "certs", "retire-old", "containers", "health", "routes", "dns"]))
        expect((yield* control.containers).map((c) => c.spec.env)).toEqual([["V=2"]])
      }))
    }))
})

describe("explicit host ports", () => {
  it.live("are recorded for the service and kept by its own redeploy", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const explicitRow = { port: 18080, service: "alpha", component: "web", route: "explicit:127.0.0.1:18080:80", sagaId: undefined }
        yield* lifecycle.deploy(withExplicitPort("alpha"), { dryRun: false }, noProgress)
        expect((yield* registry.ports).filter((p) => p.port === 18080)).toStrictEqual([explicitRow])
        const again = yield* lifecycle.deploy(withExplicitPort("alpha", `env = ["V=2"]`), { dryRun: false }, noProgress)
        expect(Option.isSome(again)).toBe(true)
        expect((yield* registry.ports).filter((p) => p.port === 18080)).toStrictEqual([explicitRow])
      }))
    }))

  it.live("held by another service fail the deploy at ports, not retryable, naming the holder, and release what was reserved", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* lifecycle.deploy(withExplicitPort("alpha"), { dryRun: false }, noProgress)
        const portsBefore = yield* registry.ports
        const progress = recorder()
        const error = yield* Effect.flip(lifecycle.deploy(withExplicitPort("beta"), { dryRun: false }, progress.sink))
        const { reason, ...rest } = failure(error)
        expect(rest).toEqual({ service: "beta", step: "ports", retryable: false })
        // (Today the reason repeats the "deploy of ... failed at ports:" framing; only its substance is asserted.)
        expect(reason).toContain(`host port 18080 (from ports = "127.0.0.1:18080:80") is held by service alpha`)
        expect(progress.steps()).toEqual([...ok(["pull"]), "ports started", "ports failed"])
        expect(yield* registry.ports).toEqual(portsBefore)
        expect(Option.isNone(yield* registry.service("beta"))).toBe(true)
      }))
    }))
})

describe("certificates", () => {
  const DAY = 24 * 3600 * 1000
  const T0 = Date.parse("2030-01-01T00:00:00.000Z")

  /** The recorded certificate of the service's hostname and what its route serves. */
  const served = (peers: Peers) =>
    Effect.gen(function* () {
      const registry = yield* Registry
      const [cert] = yield* registry.certificates
      const [route] = yield* peers.proxy.list
      return { serial: cert!.serial, notAfter: cert!.notAfter, tlsCert: route!.tlsCert, tlsKey: route!.tlsKey }
    })

  it.scopedLive("a redeploy reuses the recorded certificate while it has more than 30 days left, and issues a new one from then on", () =>
    Effect.gen(function* () {
      // Only Date is faked: the memory CA issues 90-day certificates, so time decides reuse.
      yield* Effect.acquireRelease(Effect.sync(() => vi.useFakeTimers({ toFake: ["Date"] })), () => Effect.sync(() => vi.useRealTimers()))
      vi.setSystemTime(T0)
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        const issued = yield* served(peers)
        expect(issued).toEqual({
          serial: "00000001",
          notAfter: new Date(T0 + 90 * DAY).toISOString(),
          tlsCert: "/memory/certs/web.svc.mcp.internal.1.crt",
          tlsKey: "/memory/certs/web.svc.mcp.internal.1.key"
        })

        // 30 days and 1 ms left: reused.
        vi.setSystemTime(T0 + 60 * DAY - 1)
        yield* lifecycle.deploy(webService("web", `env = ["V=2"]`), { dryRun: false }, noProgress)
        expect(yield* served(peers)).toEqual(issued)
        expect((yield* peers.certs.live).map((c) => c.serial)).toEqual(["00000001"])

        // Exactly 30 days left: a new certificate is issued, recorded and served.
        vi.setSystemTime(T0 + 60 * DAY)
        yield* lifecycle.deploy(webService("web", `env = ["V=3"]`), { dryRun: false }, noProgress)
        expect(yield* served(peers)).toEqual({
          serial: "00000002",
          notAfter: new Date(T0 + 150 * DAY).toISOString(),
          tlsCert: "/memory/certs/web.svc.mcp.internal.2.crt",
          tlsKey: "/memory/certs/web.svc.mcp.internal.2.key"
        })
      }))
    }))

  it.live("a failed certificate issue fails the deploy at certs and revokes the certificate already issued for it", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        // Two L7 hostnames: the first certificate is issued, the second fails, so the first must be revoked.
        const def = definition(`name = "two"
[[components]]
name = "web"
image = "${IMAGE}"
[[components.routes]]
port = 8443
mode = "l7"
[[components.routes]]
name = "alt"
port = 9443
mode = "l7"
hostname = "alt.svc.mcp.internal"
`)
        const registry = yield* Registry
        // The second issue fails (the first is the default hostname's).
        const original = peers.certs.issue
        let calls = 0
        const mutable = peers.certs as { issue: typeof original }
        mutable.issue = (hostname) => (++calls === 2 ? Effect.zipRight(peers.faults.arm("cert.issue"), original(hostname)) : original(hostname))
        const error = yield* Effect.flip(lifecycle.deploy(def, { dryRun: false }, noProgress)).pipe(
          Effect.ensuring(Effect.sync(() => void (mutable.issue = original)))
        )
        expect(failure(error)).toEqual({
          service: "two",
          step: "certs",
          retryable: true,
          reason: "memory CA could not issue a certificate for alt.svc.mcp.internal: injected fault"
        })
        expect(yield* peers.certs.live).toEqual([])
        expect(yield* registry.sagasIn("running")).toEqual([])
      }))
    }))
})

describe("health check target", () => {
  it.live("a tcp check with route = name connects to that route's host port", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const def = (health: string) => definition(`name = "shop"
[[components]]
name = "web"
image = "${IMAGE}"
${health}
[[components.routes]]
port = 8443
mode = "l7"
[[components.routes]]
name = "admin"
port = 9443
mode = "l7"
`)
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const first = Option.getOrThrow(yield* lifecycle.deploy(def(""), { dryRun: false }, noProgress))
        const admin = first.components[0]!.routes.find((r) => r.route === "admin")!.hostPort
        // Only the admin port answers (an in-place redeploy keeps both ports).
        yield* Effect.acquireRelease(
          Effect.async<net.Server, Error>((resume) => {
            const server = net.createServer((s) => s.destroy())
            server.once("error", (e) => resume(Effect.fail(e)))
            server.listen(admin, "127.0.0.1", () => resume(Effect.succeed(server)))
          }),
          (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
        )
        const health = `[components.health]\nkind = "tcp"\nroute = "admin"\ninterval = "30ms"\ntimeout = "200ms"\nretries = 2`
        const progress = recorder()
        const second = yield* lifecycle.deploy(def(health), { dryRun: false }, progress.sink)
        expect(progress.steps()).toContain("health done")
        expect(Option.getOrThrow(second).components[0]!.routes.find((r) => r.route === "admin")!.hostPort).toBe(admin)
      }))
    }))
})

describe("proxy routes", () => {
  it.live("an L7 route carries the certificate and key paths, an L4 route neither", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* control.addImage(DB_IMAGE)
        const status = Option.getOrThrow(yield* lifecycle.deploy(shop(), { dryRun: false }, noProgress))
        const port = (component: string, route?: string) =>
          status.components.find((c) => c.name === component)!.routes.find((r) => r.route === route)!.hostPort
        const certs = new Map((yield* peers.certs.live).map((c) => [c.hostname, c]))
        const routes = [...(yield* peers.proxy.list)].sort((a, b) => a.listener - b.listener)
        expect(routes).toStrictEqual([
          { listener: 5432, hostname: "shopdb.svc.mcp.internal", backend: `127.0.0.1:${port("db")}`, mode: "l4", backendTls: false, service: "shop" },
          {
            listener: 8443, hostname: "shop.svc.mcp.internal", backend: `127.0.0.1:${port("web")}`, mode: "l7", backendTls: false, service: "shop",
            tlsCert: certs.get("shop.svc.mcp.internal")!.certPath, tlsKey: certs.get("shop.svc.mcp.internal")!.keyPath
          },
          {
            listener: 9443, hostname: "shop.example.com", backend: `127.0.0.1:${port("web", "admin")}`, mode: "l7", backendTls: false, service: "shop",
            tlsCert: certs.get("shop.example.com")!.certPath, tlsKey: certs.get("shop.example.com")!.keyPath
          }
        ])
      }))
    }))
})

describe("a failed deploy", () => {
  it.live("reports the step and the peer's error, releases its ports, and records an event", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* peers.faults.arm("dns.put")
        const progress = recorder()
        const error = yield* Effect.flip(lifecycle.deploy(webService("web"), { dryRun: false }, progress.sink))
        const reason = "memory DNS: put web.svc.mcp.internal failed: injected fault"
        expect(failure(error)).toEqual({ service: "web", step: "dns", retryable: true, reason })
        expect(progress.steps()).toEqual([...ok(["pull", "ports", "certs", "containers", "health", "routes"]), "dns started", "dns failed"])
        expect(yield* registry.ports).toEqual([])
        expect(yield* deployEvents).toEqual([["deploy", "web", `deploy failed at dns: ${reason}`]])
      }))
    }))

  it.live("whose rollback also fails says so, and that the rest is retried while the agent runs and at its next start", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* peers.faults.arm("dns.put")
        // Every attempt (the first and 3 retries) at taking the new DNS name and route away fails.
        yield* peers.faults.arm("dns.remove", 4)
        yield* peers.faults.arm("proxy.remove", 4)
        const error = yield* Effect.flip(lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        const reason = "memory DNS: put web.svc.mcp.internal failed: injected fault; " +
          "rollback incomplete (dns: memory DNS: remove web.svc.mcp.internal failed: injected fault; " +
          "routes: memory proxy: remove failed: injected fault), it is retried every 10 s while the agent runs, and at its next start"
        expect(failure(error)).toEqual({ service: "web", step: "dns", retryable: true, reason })
        expect(yield* deployEvents).toEqual([["deploy", "web", `deploy failed at dns: ${reason}`]])
        // The saga stays open for the next start, but its ports are released now.
        expect(yield* registry.sagasIn("running")).toHaveLength(1)
        expect(yield* registry.ports).toEqual([])
      }))
    }))

  it.live("whose containers cannot be removed keeps their host ports reserved, names them in its error, and the next deploy releases them", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        const error = yield* deployLeavingItsContainer(peers, 4)
        const left = yield* control.containers
        expect(left.map((c) => c.info.state)).toEqual(["running"])
        const container = left[0]!.spec.name
        const held = left[0]!.spec.ports.map((p) => p.hostPort).sort((a, b) => a - b)
        expect(held).toContain(18080)
        // The container still publishes its host ports: they stay reserved, by the open saga.
        const [open] = yield* registry.sagasIn("running")
        expect((yield* registry.ports).map((p) => [p.port, p.service, p.sagaId])).toEqual(held.map((port) => [port, "web", open!.id]))
        const { reason, step } = failure(error)
        expect(step).toBe("dns")
        expect(reason).toContain(`container ${container} (host ports ${held.join(", ")})`)
        expect((error as Errors.DeployFailed).leftovers).toEqual([{ container, hostPorts: held }])
        expect((error as Errors.DeployFailed).message).toContain("rollback incomplete")
        // Another service cannot be given the explicit port meanwhile.
        const refused = yield* Effect.flip(lifecycle.deploy(withExplicitPort("other"), { dryRun: false }, noProgress))
        expect(failure(refused)).toMatchObject({ step: "ports", reason: expect.stringContaining("held by service web") })
        // The next deploy of web first finishes the rollback: the leftover goes, its ports with it.
        yield* lifecycle.deploy(withExplicitPort("web"), { dryRun: false }, noProgress)
        expect(yield* registry.sagasIn("running")).toEqual([])
        const now = yield* control.containers
        expect(now.map((c) => c.spec.name)).not.toContain(container)
        expect((yield* registry.ports).every((p) => p.sagaId === undefined)).toBe(true)
      }))
    }))

  it.live("whose containers cannot be removed has them removed and their ports released by the next retry round, once the engine removes again", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        // As if its Podman service were killed mid-rollback: the first retry round (its own try
        // and 3 retries) cannot remove the container either.
        yield* deployLeavingItsContainer(peers, 8)
        const container = (yield* control.containers)[0]!.spec.name
        expect(yield* registry.sagasIn("running")).toHaveLength(1)

        // Nothing else happens to the service: the agent's own rounds close the saga.
        yield* OpenWorkRetry.retryRound
        expect(yield* registry.sagasIn("running"), "the engine still refused").toHaveLength(1)
        yield* OpenWorkRetry.retryRound
        expect(yield* registry.sagasIn("running")).toEqual([])
        expect((yield* control.containers).map((c) => c.spec.name)).not.toContain(container)
        expect(yield* registry.ports).toEqual([])
        expect((yield* deployEvents).at(-1)).toEqual(["recover", "web", "rolled back an interrupted deploy"])
      }))
    }))

  it.live("whose containers cannot be removed has them removed and their ports released by an undeploy of the service", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        yield* deployLeavingItsContainer(peers, 4)
        expect(yield* control.containers).toHaveLength(1)
        expect(yield* registry.ports).toHaveLength(2)
        // The service was never committed, but the undeploy still finishes the rollback first.
        expect(yield* Effect.flip(lifecycle.undeploy("web"))).toBeInstanceOf(Errors.ServiceNotFound)
        expect(yield* control.containers).toEqual([])
        expect(yield* registry.ports).toEqual([])
        expect(yield* registry.sagasIn("running")).toEqual([])
      }))
    }))

  it.live("because the registry itself fails is reported at the step 'registry', without a rollback note", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        // The journal table disappears while pull runs: writing the step's end fails.
        const sink = (e: Deploy.DeployEvent) =>
          e._tag === "DeployStep" && e.step === "pull" && e.status === "started"
            ? Effect.orDie(Effect.asVoid(registry.sql`ALTER TABLE saga_steps RENAME TO lost_steps`))
            : Effect.void
        const error = yield* Effect.flip(lifecycle.deploy(webService("web"), { dryRun: false }, sink))
        expect(error).toBeInstanceOf(Errors.DeployFailed)
        const failed = error as Errors.DeployFailed
        expect([failed.service, failed.step]).toEqual(["web", "registry"])
        expect(failed.reason).not.toContain("rollback incomplete")
        expect(yield* deployEvents).toEqual([["deploy", "web", `deploy failed at registry: ${failed.reason}`]])
      }))
    }))

  it.live("when an earlier undeploy cannot be finished first is reported at the step 'undeploy'", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        yield* peers.faults.arm("dns.remove")
        yield* Effect.flip(lifecycle.undeploy("web"))
        yield* peers.faults.arm("dns.remove")
        const progress = recorder()
        const error = yield* Effect.flip(lifecycle.deploy(webService("web"), { dryRun: false }, progress.sink))
        expect(failure(error)).toEqual({
          service: "web",
          step: "undeploy",
          retryable: true,
          reason: "an earlier undeploy of web is unfinished and could not be finished now: memory DNS: remove web.svc.mcp.internal failed: injected fault"
        })
        expect(progress.events).toEqual([])
      }))
    }))
})

describe("a dry run with an undeploy left open", () => {
  it.live("leaves it open: planning finishes nothing, the service and its saga stay as they were", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        yield* peers.faults.arm("dns.remove")
        yield* Effect.flip(lifecycle.undeploy("web"))
        const before = yield* snapshot(peers)
        expect(before.running.map((s) => s.kind)).toEqual(["undeploy"])
        const planned = recorder()
        yield* lifecycle.deploy(webService("web"), { dryRun: true }, planned.sink)
        expect(planned.events.map((e) => e._tag)).toEqual(["DeployPlanned"])
        expect(yield* snapshot(peers)).toEqual(before)
      }))
    }))
})

describe("another service's hostname", () => {
  for (const [what, taker] of [
    // Same listener and hostname: the proxy route itself is taken.
    ["its route", webService("beta", "", "alpha.svc.mcp.internal")],
    // Another listener, same L7 hostname: the route is free, but the certificate belongs to alpha.
    ["its certificate", definition(`name = "beta"
[[components]]
name = "web"
image = "${IMAGE}"
[[components.routes]]
port = 9443
mode = "l7"
hostname = "alpha.svc.mcp.internal"
`)]
  ] as const) {
    it.live(`is refused before anything changes (${what}), in a dry run too`, () =>
      Effect.gen(function* () {
        const peers = yield* makePeers({ switchesTraffic: true })
        yield* withAgent(peers, Effect.gen(function* () {
          const lifecycle = yield* Lifecycle
          yield* lifecycle.deploy(webService("alpha"), { dryRun: false }, noProgress)
          const before = yield* snapshot(peers)
          const planned = recorder()
          const dry = failure(yield* Effect.flip(lifecycle.deploy(taker, { dryRun: true }, planned.sink)))
          expect(planned.events).toEqual([])
          const progress = recorder()
          const refused = failure(yield* Effect.flip(lifecycle.deploy(taker, { dryRun: false }, progress.sink)))
          expect(refused).toEqual(dry)
          expect({ service: refused.service, step: refused.step, retryable: refused.retryable }).toEqual({ service: "beta", step: "plan", retryable: false })
          expect(refused.reason).toContain(what === "its route" ? "alpha.svc.mcp.internal on listener 8443 is routed to service alpha" : "the certificate for alpha.svc.mcp.internal belongs to service alpha")
          expect(refused.reason).toContain("give beta another hostname, or undeploy the other service first")
          // Nothing ran: no step, no saga, alpha still served as it was; only the refusal is logged.
          expect(progress.steps()).toEqual([])
          const after = yield* snapshot(peers)
          expect({ ...after, events: [] }).toEqual({ ...before, events: [] })
          expect(after.events.slice(before.events.length).map((e) => [e.kind, e.service, e.message])).toEqual([["deploy", "beta", `deploy refused: ${refused.reason}`]])
        }))
      }))
  }
})

describe("a commit the registry refuses", () => {
  it.live("undoes every step: the new containers, routes, DNS name and certificate go, the old version keeps serving", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        const before = yield* snapshot(peers)
        // A disk that fills up at the commit: only the commit writes components.
        yield* registry.sql`CREATE TRIGGER full_disk BEFORE INSERT ON components BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END`
        const progress = recorder()
        // A new hostname: a new certificate, a new route and the old route dropped, all to undo.
        const refused = failure(yield* Effect.flip(lifecycle.deploy(webService("web", `env = ["V=2"]`, "web-new.svc.mcp.internal"), { dryRun: false }, progress.sink)))
        expect({ step: refused.step, service: refused.service }).toEqual({ step: "commit", service: "web" })
        expect(refused.reason).toContain("the registry refused to record the deploy")
        expect(refused.reason).not.toContain("rollback incomplete")
        expect(progress.steps()).toEqual(ok(["pull", "ports", "certs", "containers", "health", "routes", "dns"]))
        yield* registry.sql`DROP TRIGGER full_disk`
        const after = yield* snapshot(peers)
        // As before the deploy: the same containers, routes, DNS, certificates, ports; no saga open.
        expect({ ...after, events: [], committed: [] }).toEqual({ ...before, events: [], committed: [] })
        expect(after.running).toEqual([])
        expect(after.events.slice(before.events.length).map((e) => [e.kind, e.service, e.message])).toEqual([["deploy", "web", `deploy failed at commit: ${refused.reason}`]])
      }))
    }))
})

describe("commit", () => {
  it.live("records a 'deployed' event naming each component with its image version", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* control.addImage(DB_IMAGE)
        yield* lifecycle.deploy(shop(), { dryRun: false }, noProgress)
        expect(yield* deployEvents).toEqual([["deploy", "shop", "deployed web (v1), db (v7)"]])
      }))
    }))

  it.live("a cleanup of old containers that keeps failing leaves the deploy committed, logs, records an event, and the next start removes them", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      const file = freshFile()
      const warnings: Array<string> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Warning") warnings.push(String(Array.isArray(message) ? message.join(" ") : message))
      }))
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        // The first listing and its 4 retries fail.
        for (let i = 0; i < 5; i++) yield* control.failNext("list")
        const status = yield* lifecycle.deploy(webService("web", `env = ["V=2"]`), { dryRun: false }, noProgress)
        expect(Option.getOrThrow(status).components.map((c) => c.state)).toEqual(["running"])
        const cause = "container engine: list failed: injected fault (memory runtime)"
        expect(warnings).toEqual([`cleanup of web failed: ${cause}`])
        expect((yield* deployEvents).at(-1)).toEqual(["deploy", "web", `cleanup of old containers failed (retried at next start): ${cause}`])
        expect(yield* control.containers).toHaveLength(2)
        yield* lifecycle.resumeOpenWork
        const deployId = Option.getOrThrow(yield* registry.service("web")).deployId
        expect((yield* control.containers).map((c) => c.spec.labels[LABEL_DEPLOY])).toEqual([deployId])
      }).pipe(Effect.provide(capture)), file)
    }))
})

describe("status", () => {
  it.live("shows each component's image, version, running state, short container id, own routes, restarts and start time", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* control.addImage(DB_IMAGE)
        yield* lifecycle.deploy(shop(), { dryRun: false }, noProgress)
        const engine = new Map((yield* control.containers).map((c) => [c.spec.labels[LABEL_COMPONENT], c.info]))
        const status = yield* lifecycle.status("shop")
        const byListener = <R extends { readonly listener: number }>(rs: ReadonlyArray<R>) => [...rs].sort((a, b) => a.listener - b.listener)
        const ports = new Map(status.components.flatMap((c) => c.routes.map((r) => [r.listener, r.hostPort] as const)))
        expect({ ...status, components: status.components.map((c) => ({ ...c, routes: byListener(c.routes) })) }).toStrictEqual({
          service: "shop",
          node: "test-node",
          active: true,
          warnings: [],
          components: [
            {
              name: "db", image: DB_IMAGE, version: "v7", state: "running",
              containerId: engine.get("db")!.id.slice(0, 12),
              routes: [{ hostname: "shopdb.svc.mcp.internal", listener: 5432, mode: "l4", hostPort: ports.get(5432) }],
              restarts: 0, startedAt: engine.get("db")!.startedAt
            },
            {
              name: "web", image: IMAGE, version: "v1", state: "running",
              containerId: engine.get("web")!.id.slice(0, 12),
              routes: [
                { hostname: "shop.svc.mcp.internal", listener: 8443, mode: "l7", hostPort: ports.get(8443) },
                { route: "admin", hostname: "shop.example.com", listener: 9443, mode: "l7", hostPort: ports.get(9443) }
              ],
              restarts: 0, startedAt: engine.get("web")!.startedAt
            }
          ]
        })
        expect(status.components.map((c) => c.containerId!.length)).toEqual([12, 12])
        expect(status.components.every((c) => typeof c.startedAt === "string")).toBe(true)
      }))
    }))

  it.live("maps the engine's state: exited is stopped, created is starting, absent is missing (no id, no start time)", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const runtime = yield* ContainerRuntime
        const control = yield* MemoryRuntimeControl
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        const [row] = yield* registry.components("web")
        const view = Effect.map(lifecycle.status("web"), (s) => {
          const { routes: _routes, ...rest } = s.components[0]!
          return rest
        })

        yield* control.exit(row!.spec.name, 1)
        const [exited] = yield* control.containers
        expect(yield* view).toStrictEqual({
          name: "web", image: IMAGE, version: "v1", state: "stopped", containerId: exited!.info.id.slice(0, 12), restarts: 0, startedAt: exited!.info.startedAt
        })

        // Recreated but never started: no start time yet.
        yield* runtime.remove(row!.spec.name)
        const id = yield* runtime.create(row!.spec)
        expect(yield* view).toStrictEqual({ name: "web", image: IMAGE, version: "v1", state: "starting", containerId: id.slice(0, 12), restarts: 0 })

        yield* runtime.remove(row!.spec.name)
        expect(yield* view).toStrictEqual({ name: "web", image: IMAGE, version: "v1", state: "missing", restarts: 0 })
      }))
    }))

  it.live("counts restarts by the agent and by the engine together", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const control = yield* MemoryRuntimeControl
        yield* lifecycle.deploy(webService("web", `restart = "always"`), { dryRun: false }, noProgress)
        const [c] = yield* control.containers
        // The engine brings the crashed process back (restartCount 1); the agent restarts it once.
        yield* control.exit(c!.info.id, 1)
        yield* lifecycle.restart("web")
        const status = yield* lifecycle.status("web")
        expect(status.components.map((x) => [x.state, x.restarts])).toEqual([["running", 2]])
      }))
    }))
  it.live("ps over a failing registry is a defect, logged as a failure of the agent registry", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const errors: Array<string> = []
      const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ logLevel, message }) => {
        if (logLevel._tag === "Error") errors.push(String(Array.isArray(message) ? message[0] : message))
      }))
      yield* withAgent(peers, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress)
        yield* registry.sql`ALTER TABLE components RENAME TO lost_components`
        const exit = yield* Effect.exit(lifecycle.ps)
        expect(Exit.isFailure(exit) && Cause.isDie(exit.cause)).toBe(true)
        expect(errors).toEqual(["the agent registry failed; the request cannot complete"])
      }).pipe(Effect.provide(capture)))
    }))
})
