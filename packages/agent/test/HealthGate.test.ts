/**
 * The deploy health gate on its own: one probe of each kind against real sockets on 127.0.0.1
 * (http, tcp) or the memory runtime's scripted exec, and the gate's retries: a check that passes
 * after a few failures lets it through, one that never passes within `retries` × `interval` stops it.
 */
import { describe, expect, it } from "@effect/vitest"
import type { ServiceDefinition } from "@mcp/domain"
import { Effect, Either } from "effect"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { ContainerRuntime } from "../src/ContainerRuntime.js"
import * as HealthGate from "../src/HealthGate.js"
import { layerMemory, MemoryRuntimeControl } from "../src/MemoryRuntime.js"
import { IMAGE } from "./Harness.js"

/** An http server on an ephemeral port of 127.0.0.1 answering `status(n)` to its nth request (from 1). */
const httpServer = (status: (n: number) => number) =>
  Effect.acquireRelease(
    Effect.async<{ readonly port: number; readonly requests: () => number; readonly server: http.Server }>((resume) => {
      let requests = 0
      const server = http.createServer((_req, res) => {
        requests += 1
        res.writeHead(status(requests)).end("answer")
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

const check = (fields: Partial<ServiceDefinition.HealthCheck> & Pick<ServiceDefinition.HealthCheck, "kind">): ServiceDefinition.HealthCheck => ({
  interval: "100ms",
  timeout: "500ms",
  retries: 3,
  ...fields
})

const target = (c: ServiceDefinition.HealthCheck, hostPort: number | undefined, containerId = "none"): HealthGate.CheckTarget => ({
  component: "web",
  containerId,
  check: c,
  hostPort,
  host: "127.0.0.1"
})

/** Runs `body` with a memory runtime holding one running container. */
const withContainer = <A, E>(body: (id: string) => Effect.Effect<A, E, ContainerRuntime | MemoryRuntimeControl>) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const id = yield* runtime.create({
      name: "health-target", image: IMAGE, cmd: undefined, env: [], volumes: [], ports: [], network: undefined, user: undefined, restart: undefined, labels: {}
    })
    yield* runtime.start(id)
    return yield* body(id)
  }).pipe(Effect.provide(layerMemory({ images: [IMAGE] })))

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
          expect(yield* probeOutcome(target(c, nobody))).not.toBe("ok")
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
          expect(yield* probeOutcome(target(c, nobody))).toMatch(/ECONNREFUSED/)
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
