/**
 * Client and server in separate processes over real HTTPS with the platform CA and mTLS:
 * typed errors, streams item by item, CA pinning, tokens, oversized and malformed frames,
 * concurrency and version skew; and the load limits: messages per request, JSON depth, streams
 * per caller, connection timeouts and the connection cap.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Chunk, Deferred, Effect, Fiber, Redacted, Schedule, Stream } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import * as net from "node:net"
import * as tls from "node:tls"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { AgentRpcs } from "../src/Contracts.js"
import * as Pki from "../src/Pki.js"
import { MAX_STREAMS_PER_PRINCIPAL } from "../src/StreamLimit.js"
import * as TokenFile from "../src/TokenFile.js"
import * as Transport from "../src/Transport.js"
import { PROTOCOL_VERSION } from "../src/Protocol.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-transport-"))
const servers: Array<ChildProcess> = []
const tokens: Record<"admin" | "guest" | "expired" | "streamer", string> = { admin: "", guest: "", expired: "", streamer: "" }
let ca = ""
let otherCa = ""
let agentUrl = ""
let oldUrl = ""
let port = 0
let limitsPort = 0

/**
 * The limits server's connection settings: short, so the tests see them act. The idle timeout
 * is the shortest, so a connection that never completes a request is cut by it.
 */
const LIMITS = {
  handshakeTimeoutMs: 1000,
  idleTimeoutMs: 800,
  headersTimeoutMs: 1200,
  requestTimeoutMs: 1600,
  keepAliveTimeoutMs: 300,
  timeoutCheckIntervalMs: 100,
  maxConnections: 4
} as const
let clientCert: { cert: string; key: Redacted.Redacted<string> }

/**
 * A TCP relay in front of the server, for the scope: it counts the connections a client opens and
 * records which side ends each one first. TLS passes through it untouched; the certificate names
 * 127.0.0.1, as the relay's address is.
 */
const relayToServer = Effect.gen(function* () {
  let connections = 0
  const ended: Array<"client" | "server"> = []
  const relay = net.createServer((inbound) => {
    connections++
    const outbound = net.connect(port, "127.0.0.1")
    inbound.pipe(outbound).pipe(inbound)
    inbound.on("end", () => ended.push("client"))
    outbound.on("end", () => ended.push("server"))
    inbound.on("error", () => outbound.destroy())
    outbound.on("error", () => inbound.destroy())
  })
  yield* Effect.acquireRelease(
    Effect.async<void>((resume) => {
      relay.listen(0, "127.0.0.1", () => resume(Effect.void))
    }),
    () => Effect.sync(() => relay.close())
  )
  return { url: `https://127.0.0.1:${(relay.address() as net.AddressInfo).port}/agent`, connections: () => connections, ended } as const
})

/** Starts `fixtures/serve.ts` in its own process and waits for its READY line. */
const startServer = (name: string, config: object): Promise<number> => {
  const configPath = join(dir, `${name}.json`)
  writeFileSync(configPath, JSON.stringify(config))
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(new URL("fixtures/serve.ts", import.meta.url)), configPath], {
    stdio: ["ignore", "pipe", "pipe"]
  })
  servers.push(child)
  return new Promise((resolve, reject) => {
    let out = ""
    let err = ""
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString()
      const m = /READY (\d+)/.exec(out)
      if (m) resolve(Number(m[1]))
    })
    child.stderr!.on("data", (d: Buffer) => (err += d.toString()))
    child.on("exit", (code) => reject(new Error(`server ${name} exited with ${code}: ${err}`)))
  })
}

beforeAll(async () => {
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(join(dir, "ca"))
      yield* Pki.issueCertificate(join(dir, "ca"), "agent", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "server" })
      yield* Pki.issueCertificate(join(dir, "ca"), "operator", { ips: [], dns: [], usage: "client" })
      yield* Pki.initCa(join(dir, "other-ca"))
      const tokenFile = join(dir, "tokens.toml")
      tokens.admin = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "alice", kind: "human", role: "admin" }))
      tokens.guest = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "eve", kind: "human", role: "guest" }))
      tokens.expired = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "old", kind: "system", role: "admin", expiresInDays: 1 }))
      tokens.streamer = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "stella", kind: "human", role: "user" }))
      // Age the token: its expiry moves into the past.
      writeFileSync(tokenFile, readFileSync(tokenFile, "utf8").replace(/(expires\s*=\s*"?)[0-9][^"\n]*/, "$12020-01-01T00:00:00.000Z"), { mode: 0o600 })
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  ca = readFileSync(join(dir, "ca", "ca.crt"), "utf8")
  otherCa = readFileSync(join(dir, "other-ca", "ca.crt"), "utf8")
  clientCert = { cert: readFileSync(join(dir, "ca", "operator.crt"), "utf8"), key: Redacted.make(readFileSync(join(dir, "ca", "operator.key"), "utf8")) }
  const common = {
    certPath: join(dir, "ca", "agent.crt"),
    keyPath: join(dir, "ca", "agent.key"),
    caPath: join(dir, "ca", "ca.crt"),
    tokenFile: join(dir, "tokens.toml"),
    maxBodyBytes: 1024 * 1024
  }
  ;[port, oldUrl, limitsPort] = await Promise.all([
    startServer("agent", { ...common, clientAuth: true }),
    startServer("old", { ...common, clientAuth: false, old: true }).then((p) => `https://127.0.0.1:${p}/agent`),
    startServer("limits", { ...common, clientAuth: true, limits: { connections: LIMITS } })
  ])
  agentUrl = `https://127.0.0.1:${port}/agent`
}, 60_000)

afterAll(() => {
  for (const s of servers) s.kill("SIGTERM")
})

const client = (overrides: Partial<Transport.ClientOptions> = {}) =>
  Transport.makeClient(AgentRpcs, { url: agentUrl, ca, token: Redacted.make(tokens.admin), clientCert, ...overrides })

/** A raw HTTPS POST, for frames the typed client would never send. */
const rawPost = (body: string | Buffer) =>
  new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = https.request(agentUrl, {
      method: "POST",
      ca,
      cert: clientCert.cert,
      key: Redacted.value(clientCert.key),
      headers: { authorization: `Bearer ${tokens.admin}`, "content-type": "application/ndjson" }
    }, (res) => {
      let data = ""
      res.on("data", (d: Buffer) => (data += d.toString()))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: data }))
    })
    req.on("error", reject)
    req.end(body)
  })

/** A bare TLS handshake with the server: the version agreed, or the handshake's error code. */
const handshake = (options: tls.ConnectionOptions) =>
  new Promise<{ protocol: string | null } | { error: string }>((resolve) => {
    const socket = tls.connect({
      host: "127.0.0.1",
      port,
      servername: "localhost",
      ca,
      cert: clientCert.cert,
      key: Redacted.value(clientCert.key),
      ...options
    }, () => {
      const protocol = socket.getProtocol()
      socket.end()
      resolve({ protocol })
    })
    socket.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
  })

/** A TLS connection to the limits server that finished its handshake, or how it failed. */
const openTls = (p: number) =>
  new Promise<tls.TLSSocket | { error: string }>((resolve) => {
    const socket = tls.connect({ host: "127.0.0.1", port: p, servername: "localhost", ca, cert: clientCert.cert, key: Redacted.value(clientCert.key) }, () =>
      resolve(socket))
    socket.on("error", (e: NodeJS.ErrnoException) => resolve({ error: e.code ?? e.message }))
    socket.on("close", () => resolve({ error: "closed" }))
  })

/** Milliseconds from `start` until the server closes `socket`. */
const closedAfter = (socket: net.Socket, start: number) =>
  new Promise<number>((resolve) => {
    socket.on("error", () => {})
    socket.on("close", () => resolve(Date.now() - start))
    // Read whatever the server answers (a 408), so its close is seen.
    socket.resume()
  })

/** One ndjson RPC request frame, as the client would encode it. */
const frame = (id: number, tag: string, payload: unknown) => JSON.stringify({ _tag: "Request", id: String(id), tag, payload, headers: [] }) + "\n"

const frames = (n: number, tag: string, payload: unknown) => Array.from({ length: n }, (_, i) => frame(i, tag, payload)).join("")

const exits = (body: string) => body.split("\n").filter((line) => line.includes(`"_tag":"Exit"`)).length

/** A Status request whose payload carries an extra field nested `levels` arrays deep. */
const nested = (levels: number) =>
  `{"_tag":"Request","id":"1","tag":"Status","payload":{"service":"web","x":${"[".repeat(levels)}${"]".repeat(levels)}},"headers":[]}\n`

describe("RPC over HTTPS between processes", () => {
  it.live("TLS 1.3 is the minimum: a TLS 1.2-only client is refused, a normal client gets TLS 1.3", () =>
    Effect.gen(function* () {
      const old = yield* Effect.promise(() => handshake({ maxVersion: "TLSv1.2" }))
      expect(old).toHaveProperty("error")
      expect((old as { error: string }).error).toMatch(/PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL|WRONG_VERSION/)
      expect(yield* Effect.promise(() => handshake({}))).toEqual({ protocol: "TLSv1.3" })
    }))

  it.scopedLive("a typed error arrives as its class", () =>
    Effect.gen(function* () {
      const agent = yield* client()
      const error = yield* Effect.flip(agent.Status({ service: "nope" as never }))
      expect(error).toBeInstanceOf(Errors.ServiceNotFound)
      expect(error.message).toContain(`service "nope" is not deployed here`)
    }))

  it.scopedLive("a stream arrives item by item", () =>
    Effect.gen(function* () {
      const agent = yield* client()
      const arrivals = yield* agent.Events({ limit: 5 }).pipe(
        Stream.map((e) => ({ message: e.message, at: Date.now() })),
        Stream.runCollect,
        Effect.map(Chunk.toArray)
      )
      expect(arrivals.map((a) => a.message)).toEqual(["event 1", "event 2", "event 3", "event 4", "event 5"])
      // The server emits one every 200 ms: buffered delivery would bunch them at the end.
      expect(arrivals[4]!.at - arrivals[0]!.at).toBeGreaterThan(500)
    }))

  it.scopedLive("a long-lived client keeps one connection: calls and a stream after each other open no new one", () =>
    Effect.gen(function* () {
      const relay = yield* relayToServer
      const agent = yield* client({ url: relay.url })
      for (let i = 0; i < 3; i++) expect((yield* agent.Health()).node).toBeTypeOf("string")
      const events = yield* agent.Events({ limit: 2 }).pipe(Stream.runCollect, Effect.map(Chunk.size))
      expect(events).toBe(2)
      expect((yield* agent.Health()).node).toBeTypeOf("string")
      // Before HttpProtocol, each call ended by aborting its response and the connection with it.
      expect(relay.connections()).toBe(1)
    }))

  it.scopedLive("an idle pooled connection is dropped by the client a second before the server's keep-alive timeout, not raced by it", () =>
    Effect.gen(function* () {
      // The relay sees which side ends the connection first. The server announces Node's default
      // keep-alive timeout (Keep-Alive: timeout=5): the client must let go at 4 s, so that no call
      // goes out on a connection the server is closing (ECONNRESET).
      const relay = yield* relayToServer
      const agent = yield* client({ url: relay.url })
      expect((yield* agent.Health()).node).toBeTypeOf("string")
      // Whichever side ends it first (the server would at 5 s); at most 8 s.
      yield* Effect.sleep("100 millis").pipe(Effect.repeat({ until: () => relay.ended.length > 0 }), Effect.timeout("8 seconds"))
      expect(relay.ended[0]).toBe("client")
      // The next call opens a connection of its own and is answered.
      expect((yield* agent.Health()).node).toBeTypeOf("string")
      expect(relay.connections()).toBe(2)
    }), 15_000)

  it.scopedLive("a client pinned to another CA cannot connect", () =>
    Effect.gen(function* () {
      const agent = yield* client({ ca: otherCa })
      const error = yield* Effect.flip(agent.Health())
      expect(error._tag).toBe("RpcClientError")
    }))

  it.scopedLive("mTLS: a client without a certificate is refused", () =>
    Effect.gen(function* () {
      const { clientCert: _, ...rest } = { url: agentUrl, ca, token: Redacted.make(tokens.admin), clientCert }
      const agent = yield* Transport.makeClient(AgentRpcs, rest)
      const error = yield* Effect.flip(agent.Health())
      expect(error._tag).toBe("RpcClientError")
    }))

  it.scopedLive("wrong, expired and guest tokens are rejected with the right error", () =>
    Effect.gen(function* () {
      const wrong = yield* Effect.flip((yield* client({ token: Redacted.make("mcp_not-a-real-token") })).Health())
      expect(wrong).toEqual(new Errors.Unauthorized({ reason: "unknown token" }))
      const expired = yield* Effect.flip((yield* client({ token: Redacted.make(tokens.expired) })).Health())
      expect(expired).toEqual(new Errors.Unauthorized({ reason: "token expired" }))
      const guest = yield* Effect.flip((yield* client({ token: Redacted.make(tokens.guest) })).Ps())
      expect(guest).toBeInstanceOf(Errors.Forbidden)
      expect(JSON.stringify([wrong, expired, guest]) + wrong.message + expired.message).not.toContain(tokens.expired)
    }))

  it.scopedLive("a 10 MB frame and a malformed frame are rejected; the server keeps serving", () =>
    Effect.gen(function* () {
      const huge = yield* Effect.promise(() => rawPost(Buffer.alloc(10 * 1024 * 1024, "a")))
      expect(huge.status).toBe(413)
      const malformed = yield* Effect.promise(() => rawPost("{this is not json\n"))
      expect(malformed.body).toContain("Defect")
      const agent = yield* client()
      expect((yield* agent.Health()).node).toContain("alice")
    }))

  it.scopedLive(`more than ${Transport.DEFAULT_MAX_MESSAGES_PER_REQUEST} RPC messages in one request: refused with 413 before any runs; the limit itself runs`, () =>
    Effect.gen(function* () {
      const limit = Transport.DEFAULT_MAX_MESSAGES_PER_REQUEST
      const over = yield* Effect.promise(() => rawPost(frames(limit + 1, "Status", { service: "web" })))
      expect(over.status).toBe(413)
      expect(over.body).toBe(`request carries more than ${limit} RPC messages (ndjson lines), the most one request may carry; nothing in it was run: send the calls in separate requests`)
      expect(exits(over.body)).toBe(0)
      const at = yield* Effect.promise(() => rawPost(frames(limit, "Status", { service: "web" })))
      expect(at.status).toBe(200)
      expect(exits(at.body)).toBe(limit)
      expect(at.body).not.toContain("Failure")
    }))

  it.scopedLive(`JSON nested more than ${Transport.DEFAULT_MAX_JSON_DEPTH} levels is refused with 400 before it is parsed; the server keeps serving`, () =>
    Effect.gen(function* () {
      const limit = Transport.DEFAULT_MAX_JSON_DEPTH
      // The message and its payload are two levels; the field adds the rest.
      const at = yield* Effect.promise(() => rawPost(nested(limit - 2)))
      expect(at.status).toBe(200)
      expect(at.body).toContain("UnknownFields") // decoded and answered: only the extra field is refused
      const over = yield* Effect.promise(() => rawPost(nested(limit - 1)))
      expect(over.status).toBe(400)
      expect(over.body).toBe(`request nests JSON more than ${limit} levels deep (message 1), the most accepted; nothing in it was run: flatten the payload`)
      // Brackets inside strings are text, not nesting.
      const quoted = yield* Effect.promise(() => rawPost(frame(1, "Status", { service: "web", x: "[".repeat(1000) })))
      expect(quoted.status).toBe(200)
      // A million levels: refused the same way, no stack overflow in the server.
      const huge = yield* Effect.promise(() => rawPost("[".repeat(1_000_000) + "\n"))
      expect(huge.status).toBe(400)
      expect((yield* (yield* client()).Health()).node).toContain("alice")
    }))

  it.scopedLive(`a caller holds at most ${MAX_STREAMS_PER_PRINCIPAL} streams open; the next is TooBusy until one closes`, () =>
    Effect.gen(function* () {
      const limit = MAX_STREAMS_PER_PRINCIPAL
      const agent = yield* client({ token: Redacted.make(tokens.streamer) })
      const follow = Effect.gen(function* () {
        const started = yield* Deferred.make<void>()
        const fiber = yield* agent.Events({ limit: 10_000 }).pipe(
          Stream.tap(() => Deferred.succeed(started, undefined)),
          Stream.runDrain,
          Effect.forkScoped
        )
        yield* Deferred.await(started)
        return fiber
      })
      const open = yield* Effect.all(Array.from({ length: limit }, () => follow), { concurrency: "unbounded" })
      const refused = yield* Effect.flip(Stream.runDrain(agent.Events({ limit: 1 })))
      expect(refused).toBeInstanceOf(Errors.TooBusy)
      expect(refused).toMatchObject({ principal: "stella", rpc: "Events", limit })
      expect(refused.message).toContain(`already has ${limit} streaming calls open on this daemon`)
      // Calls that do not stream are not counted.
      expect((yield* agent.Health()).node).toContain("stella")
      // Another caller has its own streams.
      expect(Chunk.size(yield* Stream.runCollect((yield* client()).Events({ limit: 1 })))).toBe(1)
      yield* Fiber.interrupt(open[0]!)
      // The server notices the closed stream when its connection closes: shortly, not at once.
      const again = yield* Stream.runCollect(agent.Events({ limit: 1 })).pipe(
        Effect.retry({ while: (e) => e._tag === "TooBusy", schedule: Schedule.spaced("100 millis"), times: 30 })
      )
      expect(Chunk.size(again)).toBe(1)
    }), 30_000)

  it.scopedLive("500 concurrent calls succeed", () =>
    Effect.gen(function* () {
      const agent = yield* client()
      const results = yield* Effect.all(Array.from({ length: 500 }, () => agent.Ps()), { concurrency: "unbounded" })
      expect(results).toHaveLength(500)
      expect(results.every((r) => r[0]?.service === "web")).toBe(true)
    }), 60_000)

  it.scopedLive("calling an RPC an older server lacks is a VersionSkew naming the older side", () =>
    Effect.gen(function* () {
      const agent = yield* client({ url: oldUrl })
      expect((yield* agent.Health()).node).toBe("old-agent")
      const error = yield* Effect.flip(agent.Ps())
      expect(error).toBeInstanceOf(Errors.VersionSkew)
      expect(error).toMatchObject({ rpc: "Ps", localVersion: PROTOCOL_VERSION, remoteVersion: 0 })
      expect(error.message).toContain("the remote side is older: upgrade it to the same MCP release as the other")
    }))
})

describe("connection limits (a server with short timeouts and at most 4 connections)", () => {
  it("connections beyond maxConnections are closed as they arrive; closing one makes room", async () => {
    const held: Array<tls.TLSSocket> = []
    try {
      for (let i = 0; i < LIMITS.maxConnections; i++) {
        const socket = await openTls(limitsPort)
        expect(socket).toBeInstanceOf(tls.TLSSocket)
        held.push(socket as tls.TLSSocket)
      }
      expect(await openTls(limitsPort)).toHaveProperty("error")
      held.shift()!.destroy()
      await new Promise((r) => setTimeout(r, 200))
      const again = await openTls(limitsPort)
      expect(again).toBeInstanceOf(tls.TLSSocket)
      held.push(again as tls.TLSSocket)
    } finally {
      for (const s of held) s.destroy()
      // The server counts a connection closed once it sees the close: give it that moment.
      await new Promise((r) => setTimeout(r, 300))
    }
  })

  it("a TLS connection that sends nothing after its handshake is closed at the idle timeout, not before", async () => {
    const start = Date.now()
    const socket = await openTls(limitsPort)
    expect(socket).toBeInstanceOf(tls.TLSSocket)
    const elapsed = await closedAfter(socket as tls.TLSSocket, start)
    expect(elapsed).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 100)
    expect(elapsed).toBeLessThan(LIMITS.headersTimeoutMs)
  })

  it("a TCP connection that never starts its TLS handshake is closed at the handshake timeout", async () => {
    const start = Date.now()
    const socket = net.connect({ host: "127.0.0.1", port: limitsPort })
    const elapsed = await closedAfter(socket, start)
    expect(elapsed).toBeGreaterThanOrEqual(LIMITS.handshakeTimeoutMs - 100)
    expect(elapsed).toBeLessThan(LIMITS.handshakeTimeoutMs + 1000)
  })

  it("headers that never finish do not make a request: the connection is cut at the idle timeout", async () => {
    const start = Date.now()
    const socket = await openTls(limitsPort)
    expect(socket).toBeInstanceOf(tls.TLSSocket)
    ;(socket as tls.TLSSocket).write("POST /agent HTTP/1.1\r\nHost: localhost\r\n")
    const elapsed = await closedAfter(socket as tls.TLSSocket, start)
    expect(elapsed).toBeGreaterThanOrEqual(LIMITS.idleTimeoutMs - 100)
    expect(elapsed).toBeLessThan(LIMITS.headersTimeoutMs)
  })

  it("a body that never finishes is cut at the request timeout", async () => {
    const start = Date.now()
    const socket = await openTls(limitsPort)
    expect(socket).toBeInstanceOf(tls.TLSSocket)
    ;(socket as tls.TLSSocket).write(`POST /agent HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/ndjson\r\nContent-Length: 100\r\n\r\n{"_tag"`)
    const elapsed = await closedAfter(socket as tls.TLSSocket, start)
    // The headers arrived, so the request is under way: the idle timeout no longer applies.
    expect(elapsed).toBeGreaterThanOrEqual(LIMITS.requestTimeoutMs - 100)
    expect(elapsed).toBeLessThan(LIMITS.requestTimeoutMs + 1000)
  })

  it.scopedLive("a stream that outlasts the request and idle timeouts is not cut", () =>
    Effect.gen(function* () {
      const agent = yield* client({ url: `https://127.0.0.1:${limitsPort}/agent` })
      // Ten events, 200 ms apart: two seconds, longer than both timeouts.
      const events = yield* Stream.runCollect(agent.Events({ limit: 10 }))
      expect(Chunk.size(events)).toBe(10)
    }), 20_000)
})
