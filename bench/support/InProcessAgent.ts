/**
 * An agent in the bench process over real Podman, served over real HTTPS RPC, with memory
 * proxy/CA/DNS adapters: what the benchmarks drive, and a client for it.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import * as Authenticator from "@mcp/rpc/Authenticator"
import * as AuthMiddleware from "@mcp/rpc/AuthMiddleware"
import { AgentRpcs } from "@mcp/rpc/Contracts"
import * as Pki from "@mcp/rpc/Pki"
import { Principal } from "@mcp/rpc/Principal"
import * as Transport from "@mcp/rpc/Transport"
import { Effect, Layer, Redacted } from "effect"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import * as AgentHandlers from "../../packages/agent/src/daemon/AgentHandlers.js"
import * as FleetPolicy from "../../packages/agent/src/daemon/FleetPolicy.js"
import { BootSequencer } from "../../packages/agent/src/boot/BootSequencer.js"
import * as CertIssuer from "../../packages/agent/src/certs/CertIssuer.js"
import type { ContainerRuntime } from "../../packages/agent/src/engine/ContainerRuntime.js"
import { NodeSettings } from "../../packages/agent/src/NodeSettings.js"
import * as DnsRecords from "../../packages/agent/src/dns/DnsRecords.js"
import * as DockerRuntime from "../../packages/agent/src/engine/DockerRuntime.js"
import * as EdgeRoutes from "../../packages/agent/src/edge/EdgeRoutes.js"
import { Lifecycle } from "../../packages/agent/src/lifecycle/Lifecycle.js"
import * as PortAllocator from "../../packages/agent/src/lifecycle/PortAllocator.js"
import * as ProxyRoutes from "../../packages/agent/src/proxy/ProxyRoutes.js"
import { layerSqlite, Registry } from "../../packages/agent/src/registry/Registry.js"
import { ServiceActors } from "../../packages/agent/src/lifecycle/ServiceActors.js"


/** Runs `body` with a client of an agent for `node`, whose data lives in `dir`. */
export const run = <A, E>(
  options: { readonly socketPath: string; readonly dir: string; readonly node: string },
  body: (client: Effect.Effect.Success<ReturnType<typeof connect>>) => Effect.Effect<A, E, ContainerRuntime | Registry>
) =>
  Effect.gen(function* () {
    const { dir } = options
    yield* Pki.initCa(join(dir, "ca"))
    yield* Pki.issueCertificate(join(dir, "ca"), "agent", { ips: ["127.0.0.1"], dns: [], usage: "server" })
    const ca = readFileSync(join(dir, "ca", "ca.crt"), "utf8")

    const lifecycle = Layer.mergeAll(Lifecycle.Default.pipe(Layer.provide(PortAllocator.layer({ min: 20000, max: 60000 }))), ServiceActors.Default)
    // The bench agent is a worker: its edge routes refuse setups, as a real worker's do.
    const edge = EdgeRoutes.layer({ role: "worker", listener: 443 })
    const core = Layer.mergeAll(BootSequencer.Default, lifecycle, edge).pipe(
      Layer.provideMerge(lifecycle),
      Layer.provideMerge(Layer.mergeAll(
        DockerRuntime.layerSocket(options.socketPath),
        ProxyRoutes.layerRecordOnly,
        CertIssuer.layerMemory(),
        DnsRecords.layerNone,
        FleetPolicy.layer(),
        Layer.succeed(NodeSettings, { node: options.node, nodeAddress: "127.0.0.1", internalZone: "svc.mcp.internal", bindAddress: "127.0.0.1", imageRegistry: "localhost", stopTimeoutSeconds: 1, dataDir: dir })
      )),
      Layer.provideMerge(Registry.Default.pipe(Layer.provideMerge(layerSqlite(join(dir, "registry.db"))))),
      // Health checks and boot checks probe over HTTP.
      Layer.provide(NodeHttpClient.layerUndici)
    )
    const server = Transport.layerServer(
      { host: "127.0.0.1", port: 0, tls: { cert: readFileSync(join(dir, "ca", "agent.crt"), "utf8"), key: Redacted.make(readFileSync(join(dir, "ca", "agent.key"), "utf8")), ca, clientAuth: false } },
      [Transport.route("/agent", AgentRpcs)]
    ).pipe(Layer.provide(Layer.mergeAll(
      AgentHandlers.layer({ role: "worker", addresses: [], nodeAddress: "127.0.0.1", version: "bench", dataDir: dir }),
      AuthMiddleware.layerServer({ guestMayRead: false }).pipe(Layer.provide(Authenticator.layerMemory(new Map([[TOKEN, new Principal({ name: "bench", kind: "system", role: "admin" })]]))))
    )))

    return yield* Effect.flatMap(connect(ca), body).pipe(Effect.provide(server), Effect.provide(core))
  })

const TOKEN = "bench-token"

const connect = (ca: string) =>
  Effect.gen(function* () {
    const address = (yield* HttpServer.HttpServer).address
    const port = address._tag === "TcpAddress" ? address.port : 0
    return yield* Transport.makeClient(AgentRpcs, { url: `https://127.0.0.1:${port}/agent`, ca, token: Redacted.make(TOKEN) })
  })
