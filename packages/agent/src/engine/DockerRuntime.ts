/**
 * The real ContainerRuntime: Podman's (or Docker's) Docker-compatible API over a unix socket,
 * driven through dockerode. Owns engine discovery (findSocket) and the mapping of engine errors.
 */
import Docker from "dockerode"
import { Duration, Effect, Layer, Metric, Schedule, Stream } from "effect"
import { Readable, Writable } from "node:stream"
import { StringDecoder } from "node:string_decoder"
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
  MAPPED_USERNS,
  type PortBinding,
  RuntimeError,
  usernsRefused,
  type UsernsMode
} from "./ContainerRuntime.js"

// ---------------------------------------------------------------------------------------------
// Engine failures
// ---------------------------------------------------------------------------------------------

/** What a rejected dockerode call tells us, read defensively from `unknown`. */
export interface EngineFailure {
  /** HTTP status of the engine's answer; undefined when no answer came (socket errors). */
  readonly statusCode: number | undefined
  /** Node's error code (`ENOENT`, `ECONNREFUSED`, ...) for socket-level failures. */
  readonly code: string | undefined
  readonly message: string
}

const field = (u: object, key: string): unknown => (key in u ? Reflect.get(u, key) : undefined)

/** Narrows whatever dockerode rejected with; prefers the engine's own JSON `message`. */
export const engineFailure = (u: unknown): EngineFailure => {
  if (typeof u !== "object" || u === null) return { statusCode: undefined, code: undefined, message: String(u) }
  const statusCode = field(u, "statusCode")
  const code = field(u, "code")
  const json = field(u, "json")
  const jsonMessage = typeof json === "object" && json !== null ? field(json, "message") : undefined
  const message = field(u, "message")
  return {
    statusCode: typeof statusCode === "number" ? statusCode : undefined,
    code: typeof code === "string" ? code : undefined,
    message: typeof jsonMessage === "string" && jsonMessage !== ""
      ? jsonMessage
      : typeof message === "string" ? message.trim() : String(u)
  }
}

/** Socket-level failures: the engine is down, restarting or overloaded, so a retry may work. */
const TRANSIENT_CODES = new Set(["ENOENT", "ECONNREFUSED", "ECONNRESET", "EPIPE", "ETIMEDOUT", "EAI_AGAIN"])

const isTransient = (f: EngineFailure): boolean =>
  (f.code !== undefined && TRANSIENT_CODES.has(f.code)) || f.statusCode === 502 || f.statusCode === 503 ||
  f.statusCode === 504

const describeFailure = (f: EngineFailure): string =>
  f.statusCode !== undefined
    ? `HTTP ${f.statusCode}: ${f.message}`
    : f.code !== undefined && !f.message.includes(f.code)
    ? `${f.code}: ${f.message}`
    : f.message

const runtimeError = (operation: string, f: EngineFailure): RuntimeError =>
  new RuntimeError({ operation, reason: describeFailure(f), retryable: isTransient(f) })

/** A dockerode promise as an Effect whose failure is an EngineFailure. */
const call = <A>(f: (signal: AbortSignal) => Promise<A>): Effect.Effect<A, EngineFailure> =>
  Effect.tryPromise({ try: f, catch: engineFailure })

/** Operations on a named container: 404 means the container does not exist. */
const onContainer = (operation: string, idOrName: string) => (f: EngineFailure) =>
  f.statusCode === 404 ? new ContainerNotFound({ container: idOrName }) : runtimeError(`${operation} ${idOrName}`, f)

const destroy = (stream: NodeJS.ReadableStream): void => {
  if (stream instanceof Readable) stream.destroy()
}

// ---------------------------------------------------------------------------------------------
// Finding the engine
// ---------------------------------------------------------------------------------------------

export interface FindSocketOptions {
  /** A socket path (or `unix://` URL) from the agent's config; tried first. */
  readonly configured?: string | undefined
  /** The process environment, passed in from the edge (DOCKER_HOST, XDG_RUNTIME_DIR). */
  readonly env: Readonly<Record<string, string | undefined>>
  /** The system-wide paths tried last; tests override them to stay independent of the machine. */
  readonly wellKnown?: ReadonlyArray<string> | undefined
  /** How long one candidate may take to answer; 2 seconds by default. */
  readonly probeTimeout?: Duration.DurationInput | undefined
  /**
   * How long `layer` keeps looking before the start fails; 30 seconds by default. An engine
   * starting beside the agent (after a reboot, or restarted after a crash) can take seconds to
   * answer /version: seen here 7 s for a Podman API service restarted after a SIGKILL.
   */
  readonly startWait?: Duration.DurationInput | undefined
}

export const WELL_KNOWN_SOCKETS: ReadonlyArray<string> = ["/run/podman/podman.sock", "/var/run/docker.sock"]

export interface FoundSocket {
  readonly socketPath: string
  /** Where the path came from: `configured`, `DOCKER_HOST`, `XDG_RUNTIME_DIR` or `well-known`. */
  readonly source: string
  /** `Podman` or `Docker` (or whatever the engine calls itself). */
  readonly engine: string
  readonly version: string
  readonly apiVersion: string
  /** One line for logs and `mcp status`. */
  readonly describe: string
}

type Candidate =
  | { readonly _tag: "Path"; readonly source: string; readonly socketPath: string }
  | { readonly _tag: "Skipped"; readonly source: string; readonly why: string }

const stripUnix = (p: string): string => (p.startsWith("unix://") ? p.slice("unix://".length) : p)

const candidates = (options: FindSocketOptions): ReadonlyArray<Candidate> => {
  const out: Array<Candidate> = []
  if (options.configured !== undefined && options.configured !== "") {
    out.push({ _tag: "Path", source: "configured", socketPath: stripUnix(options.configured) })
  }
  const dockerHost = options.env["DOCKER_HOST"]
  if (dockerHost !== undefined && dockerHost !== "") {
    out.push(
      dockerHost.startsWith("unix://") && dockerHost.length > "unix://".length
        ? { _tag: "Path", source: "DOCKER_HOST", socketPath: stripUnix(dockerHost) }
        : { _tag: "Skipped", source: "DOCKER_HOST", why: `${dockerHost} is not a unix:// socket (only local sockets are supported)` }
    )
  }
  const xdg = options.env["XDG_RUNTIME_DIR"]
  if (xdg !== undefined && xdg !== "") {
    out.push({ _tag: "Path", source: "XDG_RUNTIME_DIR", socketPath: `${xdg.replace(/\/+$/, "")}/podman/podman.sock` })
  }
  for (const socketPath of options.wellKnown ?? WELL_KNOWN_SOCKETS) {
    out.push({ _tag: "Path", source: "well-known", socketPath })
  }
  const seen = new Set<string>()
  return out.filter((c) => c._tag === "Skipped" || (seen.has(c.socketPath) ? false : (seen.add(c.socketPath), true)))
}

/** Explains why a candidate socket did not answer, in words an operator can act on. */
const whyNot = (f: EngineFailure): string => {
  switch (f.code) {
    case "ENOENT":
      return "no such socket"
    case "ECONNREFUSED":
      return "socket exists but nothing is listening (stale socket file?)"
    case "EACCES":
      return "permission denied (run as root or join the engine's group)"
    case "ENOTSOCK":
      return "not a unix socket"
    case "ETIMEDOUT":
      return f.message
  }
  return f.statusCode !== undefined
    ? `answered HTTP ${f.statusCode}, not a Docker-compatible engine API (${f.message})`
    : describeFailure(f)
}

/**
 * A dockerode client bound to exactly this socket. docker-modem also reads DOCKER_HOST,
 * DOCKER_CERT_PATH and DOCKER_TLS_VERIFY from process.env, and a tcp:// DOCKER_HOST would win
 * over `socketPath`; clearing host/protocol/TLS here keeps the socket we chose.
 */
const client = (socketPath: string, timeoutMs?: number): Docker =>
  new Docker({
    socketPath,
    host: undefined,
    port: undefined,
    protocol: "http",
    ca: undefined,
    cert: undefined,
    key: undefined,
    timeout: timeoutMs
  })

/**
 * Asks one socket for its engine and version: a ping within `timeout` (is anything there), then
 * /version within `versionTimeout`. Podman 4.3 gathers its engine's details for /version: 2.7 s
 * here on a private storage after an hour of chaos scenarios, while a ping took 0.06 s; a
 * single 2 s /version probe took a live engine for a dead one.
 */
export const probe = (
  socketPath: string,
  timeout: Duration.DurationInput = "2 seconds",
  versionTimeout: Duration.DurationInput = "20 seconds"
): Effect.Effect<Docker.DockerVersion, EngineFailure> => {
  const within = (duration: Duration.DurationInput, what: string) =>
    Effect.timeoutFail({
      duration,
      onTimeout: (): EngineFailure => ({ statusCode: undefined, code: "ETIMEDOUT", message: `no answer${what} within ${Duration.toMillis(duration)} ms` })
    })
  return call(() => client(socketPath, Duration.toMillis(timeout)).ping()).pipe(
    within(timeout, ""),
    Effect.zipRight(call(() => client(socketPath, Duration.toMillis(versionTimeout)).version()).pipe(within(versionTimeout, " to /version"))),
    Effect.flatMap((v) =>
      typeof v === "object" && v !== null && typeof v.ApiVersion === "string"
        ? Effect.succeed(v)
        : Effect.fail<EngineFailure>({ statusCode: 200, code: undefined, message: "/version did not describe an engine" })
    )
  )
}

const engineName = (v: Docker.DockerVersion): string => {
  const components = Array.isArray(v.Components) ? v.Components : []
  if (components.some((c) => c.Name.toLowerCase().includes("podman"))) return "Podman"
  const platform = typeof v.Platform === "object" && v.Platform !== null ? v.Platform.Name : ""
  return platform !== "" && platform.toLowerCase().includes("docker") ? platform : "Docker"
}

/**
 * Finds a container engine socket: the configured path, DOCKER_HOST (unix:// only),
 * `$XDG_RUNTIME_DIR/podman/podman.sock`, then the system-wide Podman and Docker sockets.
 * The first that answers `/version` wins; if none does, the error lists every path and why.
 */
export const findSocket = (options: FindSocketOptions): Effect.Effect<FoundSocket, RuntimeError> =>
  Effect.gen(function*() {
    const tried: Array<string> = []
    for (const candidate of candidates(options)) {
      if (candidate._tag === "Skipped") {
        tried.push(`${candidate.source}: skipped, ${candidate.why}`)
        continue
      }
      const answer = yield* Effect.either(probe(candidate.socketPath, options.probeTimeout))
      if (answer._tag === "Left") {
        tried.push(`${candidate.socketPath} (${candidate.source}): ${whyNot(answer.left)}`)
        continue
      }
      const v = answer.right
      const engine = engineName(v)
      return {
        socketPath: candidate.socketPath,
        source: candidate.source,
        engine,
        version: v.Version,
        apiVersion: v.ApiVersion,
        describe: `${engine} ${v.Version} (Docker API ${v.ApiVersion}) at unix://${candidate.socketPath}, found via ${candidate.source}`
      }
    }
    if (tried.length === 0) tried.push("(no candidate paths)")
    return yield* new RuntimeError({
      operation: "find container engine",
      reason: [
        "no container engine socket answered. Tried:",
        ...tried.map((t) => `  - ${t}`),
        "Start one, e.g. as root: podman system service --time=0 unix:///run/podman/podman.sock",
        "(or point the agent's config or DOCKER_HOST=unix://<path> at a running engine)."
      ].join("\n"),
      retryable: true
    })
  })

// ---------------------------------------------------------------------------------------------
// Specs to engine requests (pure)
// ---------------------------------------------------------------------------------------------

const portKey = (p: PortBinding): string => `${p.containerPort}/${p.protocol}`

/** The engine's create request for a spec; pure so it can be checked without an engine. */
export const containerCreateOptions = (
  spec: ContainerSpec,
  hardening: Hardening = DEFAULT_HARDENING
): Docker.ContainerCreateOptions => {
  const portBindings: Record<string, Array<{ HostIp: string; HostPort: string }>> = {}
  const exposed: Record<string, {}> = {}
  for (const p of spec.ports) {
    const key = portKey(p)
    exposed[key] = {}
    ;(portBindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) })
  }
  const networkMode = spec.network ?? (spec.ports.length > 0 ? "bridge" : undefined)
  const hostConfig: Docker.HostConfig = {
    ...(spec.ports.length > 0 ? { PortBindings: portBindings } : {}),
    ...(spec.volumes.length > 0 ? { Binds: [...spec.volumes] } : {}),
    ...(networkMode !== undefined ? { NetworkMode: networkMode } : {}),
    ...(spec.restart !== undefined ? { RestartPolicy: { Name: spec.restart } } : {}),
    ...hardeningHostConfig(hardening)
  }
  return {
    name: spec.name,
    Image: spec.image,
    ...(spec.cmd !== undefined ? { Cmd: [...spec.cmd] } : {}),
    Env: [...spec.env],
    Labels: { ...spec.labels },
    ...(spec.ports.length > 0 ? { ExposedPorts: exposed } : {}),
    ...(spec.user !== undefined ? { User: spec.user } : {}),
    HostConfig: hostConfig
  }
}

/**
 * Podman's compat handler passes HostConfig.UsernsMode to its own --userns parser (measured on
 * 4.3.1, see docs/SECURITY-containers.md). `auto` with forced uid/gid mappings covering the whole
 * size needs no /etc/subuid entries, so `mapped` is `auto` pinned to one fixed range.
 */
export const usernsModeValue = (mode: UsernsMode): string | undefined => {
  switch (mode) {
    case "auto":
      return "auto"
    case "mapped": {
      const { hostId, size } = MAPPED_USERNS
      return `auto:uidmapping=0:${hostId}:${size},gidmapping=0:${hostId}:${size},size=${size}`
    }
    case "host":
      // Left to the engine's default (no user namespace for a rootful engine): Docker rejects
      // values other than "" and "host", and "" keeps the request valid on both engines.
      return undefined
  }
}

/**
 * What every container gets whatever its service says: no-new-privileges (setuid binaries and
 * file capabilities cannot raise privileges on exec), all capabilities dropped but the configured
 * few, and a user namespace unless the config says `host`.
 */
const hardeningHostConfig = (hardening: Hardening): Docker.HostConfig => {
  const userns = usernsModeValue(hardening.userns)
  return {
    SecurityOpt: ["no-new-privileges"],
    CapDrop: ["ALL"],
    CapAdd: [...hardening.capabilities],
    ...(userns !== undefined ? { UsernsMode: userns } : {})
  }
}

/** Podman's answers when userns=auto finds no `containers` subordinate ids (4.3.1, measured). */
const isUsernsRefusal = (f: EngineFailure): boolean =>
  /could not find enough available IDs|cannot find mappings for user|no subuid ranges|no subgid ranges/i.test(f.message)

const capNames = (u: unknown): ReadonlyArray<string> =>
  Array.isArray(u) ? u.filter((c): c is string => typeof c === "string").map((c) => c.toUpperCase().replace(/^CAP_/, "")) : []

/** Reads the security settings from an inspect answer (Docker and Podman spell them alike). */
export const toContainerSecurity = (hostConfig: unknown): ContainerSecurity => {
  const hc = typeof hostConfig === "object" && hostConfig !== null ? hostConfig : {}
  const securityOpt = field(hc, "SecurityOpt")
  const opts = Array.isArray(securityOpt) ? securityOpt.filter((o): o is string => typeof o === "string") : []
  const userns = field(hc, "UsernsMode")
  return {
    // Docker accepts "no-new-privileges", "no-new-privileges:true" and "no-new-privileges=true".
    noNewPrivileges: opts.some((o) => /^no-new-privileges([:=]true)?$/.test(o)),
    capDrop: capNames(field(hc, "CapDrop")),
    capAdd: capNames(field(hc, "CapAdd")),
    userns: typeof userns === "string" && userns !== "" && userns !== "host" ? "private" : "host"
  }
}

// Podman's own vocabulary (configured, stopped, ...) may leak through the compat API.
const STATES: Readonly<Record<string, ContainerState>> = {
  created: "created",
  configured: "created",
  initialized: "created",
  running: "running",
  paused: "paused",
  restarting: "restarting",
  exited: "exited",
  stopped: "exited",
  stopping: "exited",
  dead: "dead"
}

const toState = (status: string): ContainerState => {
  const s = status.toLowerCase()
  return Object.hasOwn(STATES, s) ? STATES[s] : "unknown"
}

/** Reads `{"8080/tcp": [{HostIp, HostPort}]}` (HostConfig.PortBindings or NetworkSettings.Ports). */
const toPorts = (map: unknown): ReadonlyArray<PortBinding> => {
  if (typeof map !== "object" || map === null) return []
  const out: Array<PortBinding> = []
  for (const [key, bindings] of Object.entries(map)) {
    const [port, proto] = key.split("/")
    const containerPort = Number(port)
    if (!Number.isInteger(containerPort) || !Array.isArray(bindings)) continue
    for (const b of bindings) {
      if (typeof b !== "object" || b === null) continue
      const hostIp = field(b, "HostIp")
      const hostPort = Number(field(b, "HostPort"))
      if (!Number.isInteger(hostPort) || hostPort <= 0) continue
      out.push({
        hostIp: typeof hostIp === "string" && hostIp !== "" ? hostIp : "0.0.0.0",
        hostPort,
        containerPort,
        protocol: proto === "udp" ? "udp" : "tcp"
      })
    }
  }
  return out
}

const ZERO_TIME = "0001-01-01T00:00:00Z"

export const toContainerInfo = (info: Docker.ContainerInspectInfo): ContainerInfo => {
  const configured = toPorts(info.HostConfig?.PortBindings)
  return {
    id: info.Id,
    name: info.Name.replace(/^\//, ""),
    image: info.Config.Image,
    state: toState(info.State.Status),
    labels: info.Config.Labels ?? {},
    restartCount: info.RestartCount ?? 0,
    startedAt: info.State.StartedAt && info.State.StartedAt !== ZERO_TIME ? info.State.StartedAt : undefined,
    ports: configured.length > 0 ? configured : toPorts(info.NetworkSettings?.Ports),
    security: toContainerSecurity(info.HostConfig)
  }
}

// ---------------------------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------------------------

/** Splits one side of a demultiplexed stream into lines, keeping UTF-8 intact across chunks. */
const lineSplitter = (onLine: (line: string) => void) => {
  const decoder = new StringDecoder("utf8")
  let partial = ""
  const emitLines = (text: string) => {
    partial += text
    const lines = partial.split("\n")
    partial = lines.pop() ?? ""
    for (const line of lines) onLine(line.endsWith("\r") ? line.slice(0, -1) : line)
  }
  return {
    sink: new Writable({
      write(chunk: Buffer, _encoding, done) {
        emitLines(decoder.write(chunk))
        done()
      }
    }),
    flush: () => {
      emitLines(decoder.end())
      if (partial !== "") onLine(partial)
      partial = ""
    }
  }
}

/** Demultiplexes an engine stream (8-byte frame headers, no TTY) into log lines. */
const demuxLines = (docker: Docker, source: NodeJS.ReadableStream, operation: string): Stream.Stream<LogLine, RuntimeError> =>
  Stream.async<LogLine, RuntimeError>((emit) => {
    const stdout = lineSplitter((line) => void emit.single({ stream: "stdout", line }))
    const stderr = lineSplitter((line) => void emit.single({ stream: "stderr", line }))
    let done = false
    const finish = () => {
      if (done) return
      done = true
      stdout.flush()
      stderr.flush()
      void emit.end()
    }
    // demuxStream writes synchronously from its 'data' listener; ours is registered after it,
    // so every frame has been delivered before 'end' reaches us.
    docker.modem.demuxStream(source, stdout.sink, stderr.sink)
    source.on("end", finish)
    source.on("close", finish)
    source.on("error", (e: unknown) => {
      if (done) return
      done = true
      void emit.fail(runtimeError(operation, engineFailure(e)))
    })
  }, "unbounded")

/** Collects a demultiplexed stream (exec output) as one string, stdout and stderr interleaved. */
const collectOutput = (docker: Docker, source: NodeJS.ReadableStream): Effect.Effect<string, EngineFailure> =>
  Effect.async<string, EngineFailure>((resume) => {
    const chunks: Array<Buffer> = []
    const sink = () =>
      new Writable({
        write(chunk: Buffer, _encoding, done) {
          chunks.push(chunk)
          done()
        }
      })
    let done = false
    const finish = () => {
      if (done) return
      done = true
      resume(Effect.succeed(Buffer.concat(chunks).toString("utf8")))
    }
    docker.modem.demuxStream(source, sink(), sink())
    source.on("end", finish)
    source.on("close", finish)
    source.on("error", (e: unknown) => {
      if (done) return
      done = true
      resume(Effect.fail(engineFailure(e)))
    })
    return Effect.sync(() => destroy(source))
  })

/** The first error a pull's progress stream reported, if any (the HTTP status stays 200). */
const pullError = (events: ReadonlyArray<unknown>): string | undefined => {
  for (const event of events) {
    if (typeof event !== "object" || event === null) continue
    const error = field(event, "error")
    if (typeof error === "string" && error !== "") return error
    const detail = field(event, "errorDetail")
    const message = typeof detail === "object" && detail !== null ? field(detail, "message") : undefined
    if (typeof message === "string" && message !== "") return message
  }
  return undefined
}

const followProgress = (docker: Docker, stream: NodeJS.ReadableStream): Effect.Effect<ReadonlyArray<unknown>, EngineFailure> =>
  Effect.async<ReadonlyArray<unknown>, EngineFailure>((resume) => {
    docker.modem.followProgress(stream, (error: Error | null, output: ReadonlyArray<unknown>) => {
      resume(error === null ? Effect.succeed(output) : Effect.fail(engineFailure(error)))
    })
    return Effect.sync(() => destroy(stream))
  })

// ---------------------------------------------------------------------------------------------
// The runtime
// ---------------------------------------------------------------------------------------------

const isNameConflict = (f: EngineFailure): boolean =>
  f.statusCode === 409 || (f.statusCode === 500 && /already in use/i.test(f.message))

/**
 * Inits asked of a container in the engine's "created" state before its removal, by result:
 * `released` (runc had it though the engine did not know: Podman deleted runc's), `initialized`
 * (the removal then undoes it), `already-initialized` (Podman's compat API calls its initialized
 * state "created" too), `not-found` (the container went meanwhile), `failed`, `inspect-failed`
 * (the container's state could not be read, so no init was asked).
 */
export const createdInits = Metric.counter("mcp_engine_created_container_inits", {
  incremental: true,
  description: "inits asked of a never-started container before removing it (a Podman killed mid-start forgets runc's container), by result"
})

// Podman answers 500 "container state improper" (Docker 409) for exec on a stopped container.
const isNotRunning = (f: EngineFailure): boolean =>
  (f.statusCode === 409 || f.statusCode === 500) && /state improper|not running/i.test(f.message)

/**
 * A ContainerRuntime on the engine behind `socketPath` (no probe: see findSocket / layer).
 * `engine`: what the engine calls itself (FoundSocket's), when known.
 */
export const make = (
  socketPath: string,
  describe?: string,
  hardening: Hardening = DEFAULT_HARDENING,
  engine?: string
): Effect.Effect<ContainerRuntime> =>
  Effect.sync(() => {
    const docker = client(socketPath)
    const container = (idOrName: string) => docker.getContainer(idOrName)

    const pull = (image: string): Effect.Effect<void, ImageNotFound | RuntimeError> =>
      call(() => docker.pull(image)).pipe(
        Effect.flatMap((stream) => followProgress(docker, stream)),
        Effect.mapError((f) =>
          isTransient(f) ? runtimeError(`pull ${image}`, f) : new ImageNotFound({ image, reason: `pull failed: ${f.message}` })
        ),
        Effect.flatMap((events) => {
          const error = pullError(events)
          return error === undefined
            ? Effect.void
            : Effect.fail(new ImageNotFound({ image, reason: `pull failed: ${error}` }))
        })
      )

    const inspect = (idOrName: string): Effect.Effect<ContainerInfo, RuntimeError | ContainerNotFound> =>
      call((signal) => container(idOrName).inspect({ abortSignal: signal })).pipe(
        Effect.mapBoth({ onFailure: onContainer("inspect", idOrName), onSuccess: toContainerInfo })
      )

    /**
     * Podman 4.3 killed (SIGKILL, out of memory) while starting a container, after its conmon ran
     * `runc create` and before it saved that it had, comes back calling the container "created"
     * and no longer knows runc has it: removing it then leaves conmon, `runc init` and runc's
     * state behind for good (reproduced in 17 of 20 kills in that window). Asked to init such a
     * container, Podman meets runc's "container with given ID already exists" and deletes runc's
     * container (15 of 15 left nothing). An init that works is undone by the removal. Only for
     * Podman (or an engine not known): Docker has no such endpoint. Whatever happens here, the
     * removal that follows decides; an init that failed otherwise is logged and counted.
     */
    const mayForget = engine === undefined || /podman/i.test(engine)
    const releaseForgotten = (idOrName: string): Effect.Effect<void> =>
      !mayForget ? Effect.void : call((signal) => container(idOrName).inspect({ abortSignal: signal })).pipe(
        Effect.flatMap((info) =>
          info.State.Status !== "created" ? Effect.void : call((signal) =>
            new Promise<void>((resolve, reject) =>
              docker.modem.dial({
                // Podman routes its own API only under a version (an unversioned path is a 404).
                path: `/v4.0.0/libpod/containers/${encodeURIComponent(info.Id)}/init`,
                method: "POST",
                options: {},
                abortSignal: signal,
                // 304 as a failure: it is the one way to tell it from 204 (the callback has no status).
                statusCodes: { 204: true, 304: "already initialized", 404: "not found", 500: "server error" }
              }, (err) => (err ? reject(err) : resolve()))
            )).pipe(
              Effect.matchEffect({
                onSuccess: () => Effect.succeed("initialized"),
                onFailure: (f) =>
                  f.statusCode === 304 ? Effect.succeed("already-initialized")
                  : f.statusCode === 404 ? Effect.succeed("not-found")
                  : /already exists/i.test(f.message)
                  ? Effect.as(Effect.logDebug(`init of never-started container ${idOrName} before its removal: runc had it (${describeFailure(f)}); Podman deleted it`), "released")
                  : Effect.as(Effect.logWarning(`init of never-started container ${idOrName} before its removal failed; removing it anyway: ${describeFailure(f)}`), "failed")
              }),
              Effect.flatMap((result) => Metric.increment(Metric.tagged(createdInits, "result", result)))
            )
        ),
        // Gone already: nothing to release. Any other failure is logged and counted; the
        // removal that follows reports its own.
        Effect.catchAll((f) =>
          f.statusCode === 404 ? Effect.void : Effect.zipRight(
            Effect.logWarning(`inspect of ${idOrName} before its removal failed; removing it anyway: ${describeFailure(f)}`),
            Metric.increment(Metric.tagged(createdInits, "result", "inspect-failed"))
          ))
      )

    const execExitCode = (exec: Docker.Exec): Effect.Effect<number, EngineFailure> =>
      call(() => exec.inspect()).pipe(
        Effect.flatMap((info) =>
          info.Running || info.ExitCode === null
            ? Effect.fail<EngineFailure>({ statusCode: undefined, code: "EXEC_RUNNING", message: "exec still running" })
            : Effect.succeed(info.ExitCode)
        ),
        // The output stream can close a moment before the engine records the exit code.
        Effect.retry({
          schedule: Schedule.spaced("25 millis"),
          times: 80,
          while: (f) => f.code === "EXEC_RUNNING"
        })
      )

    const runtime: ContainerRuntime = {
      describe: describe ?? `container engine at unix://${socketPath}`,

      ensureImage: (image) =>
        call(() => docker.getImage(image).inspect()).pipe(
          Effect.asVoid,
          Effect.catchAll((f) => (f.statusCode === 404 ? pull(image) : Effect.fail(runtimeError(`inspect image ${image}`, f))))
        ),

      create: (spec) =>
        call(() => docker.createContainer(containerCreateOptions(spec, hardening))).pipe(
          Effect.map((c) => c.id),
          Effect.mapError((f) =>
            hardening.userns !== "host" && isUsernsRefusal(f)
              ? usernsRefused(spec.name, hardening.userns, f.message)
              : f.statusCode === 404
              ? new ImageNotFound({ image: spec.image, reason: `not present on this engine (${f.message})` })
              : isNameConflict(f)
              ? new RuntimeError({
                operation: `create ${spec.name}`,
                reason: `container name "${spec.name}" is already in use: remove that container or pick another name (${f.message})`,
                retryable: false
              })
              : runtimeError(`create ${spec.name}`, f)
          )
        ),

      start: (idOrName) =>
        call(() => container(idOrName).start()).pipe(
          Effect.asVoid,
          // 304: already running, which is what the caller wanted.
          Effect.catchIf((f) => f.statusCode === 304, () => Effect.void),
          Effect.mapError(onContainer("start", idOrName))
        ),

      stop: (idOrName, timeoutSeconds) =>
        call((signal) => container(idOrName).stop({ t: timeoutSeconds, abortSignal: signal })).pipe(
          Effect.asVoid,
          Effect.catchIf((f) => f.statusCode === 304, () => Effect.void),
          Effect.mapError(onContainer("stop", idOrName))
        ),

      remove: (idOrName) =>
        releaseForgotten(idOrName).pipe(Effect.zipRight(call(() => container(idOrName).remove({ force: true }))),
          Effect.asVoid,
          Effect.catchIf((f) => f.statusCode === 404, () => Effect.void),
          // Podman 4.3 sometimes answers 500 "unlinkat .../userdata/shm: device or resource busy"
          // when force-removing a running container in a user namespace, yet removes it (2 of 15
          // in a measured loop). Gone is what the caller asked for: check before reporting failure.
          Effect.catchAll((f) =>
            call((signal) => container(idOrName).inspect({ abortSignal: signal })).pipe(
              Effect.matchEffect({
                onFailure: (g) => (g.statusCode === 404 ? Effect.void : Effect.fail(runtimeError(`remove ${idOrName}`, f))),
                onSuccess: () => Effect.fail(runtimeError(`remove ${idOrName}`, f))
              })
            )
          )
        ),

      inspect,

      list: (labels) =>
        call((signal) =>
          docker.listContainers({
            all: true,
            filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
            abortSignal: signal
          })
        ).pipe(
          Effect.mapError((f) => runtimeError("list containers", f)),
          // The list entries lack restart count and start time: inspect each one.
          Effect.flatMap((entries) =>
            Effect.forEach(
              entries,
              (entry) =>
                inspect(entry.Id).pipe(
                  Effect.asSome,
                  // Removed between list and inspect: it is no longer part of the answer.
                  Effect.catchTag("ContainerNotFound", () => Effect.succeedNone)
                ),
              { concurrency: 4 }
            )
          ),
          Effect.map((found) => found.flatMap((o) => (o._tag === "Some" ? [o.value] : [])))
        ),

      logs: (idOrName, { follow, tail }) =>
        Stream.unwrapScoped(
          Effect.gen(function*() {
            const base = { stdout: true, stderr: true, ...(tail >= 0 ? { tail } : {}) }
            const open: Effect.Effect<NodeJS.ReadableStream, EngineFailure> = follow
              ? call(() => container(idOrName).logs({ ...base, follow: true }))
              : call(() => container(idOrName).logs({ ...base, follow: false })).pipe(
                Effect.map((buffer) => Readable.from([buffer]))
              )
            const source = yield* Effect.acquireRelease(
              Effect.mapError(open, onContainer("logs", idOrName)),
              (s) => Effect.sync(() => destroy(s))
            )
            return demuxLines(docker, source, `logs ${idOrName}`)
          })
        ),

      exec: (idOrName, cmd) =>
        Effect.gen(function*() {
          const exec = yield* call(() =>
            container(idOrName).exec({ Cmd: [...cmd], AttachStdout: true, AttachStderr: true })
          ).pipe(
            Effect.mapError((f) =>
              isNotRunning(f)
                ? new RuntimeError({ operation: `exec in ${idOrName}`, reason: `container is not running (${f.message})`, retryable: false })
                : onContainer("exec in", idOrName)(f)
            )
          )
          const fail = (f: EngineFailure) => runtimeError(`exec in ${idOrName}`, f)
          const stream = yield* Effect.mapError(call(() => exec.start({ hijack: true, stdin: false })), fail)
          const output = yield* Effect.mapError(collectOutput(docker, stream), fail)
          const exitCode = yield* Effect.mapError(execExitCode(exec), fail)
          return { exitCode, output } satisfies ExecResult
        })
    }
    return runtime
  })

/** The engine at a known socket, without discovery (tests, or a path the operator insists on). */
export const layerSocket = (
  socketPath: string,
  describe?: string,
  hardening: Hardening = DEFAULT_HARDENING
): Layer.Layer<ContainerRuntime> => Layer.effect(ContainerRuntime, make(socketPath, describe, hardening))

/**
 * Finds the engine (see findSocket), asking again with a growing pause (250 ms to 5 s, each miss
 * logged with why) for up to `startWait`, and provides the ContainerRuntime on it.
 */
export const layer = (
  options: FindSocketOptions,
  hardening: Hardening = DEFAULT_HARDENING
): Layer.Layer<ContainerRuntime, RuntimeError> => {
  const wait = Duration.decode(options.startWait ?? "30 seconds")
  const again = Schedule.exponential("250 millis", 2).pipe(
    Schedule.union(Schedule.spaced("5 seconds")),
    Schedule.upTo(wait)
  )
  const find = findSocket(options).pipe(
    Effect.tapError((e) => Effect.logWarning(`the container engine does not answer yet; asking again for up to ${Duration.format(wait)} in all: ${e.reason.split("\n").slice(1, -2).join("; ")}`)),
    Effect.retry(again)
  )
  return Layer.effect(ContainerRuntime, Effect.flatMap(find, (found) => make(found.socketPath, found.describe, hardening, found.engine)))
}
