/**
 * Who is calling: the identity an Authenticator derives from a bearer token. Roles order what
 * a caller may do: guests read, users and admins change things.
 */
import { Context, Schema } from "effect"

export const Role = Schema.Literal("admin", "user", "guest")
export type Role = typeof Role.Type

const RANK: Record<Role, number> = { guest: 0, user: 1, admin: 2 }

/** The lesser of two roles: what a caller acting for someone else may do. */
export const lesserRole = (a: Role, b: Role): Role => (RANK[a] <= RANK[b] ? a : b)

/** `human` tokens belong to operators; `system` tokens to daemons (the master, agents). */
export const TokenKind = Schema.Literal("human", "system")
export type TokenKind = typeof TokenKind.Type

export class Principal extends Schema.Class<Principal>("Principal")({
  name: Schema.String,
  kind: TokenKind,
  role: Role
}) {}

/** The caller of the RPC being handled, provided by the auth middleware. */
export class CurrentPrincipal extends Context.Tag("@mcp/rpc/CurrentPrincipal")<CurrentPrincipal, Principal>() {}
