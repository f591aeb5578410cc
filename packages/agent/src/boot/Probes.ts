/**
 * One attempt of an explicit stage check ([[boot.sequence.checks]]): http, tcp and exec as a
 * deploy's health gate probes them, plus https and dns, which only boot has. Fails with the
 * reason, as the status shows it.
 */
import { HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { Duration, Effect } from "effect"
import * as dns from "node:dns"
import type { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { backendHost } from "../lifecycle/ContainerPlan.js"
import * as HealthGate from "../lifecycle/HealthGate.js"
import { NodeSettings } from "../NodeSettings.js"
import { describe, type StageCheck } from "./Model.js"

const answerTimeout = { duration: Duration.seconds(3), onTimeout: () => "no answer within 3 s" }

export const runCheck = (
  c: StageCheck,
  port: number | undefined,
  container: string | undefined
): Effect.Effect<void, string, HttpClient.HttpClient | ContainerRuntime | NodeSettings> => {
  switch (c.kind) {
    case "http":
    case "tcp":
    case "exec":
      return gateProbe(c, c.kind, port, container)
    case "https":
      return Effect.flatMap(NodeSettings, (settings) => httpsGet(`https://${backendHost(settings)}:${port}${c.path ?? "/"}`))
    case "dns":
      return resolve(c, port)
  }
}

const gateProbe = (c: StageCheck, kind: "http" | "tcp" | "exec", port: number | undefined, container: string | undefined) =>
  Effect.flatMap(NodeSettings, (settings) =>
    HealthGate.probe({
      component: c.service,
      containerId: container ?? "",
      check: { kind, ...(c.path === undefined ? {} : { path: c.path }), ...(c.command === undefined ? {} : { command: c.command }), interval: Duration.seconds(1), timeout: Duration.seconds(3), retries: 1 },
      hostPort: port,
      host: backendHost(settings)
    }))

const httpsGet = (url: string) =>
  Effect.gen(function* () {
    // A liveness check: the certificate is the proxy's business, not the boot gate's, so
    // this client (its own connections, closed with the scope after the check) verifies none.
    const agent = yield* NodeHttpClient.makeAgent({ rejectUnauthorized: false })
    const client = yield* Effect.provideService(NodeHttpClient.make, NodeHttpClient.HttpAgent, agent)
    const res = yield* HttpClient.withScope(client).get(url).pipe(
      Effect.mapError((e) => (e.cause instanceof Error ? e.cause.message : e.message))
    )
    if (res.status >= 400) return yield* Effect.fail(`answered HTTP ${res.status}`)
  }).pipe(Effect.timeoutFail(answerTimeout), Effect.scoped)

const resolve = (c: StageCheck, port: number | undefined) =>
  Effect.flatMap(NodeSettings, (settings) =>
    Effect.tryPromise({
      try: () => {
        const r = new dns.promises.Resolver({ timeout: 2000, tries: 1 })
        r.setServers([c.server ?? `${backendHost(settings)}:${port}`])
        return r.resolve4(c.path ?? `${c.service}.${settings.internalZone}`)
      },
      catch: (e) => `DNS query failed: ${describe(e)}`
    })).pipe(Effect.asVoid, Effect.timeoutFail(answerTimeout))
