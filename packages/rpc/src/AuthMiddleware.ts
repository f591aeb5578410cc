/**
 * The middleware every RPC group carries: authenticates the bearer token, checks the caller's
 * role against the RPC's access level, and provides the CurrentPrincipal to handlers.
 */
import { Headers } from "@effect/platform"
import { RpcMiddleware } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import type { Rpc } from "@effect/rpc"
import { Context, Effect, Either, Layer, ParseResult, Redacted, Schema, SchemaAST } from "effect"
import { Authenticator } from "./Authenticator.js"
import { CurrentPrincipal, type Principal, type Role } from "./Principal.js"
import { Access, type AccessLevel, PROTOCOL_HEADER, PROTOCOL_VERSION } from "./Protocol.js"

export const AuthFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden, Errors.VersionSkew, Errors.UnknownFields)

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

/**
 * Each payload's decoded (Type) side with the contracts' `preserve` option taken off, so that
 * checking it with `onExcessProperty: "error"` reaches nested structs (NodeInfo, ProxyRoute) too.
 */
type Check = (u: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
const strictChecks = new WeakMap<Rpc.AnyWithProps, Check | null>()
const strictCheck = (rpc: Rpc.AnyWithProps) => {
  let check: Check | null | undefined = strictChecks.get(rpc)
  if (check === undefined) {
    const ast = SchemaAST.typeAST(rpc.payloadSchema.ast)
    check = SchemaAST.isTypeLiteral(ast)
      ? ParseResult.validateEither(Schema.make<unknown>(new SchemaAST.TypeLiteral(ast.propertySignatures, ast.indexSignatures)), {
        onExcessProperty: "error",
        errors: "all"
      })
      : null
    strictChecks.set(rpc, check)
  }
  return check
}

/**
 * Fields of a payload that its RPC does not declare (kept by the contracts' `preserve` decode),
 * refused as UnknownFields naming each one by its path ("info.extra" inside a NodeInfo).
 */
export const excessFields = (rpc: Rpc.AnyWithProps, payload: unknown): Effect.Effect<void, Errors.UnknownFields> => {
  const check = strictCheck(rpc)
  if (check === null) return Effect.void
  const result = check(payload)
  if (Either.isRight(result)) return Effect.void
  const issues = ParseResult.ArrayFormatter.formatIssueSync(result.left).filter((i) => i._tag === "Unexpected")
  if (issues.length === 0) return Effect.void
  return Effect.fail(new Errors.UnknownFields({ rpc: rpc._tag, fields: issues.map((i) => i.path.map(String).join(".")) }))
}

/** The server side: needs an Authenticator. */
export const layerServer = (policy: AccessPolicy): Layer.Layer<AuthMiddleware, never, Authenticator> =>
  Layer.effect(
    AuthMiddleware,
    Effect.map(Authenticator, (auth) =>
      AuthMiddleware.of(({ headers, payload, rpc }) => {
        const token = bearer(headers)
        if (token === undefined) {
          return Effect.fail(new Errors.Unauthorized({ reason: "no bearer token; pass one with the Authorization header (the CLI reads token_file from its config)" }))
        }
        return Effect.flatMap(auth.authenticate(token), (principal) =>
          authorize(principal, Context.get(rpc.annotations, Access), rpc._tag, policy).pipe(
            Effect.zipLeft(excessFields(rpc, payload))
          )
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
