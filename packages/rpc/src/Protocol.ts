/**
 * The protocol version master, agents and CLI exchange on every request (a header each way),
 * so a call the peer does not know becomes a VersionSkew error instead of a mystery.
 */
import { Context } from "effect"

/** Bump when an RPC is added, removed or changes shape. */
export const PROTOCOL_VERSION = 1

export const PROTOCOL_HEADER = "x-mcp-protocol"

/** Whether an RPC only reads (guests may call it on the master) or changes something. */
export class Access extends Context.Reference<Access>()("@mcp/rpc/Access", {
  defaultValue: (): "read" | "write" => "write"
}) {}

export const parseVersion = (header: string | undefined): number | undefined => {
  if (header === undefined) return undefined
  const n = Number(header)
  return Number.isInteger(n) && n > 0 ? n : undefined
}
