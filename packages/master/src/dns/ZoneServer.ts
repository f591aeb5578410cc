/**
 * The master's DNS server for the internal zone: UDP and TCP on one address and port, answering
 * from the zone as it is at each query (Zone.ts decides the answer). TCP messages carry their
 * 2-byte length (RFC 1035 4.2.2); a client may send several on one connection, and an idle or
 * oversized one is closed. Open while its scope is.
 */
import { Data, Effect, Ref, type Scope } from "effect"
import * as dgram from "node:dgram"
import * as net from "node:net"
import { answer, serverFailure, type ZoneState } from "./Zone.js"

export interface ZoneServerOptions {
  readonly host: string
  /** 0 picks a free port (tests); the same port serves UDP and TCP. */
  readonly port: number
  /** The zone as it is now: read for every query (a failure is answered SERVFAIL, and logged). */
  readonly zone: Effect.Effect<ZoneState, { readonly message: string }>
  /** A TCP connection idle this long is closed. */
  readonly tcpIdleMs?: number
}

/** What the server did with what it received, for logs and tests: nothing is dropped silently. */
export interface ZoneServerCounts {
  readonly answered: number
  /** Datagrams or TCP messages with no DNS header, or that were responses: not answered. */
  readonly ignored: number
  /** Sockets that failed (reasons are logged). */
  readonly errors: number
}

export interface ZoneServer {
  readonly host: string
  readonly port: number
  readonly counts: Effect.Effect<ZoneServerCounts>
}

export class ZoneServerError extends Data.TaggedError("ZoneServerError")<{ readonly message: string }> {}

const TCP_MAX_MESSAGE = 65_535

/** Starts the server; it stops when the scope closes. */
export const serve = (options: ZoneServerOptions): Effect.Effect<ZoneServer, ZoneServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const counts = yield* Ref.make<ZoneServerCounts>({ answered: 0, ignored: 0, errors: 0 })
    const count = (key: keyof ZoneServerCounts) => Ref.update(counts, (c) => ({ ...c, [key]: c[key] + 1 }))
    const runtime = yield* Effect.runtime<never>()
    const run = <A>(effect: Effect.Effect<A>) => Effect.runFork(Effect.provide(effect, runtime))
    const respond = (message: Buffer, transport: "udp" | "tcp") =>
      Effect.matchEffect(options.zone, {
        onFailure: (e) =>
          Effect.as(Effect.zipRight(count("errors"), Effect.logError(`internal zone DNS server: cannot read the zone, answering SERVFAIL: ${e.message}`)), serverFailure(message)),
        onSuccess: (zone) => {
          const response = answer(zone, message, transport)
          return Effect.as(count(response === undefined ? "ignored" : "answered"), response)
        }
      })
    const failed = (what: string) => (e: Error) => run(Effect.zipRight(count("errors"), Effect.logWarning(`internal zone DNS server: ${what}: ${e.message}`)))

    // TCP first: with port 0 it picks the port, which UDP then takes too.
    const tcp = net.createServer((socket) => {
      let buffered = Buffer.alloc(0)
      socket.setTimeout(options.tcpIdleMs ?? 10_000, () => socket.destroy())
      socket.on("error", failed("a TCP connection"))
      socket.on("data", (chunk: Buffer) => {
        buffered = Buffer.concat([buffered, chunk])
        while (buffered.length >= 2) {
          const length = buffered.readUInt16BE(0)
          if (length > TCP_MAX_MESSAGE || length < 12) {
            run(count("ignored"))
            socket.destroy()
            return
          }
          if (buffered.length < 2 + length) return
          const message = buffered.subarray(2, 2 + length)
          buffered = buffered.subarray(2 + length)
          run(Effect.map(respond(message, "tcp"), (response) => {
            if (response === undefined || socket.destroyed) return
            const framed = Buffer.alloc(2 + response.length)
            framed.writeUInt16BE(response.length, 0)
            response.copy(framed, 2)
            socket.write(framed)
          }))
        }
      })
    })
    const port = yield* Effect.async<number, ZoneServerError>((resume) => {
      tcp.once("error", (e) => resume(Effect.fail(new ZoneServerError({ message: `cannot listen on TCP ${options.host}:${options.port}: ${e.message}` }))))
      tcp.listen(options.port, options.host, () => resume(Effect.succeed((tcp.address() as net.AddressInfo).port)))
    })
    yield* Effect.addFinalizer(() => Effect.async<void>((resume) => {
      tcp.close(() => resume(Effect.void))
    }))
    tcp.on("error", failed("the TCP listener"))

    const udp = dgram.createSocket(net.isIPv6(options.host) ? "udp6" : "udp4")
    yield* Effect.async<void, ZoneServerError>((resume) => {
      udp.once("error", (e) => resume(Effect.fail(new ZoneServerError({ message: `cannot listen on UDP ${options.host}:${port}: ${e.message}` }))))
      udp.bind(port, options.host, () => resume(Effect.void))
    })
    yield* Effect.addFinalizer(() => Effect.async<void>((resume) => {
      udp.close(() => resume(Effect.void))
    }))
    udp.on("error", failed("the UDP socket"))
    udp.on("message", (message, peer) => {
      run(Effect.map(respond(message, "udp"), (response) => {
        if (response !== undefined) udp.send(response, peer.port, peer.address, (e) => e && failed(`an answer to ${peer.address}`)(e))
      }))
    })

    return { host: options.host, port, counts: Ref.get(counts) }
  })
