/**
 * The audit trail as the AuthMiddleware keeps it: a mutating call is recorded with who made it,
 * the RPC, what it was aimed at and how it ended (a stream when it ends); a read is not; a call
 * refused for its role or its fields is recorded as refused; an unauthenticated one is only
 * counted. A failing audit store is logged and counted, and the call's own result stands.
 */
import { RpcTest } from "@effect/rpc"
import { describe, expect, it } from "@effect/vitest"
import { Deploy, Errors, type Names } from "@mcp/domain"
import { Context, Effect, Exit, Layer, Metric, Redacted, Ref, Stream } from "effect"
import * as Audit from "../src/Audit.js"
import * as Authenticator from "../src/Authenticator.js"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import { AgentRpcs, ControlRpcs, MasterRpcs } from "../src/Contracts.js"
import * as Failures from "../src/Failures.js"
import { Principal } from "../src/Principal.js"

const principals = new Map([
  ["alice-token", new Principal({ name: "alice", kind: "human", role: "admin" })],
  ["bob-token", new Principal({ name: "bob", kind: "human", role: "user" })]
])

const status = { service: "web", node: "n1" as Names.NodeName, active: true, components: [], warnings: [] }
const notServed = Effect.die("not served by this test")

const handlers = AgentRpcs.toLayer({
  // Two steps, then the stream fails when the definition says so: the outcome is the stream's end.
  Deploy: ({ definition }) => {
    const steps = Stream.make(new Deploy.DeployStep({ node: "n1", step: "pull", status: "done", detail: "" }))
    return (definition as { fail?: boolean }).fail === true
      ? Stream.concat(steps, Stream.fail(new Errors.DeployFailed({ service: "web", step: "start", reason: "exit 1", retryable: false })))
      : steps
  },
  Stop: ({ service }) => (service === "web" ? Effect.succeed({ ...status, active: false }) : Effect.fail(new Errors.ServiceNotFound({ service }))),
  Start: () => Effect.succeed(status),
  Restart: () => Effect.succeed(status),
  Undeploy: () => Effect.void,
  Ps: () => Effect.succeed([status]),
  Status: () => Effect.succeed(status),
  Logs: () => Stream.empty,
  SetupEdgeRoute: () => notServed,
  RemoveEdgeRoute: () => notServed,
  ListEdgeRoutes: () => Effect.succeed([]),
  ProxyRoutesAdd: () => Effect.void,
  ProxyRoutesRemove: () => Effect.void,
  ProxyRoutesList: () => Effect.succeed([]),
  Recover: () => notServed,
  BootStatus: () => Effect.succeed({ node: "n1", stages: [] }),
  Health: () => Effect.succeed({ node: "n1", at: "", protocol: 1 }),
  NodeInfo: () => notServed,
  Events: () => Stream.empty
})

/** An AuditLog keeping entries in memory, or failing every write. */
const memoryLog = (entries: Ref.Ref<ReadonlyArray<Audit.AuditEntry>>, failing = false) =>
  Layer.succeed(Audit.AuditLog, {
    record: (entry) =>
      failing
        ? Effect.fail(new Audit.AuditWriteFailed({ cause: new Error("disk full") }))
        : Ref.update(entries, (es) => [...es, entry])
  })

const client = (token: string, options: { readonly failing?: boolean } = {}) =>
  Effect.gen(function* () {
    const entries = yield* Ref.make<ReadonlyArray<Audit.AuditEntry>>([])
    const server = AuthMiddleware.layerServer({ guestMayRead: false }).pipe(
      Layer.provide(Authenticator.layerMemory(principals)),
      Layer.provide(memoryLog(entries, options.failing))
    )
    const rpc = yield* RpcTest.makeClient(AgentRpcs).pipe(
      Effect.provide(Layer.mergeAll(handlers, server, AuthMiddleware.layerClient(Redacted.make(token))))
    )
    return { rpc, entries: Ref.get(entries) }
  })

const alice = { name: "alice", kind: "human", role: "admin" }
const bob = { name: "bob", kind: "human", role: "user" }

describe("the audit trail", () => {
  it.scoped("a mutating call is recorded with principal, rpc, target and result; a read is not", () =>
    Effect.gen(function* () {
      const { entries, rpc } = yield* client("bob-token")
      yield* rpc.Ps()
      yield* rpc.Status({ service: "web" as Names.ServiceName })
      expect(yield* entries).toEqual([])
      yield* rpc.Stop({ service: "web" as Names.ServiceName })
      expect(yield* entries).toEqual([{ who: bob, rpc: "Stop", target: [["service", "web"]], outcome: { _tag: "Ok" } }])
    }))

  it.scoped("a handler's typed failure is recorded with the error's tag and message", () =>
    Effect.gen(function* () {
      const { entries, rpc } = yield* client("bob-token")
      yield* Effect.flip(rpc.Stop({ service: "db" as Names.ServiceName }))
      const [entry] = yield* entries
      expect(entry?.outcome).toEqual({ _tag: "Failed", error: "ServiceNotFound", message: new Errors.ServiceNotFound({ service: "db" }).message })
      expect(Audit.describe(entry!)).toMatch(/^Stop service=db: failed \(ServiceNotFound: /)
    }))

  it.scoped("a user calling an admin RPC is refused, and the refusal is recorded with who tried", () =>
    Effect.gen(function* () {
      const { entries, rpc } = yield* client("bob-token")
      const route = { listener: 443, hostname: "web.example.com", backend: "127.0.0.1:8080", mode: "l7", backendTls: false } as never
      expect(yield* Effect.flip(rpc.ProxyRoutesAdd({ route }))).toBeInstanceOf(Errors.Forbidden)
      expect(yield* entries).toEqual([{
        who: bob,
        rpc: "ProxyRoutesAdd",
        target: [["listener", "443"], ["hostname", "web.example.com"]],
        outcome: expect.objectContaining({ _tag: "Refused", error: "Forbidden" })
      }])
    }))

  it.scoped("a call refused for a field its RPC does not declare is recorded as refused", () =>
    Effect.gen(function* () {
      const { entries, rpc } = yield* client("alice-token")
      yield* Effect.flip(rpc.Stop({ service: "web", force: true } as never))
      // The target shows what was sent (allow-listed names only), the refused field included.
      expect(yield* entries).toEqual([{
        who: alice,
        rpc: "Stop",
        target: [["service", "web"], ["force", "true"]],
        outcome: expect.objectContaining({ _tag: "Refused", error: "UnknownFields" })
      }])
    }))

  it.scoped("a deploy stream is recorded when it ends, with its outcome; the definition body is never recorded", () =>
    Effect.gen(function* () {
      const { entries, rpc } = yield* client("alice-token")
      const definition = { name: "web", components: [{ name: "app", image: "r/app:1", env: { SECRET: "s3cret" } }] }
      const steps = yield* Stream.runCollect(rpc.Deploy({ definition, dryRun: false }))
      expect(steps.length).toBe(1)
      yield* Effect.flip(Stream.runDrain(rpc.Deploy({ definition: { ...definition, fail: true }, dryRun: false })))
      const recorded = yield* entries
      expect(recorded.map((e) => [e.rpc, e.target, e.outcome._tag])).toEqual([
        ["Deploy", [["service", "web"], ["dryRun", "false"]], "Ok"],
        ["Deploy", [["service", "web"], ["dryRun", "false"]], "Failed"]
      ])
      expect(JSON.stringify(recorded)).not.toContain("s3cret")
      expect(JSON.stringify(recorded)).not.toContain("alice-token")
    }))

  it.scoped("an unauthenticated call is counted, not recorded (there is no principal)", () =>
    Effect.gen(function* () {
      const counter = Metric.tagged(Audit.unauthenticated, "rpc", "Stop")
      const before = (yield* Metric.value(counter)).count
      const { entries, rpc } = yield* client("stolen-token")
      expect(yield* Effect.flip(rpc.Stop({ service: "web" as Names.ServiceName }))).toBeInstanceOf(Errors.Unauthorized)
      expect(yield* entries).toEqual([])
      expect((yield* Metric.value(counter)).count).toBe(before + 1)
    }))

  it.scoped("an audit store that fails is logged and counted; the call's own result still comes back", () =>
    Effect.gen(function* () {
      const counter = Metric.tagged(Failures.carriedOn, "operation", "the audit trail")
      const before = (yield* Metric.value(counter)).count
      const { rpc } = yield* client("bob-token", { failing: true })
      expect((yield* rpc.Stop({ service: "web" as Names.ServiceName })).active).toBe(false)
      expect((yield* Metric.value(counter)).count).toBe(before + 1)
    }))
})

describe("outcomes", () => {
  it("a deploy the policy refused is recorded as refused, a step that failed as failed", () => {
    const violation = new Errors.PolicyViolation({ service: "web", violations: [{ path: "components[0].network", rule: "host_network", message: "only an admin may" }] })
    expect(Audit.outcomeOf(Exit.fail(violation))).toMatchObject({ _tag: "Refused", error: "PolicyViolation" })
    const failed = new Errors.DeployFailed({ service: "web", step: "start", reason: "exit 1", retryable: false })
    expect(Audit.outcomeOf(Exit.fail(failed))).toMatchObject({ _tag: "Failed", error: "DeployFailed" })
  })
})

describe("which RPCs are audited", () => {
  // Written out so that making an RPC unaudited is a decision a reviewer sees here.
  const audited = (group: { readonly requests: ReadonlyMap<string, { readonly annotations: Context.Context<never> }> }) =>
    [...group.requests.entries()].filter(([, rpc]) => Audit.isAudited(rpc)).map(([tag]) => tag).sort()

  it("the agent's: everything but reads", () => {
    expect(audited(AgentRpcs)).toEqual([
      "Deploy", "Logs", "ProxyRoutesAdd", "ProxyRoutesRemove", "Recover", "RemoveEdgeRoute", "Restart", "SetupEdgeRoute", "Start", "Stop", "Undeploy"
    ])
  })

  it("the master's: everything but reads", () => {
    expect(audited(MasterRpcs)).toEqual(["AgentRecover", "Deploy", "Logs", "NodesAdd", "NodesRemove", "Restart", "Start", "Stop", "Sync", "Undeploy"])
  })

  it("the agents' calls: Register and the zone's record changes are, the frequent Heartbeat is not", () => {
    expect(audited(ControlRpcs)).toEqual(["Register", "ZonePut", "ZoneRemove"])
  })

  it("targets are taken from an allow-list: names inside info, route and definitions too", () => {
    expect(Audit.targetOf({ info: { name: "n2", addresses: ["10.0.0.2"] }, resources: {} })).toEqual([["node", "n2"]])
    expect(Audit.targetOf({ definitions: [{ name: "a" }, { name: "b", image: "x" }] })).toEqual([["services", "a,b"]])
    expect(Audit.targetOf({ hostname: "x\u001b[2J.example.com", token: "secret" })).toEqual([["hostname", "x [2J.example.com"]])
    expect(Audit.targetOf(undefined)).toEqual([])
  })
})
