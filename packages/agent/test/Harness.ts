/**
 * An agent core over memory adapters and an in-memory SQLite registry, for tests of the
 * agent's own logic (sagas, actors, invariants). Fault hooks reach every port.
 */
import { Validation } from "@mcp/domain"
import { Context, Effect, Either, Layer } from "effect"
import { tmpdir } from "node:os"
import { dirname } from "node:path"
import * as CertIssuer from "../src/certs/CertIssuer.js"
import { ContainerRuntime } from "../src/engine/ContainerRuntime.js"
import { NodeSettings } from "../src/NodeSettings.js"
import * as DnsRecords from "../src/dns/DnsRecords.js"
import { type Faults, makeFaults } from "../src/Faults.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import * as MemoryRuntime from "../src/engine/MemoryRuntime.js"
import * as PortAllocator from "../src/lifecycle/PortAllocator.js"
import { layerPlatform } from "./Platform.js"
import * as ProxyRoutes from "../src/proxy/ProxyRoutes.js"
import { layerSqlite, Registry } from "../src/registry/Registry.js"
import { ServiceActors } from "../src/lifecycle/ServiceActors.js"

export const IMAGE = "localhost/mcp-busybox:v1"

export const settings: NodeSettings = {
  node: "test-node",
  nodeAddress: "10.0.0.5",
  internalZone: "svc.mcp.internal",
  bindAddress: "127.0.0.1",
  imageRegistry: "localhost",
  stopTimeoutSeconds: 1,
  dataDir: tmpdir()
}

/** The peers outlive an agent: a "restart" builds a new core over the same ones. */
export interface Peers {
  readonly faults: Faults
  readonly runtime: Layer.Layer<ContainerRuntime | MemoryRuntime.MemoryRuntimeControl>
  readonly proxy: ProxyRoutes.ProxyRoutes
  readonly certs: Effect.Effect.Success<ReturnType<typeof CertIssuer.makeMemory>>
  readonly dns: DnsRecords.DnsRecords
}

export const makePeers = (options: { readonly switchesTraffic: boolean }) =>
  Effect.gen(function* () {
    const faults = yield* makeFaults
    const memory = yield* MemoryRuntime.makeMemory({ images: [IMAGE] })
    const runtime = Layer.succeedContext(
      Context.make(ContainerRuntime, memory.runtime).pipe(Context.add(MemoryRuntime.MemoryRuntimeControl, memory.control))
    )
    return {
      faults,
      runtime,
      proxy: yield* ProxyRoutes.makeMemory({ switchesTraffic: options.switchesTraffic, faults }),
      certs: yield* CertIssuer.makeMemory({ faults }),
      dns: yield* DnsRecords.makeMemory({ faults })
    } satisfies Peers
  })


/** An agent core (registry file shared across restarts) over the given peers. */
export const layerAgent = (peers: Peers, registryFile: string) =>
  Layer.mergeAll(Lifecycle.Default.pipe(Layer.provide(PortAllocator.layer({ min: 20000, max: 20999 }, () => Effect.succeed(true)))), ServiceActors.Default).pipe(
    Layer.provideMerge(
      Layer.mergeAll(
        peers.runtime,
        Layer.succeed(ProxyRoutes.ProxyRoutes, peers.proxy),
        Layer.succeed(CertIssuer.CertIssuer, peers.certs),
        Layer.succeed(DnsRecords.DnsRecords, peers.dns),
        // The registry's directory is the data directory a full disk is reported under.
        Layer.succeed(NodeSettings, { ...settings, dataDir: dirname(registryFile) })
      )
    ),
    Layer.provideMerge(Registry.Default.pipe(Layer.provideMerge(layerSqlite(registryFile)))),
    // Health checks are real probes (against servers the tests start).
    Layer.provide(layerPlatform)
  )

export const definition = (toml: string) =>
  Either.getOrThrowWith(Validation.decodeDefinitionToml(toml, { internalZone: settings.internalZone }), (p) => new Error(JSON.stringify(p)))

export const webService = (name: string, extra = "", hostname?: string) =>
  definition(`name = "${name}"
[[components]]
name = "web"
image = "${IMAGE}"
cmd = ["httpd", "-f", "-p", "$PORT"]
${extra}
[[components.routes]]
port = 8443
mode = "l7"
${hostname === undefined ? "" : `hostname = "${hostname}"`}
`)
