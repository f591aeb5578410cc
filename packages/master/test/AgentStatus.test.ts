/**
 * The master's AgentStatus (`mcp agent status`) through its real handler and database: each
 * node's version, protocol, arch and uptime as its agent answers NodeInfo, the master's own
 * release, and a node that does not answer in time, or is unhealthy (so not asked), reported
 * unreachable with what it last registered with, instead of failing the call. An agent that
 * predates `startedAt` still answers, with no uptime.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Node, Operations } from "@mcp/domain"
import { Protocol } from "@mcp/rpc"
import { Duration, Effect, Layer, Option } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as FleetViews from "../src/daemon/handlers/FleetViews.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import * as EdgeResolver from "../src/edge/EdgeResolver.js"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import { AgentClients } from "../src/fleet/AgentClients.js"
import { NodeSupervisors } from "../src/nodes/NodeSupervisors.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"

const unused = <A>(what: string) => new Proxy({}, { get: () => { throw new Error(`not used by this test: ${what}`) } }) as A

const resources = { cpuCores: 1, load1: 0, memoryTotalBytes: 1, memoryFreeBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1, containers: 0 }
const info = (name: string, role: "worker" | "edge", version: string) =>
  ({ name, role, addresses: [`10.0.0.${name.length}:7000`], arch: "amd64", version }) as unknown as Node.NodeInfo

const startedAt = new Date(Date.now() - 90_000).toISOString()

/** w1 answers now; e1 answers like an agent that predates startedAt; w2 never answers; w3 is not asked. */
const agents = {
  call: (node: string, _addresses: ReadonlyArray<string>, f: (agent: unknown) => Effect.Effect<unknown, unknown>) => {
    if (node === "w3") return Effect.die("w3 is unhealthy: it must not be asked")
    if (node === "w2") return Effect.never
    const report = node === "w1"
      ? { info: { ...info("w1", "worker", "0.1.0"), arch: "arm64" }, resources, protocol: 2, startedAt }
      : { info: info("e1", "edge", "0.0.9"), resources, protocol: 1 }
    return f({ NodeInfo: () => Effect.succeed(report) })
  }
} as unknown as AgentClients

const supervisors = {
  health: (node: string) => Effect.succeed(node === "w3" ? Option.some({ status: "unhealthy" }) : Option.none())
} as unknown as NodeSupervisors

describe("master: AgentStatus", () => {
  it.scopedLive("the master's release, then each node as its agent answers now; no answer or unhealthy is unreachable, not a failure", () =>
    Effect.gen(function* () {
      const db = MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(join(mkdtempSync(join(tmpdir(), "mcp-master-agent-status-")), "master.db"))))
      const deps = Layer.mergeAll(
        ServiceCoordinators.Default,
        Layer.succeed(AgentClients, agents),
        Layer.succeed(NodeSupervisors, supervisors),
        Layer.succeed(EdgeReconciler, unused<EdgeReconciler>("EdgeReconciler")),
        Layer.succeed(EdgeResolver.DnsLookup, unused<EdgeResolver.DnsLookup>("DnsLookup"))
      ).pipe(Layer.provideMerge(db))
      const context = yield* Layer.build(deps)
      const result = yield* Effect.gen(function* () {
        const store = yield* MasterDb
        yield* store.upsertNode(info("w1", "worker", "0.0.1"), "register", resources)
        yield* store.upsertNode(info("w2", "worker", "0.0.2"), "register", resources)
        yield* store.upsertNode(info("w3", "worker", "0.0.3"), "register", resources)
        yield* store.upsertNode(info("e1", "edge", "0.0.9"), "register", resources)
        const views = yield* FleetViews.handlers({ fanoutTimeout: Duration.millis(200), version: "0.2.0" })
        return yield* (views.AgentStatus! as unknown as () => Effect.Effect<Operations.FleetVersions>)()
      }).pipe(Effect.provide(context))

      expect(result.master).toMatchObject({ version: "0.2.0", protocol: Protocol.PROTOCOL_VERSION })
      expect(result.master.uptimeSeconds).toBeGreaterThanOrEqual(0)
      expect(Date.parse(result.at)).not.toBeNaN()
      const byNode = Object.fromEntries(result.nodes.map((n) => [n.node, n]))
      expect(byNode["w1"]).toEqual({ node: "w1", role: "worker", reachable: true, version: "0.1.0", arch: "arm64", protocol: 2, startedAt, uptimeSeconds: expect.any(Number) })
      expect(byNode["w1"]!.uptimeSeconds).toBeGreaterThanOrEqual(89)
      expect(byNode["e1"]).toEqual({ node: "e1", role: "edge", reachable: true, version: "0.0.9", arch: "amd64", protocol: 1 })
      expect(byNode["w2"]).toEqual({ node: "w2", role: "worker", reachable: false, version: "0.0.2", arch: "amd64", unreachable: "no answer within 200 ms" })
      expect(byNode["w3"]).toMatchObject({ node: "w3", reachable: false, version: "0.0.3", unreachable: expect.stringContaining("unhealthy") })
    }))
})
