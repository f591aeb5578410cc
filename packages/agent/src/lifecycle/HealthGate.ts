/**
 * Health checks a deploy waits for before it switches routes: an HTTP GET, a TCP connect, or a
 * command run in the container. Each attempt has the check's timeout; the gate allows
 * `retries` failed attempts, `interval` apart.
 */
import { HttpClient } from "@effect/platform"
import type { ServiceDefinition } from "@mcp/domain"
import { Data, Duration, Effect, Schedule } from "effect"
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
 * A redirect is itself the answer (the client follows none), and the body is never read: the
 * request's scope ends once the status is known, which closes the connection.
 */
const httpGet = (url: string, timeoutMs: number): Effect.Effect<void, string, HttpClient.HttpClient> =>
  Effect.flatMap(HttpClient.HttpClient, (client) => HttpClient.withScope(client).get(url)).pipe(
    Effect.mapError((e) => (e.cause instanceof Error ? e.cause.message : e.message)),
    // Worded as the probe has always reported a timeout.
    Effect.timeoutFail({ duration: Duration.millis(timeoutMs), onTimeout: () => "The operation was aborted due to timeout" }),
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
      resume(Effect.fail(`no connection within ${timeoutMs} ms`))
    })
    socket.once("error", (e) => resume(Effect.fail(e.message)))
    return Effect.sync(() => socket.destroy())
  })

/** One attempt of the check. */
export const probe = (target: CheckTarget) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const { check } = target
    const timeoutMs = Duration.toMillis(check.timeout)
    switch (check.kind) {
      case "http":
        return yield* httpGet(`http://${target.host}:${target.hostPort}${check.path ?? "/"}`, timeoutMs)
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
