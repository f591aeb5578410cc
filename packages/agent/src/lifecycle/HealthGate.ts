/**
 * Health checks a deploy waits for before it switches routes: an HTTP GET, a TCP connect, or a
 * command run in the container. Each attempt has the check's timeout; the gate allows
 * `retries` failed attempts, `interval` apart.
 */
import { HttpClient } from "@effect/platform"
import type { ServiceDefinition } from "@mcp/domain"
import { Cause, Data, Duration, Effect, Schedule } from "effect"
import * as net from "node:net"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"

export class Unhealthy extends Data.TaggedError("Unhealthy")<{
  readonly component: string
  readonly check: string
  readonly reason: string
}> {
  override get message() {
    return `component ${this.component} failed its ${this.check} check: ${this.reason}`
  }
}

export interface CheckTarget {
  readonly component: string
  readonly containerId: string
  readonly check: ServiceDefinition.HealthCheck
  /** The host port the check connects to (for http and tcp). */
  readonly hostPort: number | undefined
  readonly host: string
}

/**
 * The one failure an http or tcp probe reports, whatever the socket said. The reason travels to
 * the deploy's caller, and "refused" against "host unreachable" against "timed out" would tell
 * them what else is (or is not) on the node's ports; the detail goes to the agent's log only.
 */
export const noAnswer = (port: number | undefined, timeoutMs: number) => `no answer on port ${port ?? "(none)"} within ${timeoutMs} ms`

/** Logs what the socket really said (for the operator), and fails with the generic reason. */
const generic = (port: number, timeoutMs: number) => (detail: string) =>
  Effect.zipRight(
    Effect.logInfo("health probe failed").pipe(Effect.annotateLogs({ port, detail })),
    Effect.fail(noAnswer(port, timeoutMs))
  )

/**
 * A redirect is itself the answer (the client follows none), and the body is never read: the
 * request's scope ends once the status is known, which closes the connection.
 */
const httpGet = (url: string, port: number, timeoutMs: number): Effect.Effect<void, string, HttpClient.HttpClient> =>
  Effect.flatMap(HttpClient.HttpClient, (client) => HttpClient.withScope(client).get(url)).pipe(
    Effect.catchAll((e) => generic(port, timeoutMs)(e.cause instanceof Error ? e.cause.message : e.message)),
    Effect.timeoutFailCause({ duration: Duration.millis(timeoutMs), onTimeout: () => Cause.fail(noAnswer(port, timeoutMs)) }),
    // The status is the component's own answer, not the node's: it is reported as it came.
    Effect.flatMap((res) => (res.status >= 200 && res.status < 400 ? Effect.void : Effect.fail(`answered HTTP ${res.status}`))),
    Effect.scoped
  )

const tcpConnect = (host: string, port: number, timeoutMs: number) =>
  Effect.async<void, string>((resume) => {
    const socket = net.connect({ host, port, timeout: timeoutMs })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.void)
    })
    socket.once("timeout", () => {
      socket.destroy()
      resume(Effect.fail(`timed out after ${timeoutMs} ms`))
    })
    socket.once("error", (e) => resume(Effect.fail(e.message)))
    return Effect.sync(() => socket.destroy())
  }).pipe(Effect.catchAll(generic(port, timeoutMs)))

/** One attempt of the check. */
export const probe = (target: CheckTarget) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const { check } = target
    const timeoutMs = Duration.toMillis(check.timeout)
    switch (check.kind) {
      case "http":
        if (target.hostPort === undefined) return yield* Effect.fail(noAnswer(undefined, timeoutMs))
        return yield* httpGet(`http://${target.host}:${target.hostPort}${check.path ?? "/"}`, target.hostPort, timeoutMs)
      case "tcp":
        return yield* tcpConnect(target.host, target.hostPort ?? 0, timeoutMs)
      case "exec": {
        const result = yield* runtime.exec(target.containerId, check.command ?? []).pipe(
          Effect.timeoutFail({ duration: Duration.millis(timeoutMs), onTimeout: () => `no answer within ${timeoutMs} ms` }),
          Effect.mapError((e) => (typeof e === "string" ? e : e.message))
        )
        if (result.exitCode !== 0) return yield* Effect.fail(`exited ${result.exitCode}: ${result.output.trim().slice(0, 200)}`)
      }
    }
  })

export const describeCheck = (check: ServiceDefinition.HealthCheck): string =>
  check.kind === "http" ? `http ${check.path}` : check.kind === "exec" ? `exec ${(check.command ?? []).join(" ")}` : "tcp"

/** Waits until the check passes, allowing `retries` failures `interval` apart. */
export const gate = (target: CheckTarget) =>
  probe(target).pipe(
    Effect.retry(
      Schedule.spaced(Duration.unsafeDivide(target.check.interval, 5)).pipe(
        // Poll five times per interval for a quick start, giving up after `retries` intervals.
        Schedule.upTo(Duration.times(target.check.interval, target.check.retries))
      )
    ),
    Effect.mapError((reason) => new Unhealthy({ component: target.component, check: describeCheck(target.check), reason }))
  )
