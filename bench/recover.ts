/**
 * bench/recover: what the agent's Recover adds to recreating lost containers.
 *
 * For each K: K one-component services (cached local image, one route each) are deployed through
 * an in-process agent (HTTPS RPC, real Podman, record-only proxy, memory CA, no DNS), then all
 * their containers are removed through the engine API and `Recover` is timed over the RPC.
 * For comparison the same K recorded container specs are created and started directly through
 * the engine API, one after another, and the per-container times summed. Recover is sequential
 * too: services one after another (each in its actor), components one after another.
 *
 *   node --import tsx bench/recover.ts [K...]      (default: 10 50)
 */
import { HttpServer } from "@effect/platform"
import { NodeContext } from "@effect/platform-node"
import * as Authenticator from "@mcp/rpc/Authenticator"
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import { AgentRpcs } from "@mcp/rpc/Contracts"
import * as Pki from "@mcp/rpc/Pki"
import { Principal } from "@mcp/rpc/Principal"
import * as Transport from "@mcp/rpc/Transport"
import { Effect, Layer, Redacted, Stream } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AgentHandlers from "../packages/agent/src/AgentHandlers.js"
import { BootSequencer } from "../packages/agent/src/BootSequencer.js"
import * as CertIssuer from "../packages/agent/src/CertIssuer.js"
import { ContainerRuntime, LABEL_NODE } from "../packages/agent/src/ContainerRuntime.js"
import { NodeSettings } from "../packages/agent/src/ContainerPlan.js"
import * as DnsRecords from "../packages/agent/src/DnsRecords.js"
import * as DockerRuntime from "../packages/agent/src/DockerRuntime.js"
import { Lifecycle } from "../packages/agent/src/Lifecycle.js"
import * as PortAllocator from "../packages/agent/src/PortAllocator.js"
import * as ProxyRoutes from "../packages/agent/src/ProxyRoutes.js"
import { layerSqlite, Registry } from "../packages/agent/src/Registry.js"
import { ServiceActors } from "../packages/agent/src/ServiceActors.js"
import { BUSYBOX_IMAGE, startPodmanService } from "../test/support/Podman.js"

const KS = process.argv.slice(2).map(Number).filter((k) => Number.isInteger(k) && k > 0)
const sizes = KS.length > 0 ? KS : [10, 50]
const NODE = `bench-recover-${process.pid}`
const cmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]

const main = (socketPath: string, dir: string) =>
  Effect.gen(function* () {
    yield* Pki.initCa(join(dir, "ca"))
    yield* Pki.issueCertificate(join(dir, "ca"), "agent", { ips: ["127.0.0.1"], dns: [], usage: "server" })
    const ca = readFileSync(join(dir, "ca", "ca.crt"), "utf8")
    const token = "bench-token"

    const lifecycle = Layer.mergeAll(Lifecycle.Default.pipe(Layer.provide(PortAllocator.layer({ min: 20000, max: 60000 }))), ServiceActors.Default)
    const core = Layer.mergeAll(BootSequencer.Default, lifecycle).pipe(
      Layer.provideMerge(lifecycle),
      Layer.provideMerge(Layer.mergeAll(
        DockerRuntime.layerSocket(socketPath),
        ProxyRoutes.layerRecordOnly,
        CertIssuer.layerMemory(),
        DnsRecords.layerNone,
        Layer.succeed(NodeSettings, { node: NODE, nodeAddress: "127.0.0.1", internalZone: "svc.mcp.internal", bindAddress: "127.0.0.1", imageRegistry: "localhost", stopTimeoutSeconds: 1 })
      )),
      Layer.provideMerge(Registry.Default.pipe(Layer.provideMerge(layerSqlite(join(dir, "registry.db")))))
    )
    const server = Transport.layerServer(
      { host: "127.0.0.1", port: 0, tls: { cert: readFileSync(join(dir, "ca", "agent.crt"), "utf8"), key: Redacted.make(readFileSync(join(dir, "ca", "agent.key"), "utf8")), ca, clientAuth: false } },
      [Transport.route("/agent", AgentRpcs)]
    ).pipe(Layer.provide(Layer.mergeAll(
      AgentHandlers.layer({ role: "worker", addresses: [], version: "bench", dataDir: dir }),
      AuthMiddleware.layerServer({ guestMayRead: false }).pipe(Layer.provide(Authenticator.layerMemory(new Map([[token, new Principal({ name: "bench", kind: "system", role: "admin" })]]))))
    )))

    return yield* Effect.gen(function* () {
      const address = (yield* HttpServer.HttpServer).address
      const port = address._tag === "TcpAddress" ? address.port : 0
      const client = yield* Transport.makeClient(AgentRpcs, { url: `https://127.0.0.1:${port}/agent`, ca, token: Redacted.make(token) })
      const runtime = yield* ContainerRuntime
      const registry = yield* Registry

      const removeAll = Effect.flatMap(runtime.list({ [LABEL_NODE]: NODE }), (cs) => Effect.forEach(cs, (c) => runtime.remove(c.id), { discard: true }))

      /** Deploys K services, removes their containers, times Recover, then times bare create+start of the same specs. */
      const round = (k: number, tag: string) =>
        Effect.gen(function* () {
          const names = Array.from({ length: k }, (_, i) => `rb-${tag}-${i}`)
          yield* Effect.forEach(names, (name) =>
            Stream.runDrain(client.Deploy({ definition: { name, components: [{ name: "web", image: BUSYBOX_IMAGE, cmd, routes: [{ port: 8443, mode: "l7" }] }] }, dryRun: false })),
            { concurrency: 4, discard: true })
          const specs = (yield* registry.allComponents).filter((c) => names.includes(c.service)).map((c) => c.spec)
          if (specs.length !== k) return yield* Effect.dieMessage(`expected ${k} recorded components, found ${specs.length}`)

          yield* removeAll
          const t0 = performance.now()
          const report = yield* client.Recover({ force: false })
          const recoverMs = performance.now() - t0
          const recreated = report.actions.filter((a) => a.action === "recreated").length
          if (recreated !== k) return yield* Effect.dieMessage(`recover recreated ${recreated} of ${k}: ${JSON.stringify(report.actions.filter((a) => a.action !== "recreated"))}`)

          // The same specs, straight to the engine (the recreated ones go first: same host ports).
          yield* removeAll
          let bareMs = 0
          for (const spec of specs) {
            const t1 = performance.now()
            const id = yield* runtime.create({ ...spec, name: `${spec.name}-bare` })
            yield* runtime.start(id)
            bareMs += performance.now() - t1
          }
          yield* removeAll
          yield* Effect.forEach(names, (name) => client.Undeploy({ service: name as never }), { discard: true })
          return { recoverMs, bareMs }
        })

      yield* round(2, "warm") // untimed: connections, JIT and engine caches
      const rows: Array<string> = []
      for (const k of sizes) {
        const { recoverMs, bareMs } = yield* round(k, String(k))
        rows.push(`${String(k).padStart(4)}  ${recoverMs.toFixed(0).padStart(10)}  ${bareMs.toFixed(0).padStart(18)}  ${(recoverMs / bareMs).toFixed(2).padStart(6)}`)
      }
      console.log(`   K  recover_ms  bare_create+start_ms   ratio`)
      for (const r of rows) console.log(r)
    }).pipe(
      Effect.ensuring(Effect.flatMap(ContainerRuntime, (runtime) =>
        Effect.flatMap(runtime.list({ [LABEL_NODE]: NODE }), (cs) => Effect.forEach(cs, (c) => runtime.remove(c.id), { discard: true }))
      ).pipe(Effect.ignore)),
      Effect.provide(server),
      Effect.provide(core)
    )
  }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const podman = await startPodmanService()
const dir = mkdtempSync(join(tmpdir(), "mcp-bench-recover-"))
try {
  await Effect.runPromise(main(podman.socketPath, dir))
} finally {
  await podman.stop()
  rmSync(dir, { recursive: true, force: true })
}
