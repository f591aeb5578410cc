/**
 * The client side of the HTTPS transport (Transport.ts): a typed client for an RPC group that
 * trusts only the platform CA, speaks ndjson and turns an RPC the server does not know into
 * VersionSkew. A module of its own so that a client (the CLI, for every command it runs) does
 * not load the server's side: RpcServer, the HTTP server and router, the request limits.
 * Transport.ts re-exports all of it, so daemons and tests import either.
 */
import type * as Rpc from "@effect/rpc/Rpc"
import * as RpcClient from "@effect/rpc/RpcClient"
import type * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as Errors from "@mcp/domain/Errors"
import { Cause, Effect, Layer, Option, Redacted, Stream } from "effect"
import * as https from "node:https"
import * as AuthMiddleware from "./AuthMiddleware.js"
import * as HttpProtocol from "./HttpProtocol.js"
import { parseVersion, PROTOCOL_HEADER, PROTOCOL_VERSION } from "./Protocol.js"
import * as ServerIdentity from "./ServerIdentity.js"

/**
 * The lowest TLS version our own peers speak: servers refuse, and clients do not offer, anything
 * older. Every MCP server and client is built here, so nothing in the fleet needs TLS 1.2.
 */
export const MIN_TLS_VERSION = "TLSv1.3" as const

export interface ClientOptions {
  /** `https://host:port/path` of the group's endpoint. */
  readonly url: string
  /** The platform CA: the only issuer trusted for the server's certificate. */
  readonly ca: string
  readonly token: Redacted.Redacted<string>
  /** A client certificate and key, for servers that require mTLS. */
  readonly clientCert?: { readonly cert: string; readonly key: Redacted.Redacted<string> }
  /**
   * The peer this client must reach: its certificate must name it (CN or DNS SAN), besides being
   * the CA's and valid for the URL's host; otherwise the handshake fails with
   * ServerIdentity.ServerIdentityMismatch before the token or any request is sent.
   */
  readonly expectedName?: string
}

const isUnknownTag = (defect: unknown): boolean =>
  (typeof defect === "string" && defect.startsWith("Unknown request tag")) ||
  (defect instanceof Error && defect.message.startsWith("Unknown request tag"))

/**
 * A typed client for `group` over HTTPS. A call the server does not know fails with
 * VersionSkew, carrying both protocol versions, instead of an opaque defect.
 */
/**
 * The most a connection waits idle in a client's pool. A connection in use is not cut by it (Node
 * only reports the silence to the request, which does not listen): a quiet stream stays open.
 */
export const POOLED_IDLE_TIMEOUT_MS = 60_000

export const makeClient = <Rpcs extends Rpc.Any>(group: RpcGroup.RpcGroup<Rpcs>, options: ClientOptions) =>
  Effect.gen(function* () {
    // What the server said its protocol version is, in its latest answer (for VersionSkew).
    let remoteVersion: number | undefined
    // A long-lived client (the master's per agent, an agent's per master) reuses its TLS
    // connection instead of a handshake on both sides for every call. An idle one is dropped a
    // second before the keep-alive timeout the server announces (its Keep-Alive header), so a call
    // never goes out on a connection the server is closing at that moment (ECONNRESET): Node 20
    // applies that announced timeout only to an agent with a `timeout` of its own, which is why it
    // has one (POOLED_IDLE_TIMEOUT_MS; the server's, 5 s by default, is shorter and wins). The agent
    // is destroyed with the client's scope, so a one-shot CLI still exits.
    const agent = yield* Effect.acquireRelease(
      Effect.sync(() =>
        new https.Agent({
          keepAlive: true,
          timeout: POOLED_IDLE_TIMEOUT_MS,
          ca: options.ca,
          minVersion: MIN_TLS_VERSION,
          ...(options.clientCert === undefined ? {} : { cert: options.clientCert.cert, key: Redacted.value(options.clientCert.key) }),
          ...(options.expectedName === undefined ? {} : { checkServerIdentity: ServerIdentity.expectName(options.expectedName) })
        })
      ),
      (agent) => Effect.sync(() => agent.destroy())
    )
    const protocol = HttpProtocol.layer({
      url: options.url,
      agent,
      onResponse: (headers) => {
        const version = headers[PROTOCOL_HEADER]
        remoteVersion = parseVersion(Array.isArray(version) ? version[0] : version)
      }
    }).pipe(Layer.provide(RpcSerialization.layerNdjson))
    const context = yield* Layer.build(Layer.merge(protocol, AuthMiddleware.layerClient(options.token)))
    const client = yield* Effect.provide(RpcClient.make(group), context)

    const skew = (rpc: string) =>
      Effect.suspend(() => Effect.fail(new Errors.VersionSkew({ rpc, localVersion: PROTOCOL_VERSION, remoteVersion: remoteVersion ?? 0 })))
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
