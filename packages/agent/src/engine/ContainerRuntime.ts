/**
 * The ContainerRuntime port: what the agent needs from a container engine. The real layer
 * (DockerRuntime) speaks the Docker-compatible API to Podman or Docker; layerMemory stands in
 * for tests of the agent's own logic.
 */
import { ServiceDefinition } from "@mcp/domain"
import { Context, Data, type Effect, Schema, type Stream } from "effect"

export const PortBinding = Schema.Struct({
  hostIp: Schema.String,
  hostPort: Schema.Number,
  containerPort: Schema.Number,
  protocol: Schema.Literal("tcp", "udp")
})
export interface PortBinding extends Schema.Schema.Type<typeof PortBinding> {}

/**
 * Everything needed to create a container, as pure data. The registry stores it as this schema
 * encodes it, and recreates lost containers from it.
 */
export const ContainerSpec = Schema.Struct({
  name: Schema.String,
  image: Schema.String,
  cmd: Schema.UndefinedOr(Schema.Array(Schema.String)),
  env: Schema.Array(Schema.String),
  /** `host:container[:options]` bind mounts. */
  volumes: Schema.Array(Schema.String),
  ports: Schema.Array(PortBinding),
  network: Schema.UndefinedOr(Schema.String),
  user: Schema.UndefinedOr(Schema.String),
  restart: Schema.UndefinedOr(ServiceDefinition.RestartPolicy),
  labels: Schema.Record({ key: Schema.String, value: Schema.String })
})
export interface ContainerSpec extends Schema.Schema.Type<typeof ContainerSpec> {}

export type ContainerState = "created" | "running" | "paused" | "restarting" | "exited" | "dead" | "unknown"

/**
 * Linux capabilities a hardened container may keep, without the `CAP_` prefix. Only the agent's
 * config chooses among them (service definitions cannot), so a service cannot ask for SYS_ADMIN.
 */
export const Capability = Schema.Literal(
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
  "NET_BIND_SERVICE", "NET_RAW", "SYS_CHROOT", "MKNOD", "AUDIT_WRITE", "SETFCAP"
)
export type Capability = typeof Capability.Type

/**
 * The capabilities kept by default. What ordinary services need: CHOWN, DAC_OVERRIDE, FOWNER
 * (root-run images fix up ownership and permissions of their own files at start), SETUID,
 * SETGID (images that start as root and drop to a service user: nginx, postgres' gosu/su-exec),
 * NET_BIND_SERVICE (listening below 1024 inside the container), KILL (a supervisor signalling
 * its workers under another uid). Dropped from the engines' default set: NET_RAW (raw sockets,
 * ARP/ICMP spoofing on the bridge), MKNOD (device nodes), SYS_CHROOT, SETPCAP, SETFCAP (file
 * capabilities that would grant privileges on exec), FSETID, AUDIT_WRITE.
 */
export const DEFAULT_CAPABILITIES: ReadonlyArray<Capability> = [
  "CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL"
]

/**
 * How uid 0 inside a container relates to the node:
 * - `auto`: Podman gives each container its own range from the `containers` entries in
 *   /etc/subuid and /etc/subgid (best: containers are isolated from each other too). The engine
 *   refuses to create containers when those entries are missing (see UsernsUnavailable).
 * - `mapped`: every container maps uid/gid 0..65535 to one fixed unprivileged host range
 *   (MAPPED_USERNS); works on a stock Podman with no /etc changes, but containers share that range.
 * - `host`: no user namespace; uid 0 in a container is root on the node. Only for images that
 *   cannot work otherwise.
 */
export const UsernsMode = Schema.Literal("auto", "mapped", "host")
export type UsernsMode = typeof UsernsMode.Type

/**
 * The fixed host range of `mapped`: below Podman's suggested `containers:2147483647:2147483648`
 * subuid range, so switching a node to `auto` later never hands out an overlapping range, and far
 * above any uid a distribution allocates to real users.
 */
export const MAPPED_USERNS = { hostId: 1879048192, size: 65536 } as const

/** The hardening every created container gets; the agent's config picks it, never a service. */
export interface Hardening {
  readonly capabilities: ReadonlyArray<Capability>
  readonly userns: UsernsMode
}

/** `mapped` is the default: the safest mode that works on a stock Podman (auto needs /etc/subuid). */
export const DEFAULT_HARDENING: Hardening = { capabilities: DEFAULT_CAPABILITIES, userns: "mapped" }

/** The security settings an engine reports for a container, capability names without `CAP_`. */
export interface ContainerSecurity {
  readonly noNewPrivileges: boolean
  /** As the engine reports them: Docker echoes `ALL`; Podman lists the defaults it dropped. */
  readonly capDrop: ReadonlyArray<string>
  readonly capAdd: ReadonlyArray<string>
  /** `private`: the container runs in its own user namespace (the compat API does not say which mapping). */
  readonly userns: "host" | "private"
}

/**
 * Whether the container keeps `cap`, read from what either engine reports: added explicitly, or
 * neither dropped by name nor by `ALL` (then it is one of the engine's defaults).
 */
export const keepsCapability = (security: ContainerSecurity, cap: string): boolean =>
  security.capAdd.includes(cap) || (!security.capDrop.includes("ALL") && !security.capDrop.includes(cap))

export interface ContainerInfo {
  readonly id: string
  readonly name: string
  readonly image: string
  readonly state: ContainerState
  readonly labels: Readonly<Record<string, string>>
  readonly restartCount: number
  readonly startedAt: string | undefined
  readonly ports: ReadonlyArray<PortBinding>
  /** Optional only so that hand-made ContainerInfo values in tests stay valid; both runtimes set it. */
  readonly security?: ContainerSecurity | undefined
}

export interface ExecResult {
  readonly exitCode: number
  readonly output: string
}

export interface LogLine {
  readonly stream: "stdout" | "stderr"
  readonly line: string
}

/** The engine failed or refused; `operation` and `reason` say what and why. */
export class RuntimeError extends Data.TaggedError("RuntimeError")<{
  readonly operation: string
  readonly reason: string
  /** Worth retrying (engine busy, socket hiccup) as opposed to a bad request. */
  readonly retryable: boolean
}> {
  override get message() {
    return `container engine: ${this.operation} failed: ${this.reason}`
  }
}

/**
 * The engine refused the user namespace the config asks for (`userns = "auto"` without
 * subordinate id ranges). A RuntimeError (what `create` callers already handle), never retryable,
 * and never downgraded to running without a user namespace.
 */
export const usernsRefused = (container: string, mode: UsernsMode, engineMessage: string): RuntimeError =>
  new RuntimeError({
    operation: `create ${container}`,
    reason: `the engine refused user namespace mode "${mode}" (${engineMessage}). Fix: give Podman's "containers" ` +
      `user subordinate ids (add "containers:2147483647:2147483648" to both /etc/subuid and /etc/subgid), or set ` +
      `[runtime] userns = "mapped" in the agent config`,
    retryable: false
  })

export class ImageNotFound extends Data.TaggedError("ImageNotFound")<{ readonly image: string; readonly reason: string }> {
  override get message() {
    return `image ${this.image} is not available: ${this.reason}`
  }
}

export class ContainerNotFound extends Data.TaggedError("ContainerNotFound")<{ readonly container: string }> {
  override get message() {
    return `container ${this.container} does not exist`
  }
}

export interface ContainerRuntime {
  /** Which engine answered and how it was found, for logs and `mcp status`. */
  readonly describe: string
  /** Ensures the image is present: uses the cached one, else pulls it. */
  readonly ensureImage: (image: string) => Effect.Effect<void, ImageNotFound | RuntimeError>
  /** Applies the runtime's Hardening (no-new-privileges, capabilities, user namespace) to every container. */
  readonly create: (spec: ContainerSpec) => Effect.Effect<string, RuntimeError | ImageNotFound>
  readonly start: (idOrName: string) => Effect.Effect<void, RuntimeError | ContainerNotFound>
  /** Stops gracefully within `timeoutSeconds`, then kills. Stopping a stopped container succeeds. */
  readonly stop: (idOrName: string, timeoutSeconds: number) => Effect.Effect<void, RuntimeError | ContainerNotFound>
  /** Removes, forcing if running. Removing a missing container succeeds (idempotent). */
  readonly remove: (idOrName: string) => Effect.Effect<void, RuntimeError>
  readonly inspect: (idOrName: string) => Effect.Effect<ContainerInfo, RuntimeError | ContainerNotFound>
  /** Containers (running or not) carrying all the given labels. */
  readonly list: (labels: Readonly<Record<string, string>>) => Effect.Effect<ReadonlyArray<ContainerInfo>, RuntimeError>
  readonly logs: (idOrName: string, options: { readonly follow: boolean; readonly tail: number }) => Stream.Stream<LogLine, RuntimeError | ContainerNotFound>
  readonly exec: (idOrName: string, cmd: ReadonlyArray<string>) => Effect.Effect<ExecResult, RuntimeError | ContainerNotFound>
}

export const ContainerRuntime = Context.GenericTag<ContainerRuntime>("@mcp/agent/ContainerRuntime")

/** Labels MCP puts on every container it creates. */
export const LABEL_SERVICE = "mcp.service"
export const LABEL_COMPONENT = "mcp.component"
export const LABEL_DEPLOY = "mcp.deploy"
/** The node whose agent owns the container: agents sharing one engine never touch each other's. */
export const LABEL_NODE = "mcp.node"
