/**
 * What the master's handler groups share: their settings, the types their handler objects are
 * checked against, and the lookups several groups make the same way. A database failure is
 * fatal (`viaDb`): no caller can act on it, and the master cannot answer without its records.
 */
import type { RpcGroup } from "@effect/rpc"
import { Errors, type Health, type Node, type Policy } from "@mcp/domain"
import * as Failures from "@mcp/rpc/Failures"
import { type ControlRpcs, type MasterRpcs } from "@mcp/rpc/Contracts"
import { type Duration, Effect, Option } from "effect"
import { MasterDb } from "../../db/MasterDb.js"
import { AgentClients } from "../../fleet/AgentClients.js"
import { asPeerFailure } from "../../fleet/FleetCalls.js"
import { NodeSupervisors } from "../../nodes/NodeSupervisors.js"

export interface MasterSettings {
  readonly internalZone: string
  readonly heartbeatInterval: Duration.Duration
  readonly missThreshold: number
  readonly fanoutTimeout: Duration.Duration
  /** The master's own version, the reference `mcp agent status` compares agents with. */
  readonly version: string
  /** `[policy]`: checked on every deploy and sync, and pushed to agents when they register. */
  readonly policy: Policy.DeployPolicy
  /** `[edge] allowed_domains`, pushed to agents with the policy. */
  readonly allowedDomains: ReadonlyArray<string>
  /** `[dns] listen`: where the master answers DNS queries for the internal zone, if it does. */
  readonly dnsListen?: string | undefined
}

// Each group is checked against the contract on its own (a misspelt or mistyped handler fails
// where it is written); the composed layer checks that together they cover every RPC.
export type SomeMasterHandlers = Partial<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof MasterRpcs>>>
export type SomeControlHandlers = Partial<RpcGroup.HandlersFrom<RpcGroup.Rpcs<typeof ControlRpcs>>>

/** The typed AgentRpcs client of one agent. */
export type AgentClient = Effect.Effect.Success<ReturnType<AgentClients["client"]>>

export const viaDb = Failures.fatal("the master database")

/**
 * How many agents a fleet-wide view (`mcp ps`, `mcp agent status`, `mcp tree`) asks at once. A
 * hundred nodes answer in two rounds; ten thousand do not open ten thousand TLS connections (and
 * descriptors) at the same moment. Each node's fanout_timeout starts when it is asked.
 */
export const FANOUT_CONCURRENCY = 64

/** A definition's name before it is decoded, so that errors about one that does not decode can name it. */
export const nameOf = (raw: unknown) => (typeof raw === "object" && raw !== null && "name" in raw ? String(raw.name) : "(unnamed)")

export const makeLookups = Effect.gen(function* () {
  const db = yield* MasterDb
  const agents = yield* AgentClients
  const supervisors = yield* NodeSupervisors

  // The supervisor's view is fresher than the stored one; the stored one covers a node not watched.
  const healthOf = (name: string, stored: Health.HealthStatus) =>
    Effect.map(supervisors.health(name), Option.match({ onNone: () => stored, onSome: (h) => h.status }))

  /** Every known node with its health. */
  const fleet = Effect.gen(function* () {
    const nodes = yield* viaDb(db.nodes)
    return yield* Effect.forEach(nodes, (n) =>
      Effect.map(healthOf(n.info.name, n.health), (health) => ({ row: n, health }))
    )
  })

  const nodeRow = (name: string) =>
    Effect.flatMap(viaDb(db.node(name)), Option.match({
      onNone: () => Effect.fail(new Errors.NodeNotFound({ node: name })),
      onSome: Effect.succeed
    }))

  /** The node a service was placed on, or ServiceNotFound. */
  const placedOn = (service: string) =>
    Effect.flatMap(viaDb(db.placement(service)), Option.match({
      onNone: () => Effect.fail(new Errors.ServiceNotFound({ service })),
      onSome: (node) => Effect.map(Effect.orElseFail(nodeRow(node), () => new Errors.ServiceNotFound({ service })), (row) => row.info)
    }))

  /** An agent client for the node, on the first address that answers. */
  const reachable = (info: Node.NodeInfo) =>
    Effect.mapError(agents.call(info.name, info.addresses, (agent) => Effect.as(agent.Health(), agent)), asPeerFailure(info.name, "answer a health check"))

  return { fleet, nodeRow, placedOn, reachable }
})
