/**
 * The drift and flap monitor: every interval it compares what the registry says should run on
 * this node with what the engine runs, turns each change in its findings into an event, and,
 * with reconcile on, restarts what fell over (per-component backoff, through the service's actor).
 */
import * as Failures from "@mcp/rpc/Failures"
import { Clock, Context, Duration, Effect, Either, FiberMap, Layer, Metric, Option, Ref, Schedule } from "effect"
import { type AgentConfig, MONITOR_DEFAULTS } from "../daemon/AgentConfig.js"
import { type ContainerInfo, ContainerRuntime, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../engine/ContainerRuntime.js"
import { NodeSettings } from "../NodeSettings.js"
import { Lifecycle } from "../lifecycle/Lifecycle.js"
import { type ComponentRow, Registry, type ServiceRow } from "../registry/Registry.js"
import { ServiceActors } from "../lifecycle/ServiceActors.js"

// ---------------------------------------------------------------------------------------------
// Findings: pure functions of a snapshot (registry rows, engine containers) and the clock.

export type FindingKind = "missing" | "stopped" | "wrong-image" | "unexpected" | "running-while-stopped" | "flap"

/** New drift and flap findings, by kind (a finding that persists is counted once, when it appears). */
export const findingsSeen = Metric.counter("mcp_monitor_findings", { incremental: true, description: "drift and flap findings of the monitor as they appear, by kind" })

export interface Finding {
  readonly kind: FindingKind
  readonly service: string
  /** The registry's component; undefined for an unexpected container. */
  readonly component: string | undefined
  /** The container's name (recorded, or as the engine has it). */
  readonly container: string
  /** In plain words, for events, logs and the `warnings` of `mcp ps` / `mcp status`. */
  readonly message: string
}

/** The same problem on the same container is one finding, however often it is seen. */
export const findingKey = (f: Finding): string => [f.kind, f.service, f.component ?? "", f.container].join("\u0000")

export const eventKind = (f: Finding): "drift" | "flap" => (f.kind === "flap" ? "flap" : "drift")

export interface Snapshot {
  readonly services: ReadonlyArray<ServiceRow>
  readonly components: ReadonlyArray<ComponentRow>
  /** The engine's containers labelled with this node, plus recorded ones found by name. */
  readonly containers: ReadonlyArray<ContainerInfo>
  /** Ids of sagas still running: the containers of a deploy in flight are not unexpected. */
  readonly openSagas: ReadonlySet<string>
}

/** Running as far as the monitor cares: `restarting` is the engine's own restart policy at work. */
export const isUp = (c: ContainerInfo): boolean => c.state === "running" || c.state === "restarting"

/** Drift of every registered component, and the containers of this node nobody recorded. */
export const detectDrift = (snap: Snapshot): Array<Finding> => {
  const byName = new Map(snap.containers.map((c) => [c.name, c] as const))
  const services = new Map(snap.services.map((s) => [s.name, s] as const))
  const findings: Array<Finding> = []
  for (const row of snap.components) {
    const service = services.get(row.service)
    if (service === undefined) continue
    const label = `${row.service}/${row.name}`
    const name = row.spec.name
    const c = byName.get(name)
    const found = (kind: FindingKind, message: string) =>
      findings.push({ kind, service: row.service, component: row.name, container: name, message })
    if (service.active) {
      if (c === undefined) found("missing", `${label}: container ${name} is missing from the engine`)
      else if (!isUp(c)) found("stopped", `${label}: container ${name} is ${c.state}; it should be running`)
    } else if (c !== undefined && isUp(c)) {
      found("running-while-stopped", `${label}: container ${name} is ${c.state} but the service was stopped`)
    }
    if (c !== undefined && c.image !== row.image) {
      found("wrong-image", `${label}: container ${name} runs ${c.image}, the registry records ${row.image}`)
    }
  }
  for (const c of snap.containers) {
    const service = c.labels[LABEL_SERVICE]
    const deploy = c.labels[LABEL_DEPLOY]
    if (service === undefined || (deploy !== undefined && snap.openSagas.has(deploy))) continue
    const known = services.get(service)
    const message = known === undefined
      ? `container ${c.name} claims service ${service}, which this node's registry does not know`
      : deploy !== known.deployId
      ? `container ${c.name} of ${service} is from deploy ${deploy ?? "(unlabelled)"}, not the current ${known.deployId}`
      : undefined
    if (message !== undefined) findings.push({ kind: "unexpected", service, component: undefined, container: c.name, message })
  }
  return findings
}

/** Restarts seen for one component: engine restartCount growth plus the monitor's own restarts. */
export interface FlapTrack {
  readonly service: string
  /** The container whose restartCount is the baseline; undefined while there is none. */
  readonly containerId: string | undefined
  readonly restartCount: number
  /** When each restart was seen (clock millis), oldest first, within the window. */
  readonly restarts: ReadonlyArray<number>
}

const prune = (restarts: ReadonlyArray<number>, now: number, windowMs: number) => restarts.filter((at) => at > now - windowMs)

/**
 * Folds one observation into a track. A container seen for the first time (or recreated) only
 * sets the baseline: restarts before the monitor saw it happened at unknown times.
 */
export const observe = (
  prev: FlapTrack | undefined,
  service: string,
  container: ContainerInfo | undefined,
  now: number,
  windowMs: number
): FlapTrack => {
  const kept = prune(prev?.restarts ?? [], now, windowMs)
  if (container === undefined) return { service, containerId: undefined, restartCount: 0, restarts: kept }
  const growth = prev !== undefined && prev.containerId === container.id ? Math.max(0, container.restartCount - prev.restartCount) : 0
  // Past a thousand in one interval the exact number says nothing more.
  const added = Array.from({ length: Math.min(growth, 1000) }, () => now)
  return { service, containerId: container.id, restartCount: container.restartCount, restarts: [...kept, ...added] }
}

/** Kubernetes-style: each restart doubles the wait before the next, up to `max`. */
export const nextDelay = (delay: Duration.Duration, max: Duration.Duration): Duration.Duration =>
  Duration.min(Duration.times(delay, 2), max)

// ---------------------------------------------------------------------------------------------
// The service.

export interface MonitorConfig {
  /** Time between checks; the first runs at once. */
  readonly interval: Duration.DurationInput
  /** Restart missing or stopped containers of active services. */
  readonly reconcile: boolean
  /** More restarts than this within `flapWindow` is a flap. */
  readonly flapRestarts: number
  readonly flapWindow: Duration.DurationInput
  readonly backoffInitial: Duration.DurationInput
  readonly backoffMax: Duration.DurationInput
  /** A component running this long since the monitor last restarted it gets its backoff reset. */
  readonly stableAfter: Duration.DurationInput
}

/** The `[monitor]` table of the agent config, as a MonitorConfig. */
export const fromConfig = (m: AgentConfig["monitor"]): MonitorConfig => ({
  interval: m.interval,
  reconcile: m.reconcile,
  flapRestarts: m.flap_restarts,
  flapWindow: m.flap_window,
  backoffInitial: m.backoff_initial,
  backoffMax: m.backoff_max,
  stableAfter: m.stable_after
})

export const defaultConfig: MonitorConfig = fromConfig(MONITOR_DEFAULTS)

export interface BackoffState {
  /** The wait before the monitor's next restart of the component. */
  readonly delay: Duration.Duration
  /** Restarts the monitor made since the backoff was last reset. */
  readonly restarts: number
  readonly lastRestartAt: number | undefined
  /** Since when the component has been seen running after the last restart. */
  readonly healthySince: number | undefined
}

export interface MonitorApi {
  /** The current findings: all of them, or one service's. */
  readonly findings: (service?: string) => Effect.Effect<ReadonlyArray<Finding>>
  /** The service's findings in plain words, for `warnings` in `mcp ps` and `mcp status`. */
  readonly warnings: (service: string) => Effect.Effect<ReadonlyArray<string>>
  /** Runs one check now (the monitor runs one every interval). A failed check is logged and keeps the findings. */
  readonly check: Effect.Effect<ReadonlyArray<Finding>>
  /** The restart backoff of a component, while it has one. */
  readonly backoff: (service: string, component: string) => Effect.Effect<Option.Option<BackoffState>>
}

export class Monitor extends Context.Tag("@mcp/agent/Monitor")<Monitor, MonitorApi>() {}

const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

const componentKey = (service: string, component: string) => `${service}/${component}`

/** The monitor and its loop (`run`: fork it, it never ends). Needs a scope for its restart fibers. */
export const make = (config: MonitorConfig) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    const runtime = yield* ContainerRuntime
    const lifecycle = yield* Lifecycle
    const actors = yield* ServiceActors
    const settings = yield* NodeSettings

    const interval = Duration.decode(config.interval)
    const flapWindow = Duration.decode(config.flapWindow)
    const windowMs = Duration.toMillis(flapWindow)
    const initial = Duration.decode(config.backoffInitial)
    const max = Duration.decode(config.backoffMax)
    const stableMs = Duration.toMillis(Duration.decode(config.stableAfter))

    const current = yield* Ref.make<ReadonlyMap<string, Finding>>(new Map())
    // Touched by checks and by restart fibers, always under `lock`.
    const flaps = new Map<string, FlapTrack>()
    const backoffs = new Map<string, BackoffState>()
    const lock = yield* Effect.makeSemaphore(1)
    const locked = lock.withPermits(1)
    const pending = yield* FiberMap.make<string>()

    const event = (kind: "drift" | "flap", service: string, message: string) =>
      registry.addEvent(kind, service, message).pipe(
        Effect.catchAll((e) => Failures.reported(`monitor: recording a ${kind} event`, e).pipe(Effect.annotateLogs({ service, message })))
      )

    /** Events and logs for what changed; unchanged findings stay silent. */
    const publish = (before: ReadonlyMap<string, Finding>, after: ReadonlyMap<string, Finding>) =>
      Effect.gen(function* () {
        for (const [key, f] of after) {
          if (before.has(key)) continue
          yield* Effect.logWarning(f.message).pipe(Effect.annotateLogs({ monitor: f.kind, service: f.service }))
          yield* Metric.increment(Metric.tagged(findingsSeen, "kind", f.kind))
          yield* event(eventKind(f), f.service, f.message)
        }
        for (const [key, f] of before) {
          if (after.has(key)) continue
          yield* Effect.logInfo(`resolved: ${f.message}`).pipe(Effect.annotateLogs({ monitor: f.kind, service: f.service }))
          yield* event(eventKind(f), f.service, `resolved: ${f.message}`)
        }
      })

    // A renewal or a certificate revoke left open touches no container: it does not hold the monitor off.
    const registryState = Effect.all({
      services: registry.services,
      sagas: Effect.map(registry.sagasIn("running"), (open) => open.filter((s) => s.kind !== "renew" && s.kind !== "revoke"))
    })

    /** Restarts the component if, inside its service's actor, it is still recorded, active and down. */
    const relaunchIfStillDown = (row: ComponentRow) =>
      Effect.gen(function* () {
        const service = yield* registry.service(row.service)
        // Stopped by an operator (or undeployed) while the restart waited: never restart it.
        if (Option.isNone(service) || !service.value.active) return false
        const now = (yield* registry.components(row.service)).find((c) => c.name === row.name)
        if (now === undefined || now.spec.name !== row.spec.name) return false // redeployed meanwhile
        const found = yield* Effect.either(runtime.inspect(now.spec.name))
        if (Either.isRight(found) && isUp(found.right)) return false
        yield* lifecycle.relaunchRecorded([now])
        yield* registry.countRestart(row.service, row.name)
        return true
      })

    const restartAfter = (row: ComponentRow, reason: "missing" | "stopped", delay: Duration.Duration) =>
      Effect.gen(function* () {
        yield* Effect.sleep(delay)
        const outcome = yield* Effect.either(actors.submit(row.service, relaunchIfStillDown(row)))
        if (Either.isRight(outcome) && !outcome.right) return
        const key = componentKey(row.service, row.name)
        const next = nextDelay(delay, max)
        const label = `${row.service}/${row.name}`
        yield* locked(Effect.gen(function* () {
          const now = yield* Clock.currentTimeMillis
          const b = backoffs.get(key)
          backoffs.set(key, { delay: next, restarts: (b?.restarts ?? 0) + 1, lastRestartAt: now, healthySince: undefined })
          if (Either.isRight(outcome)) {
            const track = flaps.get(key)
            flaps.set(key, { service: row.service, containerId: track?.containerId, restartCount: track?.restartCount ?? 0, restarts: [...(track?.restarts ?? []), now] })
          }
        }))
        if (Either.isRight(outcome)) {
          const message = `restarted ${label} (it was ${reason}) after a ${Duration.format(delay)} backoff; the next restart waits ${Duration.format(next)}`
          yield* Effect.logInfo(message).pipe(Effect.annotateLogs({ service: row.service }))
          yield* event("drift", row.service, message)
        } else {
          const message = `could not restart ${label} (it was ${reason}) after a ${Duration.format(delay)} backoff: ${describe(outcome.left)}; trying again in ${Duration.format(next)}`
          yield* Effect.logWarning(message).pipe(Effect.annotateLogs({ service: row.service }))
          yield* event("drift", row.service, message)
        }
      })

    const checkOnce = Effect.gen(function* () {
      // Registry before and after the engine: a service that moved in between (a deploy, a stop)
      // or has work in flight is left as it was until a quieter check.
      const before = yield* registryState
      const components = yield* registry.allComponents
      const listed = yield* runtime.list({ [LABEL_NODE]: settings.node })
      const listedNames = new Set(listed.map((c) => c.name))
      const byName = yield* Effect.forEach(components.filter((r) => !listedNames.has(r.spec.name)), (r) =>
        runtime.inspect(r.spec.name).pipe(Effect.map(Option.some), Effect.catchTag("ContainerNotFound", () => Effect.succeedNone)))
      const containers = [...listed, ...byName.flatMap(Option.toArray)]
      const after = yield* registryState
      const now = yield* Clock.currentTimeMillis

      const stateOf = (s: ServiceRow) => `${s.deployId} ${s.active}`
      const beforeState = new Map(before.services.map((s) => [s.name, stateOf(s)] as const))
      const afterState = new Map(after.services.map((s) => [s.name, stateOf(s)] as const))
      const sagas = [...before.sagas, ...after.sagas]
      const skipped = new Set(sagas.map((s) => s.service))
      for (const name of new Set([...beforeState.keys(), ...afterState.keys()])) {
        if (beforeState.get(name) !== afterState.get(name)) skipped.add(name)
      }
      const active = new Set(before.services.filter((s) => s.active).map((s) => s.name))

      const drift = detectDrift({ services: before.services, components, containers, openSagas: new Set(sagas.map((s) => s.id)) })

      const containerByName = new Map(containers.map((c) => [c.name, c] as const))
      const flapped: Array<Finding> = []
      const seen = new Set<string>()
      for (const row of components) {
        if (skipped.has(row.service)) continue
        const key = componentKey(row.service, row.name)
        seen.add(key)
        const track = observe(flaps.get(key), row.service, containerByName.get(row.spec.name), now, windowMs)
        flaps.set(key, track)
        if (track.restarts.length > config.flapRestarts) {
          flapped.push({
            kind: "flap", service: row.service, component: row.name, container: row.spec.name,
            message: `${row.service}/${row.name}: restarted ${track.restarts.length} times in the last ${Duration.format(flapWindow)} (more than ${config.flapRestarts})`
          })
        }
      }
      for (const [key, track] of flaps) if (!seen.has(key) && !skipped.has(track.service)) flaps.delete(key)

      // Skipped services keep their previous findings; everything else is replaced.
      const previous = yield* Ref.get(current)
      const next = new Map<string, Finding>()
      for (const [key, f] of previous) if (skipped.has(f.service)) next.set(key, f)
      for (const f of [...drift, ...flapped]) if (!skipped.has(f.service)) next.set(findingKey(f), f)
      yield* Ref.set(current, next)
      yield* publish(previous, next)

      // Backoff bookkeeping, and restarts when reconciling.
      const recorded = new Set<string>()
      for (const row of components) {
        const key = componentKey(row.service, row.name)
        recorded.add(key)
        if (skipped.has(row.service) || !active.has(row.service)) continue
        const c = containerByName.get(row.spec.name)
        const b = backoffs.get(key)
        if (c !== undefined && isUp(c)) {
          if (b === undefined) continue
          if (b.healthySince === undefined) backoffs.set(key, { ...b, healthySince: now })
          else if (now - b.healthySince >= stableMs) backoffs.delete(key)
          continue
        }
        if (!config.reconcile) continue
        const state = b ?? { delay: initial, restarts: 0, lastRestartAt: undefined, healthySince: undefined }
        backoffs.set(key, { ...state, healthySince: undefined })
        if (!(yield* FiberMap.has(pending, key))) {
          yield* FiberMap.run(pending, key, restartAfter(row, c === undefined ? "missing" : "stopped", state.delay), { onlyIfMissing: true })
        }
      }
      for (const [key] of backoffs) {
        const service = key.slice(0, key.indexOf("/"))
        if (!recorded.has(key) && !skipped.has(service)) backoffs.delete(key)
      }
      return [...next.values()]
    })

    const check: Effect.Effect<ReadonlyArray<Finding>> = locked(checkOnce).pipe(
      Effect.catchAll((e) =>
        Effect.zipRight(
          Effect.logWarning(`monitor: check failed, trying again in ${Duration.format(interval)}: ${describe(e)}`),
          Effect.map(Ref.get(current), (m) => [...m.values()])
        )
      )
    )

    const findings = (service?: string) =>
      Effect.map(Ref.get(current), (m) => [...m.values()].filter((f) => service === undefined || f.service === service))

    const api: MonitorApi = {
      findings,
      warnings: (service) => Effect.map(findings(service), (fs) => fs.map((f) => f.message)),
      check,
      backoff: (service, component) => locked(Effect.sync(() => Option.fromNullable(backoffs.get(componentKey(service, component)))))
    }
    const run: Effect.Effect<never> = check.pipe(
      Effect.catchAllDefect((defect) => Effect.logError("monitor: check died; trying again next interval", defect)),
      Effect.repeat(Schedule.spaced(interval)),
      Effect.zipRight(Effect.never)
    )
    return { ...api, run }
  })

/** The monitor, checking every interval for the layer's lifetime. */
export const layer = (config: MonitorConfig = defaultConfig) =>
  Layer.scoped(
    Monitor,
    Effect.gen(function* () {
      const { run, ...api } = yield* make(config)
      yield* Effect.forkScoped(run)
      return api
    })
  )
