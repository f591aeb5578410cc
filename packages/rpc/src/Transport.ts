/**
 * HTTPS transport for the RPC groups (and plain GET routes such as /metrics): a server that pins
 * the platform CA (and, with client auth, requires client certificates), and clients that trust
 * only that CA. ndjson framing so streams arrive item by item. Limits, each refused with a
 * message naming it: body size, RPC messages per request and JSON depth (checked on the raw body
 * before anything decodes it), and on the server's connections: timeouts for the TLS handshake,
 * for a connection that sends nothing, for headers and for the request, and a cap on open
 * connections. Streams per caller are bounded in the auth middleware (StreamLimit.ts), which
 * knows the caller. The clients are in TransportClient.ts, re-exported here.
 */
import { HttpIncomingMessage, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import { type Rpc, type RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Effect, Layer, Option, Redacted, type Scope } from "effect"
import type * as http from "node:http"
import * as https from "node:https"
import type * as tls from "node:tls"
import type { DirectLimits, DirectRoute } from "./DirectCall.js"
import { PROTOCOL_HEADER, PROTOCOL_VERSION, RPC_TAG_HEADER } from "./Protocol.js"
import { checkBody, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_MESSAGES_PER_REQUEST, describeProblem } from "./RequestLimits.js"
import { MIN_TLS_VERSION } from "./TransportClient.js"

export { DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_MESSAGES_PER_REQUEST } from "./RequestLimits.js"
// The clients live in TransportClient.ts (a client need not load the server); here too for daemons and tests.
export { type ClientOptions, makeClient, MIN_TLS_VERSION } from "./TransportClient.js"

export interface TlsServerOptions {
  readonly cert: string
  readonly key: Redacted.Redacted<string>
  /** The platform CA; required when clientAuth is on. */
  readonly ca: string
  /** Require a client certificate signed by the CA (mTLS). */
  readonly clientAuth: boolean
}

export interface ServerOptions {
  readonly host: string
  readonly port: number
  readonly tls: TlsServerOptions
  /** Largest request body accepted; larger ones get 413 before they are read. Default 4 MiB. */
  readonly maxBodyBytes?: number
  /** RPC messages (ndjson lines) one request may carry; more get 413 and none runs. Default 64. */
  readonly maxMessagesPerRequest?: number
  /** How deeply a request's JSON may nest; deeper gets 400 before it is parsed. Default 32. */
  readonly maxJsonDepth?: number
  /** Timeouts and the connection cap; each defaults to the DEFAULT_ constant below. */
  readonly connections?: ConnectionOptions
  /** Only for tests of version skew: the protocol version this server claims. */
  readonly protocolVersion?: number
}

export interface RpcRoute {
  readonly path: `/${string}`
  /** POST for an RPC group (the default); GET for a plain read such as /metrics (Exposition.ts). */
  readonly method?: "GET" | "POST"
  readonly app: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope>
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

export interface ConnectionOptions {
  /** A TLS handshake not finished in this time is aborted. */
  readonly handshakeTimeoutMs?: number
  /** A connection that sends no request (after its handshake) in this time is closed. */
  readonly idleTimeoutMs?: number
  /** The request's headers must arrive within this time of its first byte. */
  readonly headersTimeoutMs?: number
  /**
   * The whole request (headers and body) must arrive within this time. It covers receiving the
   * request only: a response that streams for hours (a Logs or Events follow) is not cut.
   */
  readonly requestTimeoutMs?: number
  /** An idle keep-alive connection between requests is closed after this. */
  readonly keepAliveTimeoutMs?: number
  /** How often Node checks the header and request timeouts (it enforces them no finer). */
  readonly timeoutCheckIntervalMs?: number
  /** Open connections beyond this are closed as they arrive. */
  readonly maxConnections?: number
}

/**
 * A handshake is a few round trips: 10 s covers a slow link, where Node's default (120 s) lets
 * a peer that opens connections and never speaks hold each for two minutes.
 */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000
/** Our clients send their request as soon as the handshake ends; 10 s covers a slow link. */
export const DEFAULT_IDLE_TIMEOUT_MS = 10_000
/** Headers are a few hundred bytes: 20 s is generous (Node's default is 60 s). */
export const DEFAULT_HEADERS_TIMEOUT_MS = 20_000
/**
 * A request body is at most 4 MiB (DEFAULT_MAX_BODY_BYTES): 60 s accepts it down to about
 * 70 KB/s, and stops a peer that trickles a body to hold the connection (Node's default: 300 s).
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 60_000
/** Node's own default: clients reuse a connection within it, so this keeps today's behaviour. */
export const DEFAULT_KEEP_ALIVE_TIMEOUT_MS = 5_000
/** Node checks every 30 s by default, which would let a timeout overrun by that much. */
export const DEFAULT_TIMEOUT_CHECK_INTERVAL_MS = 2_000
/**
 * The fleet's clients are a few CLIs, one connection pool per agent and the master: 512 is far
 * above that and stays below the common 1024 open-file limit, leaving descriptors for the
 * daemon's databases, sockets and outgoing connections.
 */
export const DEFAULT_MAX_CONNECTIONS = 512

/** Serves one RPC group at `path`; needs the group's handlers and the auth middleware. */
export const route = <Rpcs extends Rpc.Any>(path: `/${string}`, group: RpcGroup.RpcGroup<Rpcs>) =>
  Effect.map(RpcServer.toHttpApp(group, { disableFatalDefects: true }), (app): RpcRoute => ({ path, app }))

interface GuardLimits {
  readonly maxBodyBytes: number
  readonly maxMessages: number
  readonly maxDepth: number
}

const isOverMaxBytes = (error: { readonly cause?: unknown }) => error.cause instanceof Error && error.cause.message === "maxBytes exceeded"

const guard = (
  router: HttpRouter.HttpRouter<never, never>,
  limits: GuardLimits,
  protocolVersion: number
) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const { maxBodyBytes } = limits
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > maxBodyBytes) {
      return HttpServerResponse.text(`request body of ${declared} bytes is over the limit of ${maxBodyBytes}`, { status: 413 })
    }
    // The body is read whole here (at most maxBodyBytes; chunked bodies carry no length, so the
    // limit also applies while reading) and checked before the RPC app decodes any of it. The
    // request caches its text, so the RPC app reads the same body without reading the socket.
    const body = yield* Effect.either(request.text.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes))))
    if (body._tag === "Left") {
      return isOverMaxBytes(body.left)
        ? HttpServerResponse.text(`request body is over the limit of ${maxBodyBytes} bytes`, { status: 413 })
        : HttpServerResponse.text(`request body could not be read: ${body.left.message}`, { status: 400 })
    }
    const problem = checkBody(body.right, { maxMessages: limits.maxMessages, maxDepth: limits.maxDepth })
    if (problem !== undefined) {
      const { status, text } = describeProblem(problem)
      return HttpServerResponse.text(text, { status })
    }
    const response = yield* router.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)))
    return HttpServerResponse.setHeader(response, PROTOCOL_HEADER, String(protocolVersion))
  }).pipe(
    Effect.catchTag("RouteNotFound", () => Effect.succeed(HttpServerResponse.text("no such RPC endpoint", { status: 404 })))
  )

/**
 * The RPCs served straight from Node's request event (DirectCall.ts), by path and RPC tag. Filled
 * when the routes are built, which is after the Node server exists.
 */
type DirectTable = Map<string, Map<string, DirectRoute>>

/**
 * An HTTPS server for the given routes (an effect may give several, as the dashboard's); RPCs
 * serialized as ndjson. A DirectRoute (DirectCall.ts) serves one RPC of a group without RpcServer;
 * the group's route serves the rest, and that RPC too for clients that do not mark it.
 */
export const layerServer = <const Routes extends ReadonlyArray<Effect.Effect<RpcRoute | DirectRoute | ReadonlyArray<RpcRoute>, unknown, unknown>>>(
  options: ServerOptions,
  routes: Routes
) =>
  Layer.unwrapEffect(Effect.sync(() => {
    const direct: DirectTable = new Map()
    const limits: DirectLimits = {
      maxBodyBytes: options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES,
      maxMessages: options.maxMessagesPerRequest ?? DEFAULT_MAX_MESSAGES_PER_REQUEST,
      maxDepth: options.maxJsonDepth ?? DEFAULT_MAX_JSON_DEPTH,
      protocolVersion: options.protocolVersion ?? PROTOCOL_VERSION
    }
    const serve = Layer.scopedDiscard(
      Effect.gen(function* () {
        const built: ReadonlyArray<RpcRoute | DirectRoute> = (yield* (Effect.all(routes) as Effect.Effect<
          ReadonlyArray<RpcRoute | DirectRoute | ReadonlyArray<RpcRoute>>,
          Effect.Effect.Error<Routes[number]>,
          Effect.Effect.Context<Routes[number]>
        >)).flat()
        let router: HttpRouter.HttpRouter<never, never> = HttpRouter.empty
        for (const route of built) {
          if ("_tag" in route) {
            const byTag = direct.get(route.path) ?? new Map<string, DirectRoute>()
            direct.set(route.path, byTag.set(route.tag, route))
            continue
          }
          router = route.method === "GET" ? HttpRouter.get(router, route.path, route.app) : HttpRouter.post(router, route.path, route.app)
        }
        yield* HttpServer.serveEffect(guard(router, limits, limits.protocolVersion))
      })
    )
    const listener = NodeHttpServer.layer(() => createHttpsServer(options, direct, limits), { port: options.port, host: options.host })
    // Keep HttpServer in the output so callers can read the bound address (port 0 in tests).
    return Layer.provideMerge(serve, Layer.merge(listener, RpcSerialization.layerNdjson))
  }))

/** The direct route a request is for: a POST to its path, marked with its RPC's tag. */
const directRouteOf = (direct: DirectTable, request: { readonly method?: string | undefined; readonly url?: string | undefined; readonly headers: Record<string, string | Array<string> | undefined> }) => {
  if (direct.size === 0 || request.method !== "POST" || request.url === undefined) return undefined
  const tag = request.headers[RPC_TAG_HEADER]
  return typeof tag === "string" ? direct.get(request.url)?.get(tag) : undefined
}

/** The Node https server with the TLS settings, the timeouts and the connection cap applied. */
const createHttpsServer = (options: ServerOptions, direct: DirectTable, limits: DirectLimits): https.Server => {
  const c = options.connections ?? {}
  const headersTimeout = c.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS
  const requestTimeout = c.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS
  const server = https.createServer({
    cert: options.tls.cert,
    key: Redacted.value(options.tls.key),
    ca: options.tls.ca,
    requestCert: options.tls.clientAuth,
    rejectUnauthorized: options.tls.clientAuth,
    minVersion: MIN_TLS_VERSION,
    handshakeTimeout: c.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    // Node refuses a headers timeout longer than the request timeout.
    headersTimeout: Math.min(headersTimeout, requestTimeout),
    requestTimeout,
    connectionsCheckingInterval: c.timeoutCheckIntervalMs ?? DEFAULT_TIMEOUT_CHECK_INTERVAL_MS
  })
  server.keepAliveTimeout = c.keepAliveTimeoutMs ?? DEFAULT_KEEP_ALIVE_TIMEOUT_MS
  server.maxConnections = c.maxConnections ?? DEFAULT_MAX_CONNECTIONS
  // Node's header and request timeouts start at a request's first byte, so a connection that
  // completes its handshake and then sends nothing would stay open for ever: close it unless a
  // request arrives in time. Once one has, the request, header and keep-alive timeouts apply;
  // a long response (a follow stream) that is quiet for a while is not idle in this sense.
  const idleTimeout = c.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS
  const waiting = new WeakMap<tls.TLSSocket, NodeJS.Timeout>()
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    const timer = setTimeout(() => socket.destroy(), idleTimeout).unref()
    waiting.set(socket, timer)
    socket.once("close", () => clearTimeout(timer))
  })
  const requestArrived = (socket: tls.TLSSocket) => {
    const timer = waiting.get(socket)
    if (timer !== undefined) {
      clearTimeout(timer)
      waiting.delete(socket)
    }
  }
  // A request for a direct route is served here and never reaches the platform's listener: Node
  // has no other way to take a request before the listeners registered on the server see it.
  const emit = server.emit.bind(server) as (event: string | symbol, ...args: Array<unknown>) => boolean
  server.emit = ((event: string | symbol, ...args: Array<unknown>): boolean => {
    if (event !== "request") return emit(event, ...args)
    const [request, response] = args as [http.IncomingMessage, http.ServerResponse]
    requestArrived(request.socket as tls.TLSSocket)
    const route = directRouteOf(direct, request)
    if (route === undefined) return emit(event, ...args)
    route.serve(request, response, limits)
    return true
  }) as typeof server.emit
  return server
}
