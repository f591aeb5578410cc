// `[proxy] managed = true`: the agent's own HAProxy (ManagedHaproxy), a real HAProxy 2.6 run as a
// supervised child, with real TLS traffic through it: killed by pid it comes back with the same
// routes, a new listener is a reload no request notices, and the end of its scope (the agent's
// stop) stops it and its workers. The agent daemon with it, and `mcp tree`, are in QuickStart.test.ts.
import { assert, describe, expect, it } from "@effect/vitest"
import { Context, Effect, Either, Exit, Fiber, Layer, Scope } from "effect"
import { spawn, spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import { readdirSync, readFileSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import * as path from "node:path"
import { SupervisedChildren } from "../packages/agent/src/daemon/SupervisedChildren.js"
import * as HaproxyRoutes from "../packages/agent/src/proxy/HaproxyRoutes.js"
import * as ManagedHaproxy from "../packages/agent/src/proxy/ManagedHaproxy.js"
import { ProxyError, ProxyRoutes } from "../packages/agent/src/proxy/ProxyRoutes.js"
import { freePort } from "../packages/agent/test/ContainerRuntimeContract.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { makeRoute } from "../packages/agent/test/ProxyRoutesContract.js"
import { privateDir, removeDir, requireBinary } from "./support/ManagedProcess.js"
import { isRunning } from "./support/Reaper.js"
import { get, scopedBackend, scopedPki } from "./support/ProxyTraffic.js"

const haproxyOptions = (root: string): HaproxyRoutes.Options => ({
  dir: path.join(root, "proxy"),
  masterSocket: path.join(root, "master.sock"),
  statsSocket: path.join(root, "stats.sock"),
  // Abstract socket names are global to the network namespace: one prefix per instance.
  abnsPrefix: `mcp-test-${randomBytes(5).toString("hex")}`,
  bindAddress: "127.0.0.1"
})

/** A private directory for the scope, removed at its end (after the proxy in it has stopped). */
const scopedRoot = Effect.acquireRelease(
  Effect.sync(() => {
    requireBinary("haproxy", "the managed proxy tests", "Fix: run: bash scripts/setup-peers.sh (as root)")
    return privateDir("managed-haproxy")
  }),
  (dir) => Effect.sync(() => removeDir(dir))
)

/** The managed proxy's layer built in its own scope, which the test may close (the agent's stop). */
const startManaged = (haproxy: HaproxyRoutes.Options) =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    yield* Effect.addFinalizer(() => Scope.close(scope, Exit.void))
    const context = yield* Layer.buildWithScope(ManagedHaproxy.layer({ haproxy }).pipe(Layer.provide(layerPlatform)), scope)
    const status = Effect.map(Context.get(context, SupervisedChildren).list, (list) => list[0]!)
    return { routes: Context.get(context, ProxyRoutes), status, stop: Scope.close(scope, Exit.void) }
  })

const pidOf = (state: string) => Number(/pid (\d+)/.exec(state)?.[1] ?? "0")

/** Processes whose command line names `needle` (HAProxy's master and workers all carry the config path). */
const processesWith = (needle: string) =>
  readdirSync("/proc").filter((d) => /^\d+$/.test(d)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(needle)
    } catch {
      return false
    }
  }).map(Number)


/** Whether a haproxy process holds a listening socket on `port` (ss names the owner). */
const haproxyListensOn = (port: number): boolean =>
  /"haproxy"/.test(spawnSync("ss", ["-Hltnp", `sport = :${port}`], { encoding: "utf8" }).stdout)

const refused = (port: number) =>
  Effect.async<boolean>((resume) => {
    const socket = net.connect({ host: "127.0.0.1", port })
    socket.on("connect", () => {
      // A port in the ephemeral range with nothing listening can be connected to by the client
      // socket itself, given that same port as its own (a TCP self-connect): nothing listens.
      const self = socket.localPort === port
      socket.destroy()
      resume(Effect.succeed(self))
    })
    socket.on("error", () => resume(Effect.succeed(true)))
  })

/** Polls `check` every 50 ms until it holds, failing the test after `ms`. */
const eventually = <A>(what: string, check: Effect.Effect<A | undefined>, ms = 15_000) =>
  Effect.gen(function* () {
    const deadline = Date.now() + ms
    for (;;) {
      const value = yield* check
      if (value !== undefined) return value
      if (Date.now() > deadline) return yield* Effect.die(new Error(`timed out after ${ms} ms waiting for ${what}`))
      yield* Effect.sleep("50 millis")
    }
  })

describe("the managed HAProxy (an agent-supervised child)", () => {
  it.scopedLive("killed by pid, it is started again and serves the same routes", () =>
    Effect.gen(function* () {
      const pki = yield* scopedPki
      const root = yield* scopedRoot
      const managed = yield* startManaged(haproxyOptions(root))
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      yield* managed.routes.put(makeRoute({ listener, hostname: "app.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      const before = yield* get(listener, "app.test", pki.caPem)
      expect(before).toMatchObject({ status: 200, body: `one app.test:${listener}`, serial: cert.serial })

      const first = yield* managed.status
      expect(first).toMatchObject({ name: "proxy (haproxy, managed)", restarts: 0 })
      expect(first.state).toMatch(/^running, pid \d+, up /)
      const oldPid = pidOf(first.state)
      process.kill(oldPid, "SIGKILL")

      const again = yield* eventually("a new HAProxy to run", Effect.map(managed.status, (s) => (s.restarts === 1 && s.state.startsWith("running") ? s : undefined)))
      expect(pidOf(again.state)).not.toBe(oldPid)
      expect(again.lastError).toMatch(/SIGKILL/)
      const after = yield* eventually("the route to be served again", Effect.map(Effect.either(get(listener, "app.test", pki.caPem)), Either.getOrUndefined))
      expect(after).toEqual(before)
      // The new process takes route changes through its runtime API like the first.
      yield* managed.routes.remove(listener, "app.test")
      expect((yield* Effect.either(get(listener, "app.test", pki.caPem)))._tag).toBe("Left")
    }), { timeout: 60_000 })

  it.scopedLive("a listener added at run time is a reload that fails no request of a steady loop", () =>
    Effect.gen(function* () {
      const pki = yield* scopedPki
      const root = yield* scopedRoot
      const managed = yield* startManaged(haproxyOptions(root))
      const backend = yield* scopedBackend("one")
      const [listener, added] = [yield* freePort, yield* freePort]
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      const route = (on: number) => makeRoute({ listener: on, hostname: "app.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath })
      yield* managed.routes.put(route(listener))
      const pid = pidOf((yield* managed.status).state)

      // 150 requests, one new TLS connection each, about 10 ms apart; the new listener comes in the middle.
      const loop = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 150 }, (_, i) => i), () =>
          get(listener, "app.test", pki.caPem).pipe(
            Effect.map((a) => (a.status === 200 ? "ok" : `status ${a.status}`)),
            Effect.catchAll((e) => Effect.succeed(`error ${e.message}`)),
            Effect.zipLeft(Effect.sleep("10 millis"))
          ))
      )
      yield* Effect.sleep("500 millis")
      yield* managed.routes.put(route(added))
      const results = yield* Fiber.join(loop)

      expect(results.filter((r) => r !== "ok")).toEqual([])
      expect((yield* get(added, "app.test", pki.caPem)).status).toBe(200)
      // A reload, not a restart: the same master process, no restart counted.
      const status = yield* managed.status
      expect(pidOf(status.state)).toBe(pid)
      expect(status.restarts).toBe(0)
    }), { timeout: 60_000 })

  it.scopedLive("the end of its scope (the agent's stop) stops HAProxy and its workers", () =>
    Effect.gen(function* () {
      const pki = yield* scopedPki
      const root = yield* scopedRoot
      const options = haproxyOptions(root)
      const managed = yield* startManaged(options)
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      yield* managed.routes.put(makeRoute({ listener, hostname: "app.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      const config = HaproxyRoutes.layout(options.dir).config
      const pid = pidOf((yield* managed.status).state)
      // The master and at least one worker.
      expect(processesWith(config).length).toBeGreaterThanOrEqual(2)

      yield* managed.stop
      expect(isRunning(pid)).toBe(false)
      expect(processesWith(config)).toEqual([])
      // Nothing of HAProxy listens there any more. Tests run side by side, so another one may
      // already have been given the freed port (CI saw it answered): then it is not HAProxy's.
      expect((yield* refused(listener)) || !haproxyListensOn(listener)).toBe(true)
    }), { timeout: 60_000 })

  it.scopedLive("a HAProxy left running by a killed agent is stopped before the new one starts", () =>
    Effect.gen(function* () {
      const root = yield* scopedRoot
      const options = haproxyOptions(root)
      yield* HaproxyRoutes.ensureConfig(options).pipe(Effect.provide(layerPlatform))
      // What a killed agent leaves: a HAProxy in its own process group, and its pid file.
      const [file, ...args] = HaproxyRoutes.haproxyCommand(options)
      const orphan = spawn(file!, args, { detached: true, stdio: "ignore" })
      yield* Effect.addFinalizer(() => Effect.sync(() => isRunning(orphan.pid!) && process.kill(-orphan.pid!, "SIGKILL")))
      writeFileSync(ManagedHaproxy.pidFile(options), `${orphan.pid}\n`)
      yield* eventually("the left-behind HAProxy to answer", Effect.map(HaproxyRoutes.workerAnswers(options.statsSocket), (up) => (up ? true : undefined)))

      const managed = yield* startManaged(options)
      const status = yield* managed.status
      expect(status.state).toMatch(/^running/)
      expect(pidOf(status.state)).not.toBe(orphan.pid)
      expect(status.restarts).toBe(0)
      yield* eventually("the left-behind HAProxy to be gone", Effect.sync(() => (isRunning(orphan.pid!) ? undefined : true)), 5000)
    }), { timeout: 60_000 })

  it.scopedLive("without the haproxy program the start fails, saying how to install it", () =>
    Effect.gen(function* () {
      const root = yield* scopedRoot
      const error = yield* Effect.flip(startManaged({ ...haproxyOptions(root), haproxyBinary: path.join(root, "no-haproxy") }))
      assert.instanceOf(error, ProxyError)
      expect(error.reason).toContain("apt-get install haproxy")
      expect(error.reason).toContain("managed = false")
    }))
})
