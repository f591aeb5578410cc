/**
 * The master's supervision tree (`mcp tree`) reports live state: a node supervisor that crashes
 * shows as restarting with its restart count and error, then running again; an unwatched node
 * disappears; under each node, what its agent supervises (asked of every node but an unhealthy
 * one), or why the agent did not say; the service actors and the edge reconciler's fiber (with
 * its own crashes) appear as they are.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Operations } from "@mcp/domain"
import { Context, Effect, Either, Layer, Logger, LogLevel, Ref, type Scope } from "effect"
import { EdgeReconciler } from "../src/edge/EdgeReconciler.js"
import { FleetCalls } from "../src/fleet/FleetCalls.js"
import { supervisionTree } from "../src/daemon/MasterHandlers.js"
import { layerSqlite, MasterDb } from "../src/db/MasterDb.js"
import { NodeSupervisors, Prober, SupervisorSettings, TransitionSink } from "../src/nodes/NodeSupervisors.js"
import { ServiceCoordinators } from "../src/services/ServiceCoordinators.js"
import { advance, settle } from "./ClockSteps.js"

/** What a node's agent answers it supervises, or (Left) why it does not answer. */
type AgentAnswer = Either.Either<ReadonlyArray<Operations.SupervisionNode>, string>

const harness = Effect.gen(function* () {
  /** How many of the next transition records die (a crash of the node fiber). */
  const sinkCrashes = yield* Ref.make(0)
  /** How many of the next edge listings die (a crash of the reconciler's round). */
  const listCrashes = yield* Ref.make(0)
  /** Each node's agent's answer; a node not in it supervises nothing. */
  const agentAnswers = yield* Ref.make<ReadonlyMap<string, AgentAnswer>>(new Map())
  /** The nodes whose agents were asked, in order. */
  const agentsAsked = yield* Ref.make<ReadonlyArray<string>>([])
  const agentChildren = (node: string) =>
    Effect.flatMap(Ref.update(agentsAsked, (asked) => [...asked, node]), () =>
      Effect.flatMap(Ref.get(agentAnswers), (answers) => answers.get(node) ?? Either.right([])))
  const unused = (what: string) => () => Effect.die(new Error(`not used by this test: ${what}`))
  const fleet: FleetCalls = {
    deploy: () => { throw new Error("not used by this test: deploy") },
    undeploy: unused("undeploy"),
    stop: unused("stop"),
    start: unused("start"),
    proxyAddress: unused("proxyAddress"),
    setupEdgeRoute: unused("setupEdgeRoute"),
    removeEdgeRoute: unused("removeEdgeRoute"),
    listEdgeRoutes: () =>
      Effect.flatMap(Ref.getAndUpdate(listCrashes, (n) => Math.max(0, n - 1)), (n) => (n > 0 ? Effect.die(new Error("master database is locked")) : Effect.succeed([])))
  }
  const context = yield* Layer.build(
    Layer.mergeAll(
      NodeSupervisors.Default.pipe(Layer.provide(Layer.mergeAll(
        Layer.succeed(SupervisorSettings, { interval: "1000 millis", missThreshold: 3, probeTimeout: "500 millis" }),
        Layer.succeed(Prober, { probe: () => Effect.fail("connection refused") }),
        Layer.succeed(TransitionSink, {
          record: () => Effect.flatMap(Ref.getAndUpdate(sinkCrashes, (n) => Math.max(0, n - 1)), (n) => (n > 0 ? Effect.die(new Error("event log unavailable")) : Effect.void))
        })
      ))),
      EdgeReconciler.Default
    ).pipe(
      Layer.provideMerge(Layer.mergeAll(Layer.succeed(FleetCalls, fleet), ServiceCoordinators.Default)),
      Layer.provideMerge(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(":memory:"))))
    )
  )
  yield* Context.get(context, MasterDb).upsertNode({ name: "e1", role: "edge", addresses: ["127.0.0.1:2"], arch: "x64", version: "test" } as never, "config")
  return {
    sinkCrashes,
    listCrashes,
    agentAnswers,
    agentsAsked,
    supervisors: Context.get(context, NodeSupervisors),
    coordinators: Context.get(context, ServiceCoordinators),
    reconciler: Context.get(context, EdgeReconciler),
    tree: Effect.provide(supervisionTree(0, agentChildren), context)
  }
})


const child = (tree: Operations.SupervisionNode, name: string) => {
  const found = tree.children.find((c) => c.name === name)
  expect(found, `${name} in ${JSON.stringify(tree)}`).toBeDefined()
  return found!
}

const test = (name: string, body: Effect.Effect<void, unknown, Scope.Scope>) =>
  it.effect(name, () => body.pipe(Effect.scoped, Logger.withMinimumLogLevel(LogLevel.None)))

describe("supervision tree", () => {
  test(
    "a node supervisor that crashes shows its restart and error, runs again, and an unwatched node disappears",
    Effect.gen(function* () {
      const h = yield* harness
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.watch("n2", ["n2-a:7000"])
      yield* settle
      let nodes = child(yield* h.tree, "NodeSupervisors")
      expect(nodes).toEqual({
        name: "NodeSupervisors",
        state: "2 node fibers supervised",
        restarts: 0,
        children: [
          { name: "n1", state: "running, node unknown", restarts: 0, children: [] },
          { name: "n2", state: "running, node unknown", restarts: 0, children: [] }
        ]
      })

      // n1's fiber dies recording its first transition, and backs off before restarting.
      yield* Ref.set(h.sinkCrashes, 1)
      yield* h.supervisors.heartbeat("n1")
      yield* settle
      nodes = child(yield* h.tree, "NodeSupervisors")
      expect(nodes.state).toBe("2 node fibers supervised, 1 restarting")
      expect(nodes.restarts).toBe(1)
      expect(child(nodes, "n1")).toEqual({
        name: "n1", state: "restarting, node healthy", restarts: 1, lastError: "supervisor crashed: event log unavailable", children: []
      })
      expect(child(nodes, "n2")).toMatchObject({ state: "running, node unknown", restarts: 0 })

      // Restarted (about 100 ms of jittered backoff): running again, the count and error kept.
      yield* advance(300)
      nodes = child(yield* h.tree, "NodeSupervisors")
      expect(child(nodes, "n1")).toEqual({
        name: "n1", state: "running, node healthy", restarts: 1, lastError: "supervisor crashed: event log unavailable", children: []
      })
      expect(nodes.state).toBe("2 node fibers supervised")

      yield* h.supervisors.unwatch("n1")
      nodes = child(yield* h.tree, "NodeSupervisors")
      expect(nodes.children.map((c) => c.name)).toEqual(["n2"])
      expect(nodes).toMatchObject({ state: "1 node fiber supervised", restarts: 0 })
    })
  )

  test(
    "under each node, what its agent supervises; an agent that fails says why; an unhealthy node is not asked",
    Effect.gen(function* () {
      const h = yield* harness
      // "down" misses three heartbeat deadlines and fails its probe: unhealthy.
      yield* h.supervisors.watch("down", ["down-a:7000"])
      yield* settle
      yield* advance(3_500)
      yield* h.supervisors.watch("n1", ["n1-a:7000"])
      yield* h.supervisors.watch("n2", ["n2-a:7000"])
      yield* h.supervisors.heartbeat("n1")
      yield* h.supervisors.heartbeat("n2")
      yield* settle
      const proxy: Operations.SupervisionNode = {
        name: "proxy haproxy", state: "running, pid 1234, up 5m", restarts: 1, lastError: "exited with code 1", children: []
      }
      yield* Ref.set(h.agentAnswers, new Map<string, AgentAnswer>([["n1", Either.right([proxy])], ["n2", Either.left("n2-a:7000: connection refused")]]))
      yield* Ref.set(h.agentsAsked, [])

      const nodes = child(yield* h.tree, "NodeSupervisors")
      expect(child(nodes, "n1")).toEqual({ name: "n1", state: "running, node healthy", restarts: 0, children: [proxy] })
      expect(child(nodes, "n2")).toEqual({
        name: "n2", state: "running, node healthy, agent did not answer: n2-a:7000: connection refused", restarts: 0, children: []
      })
      expect(child(nodes, "down")).toEqual({
        name: "down", state: "running, node unhealthy", restarts: 0, lastError: "down-a:7000: connection refused", children: []
      })
      expect([...(yield* Ref.get(h.agentsAsked))].sort()).toEqual(["n1", "n2"])
    })
  )

  test(
    "service actors appear with their queues; the edge reconciler's fiber shows its rounds and crashes",
    Effect.gen(function* () {
      const h = yield* harness
      let tree = yield* h.tree
      expect(tree.name).toBe("mcp-master")
      expect(tree.state).toMatch(/^serving, up /)
      expect(child(tree, "ServiceCoordinators")).toEqual({ name: "ServiceCoordinators", state: "0 active", restarts: 0, children: [] })
      expect(child(tree, "EdgeReconciler")).toEqual({ name: "EdgeReconciler", state: "not started", restarts: 0, children: [] })

      yield* h.coordinators.submit("web", Effect.void)
      expect(child(yield* h.tree, "ServiceCoordinators")).toEqual({
        name: "ServiceCoordinators", state: "1 active", restarts: 0, children: [{ name: "web", state: "0 pending", restarts: 0, children: [] }]
      })

      // The first round dies listing the edge; the fiber is restarted after its backoff.
      yield* Ref.set(h.listCrashes, 1)
      yield* Effect.forkScoped(h.reconciler.run("10 seconds"))
      yield* settle
      tree = yield* h.tree
      expect(child(tree, "EdgeReconciler")).toEqual({
        name: "EdgeReconciler", state: "restarting, 0 rounds", restarts: 1, lastError: "reconciler crashed: master database is locked", children: []
      })
      yield* advance(1_100)
      const edge = child(yield* h.tree, "EdgeReconciler")
      expect(edge).toMatchObject({ restarts: 1, lastError: "reconciler crashed: master database is locked" })
      expect(edge.state).toMatch(/^running, 1 round, last at \S+ with 0 failures$/)
    })
  )
})
