/**
 * The audit trail: every RPC that changes something (access `operate` or `admin`) is recorded,
 * on the daemon that served it, with who called it, what it was aimed at and how it ended. The
 * AuthMiddleware records around the handler (it is the one place that knows the principal, the
 * RPC, the payload and, as a `wrap` middleware, the result), so a call refused for its role or
 * its fields is recorded as well: that is what an audit is for.
 *
 * What is recorded is chosen, never the payload as a whole: the names a call is aimed at
 * (service, node, hostname, listener...), never a definition body or anything token-like.
 */
import type { Rpc } from "@effect/rpc"
import * as Events from "@mcp/domain/Events"
import { Cause, Context, Data, Effect, Exit, Metric, Option } from "effect"
import * as Failures from "./Failures.js"
import type { Principal } from "./Principal.js"
import { Access } from "./Protocol.js"

/**
 * Marks an RPC that changes something but is not audited: the agents' Heartbeat comes every few
 * seconds from every node and would bury the trail (Register, which changes the fleet, is kept).
 */
export class Unaudited extends Context.Reference<Unaudited>()("@mcp/rpc/Unaudited", {
  defaultValue: (): boolean => false
}) {}

/** Reads are not audited; everything else is, unless marked Unaudited. */
export const isAudited = (rpc: { readonly annotations: Context.Context<never> }): boolean =>
  Context.get(rpc.annotations, Access) !== "read" && !Context.get(rpc.annotations, Unaudited)

/** How a call ended: refused by the middleware, failed or succeeded in the handler, or cut off. */
export type Outcome =
  | { readonly _tag: "Ok" }
  | { readonly _tag: "Refused"; readonly error: string; readonly message: string }
  | { readonly _tag: "Failed"; readonly error: string; readonly message: string }
  | { readonly _tag: "Interrupted" }
  | { readonly _tag: "Died"; readonly message: string }

export interface AuditEntry {
  readonly who: Events.Who
  readonly rpc: string
  /** What the call was aimed at, `key=value` in payload order (see `targetOf`). */
  readonly target: ReadonlyArray<readonly [string, string]>
  readonly outcome: Outcome
}

export class AuditWriteFailed extends Data.TaggedError("AuditWriteFailed")<{ readonly cause: unknown }> {
  override get message() {
    return `the audit entry could not be written: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

export interface AuditLogService {
  readonly record: (entry: AuditEntry) => Effect.Effect<void, AuditWriteFailed>
}

/**
 * Where entries go: the master's database and the agent's registry provide their own (as an
 * `audit` event). The default writes them to the log, so that a server assembled without a store
 * (tests, tools) still leaves the trail somewhere rather than nowhere.
 */
export class AuditLog extends Context.Reference<AuditLog>()("@mcp/rpc/AuditLog", {
  defaultValue: (): AuditLogService => ({ record: (entry) => Effect.logInfo(`audit: ${formatWho(entry.who)} ${describe(entry)}`) })
}) {}

// ---------------------------------------------------------------------------------------------
// What is recorded

/** Values are shown, not stored whole: a name longer than this is cut. */
const MAX_VALUE = 80
const MAX_MESSAGE = 200

/** One line, printable, bounded: a payload value or error message shown in `mcp events`. */
const clip = (text: string, max: number): string => {
  const line = text.replace(/[\u0000-\u001f\u007f]+/g, " ").trim()
  return line.length > max ? `${line.slice(0, max - 1)}…` : line
}

const scalar = (value: unknown): string | undefined =>
  typeof value === "string" ? clip(value, MAX_VALUE)
  : typeof value === "number" || typeof value === "boolean" ? String(value)
  : undefined

const field = (o: unknown, key: string): unknown =>
  typeof o === "object" && o !== null && !Array.isArray(o) ? (o as Record<string, unknown>)[key] : undefined

/** Payload fields that name what a call is aimed at, or how (flags that change what it does). */
const TARGET_KEYS = ["service", "component", "node", "workerNode", "hostname", "listener", "force", "dryRun"] as const

/**
 * What a call was aimed at, from an allow-list of payload fields: the top-level names, a node's
 * name inside `info` (Register, NodesAdd), a proxy route's listener and hostname, and a
 * definition's service name (Deploy, Sync), never the definition itself.
 */
export const targetOf = (payload: unknown): ReadonlyArray<readonly [string, string]> => {
  const out: Array<readonly [string, string]> = []
  const add = (key: string, value: unknown) => {
    const s = scalar(value)
    if (s !== undefined && !out.some(([k]) => k === key)) out.push([key, s])
  }
  add("service", field(field(payload, "definition"), "name"))
  const definitions = field(payload, "definitions")
  if (Array.isArray(definitions)) {
    const names = definitions.map((d) => scalar(field(d, "name"))).filter((n): n is string => n !== undefined)
    if (names.length > 0) out.push(["services", clip(names.join(","), MAX_VALUE)])
  }
  for (const key of TARGET_KEYS) add(key, field(payload, key))
  add("node", field(field(payload, "info"), "name"))
  add("listener", field(field(payload, "route"), "listener"))
  add("hostname", field(field(payload, "route"), "hostname"))
  return out
}

const errorOf = (error: unknown): { readonly error: string; readonly message: string } => {
  const tag = typeof error === "object" && error !== null && typeof (error as { _tag?: unknown })._tag === "string"
    ? (error as { _tag: string })._tag
    : "Error"
  const message = error instanceof Error || (typeof error === "object" && error !== null && typeof (error as { message?: unknown }).message === "string")
    ? (error as { message: string }).message
    : String(error)
  return { error: tag, message: clip(message, MAX_MESSAGE) }
}

/**
 * Refusals, recorded as refused, not failed: the middleware's own, whichever step made them (a
 * stream refused for the caller's open streams fails inside `next`, after the role check), and
 * the deploy policy's, which a handler reports before it changes anything.
 */
const REFUSALS: ReadonlySet<string> = new Set(["Unauthorized", "Forbidden", "UnknownFields", "VersionSkew", "TooBusy", "PolicyViolation"])

/** A call's end as an Outcome; `refused` when it was the middleware that stopped it. */
export const outcomeOf = (exit: Exit.Exit<unknown, unknown>, refused = false): Outcome => {
  if (Exit.isSuccess(exit)) return { _tag: "Ok" }
  const failure = Cause.failureOption(exit.cause)
  if (Option.isSome(failure)) {
    const error = errorOf(failure.value)
    return { _tag: refused || REFUSALS.has(error.error) ? "Refused" : "Failed", ...error }
  }
  if (Cause.isInterruptedOnly(exit.cause)) return { _tag: "Interrupted" }
  return { _tag: "Died", message: errorOf(Cause.squash(exit.cause)).message }
}

export const whoOf = (principal: Principal): Events.Who => ({ name: principal.name, kind: principal.kind, role: principal.role })

export const formatWho = Events.formatWho

const formatOutcome = (o: Outcome): string => {
  switch (o._tag) {
    case "Ok": return "ok"
    case "Refused": return `refused (${o.error}: ${o.message})`
    case "Failed": return `failed (${o.error}: ${o.message})`
    case "Interrupted": return "interrupted"
    case "Died": return `died (${o.message})`
  }
}

/** `Deploy service=web dryRun=false: ok`, the event's message. */
export const describe = (entry: AuditEntry): string =>
  [entry.rpc, ...entry.target.map(([k, v]) => `${k}=${v}`)].join(" ") + `: ${formatOutcome(entry.outcome)}`

/** An entry as an `audit` event: the service column holds the one service it was aimed at. */
export const toEvent = (entry: AuditEntry) => ({
  kind: "audit" as const,
  service: entry.target.find(([k]) => k === "service")?.[1],
  message: describe(entry),
  who: entry.who
})

// ---------------------------------------------------------------------------------------------
// Recording

/** Unauthenticated calls, by RPC: counted, not recorded (an unauthenticated flood must not fill the database). */
export const unauthenticated = Metric.counter("mcp_unauthenticated_calls", {
  incremental: true,
  description: "calls refused because the caller had no valid token, by rpc"
})

/** Entries handed to the audit log, by rpc and outcome (whether or not the write succeeded). */
export const recorded = Metric.counter("mcp_audited_calls", { incremental: true, description: "mutating calls recorded in the audit trail, by rpc and outcome" })

/**
 * Writes `entry`; a failure to write is logged and counted (mcp_carried_on_failures, operation
 * "the audit trail") and the call's own result goes back unchanged: the audit must not turn a
 * deploy that happened into an error, nor hide that its record is missing.
 */
export const record = (log: AuditLogService, entry: AuditEntry): Effect.Effect<void> =>
  // Also a log line, so a daemon's log tells who did what in the span (and trace) of the call.
  Effect.logInfo(`audit: ${formatWho(entry.who)} ${describe(entry)}`).pipe(
    Effect.zipRight(log.record(entry)),
    // The operation tag stays one value (a metric per rpc and caller would grow without bound);
    // the log line says which entry was lost.
    Effect.catchAllCause((cause) =>
      Failures.reported("the audit trail", Cause.squash(cause)).pipe(
        Effect.annotateLogs({ rpc: entry.rpc, who: formatWho(entry.who), entry: describe(entry) })
      )
    ),
    Effect.zipRight(Metric.increment(Metric.tagged(Metric.tagged(recorded, "rpc", entry.rpc), "outcome", entry.outcome._tag)))
  )

/** Counts (and for a mutating RPC, logs) a call refused as unauthenticated; there is no principal to record. */
export const noPrincipal = (rpc: Rpc.AnyWithProps, reason: string): Effect.Effect<void> =>
  Effect.zipRight(
    Metric.increment(Metric.tagged(unauthenticated, "rpc", rpc._tag)),
    isAudited(rpc) ? Effect.logWarning(`audit: (unauthenticated) ${rpc._tag} refused: ${clip(reason, MAX_MESSAGE)}`) : Effect.void
  )
