/**
 * HTTPS transport for the RPC groups: a server that pins the platform CA (and, with client
 * auth, requires client certificates), and clients that trust only that CA. ndjson framing so
 * streams arrive item by item; a body-size limit so a huge frame is refused, not buffered.
 */
import { HttpClient, HttpIncomingMessage, HttpRouter, HttpServer, HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpClient, NodeHttpServer } from "@effect/platform-node"
import { type Rpc, RpcClient, type RpcGroup, RpcSerialization, RpcServer } from "@effect/rpc"
import { Errors } from "@mcp/domain"
import { Cause, Effect, Layer, Option, Redacted, Ref, type Scope, Stream } from "effect"
import * as https from "node:https"
import * as AuthMiddleware from "./AuthMiddleware.js"
import { parseVersion, PROTOCOL_HEADER, PROTOCOL_VERSION } from "./Protocol.js"

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
  /** Only for tests of version skew: the protocol version this server claims. */
  readonly protocolVersion?: number
}

export interface RpcRoute {
  readonly path: `/${string}`
  readonly app: Effect.Effect<HttpServerResponse.HttpServerResponse, never, HttpServerRequest.HttpServerRequest | Scope.Scope>
}

export const DEFAULT_MAX_BODY_BYTES = 4 * 1024 * 1024

/**
 * The lowest TLS version our own peers speak: servers refuse, and clients do not offer, anything
 * older. Every MCP server and client is built here, so nothing in the fleet needs TLS 1.2.
 */
export const MIN_TLS_VERSION = "TLSv1.3" as const

/** Serves one RPC group at `path`; needs the group's handlers and the auth middleware. */
export const route = <Rpcs extends Rpc.Any>(path: `/${string}`, group: RpcGroup.RpcGroup<Rpcs>) =>
  Effect.map(RpcServer.toHttpApp(group, { disableFatalDefects: true }), (app): RpcRoute => ({ path, app }))

const guard = (
  router: HttpRouter.HttpRouter<never, never>,
  maxBodyBytes: number,
  protocolVersion: number
) =>
  Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const declared = Number(request.headers["content-length"] ?? "0")
    if (declared > maxBodyBytes) {
      return HttpServerResponse.text(`request body of ${declared} bytes is over the limit of ${maxBodyBytes}`, { status: 413 })
    }
    // Chunked bodies carry no length: the limit also applies while reading.
    const response = yield* router.pipe(HttpIncomingMessage.withMaxBodySize(Option.some(maxBodyBytes)))
    return HttpServerResponse.setHeader(response, PROTOCOL_HEADER, String(protocolVersion))
  }).pipe(
    Effect.catchTag("RouteNotFound", () => Effect.succeed(HttpServerResponse.text("no such RPC endpoint", { status: 404 })))
  )

/** An HTTPS server for the given RPC routes, serialized as ndjson. */
export const layerServer = <const Routes extends ReadonlyArray<Effect.Effect<RpcRoute, unknown, unknown>>>(
  options: ServerOptions,
  routes: Routes
) => {
  const serve = Layer.scopedDiscard(
    Effect.gen(function* () {
      const built: ReadonlyArray<RpcRoute> = yield* (Effect.all(routes) as Effect.Effect<
        ReadonlyArray<RpcRoute>,
        Effect.Effect.Error<Routes[number]>,
        Effect.Effect.Context<Routes[number]>
      >)
      let router: HttpRouter.HttpRouter<never, never> = HttpRouter.empty
      for (const { path, app } of built) router = HttpRouter.post(router, path, app)
      yield* HttpServer.serveEffect(guard(router, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, options.protocolVersion ?? PROTOCOL_VERSION))
    })
  )
  const listener = NodeHttpServer.layer(
    () =>
      https.createServer({
        cert: options.tls.cert,
        key: Redacted.value(options.tls.key),
        ca: options.tls.ca,
        requestCert: options.tls.clientAuth,
        rejectUnauthorized: options.tls.clientAuth,
        minVersion: MIN_TLS_VERSION
      }),
    { port: options.port, host: options.host }
  )
  // Keep HttpServer in the output so callers can read the bound address (port 0 in tests).
  return Layer.provideMerge(serve, Layer.merge(listener, RpcSerialization.layerNdjson))
}

// ---------------------------------------------------------------------------------------------
// Clients.

export interface ClientOptions {
  /** `https://host:port/path` of the group's endpoint. */
  readonly url: string
  /** The platform CA: the only issuer trusted for the server's certificate. */
  readonly ca: string
  readonly token: Redacted.Redacted<string>
  /** A client certificate and key, for servers that require mTLS. */
  readonly clientCert?: { readonly cert: string; readonly key: Redacted.Redacted<string> }
}

const isUnknownTag = (defect: unknown): boolean =>
  (typeof defect === "string" && defect.startsWith("Unknown request tag")) ||
  (defect instanceof Error && defect.message.startsWith("Unknown request tag"))

/**
 * A typed client for `group` over HTTPS. A call the server does not know fails with
 * VersionSkew, carrying both protocol versions, instead of an opaque defect.
 */
export const makeClient = <Rpcs extends Rpc.Any>(group: RpcGroup.RpcGroup<Rpcs>, options: ClientOptions) =>
  Effect.gen(function* () {
    const remoteVersion = yield* Ref.make<number | undefined>(undefined)
    const protocol = RpcClient.layerProtocolHttp({
      url: options.url,
      transformClient: (client) =>
        HttpClient.tap(client, (response) => Ref.set(remoteVersion, parseVersion(response.headers[PROTOCOL_HEADER])))
    }).pipe(
      Layer.provide(RpcSerialization.layerNdjson),
      Layer.provide(NodeHttpClient.layerWithoutAgent),
      Layer.provide(
        NodeHttpClient.makeAgentLayer({
          ca: options.ca,
          minVersion: MIN_TLS_VERSION,
          ...(options.clientCert === undefined ? {} : { cert: options.clientCert.cert, key: Redacted.value(options.clientCert.key) })
        })
      )
    )
    const context = yield* Layer.build(Layer.merge(protocol, AuthMiddleware.layerClient(options.token)))
    const client = yield* Effect.provide(RpcClient.make(group), context)

    const skew = (rpc: string) =>
      Effect.flatMap(Ref.get(remoteVersion), (remote) =>
        Effect.fail(new Errors.VersionSkew({ rpc, localVersion: PROTOCOL_VERSION, remoteVersion: remote ?? 0 }))
      )
    const wrapped: Record<string, unknown> = {}
    for (const [tag, call] of Object.entries(client as Record<string, (...args: Array<unknown>) => unknown>)) {
      wrapped[tag] = (...args: Array<unknown>) => {
        const result = call(...args)
        if (Stream.StreamTypeId in (result as object)) {
          return Stream.catchAllCause(result as Stream.Stream<unknown, unknown>, (cause) =>
            Option.match(Cause.dieOption(cause), {
              onNone: () => Stream.failCause(cause),
              onSome: (defect) => (isUnknownTag(defect) ? Stream.fromEffect(skew(tag)) : Stream.failCause(cause))
            })
          )
        }
        return Effect.catchSomeDefect(result as Effect.Effect<unknown, unknown>, (defect) =>
          isUnknownTag(defect) ? Option.some(skew(tag)) : Option.none()
        )
      }
    }
    // Same shape and types: VersionSkew is already in every RPC's error union via the middleware.
    return wrapped as unknown as typeof client
  })
