/**
 * One unary RPC served straight from Node's request event, beside RpcServer: the same ndjson
 * frame, the same payload schema, the same middleware (token, access check, unknown fields, audit,
 * timing), the same handler and the same encoded Exit, without what RpcServer builds for every
 * HTTP request (a platform request, a router, a scope, mailboxes and four fibers).
 *
 * Why: a master's heartbeats are most of its requests. Through RpcServer one cost 1.2-1.8 ms of
 * CPU before our handler ran (bench/heartbeats.ts, its @effect/rpc reference), which capped a
 * master at a few hundred heartbeats a second on one core.
 *
 * Which requests come here: a POST to the route's path whose `x-mcp-rpc` header (RPC_TAG_HEADER,
 * set by our clients on every request, HttpProtocol.ts) names the route's RPC. The header is only
 * a hint for routing; the body must then hold exactly that one request, or the answer is a defect
 * saying so. A client that sends no such header (an older agent) is served by RpcServer as before.
 *
 * Immediate answers (`routeImmediate`): a call that the auth middleware would let through at once
 * (AuthMiddleware's Admission) and that the handler can answer at once (`Immediate`) is answered
 * from the request's event without a fiber: no span, the same payload schema, checks, handler
 * state, duration metric and encoded Exit. Every other call of the RPC takes the path above. Why:
 * a heartbeat through the fiber cost its master about 0.7 ms of CPU (bench/heartbeats.ts), most of
 * it the runtime's, not the handler's.
 */
import * as Headers from "@effect/platform/Headers"
import * as Rpc from "@effect/rpc/Rpc"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSchema from "@effect/rpc/RpcSchema"
import { Cause, Context, Effect, Either, Exit, type Fiber, Metric, Runtime, Schema, type Tracer } from "effect"
import { type ParseError, TreeFormatter } from "effect/ParseResult"
import type * as http from "node:http"
import { Admission, AuthMiddleware } from "./AuthMiddleware.js"
import * as CallMetrics from "./CallMetrics.js"
import * as Failures from "./Failures.js"
import type { Principal } from "./Principal.js"
import { PROTOCOL_HEADER } from "./Protocol.js"
import * as QuickDecode from "./QuickDecode.js"
import { checkBody, describeProblem } from "./RequestLimits.js"

/** The limits RpcServer's requests are held to (Transport.ts), applied here the same way. */
export interface DirectLimits {
  readonly maxBodyBytes: number
  readonly maxMessages: number
  readonly maxDepth: number
  readonly protocolVersion: number
}

export interface DirectRoute {
  readonly _tag: "DirectRoute"
  readonly path: `/${string}`
  /** The RPC served: requests whose RPC_TAG_HEADER names it. */
  readonly tag: string
  readonly serve: (request: http.IncomingMessage, response: http.ServerResponse, limits: DirectLimits) => void
}

const NDJSON = "application/ndjson"

/** A request frame as it came: only `_tag` and `tag` are known checked; the rest is checked where it is used. */
interface RequestFrame {
  readonly _tag: "Request"
  readonly id: unknown
  readonly tag: string
  readonly payload: unknown
  readonly headers?: unknown
  readonly traceId?: unknown
  readonly spanId?: unknown
  readonly sampled?: unknown
}

const isRequestFrame = (u: unknown): u is RequestFrame =>
  typeof u === "object" && u !== null && (u as { _tag?: unknown })._tag === "Request" && typeof (u as { tag?: unknown }).tag === "string"

/**
 * A frame's own headers, checked: [name, value] pairs of strings (none when it has none), or
 * undefined for anything else. Unchecked, a pair that is not one threw in the request's event,
 * outside any fiber: one request could stop the process.
 */
const frameHeaders = (u: unknown): ReadonlyArray<readonly [string, string]> | undefined => {
  if (u === undefined) return []
  if (!Array.isArray(u)) return undefined
  for (const pair of u) {
    if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== "string" || typeof pair[1] !== "string") return undefined
  }
  return u as ReadonlyArray<readonly [string, string]>
}

/** The request's headers (Node's: lower-case names, repeated ones joined) and then the frame's, as RpcServer merges them. */
const headersOf = (request: http.IncomingMessage, own: ReadonlyArray<readonly [string, string]>): Headers.Headers => {
  const headers = Headers.fromInput(request.headers) as Record<string, string>
  for (const [name, value] of own) headers[name.toLowerCase()] = value
  return headers as Headers.Headers
}

/**
 * The handler's answer to a call from `principal`, the auth middleware's checks passed, when it
 * can give one at once and without effects to run: undefined otherwise, and the call takes the
 * full path (where the handler runs as usual). It must not change anything before it knows it
 * answers, since the full path then handles the same call.
 */
export type Immediate<Payload, Success> = (payload: Payload, principal: Principal) => Success | undefined

/**
 * Serves `tag` of `group` at `path`: the group's handler for it and every middleware the RPC
 * carries must be in the context, as for RpcServer.toHttpApp. Only unary RPCs with `wrap`
 * middlewares (ours: AuthMiddleware) can be served this way; anything else is refused here, when
 * the route is built, not on a request.
 */
export const route = <Rpcs extends Rpc.Any, const Tag extends Rpcs["_tag"]>(
  path: `/${string}`,
  group: RpcGroup.RpcGroup<Rpcs>,
  tag: Tag
): Effect.Effect<DirectRoute, never, Rpc.ToHandler<Rpc.ExtractTag<Rpcs, Tag>> | Rpc.Middleware<Rpc.ExtractTag<Rpcs, Tag>>> =>
  build(path, group, tag, Effect.succeed(undefined))

/**
 * `route`, with the calls that `immediate` answers answered at once (see Immediate). Only for an
 * RPC whose one middleware is AuthMiddleware, whose Admission says which calls it lets through.
 */
export const routeImmediate = <Rpcs extends Rpc.Any, const Tag extends Rpcs["_tag"], R>(
  path: `/${string}`,
  group: RpcGroup.RpcGroup<Rpcs>,
  tag: Tag,
  immediate: Effect.Effect<Immediate<Rpc.Payload<Rpc.ExtractTag<Rpcs, Tag>>, Rpc.Success<Rpc.ExtractTag<Rpcs, Tag>>>, never, R>
): Effect.Effect<DirectRoute, never, Rpc.ToHandler<Rpc.ExtractTag<Rpcs, Tag>> | Rpc.Middleware<Rpc.ExtractTag<Rpcs, Tag>> | R | Admission> =>
  build(path, group, tag, Effect.zipWith(immediate, Admission, (answer, admission) => ({ answer: answer as Immediate<unknown, unknown>, admission })))

interface ImmediatePath {
  readonly answer: Immediate<unknown, unknown>
  readonly admission: Admission["Type"]
}

const build = <Rpcs extends Rpc.Any, R>(
  path: `/${string}`,
  group: RpcGroup.RpcGroup<Rpcs>,
  tag: string,
  immediatePath: Effect.Effect<ImmediatePath | undefined, never, R>
) =>
  Effect.gen(function* () {
    const rpc = group.requests.get(tag) as unknown as Rpc.AnyWithProps | undefined
    if (rpc === undefined) return yield* Effect.dieMessage(`DirectCall: ${tag} is not an RPC of this group`)
    if (RpcSchema.isStreamSchema(rpc.successSchema)) return yield* Effect.dieMessage(`DirectCall: ${tag} streams; only unary RPCs are served directly`)
    for (const middleware of rpc.middlewares) {
      if (!middleware.wrap) return yield* Effect.dieMessage(`DirectCall: ${tag}'s middleware ${middleware.key} is not a wrap middleware`)
    }
    const immediate = yield* immediatePath
    if (immediate !== undefined && (rpc.middlewares.size !== 1 || [...rpc.middlewares][0]!.key !== AuthMiddleware.key)) {
      return yield* Effect.dieMessage(`DirectCall: ${tag} is answered at once only behind AuthMiddleware alone, whose checks Admission answers`)
    }
    const outer = yield* Effect.runtime<never>()
    const entry = Context.unsafeGet(outer.context, { key: rpc.key } as unknown as Context.Tag<Rpc.Handler<string>, Rpc.Handler<string>>)
    const runtime = Runtime.make({ context: Context.merge(entry.context, outer.context), fiberRefs: outer.fiberRefs, runtimeFlags: outer.runtimeFlags })
    const middlewares = [...rpc.middlewares].map((m) => Context.unsafeGet(outer.context, m) as unknown as WrapMiddleware)
    // Schema's parsers, with a compiled check first for the values it vouches for (QuickDecode.ts).
    const decode = QuickDecode.decodeUnknownEither(rpc.payloadSchema as Schema.Schema<unknown, unknown>)
    const encodeExit = QuickDecode.encodeExitEither(
      rpc.successSchema as Schema.Schema<unknown, unknown>,
      Schema.asSchema(Rpc.exitSchema(rpc as unknown as Rpc.Any)) as unknown as Schema.Schema<Exit.Exit<unknown, unknown>, unknown>
    )
    const encodeDefect = Schema.encodeUnknownEither(rpc.defectSchema as Schema.Schema<unknown, unknown>)
    let clientId = -1

    /** The call: middlewares around the handler, in RpcServer's order. */
    const call = (frame: RequestFrame, headers: Headers.Headers, payload: unknown): Effect.Effect<unknown, unknown> => {
      const options = { clientId: clientId--, headers }
      const result = entry.handler(payload, options) as Effect.Effect<unknown, unknown> | Rpc.Wrapper<Effect.Effect<unknown, unknown>>
      let effect: Effect.Effect<unknown, unknown> = Rpc.isWrapper(result) ? result.value : result
      for (const middleware of middlewares) effect = middleware({ rpc, payload, headers, clientId: options.clientId, next: effect })
      return Effect.withSpan(effect, `RpcServer.${tag}`, {
        captureStackTrace: false,
        attributes: { requestId: frame.id },
        // The caller's span as the parent, when the frame names one in strings.
        ...(typeof frame.spanId === "string" && typeof frame.traceId === "string"
          ? { parent: { _tag: "ExternalSpan", traceId: frame.traceId, spanId: frame.spanId, sampled: frame.sampled !== false, context: Context.empty() } satisfies Tracer.ExternalSpan }
          : {})
      })
    }

    const exitFrame = (id: string, exit: Exit.Exit<unknown, unknown>): string => {
      const encoded = encodeExit(exit)
      if (Either.isRight(encoded)) return line({ _tag: "Exit", requestId: id, exit: encoded.right })
      // As RpcServer: an answer that does not encode becomes the call's defect, saying why.
      return defectExitFrame(id, Cause.squash(Cause.fail(describeParseError(encoded.left, `the answer does not match ${tag}'s schema`))))
    }
    const defectExitFrame = (id: string, defect: unknown): string => {
      const encoded = encodeDefect(defect)
      return line({ _tag: "Exit", requestId: id, exit: { _tag: "Failure", cause: { _tag: "Die", defect: Either.isRight(encoded) ? encoded.right : String(defect) } } })
    }

    /**
     * The call's Exit when it is answered at once, timed as the middleware times calls. A handler
     * that throws has a bug: that is the call's defect, as in the fiber, and logged.
     */
    const recordDuration = CallMetrics.recorderNow(CallMetrics.rpcDuration, { rpc: tag })
    const answerNow = (immediate: ImmediatePath, headers: Headers.Headers, payload: unknown): Exit.Exit<unknown, unknown> | undefined => {
      const start = Date.now()
      const principal = immediate.admission.admitNow(rpc, headers, payload)
      if (principal === undefined) return undefined
      let exit: Exit.Exit<unknown, unknown>
      try {
        const value = immediate.answer(payload, principal)
        if (value === undefined) return undefined
        exit = Exit.succeed(value)
      } catch (defect) {
        Runtime.runFork(runtime, Effect.logError(`${tag} answered at once crashed`, Cause.die(defect)))
        exit = Exit.die(defect)
      }
      recordDuration(CallMetrics.resultOf(exit), (Date.now() - start) / 1000)
      return exit
    }

    const serve = (request: http.IncomingMessage, response: http.ServerResponse, limits: DirectLimits) => {
      const reply = (status: number, body: string, contentType = "text/plain") => {
        if (response.headersSent || response.destroyed) return
        response.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body), [PROTOCOL_HEADER]: String(limits.protocolVersion) })
        response.end(body)
      }
      const declared = Number(request.headers["content-length"] ?? "0")
      if (declared > limits.maxBodyBytes) return reply(413, `request body of ${declared} bytes is over the limit of ${limits.maxBodyBytes}`)
      const chunks: Array<Buffer> = []
      let size = 0
      let over = false
      request.on("data", (chunk: Buffer) => {
        if (over) return
        size += chunk.length
        if (size <= limits.maxBodyBytes) return void chunks.push(chunk)
        over = true
        chunks.length = 0
        reply(413, `request body is over the limit of ${limits.maxBodyBytes} bytes`)
      })
      request.on("error", (e) => reply(400, `request body could not be read: ${e.message}`))
      /**
       * Runs `f`, which answers. What throws there is a bug of ours, not the caller's (whatever the
       * caller sent is checked first): logged and counted, and answered without its details.
       */
      const guarded = (f: () => void) => {
        try {
          f()
        } catch (defect) {
          Runtime.runFork(runtime, Effect.zipRight(
            Effect.logError(`serving ${tag} directly crashed`, Cause.die(defect)),
            Metric.increment(Metric.tagged(Failures.unrecoverable, "operation", `serving ${tag} directly`))
          ))
          reply(500, `the server failed to answer this ${tag} request; its log says why`)
        }
      }
      request.on("end", () => guarded(onBody))
      const onBody = () => {
        if (over) return
        const body = Buffer.concat(chunks).toString("utf8")
        const problem = checkBody(body, { maxMessages: limits.maxMessages, maxDepth: limits.maxDepth })
        if (problem !== undefined) {
          const { status, text } = describeProblem(problem)
          return reply(status, text)
        }
        const answer = (frame: string) => reply(200, frame, NDJSON)
        const lines = body.split("\n").filter((l) => l.trim() !== "")
        let frame: unknown
        try {
          frame = lines.length === 1 ? JSON.parse(lines[0]!) : undefined
        } catch (e) {
          return answer(line({ _tag: "Defect", defect: `the request is not JSON: ${(e as Error).message}` }))
        }
        if (!isRequestFrame(frame) || frame.tag !== tag) {
          return answer(line({ _tag: "Defect", defect: `a request marked ${tag} (header x-mcp-rpc) must carry exactly one ${tag} request; send other requests without that header` }))
        }
        const id = frame.id
        // Said as JSON: the value came from JSON.parse, and String() would call its own toString.
        if (typeof id !== "string") return answer(line({ _tag: "Defect", defect: `Invalid request id: ${JSON.stringify(id)}` }))
        const own = frameHeaders(frame.headers)
        if (own === undefined) return answer(line({ _tag: "Defect", defect: "the request's headers must be a list of [name, value] pairs of strings" }))
        const headers = headersOf(request, own)
        const payload = decode(frame.payload)
        if (Either.isLeft(payload)) return answer(defectExitFrame(id, describeParseError(payload.left, `the payload does not match ${tag}'s schema`)))
        if (immediate !== undefined) {
          const answered = answerNow(immediate, headers, payload.right)
          if (answered !== undefined) return answer(exitFrame(id, answered))
        }
        // Suspended: a handler or middleware that throws as it builds its effect is the call's defect, as in RpcServer.
        const fiber: Fiber.RuntimeFiber<unknown, unknown> = Runtime.runFork(runtime, Effect.suspend(() => call(frame, headers, payload.right)))
        // A client that goes away stops its call, as RpcServer interrupts a request whose client left.
        const onClose = () => {
          if (!response.writableFinished) fiber.unsafeInterruptAsFork(fiber.id())
        }
        response.once("close", onClose)
        // Called by the fiber runtime when the call ends, outside the request's event: guarded too.
        fiber.addObserver((exit) => {
          response.off("close", onClose)
          guarded(() => answer(exitFrame(id, exit)))
        })
      }
    }
    return { _tag: "DirectRoute", path, tag, serve } satisfies DirectRoute
  })

type WrapMiddleware = (options: {
  readonly rpc: Rpc.AnyWithProps
  readonly payload: unknown
  readonly headers: Headers.Headers
  readonly clientId: number
  readonly next: Effect.Effect<unknown, unknown>
}) => Effect.Effect<unknown, unknown>

const line = (message: unknown) => `${JSON.stringify(message)}\n`

/**
 * Schema's report of a parse error, or `fallback` when it cannot be printed: the report quotes
 * the value, and Effect's printer calls a quoted object's own `constructor.name`, which a request
 * can make something that does not convert to a string.
 */
const describeParseError = (error: ParseError, fallback: string): string => {
  try {
    return TreeFormatter.formatErrorSync(error)
  } catch {
    return `${fallback} (the details could not be printed)`
  }
}
