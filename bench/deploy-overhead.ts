/**
 * bench/deploy-overhead: how much the control plane adds to starting a container.
 *
 * A: Deploy of one cached-image component with one route through the agent RPC (HTTPS, auth,
 *    actor, journaled saga, registry commit), with memory proxy/CA/DNS adapters and real Podman.
 * B: the same container created and started directly through the engine API.
 * Prints the median of N runs of each and the ratio A/B, measured in one run.
 *
 *   node --import tsx bench/deploy-overhead.ts [N=15]
 */
import { NodeContext } from "@effect/platform-node"
import { Principal } from "@mcp/rpc/Principal"
import * as Authenticator from "@mcp/rpc/Authenticator"
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import { AgentRpcs } from "@mcp/rpc/Contracts"
import * as Pki from "@mcp/rpc/Pki"
import * as Transport from "@mcp/rpc/Transport"
import { HttpServer } from "@effect/platform"
import { Effect, Layer, Redacted, Stream } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AgentHandlers from "../packages/agent/src/AgentHandlers.js"
import { BootSequencer } from "../packages/agent/src/BootSequencer.js"
import * as CertIssuer from "../packages/agent/src/CertIssuer.js"
import { ContainerRuntime } from "../packages/agent/src/ContainerRuntime.js"
import { NodeSettings } from "../packages/agent/src/ContainerPlan.js"
import * as DnsRecords from "../packages/agent/src/DnsRecords.js"
import * as DockerRuntime from "../packages/agent/src/DockerRuntime.js"
import { Lifecycle } from "../packages/agent/src/Lifecycle.js"
import * as PortAllocator from "../packages/agent/src/PortAllocator.js"
import * as ProxyRoutes from "../packages/agent/src/ProxyRoutes.js"
import { layerSqlite, Registry } from "../packages/agent/src/Registry.js"
import { ServiceActors } from "../packages/agent/src/ServiceActors.js"
import { BUSYBOX_IMAGE, startPodmanService } from "../test/support/Podman.js"

const N = Number(process.argv[2] ?? 15)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
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
        Layer.succeed(NodeSettings, { node: "bench", nodeAddress: "127.0.0.1", internalZone: "svc.mcp.internal", bindAddress: "127.0.0.1", imageRegistry: "localhost", stopTimeoutSeconds: 1 })
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
      const viaAgent: Array<number> = []
      const direct: Array<number> = []
      // One untimed round of each first: connections, JIT and engine caches warm up.
      for (let i = -1; i < N; i++) {
        const name = `bench-${i + 1}`
        const definition = { name, components: [{ name: "web", image: BUSYBOX_IMAGE, cmd, routes: [{ port: 8443, mode: "l7" }] }] }
        const t0 = performance.now()
        yield* Stream.runDrain(client.Deploy({ definition, dryRun: false }))
        if (i >= 0) viaAgent.push(performance.now() - t0)
        yield* client.Undeploy({ service: name as never })

        const hostPort = 30000 + i + 1
        const t1 = performance.now()
        const id = yield* runtime.create({
          name: `bench-direct-${i + 1}-${Date.now()}`, image: BUSYBOX_IMAGE, cmd, env: [`PORT=${hostPort}`], volumes: [],
          ports: [{ hostIp: "127.0.0.1", hostPort, containerPort: hostPort, protocol: "tcp" }],
          network: undefined, user: undefined, restart: undefined, labels: { "mcp.bench": "direct" }
        })
        yield* runtime.start(id)
        if (i >= 0) direct.push(performance.now() - t1)
        yield* runtime.remove(id)
      }
      const a = median(viaAgent)
      const b = median(direct)
      console.log(`deploy-overhead (N=${N}, real Podman, memory proxy/CA/DNS adapters)`)
      console.log(`  agent RPC deploy   median ${a.toFixed(1)} ms   (min ${Math.min(...viaAgent).toFixed(1)}, max ${Math.max(...viaAgent).toFixed(1)})`)
      console.log(`  engine create+start median ${b.toFixed(1)} ms   (min ${Math.min(...direct).toFixed(1)}, max ${Math.max(...direct).toFixed(1)})`)
      console.log(`  ratio agent/engine  ${(a / b).toFixed(2)}   (goal <= 1.5)`)
    }).pipe(Effect.provide(server), Effect.provide(core))
  }).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const podman = await startPodmanService()
try {
  await Effect.runPromise(main(podman.socketPath, mkdtempSync(join(tmpdir(), "mcp-bench-"))))
} finally {
  await podman.stop()
}
