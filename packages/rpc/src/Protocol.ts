/**
 * The protocol version master, agents and CLI exchange on every request (a header each way),
 * so a call the peer does not know becomes a VersionSkew error instead of a mystery.
 */
import { Context } from "effect"

/** Bump when an RPC is added, removed or changes shape. */
export const PROTOCOL_VERSION = 4

export const PROTOCOL_HEADER = "x-mcp-protocol"

/**
 * The RPC a request carries, set by our clients on every request (HttpProtocol.ts): a hint for
 * routing, which lets a server answer one RPC without RpcServer (DirectCall.ts). A server checks
 * the body against it; one that does not know the header ignores it.
 */
export const RPC_TAG_HEADER = "x-mcp-rpc"

/**
 * The least role an RPC needs: `read` (guests, where the daemon lets guests read), `operate`
 * (routine work on services: users) or `admin` (the fleet's shape and privileged operations).
 * An RPC nobody marked needs `admin`: a new RPC is closed until someone decides otherwise.
 * `node` is not a role but an identity: only the node the payload speaks for may call it, with
 * its own system token (named after the node), whatever that token's role; humans never may.
 */
export type AccessLevel = "read" | "operate" | "admin" | "node"

export class Access extends Context.Reference<Access>()("@mcp/rpc/Access", {
  defaultValue: (): AccessLevel => "admin"
}) {}

/**
 * For `node` RPCs: the node a (decoded) payload speaks for, so the auth middleware can bind the
 * caller to it before any handler runs. Unset, it names no node and a `node` RPC refuses everyone.
 */
export class NodeOf extends Context.Reference<NodeOf>()("@mcp/rpc/NodeOf", {
  defaultValue: (): ((payload: unknown) => string | undefined) => () => undefined
}) {}

export const parseVersion = (header: string | undefined): number | undefined => {
  if (header === undefined) return undefined
  const n = Number(header)
  return Number.isInteger(n) && n > 0 ? n : undefined
}
