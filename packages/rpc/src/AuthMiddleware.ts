/**
 * The middleware every RPC group carries: authenticates the bearer token, checks the caller's
 * role against the RPC's access level, and provides the CurrentPrincipal to handlers.
 */
import { Headers } from "@effect/platform"
import { RpcMiddleware } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { Authenticator } from "./Authenticator.js"
import { CurrentPrincipal, type Principal, type Role } from "./Principal.js"
import { Access, type AccessLevel, PROTOCOL_HEADER, PROTOCOL_VERSION } from "./Protocol.js"

export const AuthFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden, Errors.VersionSkew)

export class AuthMiddleware extends RpcMiddleware.Tag<AuthMiddleware>()("@mcp/rpc/AuthMiddleware", {
  provides: CurrentPrincipal,
  failure: AuthFailure,
  requiredForClient: true
}) {}

export interface AccessPolicy {
  /** The agent rejects guests outright; the master lets them read. */
  readonly guestMayRead: boolean
}

const bearer = (headers: Headers.Headers): Redacted.Redacted<string> | undefined => {
  const value = headers["authorization"]
  if (value === undefined) return undefined
  const m = /^Bearer\s+(\S+)$/i.exec(value)
  return m === null ? undefined : Redacted.make(m[1]!)
}

/** The least role each access level needs; a guest reads only where the policy lets it. */
const needed: Record<AccessLevel, Role> = { read: "guest", operate: "user", admin: "admin" }
const rank: Record<Role, number> = { guest: 0, user: 1, admin: 2 }

export const authorize = (principal: Principal, access: AccessLevel, rpc: string, policy: AccessPolicy) => {
  const needs = access === "read" && !policy.guestMayRead ? "user" : needed[access]
  return rank[principal.role] >= rank[needs]
    ? Effect.succeed(principal)
    : Effect.fail(new Errors.Forbidden({ principal: principal.name, role: principal.role, rpc, needs }))
}

/** The server side: needs an Authenticator. */
export const layerServer = (policy: AccessPolicy): Layer.Layer<AuthMiddleware, never, Authenticator> =>
  Layer.effect(
    AuthMiddleware,
    Effect.map(Authenticator, (auth) =>
      AuthMiddleware.of(({ headers, rpc }) => {
        const token = bearer(headers)
        if (token === undefined) {
          return Effect.fail(new Errors.Unauthorized({ reason: "no bearer token; pass one with the Authorization header (the CLI reads token_file from its config)" }))
        }
        return Effect.flatMap(auth.authenticate(token), (principal) =>
          authorize(principal, Context.get(rpc.annotations, Access), rpc._tag, policy)
        )
      })
    )
  )

/** The client side: attaches the token and this side's protocol version to every request. */
export const layerClient = (token: Redacted.Redacted<string>) =>
  RpcMiddleware.layerClient(AuthMiddleware, ({ request }) =>
    Effect.succeed({
      ...request,
      headers: Headers.setAll(request.headers, {
        authorization: `Bearer ${Redacted.value(token)}`,
        [PROTOCOL_HEADER]: String(PROTOCOL_VERSION)
      })
    })
  )
