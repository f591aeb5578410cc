/**
 * One actor per service on the master: deploys, undeploys, lifecycle commands and edge repairs
 * of a service run one at a time, in order, so they never race across nodes.
 */
import * as KeyedActors from "@mcp/rpc/KeyedActors"
import { Effect } from "effect"

export class ServiceCoordinators extends Effect.Service<ServiceCoordinators>()("@mcp/master/ServiceCoordinators", {
  scoped: KeyedActors.make()
}) {}
