/**
 * The client's RPC protocol over HTTP with ndjson: @effect/rpc's own (RpcClient.makeProtocolHttp)
 * with four changes. The first, so that a long-lived client keeps its connection:
 *
 * Why: when a call's final message (its Exit) arrives, RpcClient interrupts the fiber still
 * reading that response, and the HTTP client answers an interrupted read by aborting the request,
 * which destroys the socket. The Exit is the response's last line, so the read was about to end
 * by itself; aborting it cost the master a new TLS connection (a handshake on both sides and a
 * new secure context) for every call to an agent, and an agent one for every heartbeat.
 *
 * The change: the messages that end a call (its Exit, or a defect) are handed to RpcClient only
 * after the response body has ended, when the connection is back in the pool. A stream's chunks
 * are handed on as they arrive, so a stream still streams. A body that fails or is cut short fails
 * the call as before (RpcClientError), and what it held is dropped: the call has no result.
 *
 * A second change: every request names its RPC in a header (RPC_TAG_HEADER), which a server may
 * use to answer it without RpcServer (DirectCall.ts).
 *
 * A third: ndjson answers are cut into lines in one pass (`ndjsonLines` below). RpcSerialization's
 * parser searches its whole buffer again for every chunk that arrives, which for one long line
 * (`mcp ps` over 100 nodes x 30 services is a 2 MB Exit in about 130 chunks) cost 0.7 s of CPU.
 *
 * A fourth: requests are posted with node:https itself (a keep-alive agent the client owns), not
 * through @effect/platform's HTTP client, which builds a request object, an AbortController (and
 * on every call's end its DOMException), a scope and a body stream for every call: about 4x the
 * CPU of a plain node:https call, where this client as a whole takes about 2x
 * (bench/rpc-client.ts). The master pays it once per agent in every fleet view.
 */
import * as HttpTraceContext from "@effect/platform/HttpTraceContext"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { Data, Effect, Exit, Layer, Option } from "effect"
import type * as http from "node:http"
import * as https from "node:https"
import { RPC_TAG_HEADER } from "./Protocol.js"

/** The longest line an answer may hold, as RpcSerialization's ndjson parser allows. */
const MAX_LINE_BYTES = 16 * 1024 * 1024

/**
 * The messages of an ndjson body, fed chunk by chunk: each byte is looked at once, and a line is
 * decoded once, when its newline arrives. Failures are RpcSerialization's own: a line over
 * MAX_LINE_BYTES, or one that is not JSON.
 */
export const ndjsonLines = () => {
  const decoder = new TextDecoder()
  let pending: Array<Uint8Array> = []
  let pendingBytes = 0
  return (bytes: Uint8Array): Array<unknown> => {
    const messages: Array<unknown> = []
    let start = 0
    for (let newline = bytes.indexOf(10); newline !== -1; newline = bytes.indexOf(10, start)) {
      const tail = bytes.subarray(start, newline)
      const line = pending.length === 0 ? tail : Buffer.concat([...pending, tail])
      pending = []
      pendingBytes = 0
      messages.push(JSON.parse(decoder.decode(line)))
      start = newline + 1
    }
    if (start < bytes.length) {
      pending.push(bytes.subarray(start))
      pendingBytes += bytes.length - start
      if (pendingBytes > MAX_LINE_BYTES) {
        const bufferSize = pendingBytes
        pending = []
        pendingBytes = 0
        throw new RpcSerialization.RpcSerializationError({ reason: "BufferSizeExceeded", maxBufferSize: MAX_LINE_BYTES, bufferSize })
      }
    }
    return messages
  }
}

/** What the protocol posts with: the group's URL and the keep-alive agent (TLS options) for it. */
export interface Target {
  /** `https://host:port/path` of the group's endpoint. */
  readonly url: string
  readonly agent: https.Agent
  /** Called with every response's headers (the client reads the server's protocol version). */
  readonly onResponse?: (headers: http.IncomingHttpHeaders) => void
}

const MAX_HELD_CHUNKS = 64

/**
 * The cause of an RpcClientError when no response ever arrived (refused, unreachable, timed out,
 * the TLS handshake failed): the server cannot have acted on the call, so a caller with another
 * address may try it there (the CLI's masters, Common.ts). `cause` is the socket's error.
 */
export class NoResponse extends Data.TaggedError("NoResponse")<{ readonly message: string; readonly cause: unknown }> {}

const protocolFailure = (cause: unknown) => new RpcClientError({ reason: "Protocol", message: "Failed to send HTTP request", cause })
const noResponse = (cause: unknown) =>
  protocolFailure(new NoResponse({ message: cause instanceof Error ? cause.message : String(cause), cause }))

/**
 * A response body as an Effect to pull from: each pull gives the chunks that arrived since the
 * last one (waiting for at least one), or undefined once the body has ended. Pulling a body that
 * failed or was cut short fails with RpcClientError; interrupting a pull destroys the response.
 */
const bodyReader = (response: http.IncomingMessage) => {
  let ready: Array<Buffer> = []
  let ended = false
  let failure: RpcClientError | undefined
  let wake: (() => void) | undefined
  const poke = () => {
    const w = wake
    wake = undefined
    w?.()
  }
  // Chunks not yet pulled are held here; past a few, the socket is paused until they are pulled
  // (a long stream to a slow reader is held back by TCP, not in this process's memory).
  response.on("data", (chunk: Buffer) => {
    ready.push(chunk)
    if (ready.length >= MAX_HELD_CHUNKS) response.pause()
    poke()
  })
  response.on("end", () => {
    ended = true
    poke()
  })
  response.on("error", (cause) => {
    failure ??= protocolFailure(cause)
    poke()
  })
  // A connection closed before the body's end ("aborted") is an error event on the response in
  // Node 20, except when the close comes first; then only "close" says so.
  response.on("close", () => {
    if (!ended) failure ??= protocolFailure(new Error("the connection closed before the response ended"))
    poke()
  })
  const take = (): Effect.Effect<ReadonlyArray<Buffer> | undefined, RpcClientError> | undefined => {
    if (ready.length > 0) {
      const chunks = ready
      ready = []
      if (response.isPaused()) response.resume()
      return Effect.succeed(chunks)
    }
    if (failure !== undefined) return Effect.fail(failure)
    if (ended) return Effect.succeed(undefined)
    return undefined
  }
  return Effect.suspend(() =>
    take() ??
      Effect.async<ReadonlyArray<Buffer> | undefined, RpcClientError>((resume) => {
        wake = () => resume(take() ?? Effect.succeed([]))
        return Effect.sync(() => {
          wake = undefined
          response.destroy()
        })
      })
  )
}

const makeProtocol = (target: Target) =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.gen(function* () {
      const serialization = yield* RpcSerialization.RpcSerialization
      const url = new URL(target.url)
      const send = (request: FromClientEncoded): Effect.Effect<void, RpcClientError> => {
        // Acks, interrupts and pings have no meaning over HTTP: every request is its own exchange.
        if (request._tag !== "Request") return Effect.void
        const parser = serialization.unsafeMake()
        const lines = serialization.contentType === "application/ndjson" ? ndjsonLines() : undefined
        const decode = (bytes: Uint8Array) => (lines === undefined ? parser.decode(bytes) : lines(bytes)) as ReadonlyArray<FromServerEncoded>
        const encoded = parser.encode(request)!
        const body = typeof encoded === "string" ? Buffer.from(encoded) : encoded
        const ends: Array<FromServerEncoded> = []
        const deliver = (messages: ReadonlyArray<FromServerEncoded>) => Effect.forEach(messages, writeResponse, { discard: true })
        // The caller's span goes along as W3C trace headers, so the server's spans join its trace.
        const posted = Effect.flatMap(Effect.option(Effect.currentSpan), (span) =>
          Effect.async<http.IncomingMessage, RpcClientError>((resume) => {
            const post = https.request(url, {
              method: "POST",
              agent: target.agent,
              headers: {
                "content-type": serialization.contentType,
                "content-length": body.byteLength,
                // The RPC's tag, for a server that answers some RPCs without RpcServer (DirectCall.ts).
                [RPC_TAG_HEADER]: request.tag,
                ...(Option.isSome(span) ? HttpTraceContext.toHeaders(span.value) : {})
              }
            }, (response) => resume(Effect.succeed(response)))
            post.on("error", (cause) => resume(Effect.fail(noResponse(cause))))
            post.end(body)
            return Effect.sync(() => post.destroy())
          }))
        // Waiting for the response and reading it can be interrupted (a caller's timeout), but not
        // the step between, so a response that arrived is always read to its end or dropped.
        return Effect.uninterruptibleMask((restore) => Effect.flatMap(restore(posted), (response) => {
          target.onResponse?.(response.headers)
          const pull = bodyReader(response)
          // A stream's chunks go on as they arrive; what ends the call waits for the body's end.
          const loop: Effect.Effect<void, RpcClientError> = Effect.flatMap(pull, (chunks) => {
            if (chunks === undefined) return Effect.suspend(() => deliver(ends))
            const now: Array<FromServerEncoded> = []
            for (const bytes of chunks) {
              // An answer that is not ndjson (a proxy's error page, a 413's text) fails as
              // RpcSerialization's parser did: a defect saying why.
              for (const message of decode(bytes)) {
                if (message._tag === "Chunk") now.push(message)
                else ends.push(message)
              }
            }
            return Effect.zipRight(deliver(now), loop)
          })
          // A call given up before its body ended (interrupted, or an answer that is not ndjson)
          // drops the response and its connection: it cannot go back to the pool half read.
          return Effect.onExit(restore(loop), (exit) => (Exit.isSuccess(exit) ? Effect.void : Effect.sync(() => response.destroy())))
        }))
      }
      return { send, supportsAck: false, supportsTransferables: false } as const
    })
  )

/** The RPC protocol posting to `target` over node:https; needs the serialization (ndjson). */
export const layer = (target: Target): Layer.Layer<RpcClient.Protocol, never, RpcSerialization.RpcSerialization> =>
  Layer.scoped(RpcClient.Protocol, makeProtocol(target))
