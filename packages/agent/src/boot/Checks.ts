/**
 * The checks that gate a service, and one round of a stage's checks. A service's checks are
 * the stage's explicit ones for it, else its components' health checks, else "running".
 */
import type { HttpClient } from "@effect/platform"
import { Effect, Either, Option } from "effect"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { backendHost } from "../lifecycle/ContainerPlan.js"
import * as HealthGate from "../lifecycle/HealthGate.js"
import { NodeSettings } from "../NodeSettings.js"
import { type ComponentRow, Registry, type RouteRow, type ServiceRow, UnreadableDefinition } from "../registry/Registry.js"
import { type CheckResult, describe, now, registryFatal, type Stage, type StageCheck } from "./Model.js"
import { runCheck } from "./Probes.js"

type Check = Effect.Effect<CheckResult, never, ContainerRuntime | HttpClient.HttpClient | NodeSettings>

/** `missing`: the service is not in the registry, so it has no checks to run. */
interface ServiceChecks {
  readonly missing: boolean
  readonly checks: ReadonlyArray<Check>
}

const toResult = (service: string, check: string, outcome: Either.Either<unknown, unknown>): CheckResult => ({
  service, check, ok: Either.isRight(outcome), detail: Either.isRight(outcome) ? "ok" : describe(outcome.left), at: now()
})

const checksFor = (stage: Stage, service: string) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const row = yield* registryFatal(registry.service(service))
    if (Option.isNone(row)) return { missing: true, checks: [] } satisfies ServiceChecks
    // An operator's stop is respected: a stopped service neither gates its stage nor gets restarted.
    if (!row.value.active) {
      return { missing: false, checks: [Effect.succeed<CheckResult>({ service, check: "stopped by operator", ok: true, detail: "not started or supervised while stopped", at: now() })] } satisfies ServiceChecks
    }
    const components = yield* registryFatal(registry.components(service))
    const routes = yield* registryFatal(registry.serviceRoutes(service))
    const explicit = stage.checks.filter((c) => c.service === service)
    const checks = explicit.length > 0
      ? explicit.map((c) => explicitCheck(c, routes, components[0]?.spec.name))
      : components.map((c) => componentCheck(service, row.value.definition, c, routes))
    return { missing: false, checks } satisfies ServiceChecks
  })

const explicitCheck = (c: StageCheck, routes: ReadonlyArray<RouteRow>, container: string | undefined): Check => {
  const port = c.port ?? (c.route === undefined ? routes[0]?.hostPort : routes.find((r) => r.route === c.route)?.hostPort)
  const label = `${c.kind}${c.path === undefined ? "" : ` ${c.path}`}`
  return Effect.map(Effect.either(runCheck(c, port, container)), (o) => toResult(c.service, label, o))
}

const componentCheck = (service: string, definition: ServiceRow["definition"], c: ComponentRow, routes: ReadonlyArray<RouteRow>): Check => {
  // An unreadable definition was reported when the sequence started; until a redeploy
  // replaces it, its components are gated on running, the check that needs no definition.
  const unreadable = definition instanceof UnreadableDefinition
  const check = unreadable ? undefined : definition.components.find((d) => d.name === c.name)?.health
  if (check === undefined) {
    const running = Effect.flatMap(ContainerRuntime, (runtime) => runtime.inspect(c.spec.name)).pipe(
      Effect.flatMap((info) => (info.state === "running" ? Effect.void : Effect.fail(`container ${c.spec.name} is ${info.state}`)))
    )
    return Effect.map(Effect.either(running), (o) => toResult(service, `${c.name} running${unreadable ? " (stored definition unreadable)" : ""}`, o))
  }
  const own = routes.filter((r) => r.component === c.name)
  const target = check.route === undefined ? own[0] : own.find((r) => r.route === check.route)
  // Where the node publishes ports ([ports] bind), as the deploy's health step probes them: a
  // port bound to one address answers nothing on 127.0.0.1, and every check would fail.
  return Effect.flatMap(NodeSettings, (settings) =>
    Effect.map(
      Effect.either(HealthGate.probe({ component: c.name, containerId: c.spec.name, check, hostPort: check.port ?? target?.hostPort, host: backendHost(settings) })),
      (o) => toResult(service, `${c.name} ${HealthGate.describeCheck(check)}`, o)
    ))
}

/**
 * Runs every check of a stage once; returns the results, and the stage's services that are not
 * in the registry (each reported as a failed "registered" check: it gates the stage, but
 * supervision has nothing of it to restart).
 */
export const checkStage = (stage: Stage) =>
  Effect.gen(function* () {
    const results: Array<CheckResult> = []
    const notDeployed: Array<string> = []
    for (const service of stage.services) {
      const { missing, checks } = yield* checksFor(stage, service)
      if (missing) {
        notDeployed.push(service)
        results.push({ service, check: "registered", ok: false, detail: `service ${service} is not deployed on this node`, at: now() })
        continue
      }
      for (const c of checks) results.push(yield* c)
    }
    return { results, notDeployed } as const
  })
