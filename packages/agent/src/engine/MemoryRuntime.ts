/**
 * An in-memory ContainerRuntime for tests of the agent's own logic: containers live in a Map,
 * images in a Set, and a control object scripts logs, exec answers, crashes and faults.
 */
import { Clock, Context, Effect, identity, Layer, Option, PubSub, Stream } from "effect"
import {
  type ContainerInfo,
  ContainerNotFound,
  ContainerRuntime,
  type ContainerSecurity,
  type ContainerSpec,
  type ContainerState,
  DEFAULT_HARDENING,
  type ExecResult,
  type Hardening,
  ImageNotFound,
  type LogLine,
  RuntimeError,
  usernsRefused
} from "./ContainerRuntime.js"

/** The error each ContainerRuntime operation may fail with; `failNext` must inject one of these. */
export interface OperationErrors {
  readonly ensureImage: ImageNotFound | RuntimeError
  readonly create: RuntimeError | ImageNotFound
  readonly start: RuntimeError | ContainerNotFound
  readonly stop: RuntimeError | ContainerNotFound
  readonly remove: RuntimeError
  readonly inspect: RuntimeError | ContainerNotFound
  readonly list: RuntimeError
  readonly logs: RuntimeError | ContainerNotFound
  readonly exec: RuntimeError | ContainerNotFound
}

export type Operation = keyof OperationErrors

export interface MemoryRuntimeOptions {
  /** Images present from the start. */
  readonly images?: Iterable<string> | undefined
  /** Images `ensureImage` can "pull" (become present); any other missing image fails to pull. */
  readonly pullable?: Iterable<string> | undefined
  /** Lines a container prints when it starts (stands in for running its command). */
  readonly onStart?: ((spec: ContainerSpec) => ReadonlyArray<LogLine>) | undefined
  /** The answer to `exec`; by default exit code 0 and no output. */
  readonly onExec?: ((spec: ContainerSpec, cmd: ReadonlyArray<string>) => ExecResult) | undefined
  readonly describe?: string | undefined
  /** The hardening applied to every container, as DockerRuntime takes it; DEFAULT_HARDENING if absent. */
  readonly hardening?: Hardening | undefined
  /**
   * Whether the "engine" has subordinate ids for `userns = "auto"` (default true). False makes
   * create refuse auto the way Podman does without /etc/subuid entries.
   */
  readonly subordinateIds?: boolean | undefined
}

/** Test hooks on a memory runtime. */
export interface MemoryRuntimeControl {
  /** Makes the next call of `operation` fail with `error` (default: a retryable RuntimeError). */
  readonly failNext: <Op extends Operation>(operation: Op, error?: OperationErrors[Op]) => Effect.Effect<void>
  readonly addImage: (image: string) => Effect.Effect<void>
  readonly removeImage: (image: string) => Effect.Effect<void>
  /** Appends a line to a container's log (delivered to followers). */
  readonly emitLog: (idOrName: string, line: LogLine) => Effect.Effect<void, ContainerNotFound>
  /**
   * The container's process exits with `exitCode`. Under restart policy `always`,
   * `unless-stopped`, or `on-failure` with a non-zero code, it comes back and restartCount grows.
   */
  readonly exit: (idOrName: string, exitCode: number) => Effect.Effect<void, ContainerNotFound>
  /** Specs and states of every container, for assertions. */
  readonly containers: Effect.Effect<ReadonlyArray<{ readonly spec: ContainerSpec; readonly info: ContainerInfo }>>
  /** How many times each operation was called. */
  readonly calls: Effect.Effect<Readonly<Record<Operation, number>>>
  /**
   * Replaces the answer to `exec` (the `onExec` option) from now on, e.g. to make a health check
   * fail, or pass only after a few attempts; `undefined` goes back to the option's answer.
   */
  readonly scriptExec: (answer: ((spec: ContainerSpec, cmd: ReadonlyArray<string>) => ExecResult) | undefined) => Effect.Effect<void>
}

export const MemoryRuntimeControl = Context.GenericTag<MemoryRuntimeControl>("@mcp/agent/MemoryRuntimeControl")

interface MemContainer {
  readonly id: string
  readonly spec: ContainerSpec
  state: ContainerState
  restartCount: number
  startedAt: string | undefined
  readonly log: Array<LogLine>
  /** Log lines to followers; `None` ends a follow (the process exited or was removed). */
  readonly feed: PubSub.PubSub<Option.Option<LogLine>>
}

const randomId = (): string => {
  let id = ""
  while (id.length < 64) id += Math.floor(Math.random() * 0x100000000).toString(16).padStart(8, "0")
  return id
}

/** Makes a memory runtime and its control. */
export const makeMemory = (
  options: MemoryRuntimeOptions = {}
): Effect.Effect<{ readonly runtime: ContainerRuntime; readonly control: MemoryRuntimeControl }> =>
  Effect.gen(function*() {
    const images = new Set(options.images ?? [])
    const pullable = new Set(options.pullable ?? [])
    const containers = new Map<string, MemContainer>()
    let scriptedExec: ((spec: ContainerSpec, cmd: ReadonlyArray<string>) => ExecResult) | undefined
    const faults: { [Op in Operation]: Array<OperationErrors[Op]> } = {
      ensureImage: [], create: [], start: [], stop: [], remove: [], inspect: [], list: [], logs: [], exec: []
    }
    const calls: Record<Operation, number> = {
      ensureImage: 0, create: 0, start: 0, stop: 0, remove: 0, inspect: 0, list: 0, logs: 0, exec: 0
    }
    // One lock for every operation, so a follower's snapshot and subscription see the same log.
    const lock = yield* Effect.makeSemaphore(1)
    const locked = <A, E, R>(self: Effect.Effect<A, E, R>) => lock.withPermits(1)(self)

    /** Counts the call and fails with an injected fault if one is queued. */
    const enter = <Op extends Operation>(op: Op): Effect.Effect<void, OperationErrors[Op]> =>
      Effect.suspend(() => {
        calls[op] += 1
        const fault = faults[op].shift()
        return fault === undefined ? Effect.void : Effect.fail(fault)
      })

    const find = (idOrName: string): MemContainer | undefined => {
      const byId = containers.get(idOrName)
      if (byId !== undefined) return byId
      for (const c of containers.values()) if (c.spec.name === idOrName) return c
      // Like the engines, a unique id prefix names a container too.
      const prefixed = [...containers.values()].filter((c) => idOrName.length >= 4 && c.id.startsWith(idOrName))
      return prefixed.length === 1 ? prefixed[0] : undefined
    }

    const get = (idOrName: string): Effect.Effect<MemContainer, ContainerNotFound> =>
      Effect.suspend(() => {
        const c = find(idOrName)
        return c === undefined ? Effect.fail(new ContainerNotFound({ container: idOrName })) : Effect.succeed(c)
      })

    const hardening = options.hardening ?? DEFAULT_HARDENING
    // Recorded as Docker echoes a request (CapDrop ALL + CapAdd), which keepsCapability reads alike.
    const security: ContainerSecurity = {
      noNewPrivileges: true,
      capDrop: ["ALL"],
      capAdd: [...hardening.capabilities],
      userns: hardening.userns === "host" ? "host" : "private"
    }

    const info = (c: MemContainer): ContainerInfo => ({
      id: c.id,
      name: c.spec.name,
      image: c.spec.image,
      state: c.state,
      labels: { ...c.spec.labels },
      restartCount: c.restartCount,
      startedAt: c.startedAt,
      ports: c.spec.ports,
      security
    })

    const now = Effect.map(Clock.currentTimeMillis, (ms) => new Date(ms).toISOString())

    const appendLog = (c: MemContainer, line: LogLine) =>
      Effect.suspend(() => {
        c.log.push(line)
        return PubSub.publish(c.feed, Option.some(line))
      })

    const run = (c: MemContainer) =>
      Effect.gen(function*() {
        c.state = "running"
        c.startedAt = yield* now
        for (const line of options.onStart?.(c.spec) ?? []) yield* appendLog(c, line)
      })

    const halt = (c: MemContainer, state: ContainerState) =>
      Effect.suspend(() => {
        c.state = state
        return PubSub.publish(c.feed, Option.none())
      })

    /** Real engines refuse to start a second container on a host port already published. */
    const portClash = (c: MemContainer): string | undefined => {
      for (const other of containers.values()) {
        if (other === c || other.state !== "running") continue
        for (const p of c.spec.ports) {
          const clash = other.spec.ports.find((q) =>
            q.hostPort === p.hostPort && q.protocol === p.protocol &&
            (q.hostIp === p.hostIp || q.hostIp === "0.0.0.0" || p.hostIp === "0.0.0.0")
          )
          if (clash !== undefined) return `${p.hostIp}:${p.hostPort}/${p.protocol} is already published by ${other.spec.name}`
        }
      }
      return undefined
    }

    const runtime: ContainerRuntime = {
      describe: options.describe ?? "in-memory container runtime",

      ensureImage: (image) =>
        locked(Effect.gen(function*() {
          yield* enter("ensureImage")
          if (images.has(image)) return
          if (!pullable.has(image)) {
            return yield* new ImageNotFound({ image, reason: "pull failed: no registry has it (memory runtime)" })
          }
          images.add(image)
        })),

      create: (spec) =>
        locked(Effect.gen(function*() {
          yield* enter("create")
          if (!images.has(spec.image)) {
            return yield* new ImageNotFound({ image: spec.image, reason: "not present on this engine" })
          }
          if (hardening.userns === "auto" && options.subordinateIds === false) {
            return yield* usernsRefused(spec.name, "auto", "could not find enough available IDs (memory runtime)")
          }
          if ([...containers.values()].some((c) => c.spec.name === spec.name)) {
            return yield* new RuntimeError({
              operation: `create ${spec.name}`,
              reason: `container name "${spec.name}" is already in use: remove that container or pick another name`,
              retryable: false
            })
          }
          const id = randomId()
          const feed = yield* PubSub.unbounded<Option.Option<LogLine>>()
          containers.set(id, { id, spec, state: "created", restartCount: 0, startedAt: undefined, log: [], feed })
          return id
        })),

      start: (idOrName) =>
        locked(Effect.gen(function*() {
          yield* enter("start")
          const c = yield* get(idOrName)
          if (c.state === "running") return
          const clash = portClash(c)
          if (clash !== undefined) {
            return yield* new RuntimeError({ operation: `start ${idOrName}`, reason: clash, retryable: false })
          }
          yield* run(c)
        })),

      stop: (idOrName) =>
        locked(Effect.gen(function*() {
          yield* enter("stop")
          const c = yield* get(idOrName)
          if (c.state === "running" || c.state === "restarting" || c.state === "paused") yield* halt(c, "exited")
        })),

      remove: (idOrName) =>
        locked(Effect.gen(function*() {
          yield* enter("remove")
          const c = find(idOrName)
          if (c === undefined) return
          containers.delete(c.id)
          // Ends any follower; the PubSub is left to the GC (shutting it down would interrupt them).
          yield* PubSub.publish(c.feed, Option.none())
        })),

      inspect: (idOrName) =>
        locked(Effect.gen(function*() {
          yield* enter("inspect")
          return info(yield* get(idOrName))
        })),

      list: (labels) =>
        locked(Effect.gen(function*() {
          yield* enter("list")
          const wanted = Object.entries(labels)
          return [...containers.values()]
            .filter((c) => wanted.every(([k, v]) => c.spec.labels[k] === v))
            .map(info)
        })),

      logs: (idOrName, { follow, tail }) =>
        Stream.unwrapScoped(
          locked(Effect.gen(function*() {
            yield* enter("logs")
            const c = yield* get(idOrName)
            // Same as the engines: tail 0 means no history, a negative tail means all of it.
            const history = tail < 0 ? [...c.log] : tail === 0 ? [] : c.log.slice(-tail)
            if (!follow || c.state !== "running") return Stream.fromIterable(history)
            const live = yield* PubSub.subscribe(c.feed)
            return Stream.concat(
              Stream.fromIterable(history),
              Stream.fromQueue(live).pipe(
                Stream.takeWhile(Option.isSome),
                Stream.filterMap(identity)
              )
            )
          }))
        ),

      exec: (idOrName, cmd) =>
        locked(Effect.gen(function*() {
          yield* enter("exec")
          const c = yield* get(idOrName)
          if (c.state !== "running") {
            return yield* new RuntimeError({
              operation: `exec in ${idOrName}`,
              reason: "container is not running",
              retryable: false
            })
          }
          return (scriptedExec ?? options.onExec)?.(c.spec, cmd) ?? { exitCode: 0, output: "" }
        }))
    }

    const control: MemoryRuntimeControl = {
      failNext: (operation, error) =>
        Effect.sync(() => {
          faults[operation].push(
            error ?? new RuntimeError({ operation, reason: "injected fault (memory runtime)", retryable: true })
          )
        }),
      addImage: (image) => Effect.sync(() => void images.add(image)),
      removeImage: (image) => Effect.sync(() => void images.delete(image)),
      emitLog: (idOrName, line) => locked(Effect.flatMap(get(idOrName), (c) => appendLog(c, line))),
      exit: (idOrName, exitCode) =>
        locked(Effect.gen(function*() {
          const c = yield* get(idOrName)
          if (c.state !== "running") return
          const policy = c.spec.restart
          const restarts = policy === "always" || policy === "unless-stopped" || (policy === "on-failure" && exitCode !== 0)
          if (!restarts) return yield* halt(c, "exited")
          c.restartCount += 1
          yield* run(c)
        })),
      containers: locked(Effect.sync(() => [...containers.values()].map((c) => ({ spec: c.spec, info: info(c) })))),
      calls: Effect.sync(() => ({ ...calls })),
      scriptExec: (answer) =>
        locked(Effect.sync(() => {
          scriptedExec = answer
        }))
    }
    return { runtime, control }
  })

/** Provides a memory ContainerRuntime and its MemoryRuntimeControl. */
export const layerMemory = (
  options: MemoryRuntimeOptions = {}
): Layer.Layer<ContainerRuntime | MemoryRuntimeControl> =>
  Layer.effectContext(
    Effect.map(makeMemory(options), ({ control, runtime }) =>
      Context.make(ContainerRuntime, runtime).pipe(Context.add(MemoryRuntimeControl, control))
    )
  )
