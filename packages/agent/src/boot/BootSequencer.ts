/**
 * Brings a node's services up in health-gated stages after the agent starts (e.g. dns, then
 * core, then management, then apps), recreating lost containers from the registry, and keeps
 * watching: when a service of an earlier stage fails its checks repeatedly, it is restarted
 * first and the later stages are re-gated behind it (rest_for_one).
 */
import { HttpClient } from "@effect/platform"
import { NodeHttpClient, Undici } from "@effect/platform-node"
import type { Operations } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { Duration, Effect, Either, Option, Ref, Schedule } from "effect"
import * as dns from "node:dns"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import * as HealthGate from "../lifecycle/HealthGate.js"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { Registry, UnreadableDefinition } from "../registry/Registry.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"

export interface StageCheck {
  readonly service: string
  readonly kind: "http" | "https" | "tcp" | "dns" | "exec"
  /** http/https: the path; dns: the name to resolve. */
  readonly path?: string
  /** http/https/tcp: a route name of the service (its host port), or an explicit port. */
  readonly route?: string
  readonly port?: number
  /** dns: the server to ask, host:port (default: the service's first route port on 127.0.0.1). */
  readonly server?: string
  readonly command?: ReadonlyArray<string>
}

export interface Stage {
  readonly name: string
  readonly services: ReadonlyArray<string>
  readonly timeout: Duration.Duration
  readonly onFailure: "wait" | "continue"
  /** Explicit checks; a service without one uses its definition's health check, or "running". */
  readonly checks: ReadonlyArray<StageCheck>
}

export interface BootSettings {
  readonly stages: ReadonlyArray<Stage>
  /** How often the supervision loop re-runs every stage's checks once all are up. */
  readonly checkInterval: Duration.Duration
  /** Consecutive failed checks before a service is restarted. */
  readonly restartAfter: number
}

type StageState = Operations.BootStatus["stages"][number]
type CheckResult = StageState["checks"][number]

const describe = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e))
const now = () => new Date().toISOString()

export class BootSequencer extends Effect.Service<BootSequencer>()("@mcp/agent/BootSequencer", {
  effect: Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const lifecycle = yield* Lifecycle
    const actors = yield* ServiceActors
    const settings = yield* NodeSettings
    const httpClient = yield* HttpClient.HttpClient
    const states = yield* Ref.make<ReadonlyArray<StageState>>([])

    const event = (message: string, service?: string) => Failures.fatal("the agent registry")(registry.addEvent("boot", service, message))
    /** Reported once per sequence here, not by the checks that fall back for it (they run every interval). */
    const reportUnreadable = (service: string, definition: UnreadableDefinition) =>
      Effect.zipRight(
        Failures.reported("reading a stored definition", `${service}: ${definition.reason}`),
        event(`the stored definition of ${service} cannot be read (${definition.reason}); its components are gated on running until it is redeployed`, service)
      )
    const update = (name: string, f: (s: StageState) => StageState) => Ref.update(states, (all) => all.map((s) => (s.name === name ? f(s) : s)))

    // -------------------------------------------------------------------------------------------
    // Checks.

    /** The checks that gate a service: explicit ones, else its components' health checks, else "running". */
    const checksFor = (stage: Stage, service: string) =>
      Effect.gen(function* () {
        const explicit = stage.checks.filter((c) => c.service === service)
        const row = yield* Failures.fatal("the agent registry")(registry.service(service))
        if (Option.isNone(row)) return { missing: true as const, checks: [] as Array<Effect.Effect<CheckResult>> }
        // An operator's stop is respected: a stopped service neither gates its stage nor gets restarted.
        if (!row.value.active) {
          return { missing: false as const, checks: [Effect.succeed<CheckResult>({ service, check: "stopped by operator", ok: true, detail: "not started or supervised while stopped", at: now() })] }
        }
        const components = yield* Failures.fatal("the agent registry")(registry.components(service))
        const routes = yield* Failures.fatal("the agent registry")(registry.serviceRoutes(service))
        const portOf = (route?: string, port?: number) => port ?? (route === undefined ? routes[0]?.hostPort : routes.find((r) => r.route === route)?.hostPort)
        const result = (check: string, outcome: Either.Either<unknown, unknown>): CheckResult => ({
          service, check, ok: Either.isRight(outcome), detail: Either.isRight(outcome) ? "ok" : describe(outcome.left), at: now()
        })
        if (explicit.length > 0) {
          return {
            missing: false as const,
            checks: explicit.map((c) => {
              const label = `${c.kind}${c.path === undefined ? "" : ` ${c.path}`}`
              return Effect.map(Effect.either(runCheck(c, portOf(c.route, c.port), components[0]?.spec.name)), (o) => result(label, o))
            })
          }
        }
        return {
          missing: false as const,
          checks: components.map((c) => {
            // An unreadable definition was reported when the sequence started; until a redeploy
            // replaces it, its components are gated on running, the check that needs no definition.
            const definition = row.value.definition
            const unreadable = definition instanceof UnreadableDefinition
            const check = unreadable ? undefined : definition.components.find((d) => d.name === c.name)?.health
            if (check === undefined) {
              return Effect.map(Effect.either(Effect.flatMap(runtime.inspect(c.spec.name), (info) => (info.state === "running" ? Effect.void : Effect.fail(`container ${c.spec.name} is ${info.state}`)))), (o) => result(`${c.name} running${unreadable ? " (stored definition unreadable)" : ""}`, o))
            }
            const own = routes.filter((r) => r.component === c.name)
            const target = check.route === undefined ? own[0] : own.find((r) => r.route === check.route)
            return Effect.map(
              Effect.either(Effect.provideService(HealthGate.probe({ component: c.name, containerId: c.spec.name, check, hostPort: check.port ?? target?.hostPort, host: "127.0.0.1" }), ContainerRuntime, runtime)),
              (o) => result(`${c.name} ${HealthGate.describeCheck(check)}`, o)
            )
          })
        }
      })

    const runCheck = (c: StageCheck, port: number | undefined, container: string | undefined): Effect.Effect<void, string, HttpClient.HttpClient> => {
      const timeout = { duration: Duration.seconds(3), onTimeout: () => "no answer within 3 s" }
      switch (c.kind) {
        case "http":
        case "tcp":
        case "exec":
          return Effect.provideService(
            HealthGate.probe({
              component: c.service,
              containerId: container ?? "",
              check: { kind: c.kind, ...(c.path === undefined ? {} : { path: c.path }), ...(c.command === undefined ? {} : { command: c.command }), interval: Duration.seconds(1), timeout: Duration.seconds(3), retries: 1 },
              hostPort: port,
              host: "127.0.0.1"
            }),
            ContainerRuntime,
            runtime
          )
        case "https":
          return Effect.gen(function* () {
            // A liveness check: the certificate is the proxy's business, not the boot gate's, so
            // this client (its own connections, closed after the check) verifies none.
            const dispatcher = yield* Effect.acquireRelease(
              Effect.sync(() => new Undici.Agent({ connect: { rejectUnauthorized: false } })),
              (agent) => Effect.promise(() => agent.destroy())
            )
            const res = yield* HttpClient.withScope(NodeHttpClient.makeUndici(dispatcher)).get(`https://127.0.0.1:${port}${c.path ?? "/"}`).pipe(
              Effect.mapError((e) => (e.cause instanceof Error ? e.cause.message : e.message))
            )
            if (res.status >= 400) return yield* Effect.fail(`answered HTTP ${res.status}`)
          }).pipe(Effect.timeoutFail(timeout), Effect.scoped)
        case "dns":
          return Effect.tryPromise({
            try: () => {
              const r = new dns.promises.Resolver({ timeout: 2000, tries: 1 })
              r.setServers([c.server ?? `127.0.0.1:${port}`])
              return r.resolve4(c.path ?? `${c.service}.${settings.internalZone}`)
            },
            catch: (e) => `DNS query failed: ${describe(e)}`
          }).pipe(Effect.asVoid, Effect.timeoutFail(timeout))
      }
    }

    /** Runs every check of a stage once; returns the results. */
    const checkStage = (stage: Stage) =>
      Effect.gen(function* () {
        const results: Array<CheckResult> = []
        for (const service of stage.services) {
          const { missing, checks } = yield* checksFor(stage, service)
          if (missing) {
            results.push({ service, check: "registered", ok: false, detail: `service ${service} is not deployed on this node`, at: now() })
            continue
          }
          for (const c of checks) results.push(yield* c)
        }
        return results
      }).pipe(Effect.provideService(HttpClient.HttpClient, httpClient))

    // -------------------------------------------------------------------------------------------
    // Bringing stages up.

    const startServices = (services: ReadonlyArray<string>) =>
      Effect.forEach(services, (service) =>
        Effect.gen(function* () {
          const row = yield* Failures.fatal("the agent registry")(registry.service(service))
          // Only what should run: an operator's stop survives a reboot.
          if (Option.isNone(row) || !row.value.active) return
          yield* actors.submit(service, lifecycle.bringUp(service)).pipe(
            Effect.catchAll((e) => event(`could not start ${service}: ${describe(e)}`, service))
          )
        })
      , { discard: true })

    /** Starts a stage's services and waits for its checks, within the stage's timeout. */
    const gateStage = (stage: Stage) =>
      Effect.gen(function* () {
        yield* update(stage.name, (s) => ({ ...s, state: s.attempts > 0 ? "retrying" : "starting", startedAt: now(), attempts: s.attempts + 1 }))
        yield* startServices(stage.services)
        const passed = yield* Effect.gen(function* () {
          const results = yield* checkStage(stage)
          yield* update(stage.name, (s) => ({ ...s, checks: results }))
          const failing = results.filter((r) => !r.ok)
          if (failing.length > 0) return yield* Effect.fail(failing.map((r) => `${r.service} ${r.check}: ${r.detail}`).join("; "))
        }).pipe(
          Effect.retry(Schedule.spaced("500 millis")),
          Effect.timeoutFail({ duration: stage.timeout, onTimeout: () => "" }),
          Effect.either
        )
        if (Either.isRight(passed)) {
          yield* update(stage.name, (s) => {
            const { lastError: _, ...rest } = s
            return { ...rest, state: "up", upAt: now() }
          })
          yield* event(`stage ${stage.name} is up`)
          return true
        }
        const current = (yield* Ref.get(states)).find((s) => s.name === stage.name)
        const why = current?.checks.filter((c) => !c.ok).map((c) => `${c.service} ${c.check}: ${c.detail}`).join("; ") || "checks did not pass"
        yield* update(stage.name, (s) => ({ ...s, state: "failed", lastError: `not up within ${Duration.format(stage.timeout)}: ${why}` }))
        yield* event(`stage ${stage.name} failed: ${why}`)
        return false
      })

    /** Gates stages from `from` on, in order; a stage that fails and must be waited for is retried with backoff. */
    const gateFrom = (stagesList: ReadonlyArray<Stage>, from: number) =>
      Effect.gen(function* () {
        for (const stage of stagesList.slice(from)) {
          const up = yield* gateStage(stage).pipe(
            Effect.flatMap((ok) => (ok || stage.onFailure === "continue" ? Effect.succeed(ok) : Effect.fail("retry"))),
            Effect.retry(Schedule.exponential("2 seconds", 2).pipe(Schedule.union(Schedule.spaced("60 seconds")))),
            Effect.orElseSucceed(() => false)
          )
          if (!up) yield* event(`stage ${stage.name} did not come up; continuing as configured`)
        }
      })

    // -------------------------------------------------------------------------------------------

    const run = (boot: BootSettings) =>
      Effect.gen(function* () {
        const rows = yield* Failures.fatal("the agent registry")(registry.services)
        for (const row of rows) {
          if (row.definition instanceof UnreadableDefinition) yield* reportUnreadable(row.name, row.definition)
        }
        const services = rows.map((s) => s.name)
        const staged = new Set(boot.stages.flatMap((s) => s.services))
        // Services in no stage come up last, as an implicit final stage.
        const rest = services.filter((s) => !staged.has(s))
        const stagesList: ReadonlyArray<Stage> = [
          ...boot.stages,
          ...(rest.length > 0 ? [{ name: "unstaged", services: rest, timeout: Duration.minutes(5), onFailure: "continue" as const, checks: [] }] : [])
        ]
        yield* Ref.set(states, stagesList.map((s): StageState => ({ name: s.name, state: "waiting", services: [...s.services], checks: [], attempts: 0 })))

        const components = yield* Failures.fatal("the agent registry")(registry.allComponents)
        const present = yield* Effect.forEach(components, (c) => Effect.map(Effect.either(runtime.inspect(c.spec.name)), Either.isRight))
        if (components.length > 0 && present.every((p) => !p)) {
          yield* event(`the engine has none of the registry's ${components.length} containers (engine reset?); recovering them in stage order`)
        }
        yield* gateFrom(stagesList, 0)

        // Supervision: an earlier stage that fails repeatedly is restarted, then later ones re-gated.
        const failures = new Map<string, number>()
        yield* Effect.forever(
          Effect.gen(function* () {
            yield* Effect.sleep(boot.checkInterval)
            for (const [index, stage] of stagesList.entries()) {
              const results = yield* checkStage(stage)
              yield* update(stage.name, (s) => ({ ...s, checks: results }))
              const broken = [...new Set(results.filter((r) => !r.ok).map((r) => r.service))]
              for (const r of results) if (r.ok) failures.delete(r.service)
              for (const service of broken) failures.set(service, (failures.get(service) ?? 0) + 1)
              const due = broken.filter((s) => (failures.get(s) ?? 0) >= boot.restartAfter)
              if (due.length === 0) continue
              yield* event(`stage ${stage.name}: ${due.join(", ")} failed ${boot.restartAfter} checks in a row; restarting, then re-gating the later stages`)
              for (const later of stagesList.slice(index + 1)) yield* update(later.name, (s) => ({ ...s, state: "waiting" }))
              for (const service of due) {
                failures.delete(service)
                yield* actors.submit(service, lifecycle.restart(service)).pipe(Effect.catchAll((e) => event(`restart of ${service} failed: ${describe(e)}`, service)))
              }
              yield* gateFrom(stagesList, index)
              break
            }
          })
        )
      })

    const status: Effect.Effect<Operations.BootStatus> = Effect.map(Ref.get(states), (stages) => ({ node: settings.node, stages }))

    return { run, status } as const
  })
}) {}
