/**
 * A heartbeat served straight from Node's request event (DirectCall.ts) answers exactly what
 * RpcServer answers for the same request, refusals and defects included: the same frame is sent
 * once marked (x-mcp-rpc: Heartbeat, served directly) and once unmarked (served by RpcServer),
 * and the handler tells which server called it (RpcServer's client ids are never negative, the
 * direct route's always are), so a routing that never went direct could not pass.
 *
 * The immediate route (/control-now, DirectCall.routeImmediate) answers without a fiber what its
 * `Immediate` answers, only for calls the middleware's Admission lets through; every other call
 * (a refusal, a heartbeat the immediate answer leaves to the handler) is the full route's, with
 * the same answer RpcServer gives.
 *
 * The direct route runs in Node's request event, outside any fiber: a frame's parts are checked
 * before use, and a bug that throws there is answered 500, logged and counted, not a crash.
 */
import { HttpServer } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Rpc, RpcGroup } from "@effect/rpc"
import { Effect, Layer, ManagedRuntime, Metric, MetricLabel, Redacted, Schema } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AuthMiddleware from "../src/AuthMiddleware.js"
import * as CallMetrics from "../src/CallMetrics.js"
import { ControlRpcs } from "../src/Contracts.js"
import * as DirectCall from "../src/DirectCall.js"
import * as Failures from "../src/Failures.js"
import * as Pki from "../src/Pki.js"
import { PROTOCOL_HEADER, RPC_TAG_HEADER } from "../src/Protocol.js"
import * as TokenFile from "../src/TokenFile.js"
import * as TokenFileAuthenticator from "../src/TokenFileAuthenticator.js"
import * as Transport from "../src/Transport.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-direct-"))
const tokens = { w1: "", w2: "", slow: "", alice: "", later: "", boom: "" }
let ca = ""
let port = 0

/** Which server ran each Heartbeat handler: "direct" (negative client id) or "rpc". */
const served: Array<"direct" | "rpc"> = []
const interrupted: Array<string> = []
/** The nodes whose heartbeats the immediate answer was asked about, in order. */
const askedNow: Array<string> = []

/** Answers w1 at once; leaves "later" to the handler; crashes on "boom". */
const immediate: DirectCall.Immediate<{ readonly node: string }, { readonly known: boolean; readonly heartbeatIntervalMs?: number }> = ({ node }, principal) => {
  askedNow.push(`${node} as ${principal.name}`)
  if (node === "boom") throw new Error("the immediate answer crashed")
  return node === "w1" ? { known: true, heartbeatIntervalMs: 1234 } : undefined
}

const handlers = ControlRpcs.toLayer({
  Register: () => Effect.succeed({ heartbeatIntervalMs: 1000, deadlineMs: 3000 }),
  Heartbeat: ({ node }, { clientId }) =>
    Effect.gen(function* () {
      served.push(clientId < 0 ? "direct" : "rpc")
      if (node === "w2") return yield* Effect.dieMessage("the handler crashed")
      if (node === "slow") return yield* Effect.never.pipe(Effect.onInterrupt(() => Effect.sync(() => interrupted.push(node))))
      return { known: true, heartbeatIntervalMs: 1234 }
    }),
  ZonePut: () => Effect.succeed({ changed: true, serial: 2 }),
  ZoneRemove: () => Effect.succeed({ removed: true, serial: 3 }),
  ZoneRecords: () => Effect.succeed([])
})

/**
 * An RPC with bugs: its payload's filter throws on "boom" (in the request's event), and its
 * answer's on "unencodable" (when the call's fiber ends), both on the direct route.
 */
const throwsOn = (bad: string) => Schema.String.pipe(Schema.filter((w) => { if (w === bad) throw new Error(`the filter has a bug (${bad})`); return true }))
class BuggyRpcs extends RpcGroup.make(
  Rpc.make("Echo", { payload: { word: throwsOn("boom") }, success: throwsOn("unencodable") })
) {}
// After a pause, so that the call ends after the request's event, when the fiber runtime ends it.
const buggyHandlers = BuggyRpcs.toLayer({ Echo: ({ word }) => Effect.as(Effect.sleep(5), word) })

let runtime: ManagedRuntime.ManagedRuntime<HttpServer.HttpServer, unknown>

beforeAll(async () => {
  const tokenFile = join(dir, "tokens.toml")
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(join(dir, "ca"))
      yield* Pki.issueCertificate(join(dir, "ca"), "master", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "server" })
      tokens.w1 = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "w1", kind: "system", role: "guest" }))
      tokens.w2 = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "w2", kind: "system", role: "guest" }))
      tokens.slow = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "slow", kind: "system", role: "guest" }))
      tokens.alice = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "alice", kind: "human", role: "admin" }))
      tokens.later = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "later", kind: "system", role: "guest" }))
      tokens.boom = Redacted.value(yield* TokenFile.createToken(tokenFile, { name: "boom", kind: "system", role: "guest" }))
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  ca = readFileSync(join(dir, "ca", "ca.crt"), "utf8")
  const auth = AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(TokenFileAuthenticator.layer(tokenFile).pipe(Layer.provide(NodeFileSystem.layer))))
  const server = Transport.layerServer(
    {
      host: "127.0.0.1",
      port: 0,
      maxBodyBytes: 64 * 1024,
      tls: { cert: readFileSync(join(dir, "ca", "master.crt"), "utf8"), key: Redacted.make(readFileSync(join(dir, "ca", "master.key"), "utf8")), ca, clientAuth: false }
    },
    [
      Transport.route("/control", ControlRpcs),
      DirectCall.route("/control", ControlRpcs, "Heartbeat"),
      Transport.route("/control-now", ControlRpcs),
      DirectCall.routeImmediate("/control-now", ControlRpcs, "Heartbeat", Effect.succeed(immediate as never)),
      DirectCall.route("/buggy", BuggyRpcs, "Echo")
    ]
  ).pipe(Layer.provide(Layer.mergeAll(handlers, buggyHandlers, auth)))
  runtime = ManagedRuntime.make(server)
  const address = (await runtime.runPromise(HttpServer.HttpServer)).address
  port = address._tag === "TcpAddress" ? address.port : 0
}, 60_000)

afterAll(() => runtime.dispose())

interface Answer {
  readonly status: number
  readonly protocol: string | undefined
  /** The response's ndjson frames, parsed. */
  readonly frames: ReadonlyArray<unknown>
  readonly text: string
}

const post = (body: string, options: { readonly token?: string; readonly tag?: string; readonly path?: string; readonly signal?: AbortSignal } = {}) =>
  new Promise<Answer>((resolve, reject) => {
    const request = https.request({
      host: "127.0.0.1",
      port,
      path: options.path ?? "/control",
      method: "POST",
      ca,
      servername: "localhost",
      agent: false,
      ...(options.signal === undefined ? {} : { signal: options.signal }),
      headers: {
        "content-type": "application/ndjson",
        ...(options.token === undefined ? {} : { authorization: `Bearer ${options.token}` }),
        ...(options.tag === undefined ? {} : { [RPC_TAG_HEADER]: options.tag })
      }
    }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (d: string) => (text += d))
      response.on("end", () => {
        const frames = response.headers["content-type"]?.includes("ndjson") === true ? text.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as unknown) : []
        resolve({ status: response.statusCode ?? 0, protocol: response.headers[PROTOCOL_HEADER] as string | undefined, frames, text })
      })
    })
    request.on("error", reject)
    request.end(body)
  })

const resources = { cpuCores: 2, load1: 0.5, memoryTotalBytes: 1e9, memoryFreeBytes: 5e8, diskTotalBytes: 1e10, diskFreeBytes: 5e9, containers: 3 }
const heartbeat = (node: string, extra: object = {}) => ({ node, resources, services: [{ service: "web", running: 1, expected: 1 }], ...extra })
const request = (payload: unknown, tag = "Heartbeat") => `${JSON.stringify({ _tag: "Request", id: "7", tag, payload, headers: [] })}\n`

/** Heartbeats for w1 that the middleware refuses, each with the error's tag. */
const refusals = () => [
  { what: "another node's token", body: request(heartbeat("w1")), token: tokens.w2, tag: "Forbidden" },
  { what: "a human admin's token", body: request(heartbeat("w1")), token: tokens.alice, tag: "Forbidden" },
  { what: "no token", body: request(heartbeat("w1")), token: undefined, tag: "Unauthorized" },
  { what: "a token that is not in the file", body: request(heartbeat("w1")), token: "mcp_not-a-real-token", tag: "Unauthorized" },
  { what: "a field the RPC does not declare", body: request(heartbeat("w1", { sneaky: 1 })), token: tokens.w1, tag: "UnknownFields" }
]

/** The same request through both servers: the answers, and which server ran the handler. */
const both = async (body: string, token?: string) => {
  served.length = 0
  const viaRpc = await post(body, token === undefined ? {} : { token })
  const rpcServed = [...served]
  served.length = 0
  const direct = await post(body, { ...(token === undefined ? {} : { token }), tag: "Heartbeat" })
  return { viaRpc, direct, rpcServed, directServed: [...served] }
}

describe("a heartbeat served without RpcServer", () => {
  it("answers a node's own heartbeat with the same Exit, and the handler ran on the direct route", async () => {
    const { viaRpc, direct, rpcServed, directServed } = await both(request(heartbeat("w1")), tokens.w1)
    expect(rpcServed).toEqual(["rpc"])
    expect(directServed).toEqual(["direct"])
    expect(direct.status).toBe(200)
    expect(direct.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Success", value: { known: true, heartbeatIntervalMs: 1234 } } }])
    expect(direct.frames).toEqual(viaRpc.frames)
    expect(direct.protocol).toBe(viaRpc.protocol)
  })

  it("refuses what RpcServer refuses, with the same typed errors, before the handler runs", async () => {
    const cases = refusals()
    for (const c of cases) {
      const { viaRpc, direct, rpcServed, directServed } = await both(c.body, c.token)
      expect({ what: c.what, served: [...rpcServed, ...directServed] }).toEqual({ what: c.what, served: [] })
      expect({ what: c.what, frames: direct.frames }).toEqual({ what: c.what, frames: viaRpc.frames })
      expect(JSON.stringify(direct.frames)).toContain(`"_tag":"${c.tag}"`)
    }
  })

  it("answers a payload that does not decode, and a handler's defect, as RpcServer does", async () => {
    const bad = await both(request({ node: "w1", resources: { cpuCores: "two" }, services: [] }), tokens.w1)
    expect(bad.direct.frames).toEqual(bad.viaRpc.frames)
    expect(JSON.stringify(bad.direct.frames)).toContain("cpuCores")
    expect([...bad.rpcServed, ...bad.directServed]).toEqual([])

    const crash = await both(request(heartbeat("w2")), tokens.w2)
    expect(crash.directServed).toEqual(["direct"])
    expect(crash.direct.frames).toEqual(crash.viaRpc.frames)
    expect(JSON.stringify(crash.direct.frames)).toContain("the handler crashed")
  })

  it("a marked request that is not exactly one heartbeat gets a defect saying so, and nothing runs", async () => {
    served.length = 0
    const register = await post(request({ info: { name: "w1" } }, "Register"), { token: tokens.w1, tag: "Heartbeat" })
    const two = await post(request(heartbeat("w1")) + request(heartbeat("w1")), { token: tokens.w1, tag: "Heartbeat" })
    const garbage = await post("{not json\n", { token: tokens.w1, tag: "Heartbeat" })
    for (const answer of [register, two]) {
      expect(answer.status).toBe(200)
      expect(answer.frames).toEqual([{ _tag: "Defect", defect: expect.stringContaining("must carry exactly one Heartbeat request") }])
    }
    expect(garbage.frames).toEqual([{ _tag: "Defect", defect: expect.stringContaining("not JSON") }])
    expect(served).toEqual([])
  })

  it("a frame whose headers are not [name, value] pairs of strings gets a defect naming them, nothing runs, and the server goes on", async () => {
    // Each of these once threw in the request's event, outside any fiber: a crash of the process.
    for (const path of ["/control", "/control-now"]) {
      for (const headers of [[5], [[5, "x"]], [["x-a", 5]], [["x-a"]], [["x-a", "1", "2"]], "x-a", { "x-a": "1" }, null]) {
        served.length = 0
        askedNow.length = 0
        const body = `${JSON.stringify({ _tag: "Request", id: "7", tag: "Heartbeat", payload: heartbeat("w1"), headers })}\n`
        const answer = await post(body, { token: tokens.w1, tag: "Heartbeat", path })
        expect({ path, headers, status: answer.status, frames: answer.frames }).toEqual({
          path,
          headers,
          status: 200,
          frames: [{ _tag: "Defect", defect: expect.stringContaining("headers must be a list of [name, value] pairs of strings") }]
        })
        expect({ served, askedNow }).toEqual({ served: [], askedNow: [] })
      }
    }
    // An id, and a payload whose error report would quote it, that do not convert to strings:
    // refused as the caller's, not counted as a crash of ours.
    const crashes = () => Effect.runSync(Metric.value(Metric.tagged(Failures.unrecoverable, "operation", "serving Heartbeat directly"))).count
    const before = crashes()
    for (const path of ["/control", "/control-now"]) {
      const badId = await post(`${JSON.stringify({ _tag: "Request", id: { toString: 0 }, tag: "Heartbeat", payload: heartbeat("w1"), headers: [] })}\n`, { token: tokens.w1, tag: "Heartbeat", path })
      expect(badId.frames).toEqual([{ _tag: "Defect", defect: `Invalid request id: {"toString":0}` }])
      const unprintable = await post(request({ node: { constructor: { name: { toString: 0 } } }, resources, services: [] }), { token: tokens.w1, tag: "Heartbeat", path })
      expect(unprintable.frames).toEqual([{
        _tag: "Exit",
        requestId: "7",
        exit: { _tag: "Failure", cause: { _tag: "Die", defect: "the payload does not match Heartbeat's schema (the details could not be printed)" } }
      }])
    }
    expect(crashes()).toBe(before)
    expect(served).toEqual([])
    const after = await post(request(heartbeat("w1")), { token: tokens.w1, tag: "Heartbeat" })
    expect(after.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Success", value: { known: true, heartbeatIntervalMs: 1234 } } }])
    // A frame's own headers, well formed, still reach the handler's call (they are RpcServer's too).
    const withHeader = await post(`${JSON.stringify({ _tag: "Request", id: "7", tag: "Heartbeat", payload: heartbeat("w1"), headers: [["x-trace-note", "a"]] })}\n`, { token: tokens.w1, tag: "Heartbeat" })
    expect(withHeader.frames).toEqual(after.frames)
  })

  it("a bug that throws while a request is read or its answer written is logged and counted, answered 500 without its details, and the server goes on", async () => {
    const crashes = () => Effect.runSync(Metric.value(Metric.tagged(Failures.unrecoverable, "operation", "serving Echo directly"))).count
    const echo = (word: string) => `${JSON.stringify({ _tag: "Request", id: "7", tag: "Echo", payload: { word }, headers: [] })}\n`
    const before = crashes()
    const crashed = await post(echo("boom"), { tag: "Echo", path: "/buggy" })
    expect(crashed.status).toBe(500)
    expect(crashed.text).toBe("the server failed to answer this Echo request; its log says why")
    expect(crashes()).toBe(before + 1)
    const unencodable = await post(echo("unencodable"), { tag: "Echo", path: "/buggy" })
    expect(unencodable.status).toBe(500)
    expect(crashes()).toBe(before + 2)
    const fine = await post(echo("hello"), { tag: "Echo", path: "/buggy" })
    expect(fine.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Success", value: "hello" } }])
  })

  it("holds the transport's limits: an oversized or too deeply nested body is refused with RpcServer's status and text", async () => {
    const huge = request(heartbeat("w1", { pad: "x".repeat(70 * 1024) }))
    const deep = request(heartbeat("w1", { pad: JSON.parse(`${"[".repeat(40)}${"]".repeat(40)}`) }))
    for (const body of [huge, deep]) {
      const viaRpc = await post(body, { token: tokens.w1 })
      const direct = await post(body, { token: tokens.w1, tag: "Heartbeat" })
      expect(direct.status).toBe(viaRpc.status)
      expect(direct.status).toBeGreaterThanOrEqual(400)
      expect(direct.text).toBe(viaRpc.text)
    }
  })

  it("a mark for another RPC or another path is served by RpcServer as before", async () => {
    served.length = 0
    const registered = await post(request({ info: { name: "w1", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "t" }, resources }, "Register"), { token: tokens.w1, tag: "Register" })
    expect(registered.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Success", value: { heartbeatIntervalMs: 1000, deadlineMs: 3000 } } }])
    const elsewhere = await post(request(heartbeat("w1")), { token: tokens.w1, tag: "Heartbeat", path: "/nowhere" })
    expect(elsewhere.status).toBe(404)
    expect(served).toEqual([])
  })

  it("our typed client's heartbeats go the direct route; its other calls go through RpcServer", () =>
    Effect.gen(function* () {
      served.length = 0
      const control = yield* Transport.makeClient(ControlRpcs, { url: `https://127.0.0.1:${port}/control`, ca, token: Redacted.make(tokens.w1) })
      expect(yield* control.Heartbeat(heartbeat("w1") as never)).toEqual({ known: true, heartbeatIntervalMs: 1234 })
      expect(served).toEqual(["direct"])
      const refused = yield* Effect.flip(control.Heartbeat(heartbeat("w2") as never))
      expect(refused._tag).toBe("Forbidden")
      expect(yield* control.Register({ info: { name: "w1", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "t" }, resources } as never)).toEqual({ heartbeatIntervalMs: 1000, deadlineMs: 3000 })
    }).pipe(Effect.scoped, Effect.runPromise))

  it("a client that goes away stops its call, as RpcServer does", async () => {
    interrupted.length = 0
    const abort = new AbortController()
    const pending = post(request(heartbeat("slow")), { token: tokens.slow, tag: "Heartbeat", signal: abort.signal }).catch((e: Error) => e.name)
    served.length = 0
    for (let i = 0; i < 100 && !served.includes("direct"); i++) await new Promise((r) => setTimeout(r, 20))
    abort.abort()
    expect(await pending).toBe("AbortError")
    for (let i = 0; i < 100 && interrupted.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(interrupted).toEqual(["slow"])
  })
})

describe("a heartbeat answered at once (routeImmediate)", () => {
  const okCount = () =>
    Effect.runSync(Metric.value(Metric.taggedWithLabels(CallMetrics.rpcDuration, [MetricLabel.make("rpc", "Heartbeat"), MetricLabel.make("result", "ok")]))).count

  it("answers what the immediate answer gives, without the handler, with RpcServer's frame, and times the call", async () => {
    const viaRpc = await post(request(heartbeat("w1")), { token: tokens.w1 })
    served.length = 0
    askedNow.length = 0
    const before = okCount()
    const now = await post(request(heartbeat("w1")), { token: tokens.w1, tag: "Heartbeat", path: "/control-now" })
    expect(askedNow).toEqual(["w1 as w1"])
    expect(served).toEqual([])
    expect(now.status).toBe(200)
    expect(now.protocol).toBe(viaRpc.protocol)
    expect(now.frames).toEqual(viaRpc.frames)
    expect(okCount()).toBe(before + 1)
  })

  it("a call the middleware would refuse never reaches the immediate answer, and is refused as RpcServer refuses it", async () => {
    const cases = refusals()
    for (const c of cases) {
      const viaRpc = await post(c.body, c.token === undefined ? {} : { token: c.token })
      askedNow.length = 0
      served.length = 0
      const now = await post(c.body, { ...(c.token === undefined ? {} : { token: c.token }), tag: "Heartbeat", path: "/control-now" })
      expect({ what: c.what, asked: askedNow, served }).toEqual({ what: c.what, asked: [], served: [] })
      expect({ what: c.what, frames: now.frames }).toEqual({ what: c.what, frames: viaRpc.frames })
      expect(JSON.stringify(now.frames)).toContain(`"_tag":"${c.tag}"`)
    }
  })

  it("a heartbeat the immediate answer leaves is the handler's; one it crashes on is the call's defect", async () => {
    askedNow.length = 0
    served.length = 0
    const later = await post(request(heartbeat("later")), { token: tokens.later, tag: "Heartbeat", path: "/control-now" })
    expect(askedNow).toEqual(["later as later"])
    expect(served).toEqual(["direct"])
    expect(later.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Success", value: { known: true, heartbeatIntervalMs: 1234 } } }])

    served.length = 0
    const boom = await post(request(heartbeat("boom")), { token: tokens.boom, tag: "Heartbeat", path: "/control-now" })
    expect(served).toEqual([])
    expect(boom.frames).toEqual([{ _tag: "Exit", requestId: "7", exit: { _tag: "Failure", cause: { _tag: "Die", defect: expect.objectContaining({ message: "the immediate answer crashed" }) } } }])
  })
})
