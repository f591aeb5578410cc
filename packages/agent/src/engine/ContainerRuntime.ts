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

export interface ContainerInfo {
  readonly id: string
  readonly name: string
  readonly image: string
  readonly state: ContainerState
  readonly labels: Readonly<Record<string, string>>
  readonly restartCount: number
  readonly startedAt: string | undefined
  readonly ports: ReadonlyArray<PortBinding>
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
