/**
 * Client and server in separate processes over real HTTPS with the platform CA and mTLS:
 * typed errors, streams item by item, CA pinning, tokens, oversized and malformed frames,
 * concurrency and version skew.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Chunk, Effect, Redacted, Stream } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import * as tls from "node:tls"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { AgentRpcs } from "../src/Contracts.js"
import * as Pki from "../src/Pki.js"
import * as TokenFile from "../src/TokenFile.js"
import * as Transport from "../src/Transport.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-transport-"))
const servers: Array<ChildProcess> = []
const tokens: Record<"admin" | "guest" | "expired", string> = { admin: "", guest: "", expired: "" }
let ca = ""
let otherCa = ""
let agentUrl = ""
let oldUrl = ""
let port = 0
let clientCert: { cert: string; key: Redacted.Redacted<string> }

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
  ;[port, oldUrl] = await Promise.all([
    startServer("agent", { ...common, clientAuth: true }),
    startServer("old", { ...common, clientAuth: false, old: true }).then((p) => `https://127.0.0.1:${p}/agent`)
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
      expect(error).toMatchObject({ rpc: "Ps", localVersion: 1, remoteVersion: 0 })
      expect(error.message).toContain("the remote side is older: upgrade it to the same MCP release as the other")
    }))
})
