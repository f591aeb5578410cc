/**
 * The middleware every RPC group carries: authenticates the bearer token, checks the caller's
 * role against the RPC's access level, and provides the CurrentPrincipal to handlers.
 */
import * as Headers from "@effect/platform/Headers"
import * as RpcMiddleware from "@effect/rpc/RpcMiddleware"
import * as Errors from "@mcp/domain/Errors"
import type { Rpc } from "@effect/rpc"
import { Context, Effect, Either, Exit, Layer, ParseResult, Redacted, Schema, SchemaAST } from "effect"
import * as Audit from "./Audit.js"
import * as CallMetrics from "./CallMetrics.js"
import { Authenticator } from "./Authenticator.js"
import * as ExcessKeys from "./ExcessKeys.js"
import { CurrentPrincipal, type Principal, type Role } from "./Principal.js"
import { Access, type AccessLevel, NodeOf, PROTOCOL_HEADER, PROTOCOL_VERSION } from "./Protocol.js"
import * as StreamLimit from "./StreamLimit.js"

export const AuthFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden, Errors.VersionSkew, Errors.UnknownFields, Errors.TooBusy)

/**
 * A `wrap` middleware: it runs the handler itself (`next`), so it sees how the call ended and
 * records it in the audit trail (Audit.ts) along with the calls it refuses.
 */
export class AuthMiddleware extends RpcMiddleware.Tag<AuthMiddleware>()("@mcp/rpc/AuthMiddleware", {
  provides: CurrentPrincipal,
  failure: AuthFailure,
  requiredForClient: true,
  wrap: true
}) {}

export interface AccessPolicy {
  /** The agent rejects guests outright; the master lets them read. */
  readonly guestMayRead: boolean
  /**
   * Whether a user may call `operate` RPCs (deploy, stop, start, restart, undeploy, logs). The
   * master lets users (that is their role); an agent does not: its changes come from the master,
   * which calls with its admin system token after checking placement, hostnames and the policy
   * fleet-wide, so a user going to an agent directly would bypass all of that. Left out: true,
   * the role ranks alone (the master's behaviour); the agent passes false.
   */
  readonly usersMayOperate?: boolean
}

/** Why a user's (or guest's) `operate` call is refused where users may not operate (an agent). */
export const operateOnAgentRule =
  "on an agent, changes come from the master (which calls with its admin system token); deploy through the master (mcp without --direct), or use an admin token"

/** The bearer token of a request, if it carries one (also read by /metrics, Exposition.ts). */
export const bearer = (headers: Headers.Headers): Redacted.Redacted<string> | undefined => {
  const value = headers["authorization"]
  if (value === undefined) return undefined
  const m = /^Bearer\s+(\S+)$/i.exec(value)
  return m === null ? undefined : Redacted.make(m[1]!)
}

/** The least role each access level needs; a guest reads only where the policy lets it. */
const needed: Record<Exclude<AccessLevel, "node">, Role> = { read: "guest", operate: "user", admin: "admin" }
const rank: Record<Role, number> = { guest: 0, user: 1, admin: 2 }

/** How a node gets the token a `node` RPC needs; `<token file>` is the master's [auth] token_file. */
export const nodeTokenFix = (node: string) =>
  `create one with \`mcp token create --file <token file> --kind system --role guest --name ${node}\` and give it to that node's agent ([master] token_file)`

/**
 * A `node` RPC is the node speaking for itself (registering its addresses and role, reporting
 * what runs on it), so the caller must be that node: a system token named after it. The role
 * does not matter (a node token can be a guest and open nothing else); an admin's human token
 * is refused too, since the master would take an operator's word for what runs where.
 */
const authorizeNode = (principal: Principal, rpc: string, node: string | undefined): Either.Either<Principal, Errors.Forbidden> => {
  const refuse = (rule: string) => Either.left(new Errors.Forbidden({ principal: principal.name, role: principal.role, rpc, rule }))
  if (principal.kind !== "system") {
    return refuse(`${rpc} is for agents only: a node calls it with its own system token, named after the node (a ${principal.kind} token never may); ${nodeTokenFix("<node>")}`)
  }
  if (node === undefined) return refuse(`${rpc} names no node, so no token may speak for it`)
  if (principal.name !== node) {
    return refuse(`the token ${principal.name} may not speak for node ${node}: a node calls ${rpc} with its own system token, named after it; ${nodeTokenFix(node)}`)
  }
  return Either.right(principal)
}

/**
 * `node` is the node the payload speaks for; only `node` RPCs read it. An Either, which is also
 * an Effect: the middleware yields it, the immediate path (`Admission`) reads it at once.
 */
export const authorize = (principal: Principal, access: AccessLevel, rpc: string, policy: AccessPolicy, node?: string): Either.Either<Principal, Errors.Forbidden> => {
  if (access === "node") return authorizeNode(principal, rpc, node)
  if (access === "operate" && policy.usersMayOperate === false && rank[principal.role] < rank.admin) {
    return Either.left(new Errors.Forbidden({ principal: principal.name, role: principal.role, rpc, needs: "admin", rule: operateOnAgentRule }))
  }
  const needs = access === "read" && !policy.guestMayRead ? "user" : needed[access]
  return rank[principal.role] >= rank[needs]
    ? Either.right(principal)
    : Either.left(new Errors.Forbidden({ principal: principal.name, role: principal.role, rpc, needs }))
}

/**
 * Each payload's decoded (Type) side with the contracts' `preserve` option taken off, so that
 * checking it with `onExcessProperty: "error"` reaches nested structs (NodeInfo, ProxyRoute) too;
 * `clean` answers first, without allocating, for the payloads it can vouch for (ExcessKeys.ts).
 */
type Check = (u: unknown) => Either.Either<unknown, ParseResult.ParseIssue>
interface StrictCheck {
  readonly clean: (u: unknown) => boolean
  readonly check: Check
}
const strictChecks = new WeakMap<Rpc.AnyWithProps, StrictCheck | null>()
const strictCheck = (rpc: Rpc.AnyWithProps) => {
  let strict: StrictCheck | null | undefined = strictChecks.get(rpc)
  if (strict === undefined) {
    const ast = SchemaAST.typeAST(rpc.payloadSchema.ast)
    strict = SchemaAST.isTypeLiteral(ast)
      ? {
        clean: ExcessKeys.cleanCheck(ast),
        check: ParseResult.validateEither(Schema.make<unknown>(new SchemaAST.TypeLiteral(ast.propertySignatures, ast.indexSignatures)), {
          onExcessProperty: "error",
          errors: "all"
        })
      }
      : null
    strictChecks.set(rpc, strict)
  }
  return strict
}

/**
 * Fields of a payload that its RPC does not declare (kept by the contracts' `preserve` decode),
 * refused as UnknownFields naming each one by its path ("info.extra" inside a NodeInfo).
 */
export const excessFields = (rpc: Rpc.AnyWithProps, payload: unknown): Effect.Effect<void, Errors.UnknownFields> => {
  const strict = strictCheck(rpc)
  if (strict === null || strict.clean(payload)) return Effect.void
  const result = strict.check(payload)
  if (Either.isRight(result)) return Effect.void
  const issues = ParseResult.ArrayFormatter.formatIssueSync(result.left).filter((i) => i._tag === "Unexpected")
  if (issues.length === 0) return Effect.void
  return Effect.fail(new Errors.UnknownFields({ rpc: rpc._tag, fields: issues.map((i) => i.path.map(String).join(".")) }))
}

/**
 * The middleware's checks answered at once, for a call served without a fiber (DirectCall.ts's
 * immediate path): the caller's principal when the middleware would let the call through
 * without anything to record (a token the authenticator knows at once, the access allowed, no
 * undeclared field, a unary call that is not audited), else undefined. Undefined is not a
 * refusal: the call then goes through the middleware, which refuses it with its typed error, logs
 * and counts, or lets it through after all (a token file due for its look, an audited call).
 */
export class Admission extends Context.Tag("@mcp/rpc/AuthMiddleware/Admission")<Admission, {
  readonly admitNow: (rpc: Rpc.AnyWithProps, headers: Headers.Headers, payload: unknown) => Principal | undefined
}>() {}

const makeAdmission = (auth: Authenticator, policy: AccessPolicy): Admission["Type"] => ({
  admitNow: (rpc, headers, payload) => {
    if (auth.authenticateNow === undefined || Audit.isAudited(rpc) || StreamLimit.isStream(rpc)) return undefined
    const token = bearer(headers)
    const principal = token === undefined ? undefined : auth.authenticateNow(token)
    if (principal === undefined) return undefined
    const access = Context.get(rpc.annotations, Access)
    if (Either.isLeft(authorize(principal, access, rpc._tag, policy, access === "node" ? Context.get(rpc.annotations, NodeOf)(payload) : undefined))) return undefined
    const strict = strictCheck(rpc)
    return strict === null || strict.clean(payload) ? principal : undefined
  }
})


/**
 * The server side: needs an Authenticator, and records mutating calls in the AuditLog (whose
 * default only logs them; the daemons provide their database). A caller without a valid token
 * has no principal to record: that is counted and logged (Audit.noPrincipal), not stored.
 * Admission, the same checks answered at once, comes with it, so the two share one policy.
 */
export const layerServer = (
  policy: AccessPolicy,
  /** Streams one caller may hold open at once (StreamLimit.ts); refused beyond with TooBusy. */
  streams: StreamLimit.StreamLimits = {}
): Layer.Layer<AuthMiddleware | Admission, never, Authenticator> =>
  Layer.merge(Layer.effect(
    AuthMiddleware,
    Effect.map(Effect.all([Authenticator, Audit.AuditLog, Effect.sync(() => StreamLimit.make(streams))]), ([auth, log, limiter]) =>
      AuthMiddleware.of(({ headers, next, payload, rpc }) => {
        const token = bearer(headers)
        const authenticated = token === undefined
          ? Effect.fail(new Errors.Unauthorized({ reason: "no bearer token; pass one with the Authorization header (the CLI reads token_file from its config)" }))
          : auth.authenticate(token)
        const access = Context.get(rpc.annotations, Access)
        const checked = (principal: Principal) =>
          authorize(principal, access, rpc._tag, policy, access === "node" ? Context.get(rpc.annotations, NodeOf)(payload) : undefined).pipe(
            Effect.zipRight(excessFields(rpc, payload))
          )
        // A stream holds one of its caller's permits for as long as `next` (the whole stream) runs.
        const run = (principal: Principal) => limiter.limit(principal, rpc, Effect.provideService(next, CurrentPrincipal, principal))
        const audited = Audit.isAudited(rpc)
        const target = audited ? Audit.targetOf(payload) : []
        const record = (principal: Principal, outcome: Audit.Outcome) =>
          Audit.record(log, { who: Audit.whoOf(principal), rpc: rpc._tag, target, outcome })
        return authenticated.pipe(
          Effect.tapError((e) => Audit.noPrincipal(rpc, e.reason)),
          Effect.flatMap((principal) =>
            audited
              ? checked(principal).pipe(
                Effect.tapErrorCause((cause) => record(principal, Audit.outcomeOf(Exit.failCause(cause), true))),
                // For a stream, `next` runs until the stream ends, so this is the stream's outcome.
                Effect.zipRight(Effect.onExit(run(principal), (exit) => record(principal, Audit.outcomeOf(exit))))
              )
              : Effect.zipRight(checked(principal), run(principal))
          )
        ).pipe(CallMetrics.timed(CallMetrics.rpcDuration, { rpc: rpc._tag }))
      })
    )
  ), Layer.effect(Admission, Effect.map(Authenticator, (auth) => makeAdmission(auth, policy))))

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
