/**
 * The client's RPC protocol over HTTP with ndjson: @effect/rpc's own (RpcClient.makeProtocolHttp)
 * with one change, so that a long-lived client keeps its connection.
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
 */
import * as HttpBody from "@effect/platform/HttpBody"
import * as HttpClient from "@effect/platform/HttpClient"
import * as HttpClientRequest from "@effect/platform/HttpClientRequest"
import * as RpcClient from "@effect/rpc/RpcClient"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import type { FromClientEncoded, FromServerEncoded } from "@effect/rpc/RpcMessage"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import { Chunk, Effect, Layer, Stream } from "effect"
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

const makeProtocol = (client: HttpClient.HttpClient) =>
  RpcClient.Protocol.make((writeResponse) =>
    Effect.gen(function* () {
      const serialization = yield* RpcSerialization.RpcSerialization
      const send = (request: FromClientEncoded): Effect.Effect<void, RpcClientError> => {
        // Acks, interrupts and pings have no meaning over HTTP: every request is its own exchange.
        if (request._tag !== "Request") return Effect.void
        const parser = serialization.unsafeMake()
        const lines = serialization.contentType === "application/ndjson" ? ndjsonLines() : undefined
        const decode = (bytes: Uint8Array) => (lines === undefined ? parser.decode(bytes) : lines(bytes)) as ReadonlyArray<FromServerEncoded>
        const encoded = parser.encode(request)
        const body =
          typeof encoded === "string"
            ? HttpBody.text(encoded, serialization.contentType)
            : HttpBody.uint8Array(encoded!, serialization.contentType)
        // A call's end (its Exit, or a defect that ends every call) waits for the body's end.
        const ends: Array<FromServerEncoded> = []
        const deliver = (messages: ReadonlyArray<FromServerEncoded>) => Effect.forEach(messages, writeResponse, { discard: true })
        // The RPC's tag, for a server that answers some RPCs without RpcServer (DirectCall.ts).
        return client.post("", { body, headers: { [RPC_TAG_HEADER]: request.tag } }).pipe(
          Effect.flatMap((response) =>
            Stream.runForEachChunk(response.stream, (chunk) => {
              const now: Array<FromServerEncoded> = []
              for (const bytes of Chunk.toReadonlyArray(chunk)) {
                for (const message of decode(bytes)) {
                  if (message._tag === "Chunk") now.push(message)
                  else ends.push(message)
                }
              }
              return deliver(now)
            })
          ),
          Effect.mapError((cause) => new RpcClientError({ reason: "Protocol", message: "Failed to send HTTP request", cause })),
          Effect.zipRight(Effect.suspend(() => deliver(ends)))
        )
      }
      return { send, supportsAck: false, supportsTransferables: false } as const
    })
  )

/** RpcClient.layerProtocolHttp with the protocol above; the same options. */
export const layer = (options: {
  readonly url: string
  readonly transformClient?: (client: HttpClient.HttpClient) => HttpClient.HttpClient
}): Layer.Layer<RpcClient.Protocol, never, RpcSerialization.RpcSerialization | HttpClient.HttpClient> =>
  Layer.scoped(
    RpcClient.Protocol,
    Effect.flatMap(HttpClient.HttpClient, (client) => {
      const prefixed = HttpClient.mapRequest(client, HttpClientRequest.prependUrl(options.url))
      return makeProtocol(options.transformClient === undefined ? prefixed : options.transformClient(prefixed))
    })
  )
