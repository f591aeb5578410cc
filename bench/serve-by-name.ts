/**
 * bench/serve-by-name: what serving a service by name costs, each figure beside a floor measured
 * in the same run (these machines are noisy: read the ratios).
 *
 * 1. DNS. The master's zone server (dns/ZoneServer.ts on dns/MasterZone.ts, a real SQLite
 *    MasterDb read at each query) with N records, asked for A records of random names one at a
 *    time over UDP from this process. Floor: a UDP server in the same process that sends back a
 *    precomputed answer of the same size without reading anything.
 * 2. Requests by name through the proxy. A new TLS connection per request (like curl), through
 *    the managed HAProxy (TLS terminated there, plain HTTP to a loopback backend). Floor: the same
 *    requests straight to a Node HTTPS server with the same kind of certificate.
 * 3. Recovery of the managed HAProxy. SIGKILL its master, time until the route answers again
 *    (the supervisor's first backoff, 200 ms, included; each kill comes after a life longer than
 *    `stableAfter`, set to 1 s here, so each restart waits the first backoff, not a doubled one).
 *    Floor: a cold start of the same HAProxy on the same files, by hand, until the route answers.
 *
 *   node --import tsx bench/serve-by-name.ts [--quick]
 */
import * as Packet from "dns-packet"
import { Context, Duration, Effect, Either, Exit, Layer, Scope } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as dgram from "node:dgram"
import { readFileSync } from "node:fs"
import * as https from "node:https"
import * as path from "node:path"
import { SupervisedChildren } from "../packages/agent/src/daemon/SupervisedChildren.js"
import * as HaproxyRoutes from "../packages/agent/src/proxy/HaproxyRoutes.js"
import * as ManagedHaproxy from "../packages/agent/src/proxy/ManagedHaproxy.js"
import { ProxyRoutes } from "../packages/agent/src/proxy/ProxyRoutes.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { layerSqlite, MasterDb } from "../packages/master/src/db/MasterDb.js"
import { zoneFromDb } from "../packages/master/src/dns/MasterZone.js"
import { answer } from "../packages/master/src/dns/Zone.js"
import * as ZoneServer from "../packages/master/src/dns/ZoneServer.js"
import { Routes } from "@mcp/domain"
import { Schema } from "effect"
import { freeTcpPort, privateDir, removeDir, requireBinary } from "../test/support/ManagedProcess.js"
import { get, scopedPki } from "../test/support/ProxyTraffic.js"

const QUICK = process.argv.includes("--quick")
const ZONE = "svc.mcp.internal"
const SIZES = QUICK ? [10, 1_000] : [10, 1_000, 10_000]
const QUERIES = QUICK ? 1_000 : 3_000
const REQUESTS = QUICK ? 100 : 300
const RECOVERIES = QUICK ? 3 : 5

const percentile = (xs: ReadonlyArray<number>, p: number) => {
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN
}
const median = (xs: ReadonlyArray<number>) => percentile(xs, 50)
const ms = (x: number) => x.toFixed(3).padStart(8)

// ---------------------------------------------------------------------------------------------
// 1. DNS

/** Asks `port` for the A records of `names` one at a time; the round trip of each, in ms. */
const askAll = (port: number, names: ReadonlyArray<string>) =>
  new Promise<Array<number>>((resolve, reject) => {
    const socket = dgram.createSocket("udp4")
    const times: Array<number> = []
    let i = 0
    let sentAt = 0
    const next = () => {
      if (i === names.length) {
        socket.close()
        return resolve(times)
      }
      const query = Packet.encode({ type: "query", id: i & 0xffff, flags: Packet.RECURSION_DESIRED, questions: [{ type: "A", class: "IN", name: names[i]! }] })
      sentAt = performance.now()
      socket.send(query, port, "127.0.0.1")
    }
    socket.on("message", (message) => {
      const decoded = Packet.decode(message)
      if (decoded.id !== (i & 0xffff) || decoded.answers?.[0]?.type !== "A") return reject(new Error(`unexpected answer for ${names[i]}: ${JSON.stringify(decoded.answers)}`))
      times.push(performance.now() - sentAt)
      i++
      next()
    })
    socket.on("error", reject)
    next()
  })

/** The floor: a UDP server that echoes the query's id into a precomputed answer, reading nothing. */
const floorServer = (reply: Buffer) =>
  new Promise<{ port: number; close: () => void }>((resolve) => {
    const socket = dgram.createSocket("udp4")
    socket.on("message", (message, from) => {
      const out = Buffer.from(reply)
      message.copy(out, 0, 0, 2)
      socket.send(out, from.port, from.address)
    })
    socket.bind(0, "127.0.0.1", () => resolve({ port: socket.address().port, close: () => socket.close() }))
  })

const dnsBench = Effect.gen(function* () {
  console.log(`\n1. DNS: ${QUERIES} A queries one at a time over UDP (ms per query)`)
  console.log(`records   ours_p50  ours_p99  floor_p50  floor_p99  ratio_p50  ours_qps  floor_qps`)
  for (const n of SIZES) {
    const dir = privateDir("bench-dns")
    try {
      yield* Effect.scoped(Effect.gen(function* () {
        const db = Context.get(yield* Layer.build(MasterDb.Default.pipe(Layer.provideMerge(layerSqlite(path.join(dir, "master.db"))))), MasterDb)
        const names = Array.from({ length: n }, (_, i) => `svc-${i}.${ZONE}`)
        yield* Effect.forEach(names, (name, i) => db.putZoneRecord(name, `10.0.${(i >> 8) & 255}.${i & 255}`, "bench"), { discard: true })
        const server = yield* ZoneServer.serve({ host: "127.0.0.1", port: 0, zone: zoneFromDb(db, ZONE, "127.0.0.1") })
        const asked = Array.from({ length: QUERIES }, () => names[Math.floor(Math.random() * n)]!)
        // The floor answers with what ours answers for one of the names: same bytes on the wire.
        const sample = answer(yield* zoneFromDb(db, ZONE, "127.0.0.1"), Packet.encode({ type: "query", id: 0, questions: [{ type: "A", class: "IN", name: names[0]! }] }), "udp")!
        const floor = yield* Effect.acquireRelease(Effect.promise(() => floorServer(sample)), (f) => Effect.sync(f.close))
        yield* Effect.promise(() => askAll(server.port, asked.slice(0, 200))) // warm-up
        yield* Effect.promise(() => askAll(floor.port, asked.slice(0, 200)))
        const t0 = performance.now()
        const ours = yield* Effect.promise(() => askAll(server.port, asked))
        const oursSeconds = (performance.now() - t0) / 1000
        const t1 = performance.now()
        const bare = yield* Effect.promise(() => askAll(floor.port, asked))
        const floorSeconds = (performance.now() - t1) / 1000
        console.log(
          `${String(n).padStart(7)}  ${ms(median(ours))}  ${ms(percentile(ours, 99))}  ${ms(median(bare))}   ${ms(percentile(bare, 99))}  ${(median(ours) / median(bare)).toFixed(2).padStart(9)}  ${(QUERIES / oursSeconds).toFixed(0).padStart(8)}  ${(QUERIES / floorSeconds).toFixed(0).padStart(9)}`
        )
      }))
    } finally {
      removeDir(dir)
    }
  }
})

// ---------------------------------------------------------------------------------------------
// 2 and 3. The managed HAProxy

const haproxyOptions = (root: string): HaproxyRoutes.Options => ({
  dir: path.join(root, "proxy"),
  masterSocket: path.join(root, "master.sock"),
  statsSocket: path.join(root, "stats.sock"),
  abnsPrefix: `mcp-bench-${randomBytes(5).toString("hex")}`,
  bindAddress: "127.0.0.1"
})

/** Polls the route until it answers 200; the ms it took from `since`. */
const untilServed = (listener: number, ca: string, since: number) =>
  Effect.gen(function* () {
    for (;;) {
      const r = yield* Effect.either(get(listener, "app.test", ca))
      if (Either.isRight(r) && r.right.status === 200) return performance.now() - since
      yield* Effect.sleep("5 millis")
    }
  })

/** HTTPS GETs to 127.0.0.1:port with SNI app.test, a new connection each; ms per request. */
const timedGets = (port: number, ca: string, count: number) =>
  Effect.gen(function* () {
    const times: Array<number> = []
    for (let i = 0; i < count; i++) {
      const t = performance.now()
      const r = yield* get(port, "app.test", ca)
      if (r.status !== 200) return yield* Effect.die(new Error(`status ${r.status}`))
      times.push(performance.now() - t)
    }
    return times
  })

const proxyBench = Effect.gen(function* () {
  requireBinary("haproxy", "bench/serve-by-name", "Fix: run: bash scripts/setup-peers.sh (as root)")
  const pki = yield* scopedPki
  const cert = yield* Effect.orDie(pki.issue("app.test"))
  const root = yield* Effect.acquireRelease(Effect.sync(() => privateDir("bench-managed-haproxy")), (d) => Effect.sync(() => removeDir(d)))
  const options = haproxyOptions(root)
  const scope = yield* Scope.make()
  yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
  const context = yield* Layer.buildWithScope(ManagedHaproxy.layer({ haproxy: options, stableAfter: "1 second" }).pipe(Layer.provide(layerPlatform)), scope)
  const routes = Context.get(context, ProxyRoutes)
  const status = Effect.map(Context.get(context, SupervisedChildren).list, (l) => l[0]!)

  // The backend: plain HTTP behind the proxy; the floor: HTTPS straight from Node.
  const handler = (_: unknown, res: { end: (s: string) => void }) => res.end("app")
  const { createServer } = yield* Effect.promise(() => import("node:http"))
  const plain = createServer(handler)
  const direct = https.createServer({ cert: readFileSync(cert.certPath), key: readFileSync(cert.keyPath) }, handler)
  for (const s of [plain, direct]) {
    yield* Effect.promise(() => new Promise<void>((r) => s.listen(0, "127.0.0.1", () => r())))
    yield* Effect.addFinalizer(() => Effect.sync(() => (s.closeAllConnections(), s.close())))
  }
  const portOf = (s: typeof plain) => (s.address() as { port: number }).port
  const listener = yield* Effect.promise(() => freeTcpPort())
  const route = Schema.decodeUnknownSync(Routes.ProxyRoute)({ listener, hostname: "app.test", backend: `127.0.0.1:${portOf(plain)}`, mode: "l7", backendTls: false, tlsCert: cert.certPath, tlsKey: cert.keyPath })
  yield* routes.put(route)

  yield* timedGets(listener, pki.caPem, 20) // warm-up
  yield* timedGets(portOf(direct), pki.caPem, 20)
  const through = yield* timedGets(listener, pki.caPem, REQUESTS)
  const straight = yield* timedGets(portOf(direct), pki.caPem, REQUESTS)
  console.log(`\n2. ${REQUESTS} HTTPS requests, a new TLS connection each (ms per request)`)
  console.log(`            p50      p99`)
  console.log(`proxy   ${ms(median(through))} ${ms(percentile(through, 99))}`)
  console.log(`floor   ${ms(median(straight))} ${ms(percentile(straight, 99))}   (Node HTTPS server, no proxy)`)
  console.log(`ratio   ${(median(through) / median(straight)).toFixed(2).padStart(8)}`)

  const recoveries: Array<number> = []
  for (let i = 0; i < RECOVERIES; i++) {
    yield* Effect.sleep("1200 millis") // a stable life: the restart waits the first backoff
    const pid = Number(/pid (\d+)/.exec((yield* status).state)?.[1])
    const t = performance.now()
    process.kill(pid, "SIGKILL")
    recoveries.push(yield* untilServed(listener, pki.caPem, t))
    // The next kill only once the supervisor counts it running (its worker answered).
    yield* Effect.repeat(status, { until: (s) => s.state.startsWith("running") && !s.state.includes(`pid ${pid},`) })
  }
  yield* Scope.close(scope, Exit.void)

  // The floor: HAProxy started by hand on the same files, until the same route answers.
  const colds: Array<number> = []
  const [file, ...args] = HaproxyRoutes.haproxyCommand(options)
  for (let i = 0; i < RECOVERIES; i++) {
    const t = performance.now()
    const child = spawn(file!, args, { detached: true, stdio: "ignore" })
    colds.push(yield* untilServed(listener, pki.caPem, t))
    yield* Effect.promise(() => new Promise<void>((r) => (child.once("exit", () => r()), process.kill(-child.pid!, "SIGTERM"))))
  }
  console.log(`\n3. the managed HAProxy killed (SIGKILL) until its route answers again, ${RECOVERIES} times (ms)`)
  console.log(`managed restart  median ${median(recoveries).toFixed(0).padStart(5)}  (${recoveries.map((x) => x.toFixed(0)).join(", ")}; includes the 200 ms first backoff)`)
  console.log(`floor cold start median ${median(colds).toFixed(0).padStart(5)}  (${colds.map((x) => x.toFixed(0)).join(", ")}; haproxy started by hand on the same files)`)
  console.log(`ratio ${(median(recoveries) / median(colds)).toFixed(2)}; minus the backoff ${((median(recoveries) - Duration.toMillis("200 millis")) / median(colds)).toFixed(2)}`)
})

console.log(`bench/serve-by-name${QUICK ? " --quick" : ""} on ${process.version}`)
await Effect.runPromise(Effect.scoped(Effect.zipRight(dnsBench, proxyBench)).pipe(Effect.provide(layerPlatform)))

