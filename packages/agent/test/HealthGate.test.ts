/**
 * The deploy health gate on its own: one probe of each kind against real sockets on 127.0.0.1
 * (http, tcp) or the memory runtime's scripted exec, and the gate's retries: a check that passes
 * after a few failures lets it through, one that never passes within `retries` × `interval` stops it.
 */
import type { HttpClient } from "@effect/platform"
import { describe, expect, it } from "@effect/vitest"
import { ServiceDefinition } from "@mcp/domain"
import { Effect, Either, HashMap, Layer, Logger, Schema } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { Worker } from "node:worker_threads"
import { ContainerRuntime } from "../src/engine/ContainerRuntime.js"
import * as HealthGate from "../src/lifecycle/HealthGate.js"
import { layerMemory, MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { IMAGE } from "./Harness.js"
import { layerPlatform } from "./Platform.js"

/** An http server on an ephemeral port of 127.0.0.1 answering `status(n)` to its nth request (from 1). */
const httpServer = (status: (n: number) => number, headers: http.OutgoingHttpHeaders = {}) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly requests: () => number; readonly server: http.Server }>((resume) => {
      let requests = 0
      const server = http.createServer((_req, res) => {
        requests += 1
        res.writeHead(status(requests), headers).end("answer")
      })
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ port: (server.address() as AddressInfo).port, requests: () => requests, server })))
    }),
    ({ server }) => Effect.async<void>((resume) => {
      server.closeAllConnections()
      server.close(() => resume(Effect.void))
    })
  )

/** A TCP server on 127.0.0.1; `port` 0 picks an ephemeral one. */
const listen = (port = 0) =>
  Effect.acquireRelease(
    Effect.async<net.Server>((resume) => {
      const server = net.createServer((socket) => socket.destroy())
      server.listen(port, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => void server.close(() => resume(Effect.void)))
  )

const portOf = (server: net.Server | http.Server) => (server.address() as AddressInfo).port

/** A port nothing listens on: bound, then released. */
const closedPort = Effect.scoped(Effect.map(listen(), portOf))

/** A TCP server on 127.0.0.1 that accepts connections and never answers (an app hung mid-request). */
const silentServer = Effect.acquireRelease(
  Effect.async<{ readonly port: number; readonly server: net.Server; readonly sockets: Set<net.Socket> }>((resume) => {
    const sockets = new Set<net.Socket>()
    const server = net.createServer((socket) => void sockets.add(socket))
    server.listen(0, "127.0.0.1", () => resume(Effect.succeed({ port: portOf(server), server, sockets })))
  }),
  ({ server, sockets }) => Effect.async<void>((resume) => {
    for (const socket of sockets) socket.destroy()
    server.close(() => resume(Effect.void))
  })
)

/**
 * A port where a TCP connect neither succeeds nor is refused: a listener (backlog 1) in a worker
 * thread whose event loop is blocked, so nobody accepts; once its backlog is full the kernel drops
 * further SYNs and a connect just waits. Fillers fill the backlog first.
 */
const unansweredPort = Effect.acquireRelease(
  Effect.gen(function* () {
    const wake = new Int32Array(new SharedArrayBuffer(4))
    const worker = new Worker(
      `const { parentPort, workerData } = require("node:worker_threads")
      const server = require("node:net").createServer()
      server.listen(0, "127.0.0.1", 1, () => {
        parentPort.postMessage(server.address().port)
        Atomics.wait(workerData, 0, 0)
      })`,
      { eval: true, workerData: wake }
    )
    const port = yield* Effect.async<number>((resume) => void worker.once("message", (p: number) => resume(Effect.succeed(p))))
    const fillers: Array<net.Socket> = []
    // Connect until one does not complete in 300 ms: the backlog is full from then on.
    for (let i = 0; i < 16; i++) {
      const socket = net.connect({ host: "127.0.0.1", port })
      fillers.push(socket)
      const connected = yield* Effect.async<boolean>((resume) => {
        const timer = setTimeout(() => resume(Effect.succeed(false)), 300)
        socket.once("connect", () => (clearTimeout(timer), resume(Effect.succeed(true))))
        socket.once("error", () => (clearTimeout(timer), resume(Effect.succeed(false))))
      })
      if (!connected) break
    }
    return { port, worker, wake, fillers }
  }),
  ({ worker, wake, fillers }) =>
    Effect.promise(() => {
      for (const socket of fillers) socket.destroy()
      Atomics.store(wake, 0, 1)
      Atomics.notify(wake, 0)
      return worker.terminate()
    })
)

/** Fails the test, rather than hanging it, when a probe never ends. */
const within = (ms: number) => <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.timeoutFail(effect, { duration: ms, onTimeout: () => new Error(`the probe did not end within ${ms} ms`) })

/** A runtime whose exec never answers (an engine that hangs); the probe uses nothing else. */
const hangingExec = Layer.succeed(ContainerRuntime, { exec: () => Effect.never } as unknown as ContainerRuntime)

/** A check as a definition writes it (durations as text), decoded as the agent gets it. */
const check = (fields: Partial<HealthCheckText> & Pick<HealthCheckText, "kind">): ServiceDefinition.HealthCheck =>
  Schema.decodeSync(ServiceDefinition.HealthCheck)({ interval: "100ms", timeout: "500ms", retries: 3, ...fields })
type HealthCheckText = typeof ServiceDefinition.HealthCheck.Encoded

const target = (c: ServiceDefinition.HealthCheck, hostPort: number | undefined, containerId = "none"): HealthGate.CheckTarget => ({
  component: "web",
  containerId,
  check: c,
  hostPort,
  host: "127.0.0.1"
})

/** Runs `body` with a memory runtime holding one running container, and the platform's HTTP client. */
const withContainer = <A, E>(body: (id: string) => Effect.Effect<A, E, ContainerRuntime | MemoryRuntimeControl | HttpClient.HttpClient>) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const id = yield* runtime.create({
      name: "health-target", image: IMAGE, cmd: undefined, env: [], volumes: [], ports: [], network: undefined, user: undefined, restart: undefined, labels: {}
    })
    yield* runtime.start(id)
    return yield* body(id)
  }).pipe(Effect.provide(Layer.merge(layerMemory({ images: [IMAGE] }), layerPlatform)))

/** The probe's failure reason, or "ok". */
const probeOutcome = (t: HealthGate.CheckTarget) =>
  Effect.map(Effect.either(HealthGate.probe(t)), Either.match({ onLeft: (reason) => reason, onRight: () => "ok" }))

describe("HealthGate.probe", () => {
  it.scopedLive("http: a 2xx or 3xx answer passes; 500 and nothing listening fail", () =>
    Effect.gen(function* () {
      const ok = yield* httpServer(() => 200)
      const redirect = yield* httpServer(() => 302)
      const broken = yield* httpServer(() => 500)
      const nobody = yield* closedPort
      const c = check({ kind: "http", path: "/healthz" })
      yield* withContainer(() =>
        Effect.gen(function* () {
          expect(yield* probeOutcome(target(c, ok.port))).toBe("ok")
          expect(yield* probeOutcome(target(c, redirect.port))).toBe("ok")
          expect(yield* probeOutcome(target(c, broken.port))).toBe("answered HTTP 500")
          expect(yield* probeOutcome(target(c, nobody))).toBe(`no answer on port ${nobody} within 500 ms`)
        })
      )
      expect(ok.requests()).toBe(1)
      expect(broken.requests()).toBe(1)
    }))

  it.scopedLive("tcp: a listener passes, a closed port fails", () =>
    Effect.gen(function* () {
      const server = yield* listen()
      const nobody = yield* closedPort
      const c = check({ kind: "tcp" })
      yield* withContainer(() =>
        Effect.gen(function* () {
          expect(yield* probeOutcome(target(c, portOf(server)))).toBe("ok")
          // Refused, but not said so: the reason reaches the deploy's caller (see the oracle test).
          expect(yield* probeOutcome(target(c, nobody))).toBe(`no answer on port ${nobody} within 500 ms`)
        })
      )
    }))

  it.live("exec: exit 0 passes, a non-zero exit fails with its code and output", () =>
    withContainer((id) =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        const c = check({ kind: "exec", command: ["cat", "/tmp/ready"] })
        const seen: Array<ReadonlyArray<string>> = []
        yield* control.scriptExec((_spec, cmd) => (seen.push(cmd), { exitCode: 0, output: "" }))
        expect(yield* probeOutcome(target(c, undefined, id))).toBe("ok")
        expect(seen).toEqual([["cat", "/tmp/ready"]])
        yield* control.scriptExec(() => ({ exitCode: 2, output: "cat: can't open '/tmp/ready'\n" }))
        expect(yield* probeOutcome(target(c, undefined, id))).toBe("exited 2: cat: can't open '/tmp/ready'")
        // A container that is gone cannot be healthy.
        expect(yield* probeOutcome(target(c, undefined, "no-such-container"))).not.toBe("ok")
      })
    ))

  it.scopedLive("http: a 4xx answer fails, and a redirect is itself the answer (not followed to a failing page)", () =>
    Effect.gen(function* () {
      const badRequest = yield* httpServer(() => 400)
      const broken = yield* httpServer(() => 500)
      // E.g. an app that redirects to its login page: healthy, whatever the target answers.
      const redirect = yield* httpServer(() => 302, { location: `http://127.0.0.1:${broken.port}/login` })
      const c = check({ kind: "http", path: "/healthz", timeout: "2s" })
      yield* withContainer(() =>
        Effect.gen(function* () {
          expect(yield* probeOutcome(target(c, badRequest.port))).toBe("answered HTTP 400")
          expect(yield* probeOutcome(target(c, redirect.port))).toBe("ok")
        })
      )
      expect(broken.requests()).toBe(0)
    }))

  it.scopedLive("http: a server that accepts but never answers fails the attempt after the check's timeout", () =>
    Effect.gen(function* () {
      const hung = yield* silentServer
      const started = Date.now()
      const reason = yield* withContainer(() => probeOutcome(target(check({ kind: "http", path: "/", timeout: "300ms" }), hung.port))).pipe(within(5_000))
      expect(reason).toBe(`no answer on port ${hung.port} within 300 ms`)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      expect(hung.sockets.size).toBe(1)
    }))

  it.scopedLive("tcp: a connect that is never answered fails after the check's timeout, saying so", () =>
    Effect.gen(function* () {
      const { port } = yield* unansweredPort
      const started = Date.now()
      const reason = yield* withContainer(() => probeOutcome(target(check({ kind: "tcp", timeout: "300ms" }), port))).pipe(within(5_000))
      expect(reason).toBe(`no answer on port ${port} within 300 ms`)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
    }))

  it.scopedLive("tcp: a probe interrupted while connecting (a deploy cancelled) closes its socket at once", () =>
    Effect.gen(function* () {
      const { port } = yield* unansweredPort
      const openSockets = () => process.getActiveResourcesInfo().filter((r) => r === "TCPSocketWrap").length
      const before = openSockets()
      const outcome = yield* withContainer(() => HealthGate.probe(target(check({ kind: "tcp", timeout: "30s" }), port))).pipe(Effect.timeout("200 millis"), Effect.option)
      expect(outcome._tag).toBe("None")
      yield* Effect.sleep("50 millis")
      expect(openSockets()).toBe(before)
    }))

  it.live("exec: a command that never returns fails after the check's timeout", () =>
    Effect.gen(function* () {
      const reason = yield* probeOutcome(target(check({ kind: "exec", command: ["sleep", "1d"], timeout: "200ms" }), undefined, "c-1")).pipe(
        Effect.provide(Layer.merge(hangingExec, layerPlatform)),
        within(5_000)
      )
      expect(reason).toBe("no answer within 200 ms")
    }))

  it.live("exec: a failing command's output is trimmed and cut to 200 characters in the reason", () =>
    withContainer((id) =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        const output = `  ${"e".repeat(150)}${"f".repeat(150)}\n`
        yield* control.scriptExec(() => ({ exitCode: 1, output }))
        expect(yield* probeOutcome(target(check({ kind: "exec", command: ["ready"] }), undefined, id))).toBe(`exited 1: ${"e".repeat(150)}${"f".repeat(50)}`)
      })
    ))
})

describe("HealthGate.probe reports no more than it must", () => {
  /** The log lines written while `effect` runs, with their annotations. */
  const logged = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
    Effect.gen(function* () {
      const lines: Array<string> = []
      const logger = Logger.make(({ annotations, message }) => {
        lines.push(`${String(message)} ${JSON.stringify(Object.fromEntries(HashMap.toEntries(annotations)))}`)
      })
      const result = yield* effect.pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)))
      return { result, lines }
    })

  it.scopedLive("a refused port and an unanswered one fail with the same words, over tcp and http, and the detail is logged", () =>
    Effect.gen(function* () {
      const refused = yield* closedPort
      const { port: unanswered } = yield* unansweredPort
      const c = check({ kind: "tcp", timeout: "300ms" })
      const h = check({ kind: "http", path: "/", timeout: "300ms" })
      const { result, lines } = yield* logged(withContainer(() =>
        Effect.all([
          probeOutcome(target(c, refused)),
          probeOutcome(target(c, unanswered)),
          probeOutcome(target(h, refused)),
          probeOutcome(target(h, unanswered))
        ])
      ).pipe(within(10_000)))
      expect(result).toEqual([
        `no answer on port ${refused} within 300 ms`,
        `no answer on port ${unanswered} within 300 ms`,
        `no answer on port ${refused} within 300 ms`,
        `no answer on port ${unanswered} within 300 ms`
      ])
      for (const r of result) expect(r).not.toMatch(/ECONN|EHOST|ENET|refused|reset|abort/i)
      // The operator still finds the socket's words in the agent's log.
      expect(lines.some((l) => l.includes("health probe failed") && l.includes("ECONNREFUSED"))).toBe(true)
    }))
})

describe("HealthGate.gate", () => {
  it.scopedLive("http: passes once the server answers 200 after a few 500s", () =>
    Effect.gen(function* () {
      const server = yield* httpServer((n) => (n <= 3 ? 500 : 200))
      // (Generous interval and timeout: on a busy machine an attempt may take a while.)
      yield* withContainer(() => HealthGate.gate(target(check({ kind: "http", path: "/", interval: "500ms", timeout: "2s", retries: 3 }), server.port)))
      expect(server.requests()).toBe(4)
    }))

  it.scopedLive("tcp: passes once something listens, a little after the first attempt", () =>
    Effect.gen(function* () {
      const port = yield* closedPort
      const c = check({ kind: "tcp", interval: "500ms", retries: 3 })
      const late = yield* Effect.fork(Effect.delay(listen(port), "70 millis"))
      yield* withContainer(() => HealthGate.gate(target(c, port)))
      yield* late.await
    }))

  it.live("exec: passes after a few failed attempts; the failures are retried, not ignored", () =>
    withContainer((id) =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        let attempts = 0
        yield* control.scriptExec(() => ({ exitCode: ++attempts <= 3 ? 1 : 0, output: "not yet" }))
        yield* HealthGate.gate(target(check({ kind: "exec", command: ["ready"], interval: "500ms", retries: 3 }), undefined, id))
        expect(attempts).toBe(4)
      })
    ))

  it.live("a check that never passes fails the gate with Unhealthy, after retrying for retries × interval", () =>
    withContainer((id) =>
      Effect.gen(function* () {
        const control = yield* MemoryRuntimeControl
        let attempts = 0
        yield* control.scriptExec(() => ({ exitCode: 1, output: `attempt ${++attempts}` }))
        const c = check({ kind: "exec", command: ["ready"], interval: "50ms", retries: 3 })
        const started = Date.now()
        const error = yield* Effect.flip(HealthGate.gate(target(c, undefined, id)))
        const elapsed = Date.now() - started
        expect(error).toBeInstanceOf(HealthGate.Unhealthy)
        expect(error).toMatchObject({ component: "web", check: "exec ready", reason: `exited 1: attempt ${attempts}` })
        expect(error.message).toBe(`component web failed its exec ready check: exited 1: attempt ${attempts}`)
        // Polled several times per interval, for about retries × interval (150 ms).
        expect(attempts).toBeGreaterThan(3)
        expect(elapsed).toBeGreaterThanOrEqual(140)
        expect(elapsed).toBeLessThan(5_000)
      })
    ))

  it.scopedLive("http and tcp checks that never pass fail the gate too", () =>
    Effect.gen(function* () {
      const broken = yield* httpServer(() => 500)
      const nobody = yield* closedPort
      yield* withContainer(() =>
        Effect.gen(function* () {
          const httpError = yield* Effect.flip(HealthGate.gate(target(check({ kind: "http", path: "/healthz", interval: "30ms", retries: 2 }), broken.port)))
          expect(httpError).toMatchObject({ _tag: "Unhealthy", component: "web", check: "http /healthz", reason: "answered HTTP 500" })
          expect(broken.requests()).toBeGreaterThan(1)
          const tcpError = yield* Effect.flip(HealthGate.gate(target(check({ kind: "tcp", interval: "30ms", retries: 2 }), nobody)))
          expect(tcpError).toMatchObject({ _tag: "Unhealthy", component: "web", check: "tcp" })
        })
      )
    }))
})
