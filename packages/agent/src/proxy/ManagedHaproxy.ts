/**
 * `[proxy] managed = true`: the agent runs HAProxy itself, from the directory HaproxyRoutes owns,
 * as a supervised child (the quick start's and a single machine's setup; a provisioned node runs
 * it as its own unit, mcp-proxy.service, so it keeps serving while the agent restarts).
 *
 * - One HAProxy at a time, master + worker in the foreground (`haproxyCommand`), in a process group
 *   of its own: a stop takes its workers too.
 * - It is started again when it ends, after a backoff that doubles from `backoffInitial` up to
 *   `backoffMax`, and starts over once a life lasted `stableAfter`.
 * - A new listener is a hitless reload through HAProxy's master socket, done by HaproxyRoutes as
 *   for an unmanaged HAProxy: the listening sockets pass from the old worker to the new one.
 * - It stops with the agent (the layer's scope): SIGTERM to its group, then its exit is awaited.
 * - An agent killed outright leaves its HAProxy running, holding the listeners: the next start
 *   stops that one first (its pid is in `haproxy.pid`, checked against its command line).
 * - Its state, restarts and last error are an entry of `mcp tree` (SupervisedChildren).
 */
import { Command, type CommandExecutor, FileSystem } from "@effect/platform"
import type { Operations } from "@mcp/domain"
import { Clock, Context, Duration, Effect, Layer, Option, Ref, Schedule, Stream } from "effect"
import * as path from "node:path"
import { SupervisedChildren } from "../daemon/SupervisedChildren.js"
import * as HaproxyRoutes from "./HaproxyRoutes.js"
import { ProxyError, ProxyRoutes } from "./ProxyRoutes.js"

export interface Options {
  readonly haproxy: HaproxyRoutes.Options
  /** The first wait before a restart; doubled after each short life. Default 200 ms. */
  readonly backoffInitial?: Duration.DurationInput
  /** The longest wait before a restart. Default 30 s. */
  readonly backoffMax?: Duration.DurationInput
  /** A life this long resets the backoff. Default 60 s. */
  readonly stableAfter?: Duration.DurationInput
  /** How long the agent's start waits for the first worker to answer before going on without it. Default 15 s. */
  readonly firstStartTimeout?: Duration.DurationInput
}

/** Where the running HAProxy's pid is kept, for the next agent to find one left behind. */
export const pidFile = (options: HaproxyRoutes.Options) => path.join(path.resolve(options.dir), "haproxy.pid")

type Phase =
  | { readonly phase: "starting"; readonly pid?: number }
  | { readonly phase: "running"; readonly pid: number; readonly since: number }
  | { readonly phase: "restarting"; readonly at: number }

interface State {
  readonly current: Phase
  readonly restarts: number
  readonly lastError?: string
}

/** The `mcp tree` entry of a state, at `now` (ms). */
export const treeEntry = (state: State, now: number): Operations.SupervisionNode => {
  const seconds = (ms: number) => Duration.format(Duration.seconds(Math.max(0, Math.round(ms / 1000))))
  const p = state.current
  const text = p.phase === "running"
    ? `running, pid ${p.pid}, up ${seconds(now - p.since)}`
    : p.phase === "starting"
    ? `starting${p.pid === undefined ? "" : `, pid ${p.pid}`}`
    : `restarting in ${seconds(p.at - now)}`
  return {
    name: "proxy (haproxy, managed)",
    state: text,
    restarts: state.restarts,
    ...(state.lastError === undefined ? {} : { lastError: state.lastError }),
    children: []
  }
}

/**
 * The wait before the next start: the initial one after the first life or a stable one, else
 * the previous wait doubled, up to the maximum (a HAProxy that keeps failing is not hammered).
 */
export const nextBackoff = (
  previous: Duration.Duration | undefined,
  livedMs: number,
  o: { readonly initial: Duration.Duration; readonly max: Duration.Duration; readonly stableAfter: Duration.Duration }
): Duration.Duration =>
  previous === undefined || livedMs >= Duration.toMillis(o.stableAfter) ? o.initial : Duration.min(Duration.times(previous, 2), o.max)

const errorCode = (e: unknown) => (typeof e === "object" && e !== null && "code" in e ? (e as { code: unknown }).code : undefined)

/** A process still alive whose command line holds `needle`, or none. */
const liveProcessWith = (pid: number, needle: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFile(`/proc/${pid}/cmdline`)).pipe(
    Effect.map((bytes) => Buffer.from(bytes).toString("utf8").split("\0").includes(needle)),
    // No such process is the usual "no"; another failure is logged, and the process left alone.
    Effect.catchAll((e) =>
      e._tag === "SystemError" && e.reason === "NotFound"
        ? Effect.succeed(false)
        : Effect.as(Effect.logWarning(`managed HAProxy: cannot read /proc/${pid}/cmdline (${e.message}); pid ${pid} is left alone`), false))
  )

const signalGroup = (pid: number, signal: NodeJS.Signals) =>
  Effect.sync(() => {
    try {
      process.kill(-pid, signal)
    } catch (e) {
      if (errorCode(e) !== "ESRCH") throw e
    }
  })

/**
 * Stops the HAProxy a previous agent left running on this directory (killed before it could stop
 * it): it holds the listeners, so a new one could not bind them. The pid is only trusted when
 * that process still runs HAProxy on this config.
 */
const stopLeftBehind = (options: HaproxyRoutes.Options) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const file = pidFile(options)
    const text = yield* fs.readFileString(file).pipe(
      Effect.catchAll((e) =>
        e._tag === "SystemError" && e.reason === "NotFound"
          ? Effect.succeed("")
          : Effect.as(Effect.logWarning(`managed HAProxy: cannot read ${file} (${e.message}); a HAProxy a killed agent left running is not looked for`), ""))
    )
    const pid = Number(text.trim())
    if (!Number.isInteger(pid) || pid <= 1) return
    const config = HaproxyRoutes.layout(options.dir).config
    if (!(yield* liveProcessWith(pid, config))) return
    yield* Effect.logWarning(`managed HAProxy: stopping pid ${pid}, left running by a previous agent on ${config}`)
    yield* signalGroup(pid, "SIGTERM")
    const gone = yield* liveProcessWith(pid, config).pipe(
      Effect.repeat({ while: (alive) => alive, schedule: Schedule.zipLeft(Schedule.identity<boolean>(), Schedule.intersect(Schedule.spaced("50 millis"), Schedule.recurs(100))) })
    )
    if (gone) yield* signalGroup(pid, "SIGKILL")
  })

/**
 * HAProxy's lines, logged as the agent's. Its alerts are why a start or reload fails; its notices
 * and warnings come with every reload ("Former worker exited"), so they are information.
 */
const logLine = (pid: number, line: string) =>
  /\[ALERT\]/.test(line) ? Effect.logWarning(`haproxy[${pid}]: ${line}`) : Effect.logInfo(`haproxy[${pid}]: ${line}`)

export const make = (options: Options) =>
  Effect.gen(function* () {
    const h = options.haproxy
    const backoff = {
      initial: Duration.decode(options.backoffInitial ?? "200 millis"),
      max: Duration.decode(options.backoffMax ?? "30 seconds"),
      stableAfter: Duration.decode(options.stableAfter ?? "60 seconds")
    }
    const fs = yield* FileSystem.FileSystem
    const [file, ...args] = HaproxyRoutes.haproxyCommand(h)

    // A missing binary is an install problem, not something a restart fixes: the agent does not start.
    yield* Command.exitCode(Command.make(file!, "-v")).pipe(
      Effect.mapError((e) =>
        new ProxyError({
          proxy: `haproxy (${h.statsSocket})`,
          operation: "start the managed proxy",
          reason: `cannot run ${file}: ${e.description ?? e.message}; install HAProxy (apt-get install haproxy) or set [proxy] managed = false and run it yourself`
        }))
    )

    const state = yield* Ref.make<State>({ current: { phase: "starting" }, restarts: 0 })
    const lastAlert = yield* Ref.make<Option.Option<string>>(Option.none())

    /** One life: from the spawn to the exit. Gives why it ended. Its scope's end stops the process group. */
    const life = Effect.scoped(
      Effect.gen(function* () {
        yield* stopLeftBehind(h)
        yield* Ref.set(lastAlert, Option.none())
        const proc = yield* Command.start(Command.make(file!, ...args))
        yield* Ref.update(state, (s) => ({ ...s, current: { phase: "starting" as const, pid: proc.pid } }))
        // Without it, a HAProxy this agent leaves behind if killed is not found by the next one: say so.
        yield* fs.writeFileString(pidFile(h), `${proc.pid}\n`).pipe(
          Effect.catchAll((e) => Effect.logWarning(`managed HAProxy: cannot write ${pidFile(h)} (${e.message}); if the agent is killed, stop pid ${proc.pid} by hand before it starts again`))
        )
        // Both pipes are read to their end: a full pipe would stop HAProxy.
        const lines = Stream.merge(proc.stdout, proc.stderr).pipe(Stream.decodeText(), Stream.splitLines)
        yield* lines.pipe(
          Stream.runForEach((line) =>
            Effect.zipRight(logLine(proc.pid, line), /\[ALERT\]/.test(line) ? Ref.set(lastAlert, Option.some(line.trim())) : Effect.void)),
          Effect.catchAll((e) => Effect.logWarning(`managed HAProxy: its output can no longer be read (${e.message})`)),
          Effect.forkScoped
        )
        // Running once the worker answers on the Runtime API, i.e. serves its listeners.
        yield* HaproxyRoutes.workerAnswers(h.statsSocket).pipe(
          Effect.repeat({ until: (up) => up, schedule: Schedule.spaced("50 millis") }),
          Effect.zipRight(Clock.currentTimeMillis),
          Effect.flatMap((since) => Ref.update(state, (s) => ({ ...s, current: { phase: "running" as const, pid: proc.pid, since } }))),
          Effect.forkScoped
        )
        const exit = yield* proc.exitCode.pipe(
          Effect.map((code) => `exited with code ${code}`),
          Effect.catchAll((e) => Effect.succeed(`ended: ${e.description ?? e.message}`))
        )
        yield* fs.remove(pidFile(h), { force: true }).pipe(
          Effect.catchAll((e) => Effect.logWarning(`managed HAProxy: cannot remove ${pidFile(h)} (${e.message}); the next start checks the pid before acting on it`))
        )
        const alert = yield* Ref.get(lastAlert)
        return Option.match(alert, { onNone: () => exit, onSome: (a) => `${exit} (${a})` })
      })
    ).pipe(Effect.catchAll((e) => Effect.succeed(`could not be started: ${e.description ?? e.message}`)))

    const supervise = Effect.gen(function* () {
      let wait: Duration.Duration | undefined = undefined
      for (;;) {
        const startedAt = yield* Clock.currentTimeMillis
        const reason = yield* life
        const endedAt = yield* Clock.currentTimeMillis
        const next = nextBackoff(wait, endedAt - startedAt, backoff)
        wait = next
        yield* Ref.update(state, (s): State => ({ current: { phase: "restarting", at: endedAt + Duration.toMillis(next) }, restarts: s.restarts + 1, lastError: reason }))
        yield* Effect.logWarning(`managed HAProxy ${reason}; starting it again in ${Duration.format(next)}`)
        yield* Effect.sleep(next)
      }
    })

    yield* Effect.forkScoped(supervise)

    // Routes applied right after the start (open work, the boot sequence) need a worker that answers.
    const firstStart = yield* Ref.get(state).pipe(
      Effect.repeat({ until: (s) => s.current.phase === "running" || s.restarts > 0, schedule: Schedule.zipLeft(Schedule.identity<State>(), Schedule.spaced("50 millis")) }),
      Effect.timeoutOption(options.firstStartTimeout ?? "15 seconds")
    )
    const started = Option.flatMap(firstStart, (s) => (s.current.phase === "running" ? Option.some(s) : Option.none()))
    if (Option.isNone(started)) {
      const s = yield* Ref.get(state)
      yield* Effect.logWarning(`managed HAProxy is not serving yet${s.lastError === undefined ? "" : `: ${s.lastError}`}; the agent goes on and keeps starting it`)
    }

    return {
      list: Effect.map(Effect.zip(Ref.get(state), Clock.currentTimeMillis), ([s, t]) => [treeEntry(s, t)])
    } satisfies Context.Tag.Service<SupervisedChildren>
  })

/**
 * HaproxyRoutes on a HAProxy the agent runs: the config is written first (as for an unmanaged
 * one), then HAProxy started, then the routes port made; both end with the layer's scope.
 */
export const layer = (options: Options): Layer.Layer<ProxyRoutes | SupervisedChildren, ProxyError, FileSystem.FileSystem | CommandExecutor.CommandExecutor> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      yield* HaproxyRoutes.ensureConfig(options.haproxy)
      const children = yield* make(options)
      const routes = yield* HaproxyRoutes.make(options.haproxy)
      return Context.make(SupervisedChildren, children).pipe(Context.add(ProxyRoutes, routes))
    })
  )
