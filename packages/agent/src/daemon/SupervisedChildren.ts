/**
 * What the agent supervises besides its RPC server and fibers (today: the HAProxy it runs with
 * `[proxy] managed = true`), as entries of `mcp tree`: the master asks each agent's NodeInfo and
 * shows these under the node. An agent without any provides nothing; the handlers then report none.
 */
import type { Operations } from "@mcp/domain"
import { Context, type Effect } from "effect"

export class SupervisedChildren extends Context.Tag("@mcp/agent/SupervisedChildren")<
  SupervisedChildren,
  { readonly list: Effect.Effect<ReadonlyArray<Operations.SupervisionNode>> }
>() {}
