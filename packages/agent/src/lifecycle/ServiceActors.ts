/**
 * The agent's per-service actors: every command for one service (deploy, stop, start, ...)
 * runs in that service's actor, one at a time and in order; different services run in parallel.
 */
import { KeyedActors } from "@mcp/rpc"
import { Effect } from "effect"

export class ServiceActors extends Effect.Service<ServiceActors>()("@mcp/agent/ServiceActors", {
  scoped: KeyedActors.make()
}) {}
