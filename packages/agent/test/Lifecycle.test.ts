import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Effect, Fiber, Option } from "effect"
import { mkdtempSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime, LABEL_DEPLOY } from "../src/engine/ContainerRuntime.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import { MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { Registry } from "../src/registry/Registry.js"
import { layerAgent, makePeers, type Peers, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-lifecycle-")), "registry.db")
const noProgress = () => Effect.void

const withAgent = <A, E>(peers: Peers, file: string, body: Effect.Effect<A, E, Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl>) =>
  Effect.scoped(Effect.provide(body, layerAgent(peers, file)))

/** An http server on an ephemeral port of 127.0.0.1 that answers 500 to everything. */
const failingHttpServer = Effect.acquireRelease(
  Effect.async<http.Server>((resume) => {
    const server = http.createServer((_req, res) => void res.writeHead(500).end("broken"))
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
  }),
  (server) => Effect.async<void>((resume) => {
    server.closeAllConnections()
    server.close(() => resume(Effect.void))
  })
)

type FailingCheck = "tcp" | "http 500" | "http, nothing listening" | "exec"
const failingChecks: ReadonlyArray<FailingCheck> = ["tcp", "http 500", "http, nothing listening", "exec"]

/** A `[components.health]` table (for `webService`'s extra) with tiny intervals. */
const healthTable = (kind: FailingCheck, options: { readonly port?: number; readonly interval?: string; readonly retries?: number } = {}) =>
  [
    // A checked port must be one the component publishes (the definition refuses any other).
    ...(options.port === undefined ? [] : [`ports = ["127.0.0.1:${options.port}:${options.port}"]`]),
    "[components.health]",
    `kind = "${kind.startsWith("http") ? "http" : kind}"`,
    ...(kind.startsWith("http") ? [`path = "/healthz"`] : []),
    ...(kind === "exec" ? [`command = ["cat", "/tmp/ready"]`] : []),
    ...(options.port === undefined ? [] : [`port = ${options.port}`]),
    `interval = "${options.interval ?? "30ms"}"`,
    `timeout = "200ms"`,
    `retries = ${options.retries ?? 2}`
  ].join("\n")

/** What a failed deploy must leave as it found it: registry, engine, proxy, DNS and CA. */
const snapshot = (peers: Peers) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const control = yield* MemoryRuntimeControl
    return {
      services: (yield* registry.services).map((s) => [s.name, s.deployId, s.active, JSON.stringify(s.definition)]),
      components: (yield* registry.allComponents).map((c) => [c.service, c.name, c.spec.name]),
      ports: yield* registry.ports,
      containers: (yield* control.containers).map((c) => [c.spec.name, c.spec.labels[LABEL_DEPLOY], c.info.state]),
      routes: yield* peers.proxy.list,
      dns: [...(yield* peers.dns.list).entries()],
      certs: (yield* peers.certs.live).map((c) => [c.hostname, c.serial])
    }
  })

/** Deploys `def`, expecting it to fail at the health step, before any route changes; returns the error. */
const deployFailingHealth = (def: ReturnType<typeof webService>) =>
  Effect.gen(function* () {
    const lifecycle = yield* Lifecycle
    const steps: Array<string> = []
    const error = yield* Effect.flip(lifecycle.deploy(def, { dryRun: false }, (e) => Effect.sync(() => {
      if (e._tag === "DeployStep") steps.push(`${e.step} ${e.status}`)
    })))
    expect(error).toBeInstanceOf(Errors.DeployFailed)
    const failed = error as Errors.DeployFailed
    expect(failed.step).toBe("health")
    expect(failed.reason).toMatch(/^component web failed its (tcp|http \/healthz|exec cat \/tmp\/ready) check: /)
    expect(steps).toContain("containers done")
    expect(steps).toContain("health failed")
    expect(steps).not.toContain("routes started")
    return failed
  })

describe("lifecycle over memory adapters", () => {
  it.live("deploy records ports, routes, DNS and a running container; redeploy keeps the port; undeploy releases all", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      yield* withAgent(peers, file, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        const status = Option.getOrThrow(yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        expect(status.components[0]!.state).toBe("running")
        const port = status.components[0]!.routes[0]!.hostPort
        const containers = yield* control.containers
        expect(containers).toHaveLength(1)
        expect(containers[0]!.spec.env).toContain(`PORT=${port}`)
        expect((yield* peers.proxy.list).map((r) => [r.hostname, r.backend])).toEqual([["web.svc.mcp.internal", `127.0.0.1:${port}`]])
        expect([...(yield* peers.dns.list).entries()]).toEqual([["web.svc.mcp.internal", "10.0.0.5"]])
        expect(yield* peers.certs.live).toHaveLength(1)

        const again = Option.getOrThrow(yield* lifecycle.deploy(webService("web", `env = ["A=1"]`), { dryRun: false }, noProgress))
        expect(again.components[0]!.routes[0]!.hostPort).toBe(port)
        expect(yield* control.containers).toHaveLength(1)
        expect(yield* peers.certs.live).toHaveLength(1) // reused: still valid for > 30 days

        yield* lifecycle.undeploy("web")
        expect(yield* control.containers).toHaveLength(0)
        expect(yield* registry.ports).toHaveLength(0)
        expect(yield* peers.proxy.list).toHaveLength(0)
        expect((yield* peers.dns.list).size).toBe(0)
        expect(yield* peers.certs.live).toHaveLength(0)
      }))
    }))

  it.live("a failure at any step rolls everything back and keeps the old version serving", () =>
    Effect.gen(function* () {
      for (const fault of ["cert.issue", "proxy.put", "dns.put"]) {
        const peers = yield* makePeers({ switchesTraffic: true })
        yield* withAgent(peers, freshFile(), Effect.gen(function* () {
          const lifecycle = yield* Lifecycle
          const registry = yield* Registry
          const control = yield* MemoryRuntimeControl
          const first = Option.getOrThrow(yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
          const firstDeploy = Option.getOrThrow(yield* registry.service("web")).deployId
          const [firstContainer] = yield* control.containers
          expect(firstContainer!.info.id.slice(0, 12)).toBe(first.components[0]!.containerId)
          const routesBefore = yield* peers.proxy.list
          yield* peers.faults.arm(fault)
          // A new hostname forces a new certificate, so every fault point is reached.
          const error = yield* Effect.flip(lifecycle.deploy(webService("web", `env = ["V=2"]`, "web2.svc.mcp.internal"), { dryRun: false }, noProgress))
          expect(error._tag, fault).toBe("DeployFailed")
          expect(yield* peers.proxy.list).toEqual(routesBefore)
          const containers = yield* control.containers
          expect(containers.map((c) => c.info.state)).toEqual(["running"])
          // The proxy steers traffic (blue-green): the old container was never touched and still serves.
          expect(containers.map((c) => [c.info.id, c.spec.labels[LABEL_DEPLOY]])).toEqual([[firstContainer!.info.id, firstDeploy]])
          expect(Option.getOrThrow(yield* registry.service("web")).deployId).toBe(firstDeploy)
          expect((yield* registry.ports).map((p) => p.port)).toEqual([first.components[0]!.routes[0]!.hostPort])
          expect(yield* peers.certs.live).toHaveLength(1)
          expect((yield* registry.sagasIn("running"))).toHaveLength(0)
        }))
      }
    }))

  it.scopedLive("a health check that never passes (tcp, http 500, http with nothing listening, exec) fails the deploy at health and rolls it back", () =>
    Effect.gen(function* () {
      const broken = yield* failingHttpServer
      const brokenPort = (broken.address() as AddressInfo).port
      for (const switchesTraffic of [false, true]) {
        for (const kind of failingChecks) {
          const peers = yield* makePeers({ switchesTraffic })
          const label = `${kind}, switchesTraffic ${switchesTraffic}`
          yield* withAgent(peers, freshFile(), Effect.gen(function* () {
            const lifecycle = yield* Lifecycle
            const registry = yield* Registry
            const control = yield* MemoryRuntimeControl
            // (The memory runtime listens on nothing; an exec check answers exit 1.)
            yield* control.scriptExec(() => ({ exitCode: 1, output: "cat: can't open '/tmp/ready'" }))
            const health = healthTable(kind, kind === "http 500" ? { port: brokenPort } : {})
            const empty = yield* snapshot(peers)

            // A new service: nothing of it stays.
            const fresh = yield* deployFailingHealth(webService("web", health))
            if (kind === "http 500") expect(fresh.reason, label).toContain("answered HTTP 500")
            if (kind === "exec") expect(fresh.reason, label).toContain("exited 1")
            expect(yield* snapshot(peers), label).toEqual(empty)
            expect(yield* control.containers, label).toEqual([])
            expect(yield* registry.ports, label).toEqual([])
            expect(yield* registry.services, label).toEqual([])
            expect(yield* registry.sagasIn("running"), label).toEqual([])

            // A redeploy (new hostname, so a new certificate, route and DNS name): the old version keeps serving.
            const first = Option.getOrThrow(yield* lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
            const firstDeploy = Option.getOrThrow(yield* registry.service("web")).deployId
            const [oldContainer] = yield* control.containers
            const before = yield* snapshot(peers)
            yield* deployFailingHealth(webService("web", `env = ["V=2"]\n${health}`, "web2.svc.mcp.internal"))
            expect(yield* snapshot(peers), label).toEqual(before)
            expect(yield* registry.sagasIn("running"), label).toEqual([])
            expect((yield* registry.ports).filter((p) => p.sagaId !== undefined), label).toEqual([])
            const containers = yield* control.containers
            expect(containers.map((c) => [c.spec.labels[LABEL_DEPLOY], c.info.state]), label).toEqual([[firstDeploy, "running"]])
            // Blue-green leaves the old container alone; in place, the rollback recreates it from its recorded spec.
            if (switchesTraffic) expect(containers[0]!.info.id, label).toBe(oldContainer!.info.id)
            const after = yield* lifecycle.status("web")
            expect(after.components.map((c) => [c.state, c.routes[0]!.hostPort]), label).toEqual([["running", first.components[0]!.routes[0]!.hostPort]])
          }))
        }
      }
    }))

  it.live("a health check that passes after a few failed attempts lets the deploy through", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* withAgent(peers, freshFile(), Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        let attempts = 0
        yield* control.scriptExec(() => ({ exitCode: ++attempts <= 3 ? 1 : 0, output: "" }))
        const status = Option.getOrThrow(
          yield* lifecycle.deploy(webService("web", healthTable("exec", { interval: "500ms", retries: 3 })), { dryRun: false }, noProgress)
        )
        expect(attempts).toBe(4)
        expect(status.components.map((c) => c.state)).toEqual(["running"])
        expect((yield* peers.proxy.list).map((r) => r.hostname)).toEqual(["web.svc.mcp.internal"])
        expect(yield* registry.sagasIn("running")).toEqual([])
      }))
    }))

  it.live("a health check still failing after retries × interval fails the deploy, after retrying", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      yield* withAgent(peers, freshFile(), Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        const started = Date.now()
        let attempts = 0
        // It would pass, but only well after the gate's 2 × 50 ms.
        yield* control.scriptExec(() => ({ exitCode: ++attempts > 1_000 || Date.now() - started > 2_000 ? 0 : 1, output: "" }))
        yield* deployFailingHealth(webService("web", healthTable("exec", { interval: "50ms", retries: 2 })))
        expect(attempts).toBeGreaterThan(2)
        expect(Date.now() - started).toBeGreaterThanOrEqual(90)
        expect(yield* control.containers).toEqual([])
      }))
    }))

  it.live("an interrupted deploy is rolled back when the agent starts again", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers({ switchesTraffic: false })
      const file = freshFile()
      // First run: the deploy is cut off while it waits on the proxy (the agent dies).
      yield* withAgent(peers, file, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const original = peers.proxy.put
        const blocked = yield* Effect.makeLatch(false)
        const mutable = peers.proxy as { put: typeof original }
        mutable.put = () => Effect.zipRight(blocked.open, Effect.never)
        const fiber = yield* Effect.fork(lifecycle.deploy(webService("web"), { dryRun: false }, noProgress))
        yield* blocked.await
        yield* Fiber.interrupt(fiber)
        mutable.put = original
      }))
      yield* withAgent(peers, file, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        expect((yield* registry.sagasIn("running")).length).toBe(1)
        yield* lifecycle.resumeOpenWork
        expect(yield* registry.sagasIn("running")).toHaveLength(0)
        expect(yield* control.containers).toHaveLength(0)
        expect(yield* registry.ports).toHaveLength(0)
        expect(yield* peers.certs.live).toHaveLength(0)
        expect(yield* registry.services).toHaveLength(0)
      }))
    }))
})
