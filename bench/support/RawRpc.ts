/**
 * A lean load generator for the benches: posts one RPC request (the ndjson frame @effect/rpc's
 * client sends) over node:https keep-alive connections and reads the Exit back, with no RPC
 * client library in between. The same generator asks the master and the reference servers, so
 * the figures compare servers, not clients; and it costs this process little enough that the
 * master, not the load generator, is what saturates.
 *
 * Each call carries its own bearer token: a simulated agent speaks with its own system token,
 * as a real one does.
 */
import * as https from "node:https"
import * as tls from "node:tls"
import { PROTOCOL_HEADER, PROTOCOL_VERSION, RPC_TAG_HEADER } from "../../packages/rpc/src/Protocol.js"
import { POOLED_IDLE_TIMEOUT_MS } from "../../packages/rpc/src/TransportClient.js"

export interface Target {
  readonly port: number
  /** The RPC group's path, e.g. /control. */
  readonly path: string
  /** The CA (PEM) the server's certificate is signed by. */
  readonly ca: string | Buffer
  /**
   * Name the RPC in the x-mcp-rpc header, as our clients do (a master answers a heartbeat so
   * marked without RpcServer, DirectCall.ts). Default true; false sends what an older agent sent.
   */
  readonly marked?: boolean
}

export type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: string }

export interface Poster {
  readonly call: (tag: string, payload: unknown, token: string) => Promise<Outcome>
  readonly close: () => void
}

/** The Exit frame of a response body, or why there is none. */
const outcomeOf = (status: number | undefined, text: string): Outcome => {
  if (status !== 200) return { ok: false, error: `HTTP ${status}: ${text.slice(0, 200)}` }
  for (const line of text.split("\n")) {
    if (line === "") continue
    let message: { readonly _tag?: string; readonly exit?: { readonly _tag: string; readonly value?: unknown; readonly cause?: unknown } }
    try {
      message = JSON.parse(line)
    } catch {
      return { ok: false, error: `not ndjson: ${line.slice(0, 200)}` }
    }
    if (message._tag !== "Exit" || message.exit === undefined) continue
    return message.exit._tag === "Success"
      ? { ok: true, value: message.exit.value }
      : { ok: false, error: JSON.stringify(message.exit.cause).slice(0, 300) }
  }
  return { ok: false, error: `no Exit in the response: ${text.slice(0, 200)}` }
}

/** A client with at most `sockets` keep-alive connections to 127.0.0.1:port. */
export const makePoster = (target: Target, sockets: number): Poster => {
  // Pooled as our clients pool (TransportClient): an idle connection is let go before the server
  // closes it, so no call goes out on a connection being closed (ECONNRESET).
  // Two differences keep this process from pausing where an agent would not: its connections are
  // used in turn (fifo), so none goes idle past the server's keep-alive timeout (5 s) under load
  // and has to be made again in the next burst (Node's default, lifo, leaves most of them idle);
  // and all of them share one TLS context, where an agent with `ca` would parse it again for each
  // connection (20-47 ms of this process's event loop when a burst opened a few at once).
  const secureContext = tls.createSecureContext({ ca: target.ca })
  const agent = new https.Agent({ keepAlive: true, maxSockets: sockets, secureContext, scheduling: "fifo", timeout: POOLED_IDLE_TIMEOUT_MS })
  let id = 0
  const call = (tag: string, payload: unknown, token: string) =>
    new Promise<Outcome>((resolve) => {
      const body = `${JSON.stringify({ _tag: "Request", id: String(++id), tag, payload, headers: [] })}\n`
      const request = https.request(
        {
          host: "127.0.0.1",
          port: target.port,
          path: target.path,
          method: "POST",
          agent,
          servername: "localhost",
          headers: {
            "content-type": "application/ndjson",
            "content-length": Buffer.byteLength(body),
            authorization: `Bearer ${token}`,
            [PROTOCOL_HEADER]: String(PROTOCOL_VERSION),
            ...(target.marked === false ? {} : { [RPC_TAG_HEADER]: tag })
          }
        },
        (response) => {
          let text = ""
          response.setEncoding("utf8")
          response.on("data", (d: string) => (text += d))
          response.on("end", () => resolve(outcomeOf(response.statusCode, text)))
          response.on("error", (e) => resolve({ ok: false, error: e.message }))
        }
      )
      request.on("error", (e) => resolve({ ok: false, error: e.message }))
      request.end(body)
    })
  return { call, close: () => agent.destroy() }
}
