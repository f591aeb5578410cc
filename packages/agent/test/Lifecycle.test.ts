import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime } from "../src/ContainerRuntime.js"
import { Lifecycle } from "../src/Lifecycle.js"
import { MemoryRuntimeControl } from "../src/MemoryRuntime.js"
import { Registry } from "../src/Registry.js"
import { layerAgent, makePeers, type Peers, webService } from "./Harness.js"

const freshFile = () => join(mkdtempSync(join(tmpdir(), "mcp-lifecycle-")), "registry.db")
const noProgress = () => Effect.void

const withAgent = <A, E>(peers: Peers, file: string, body: Effect.Effect<A, E, Lifecycle | Registry | ContainerRuntime | MemoryRuntimeControl>) =>
  Effect.scoped(Effect.provide(body, layerAgent(peers, file)))

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
          const routesBefore = yield* peers.proxy.list
          yield* peers.faults.arm(fault)
          // A new hostname forces a new certificate, so every fault point is reached.
          const error = yield* Effect.flip(lifecycle.deploy(webService("web", `env = ["V=2"]`, "web2.svc.mcp.internal"), { dryRun: false }, noProgress))
          expect(error._tag, fault).toBe("DeployFailed")
          expect(yield* peers.proxy.list).toEqual(routesBefore)
          const containers = yield* control.containers
          expect(containers.map((c) => c.info.state)).toEqual(["running"])
          expect(containers[0]!.spec.name).toBe(first.components[0]!.containerId === undefined ? "" : containers[0]!.spec.name)
          expect((yield* registry.ports).map((p) => p.port)).toEqual([first.components[0]!.routes[0]!.hostPort])
          expect(yield* peers.certs.live).toHaveLength(1)
          expect((yield* registry.sagasIn("running"))).toHaveLength(0)
        }))
      }
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
