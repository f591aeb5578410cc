/**
 * Errors that cross the wire. Each is a Schema.TaggedError so the client receives an instance of
 * the same class; each message says what failed and what to do about it.
 */
import { Schema } from "effect"
import { Problem } from "./Problem.js"
import { Violation } from "./Violation.js"

export class InvalidDefinition extends Schema.TaggedError<InvalidDefinition>()("InvalidDefinition", {
  service: Schema.String,
  problems: Schema.Array(Problem)
}) {
  override get message() {
    return `service definition "${this.service}" is invalid:\n` + this.problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")
  }
}

/** A request payload that is not what the RPC expects (names the field and the fix). */
export class InvalidRequest extends Schema.TaggedError<InvalidRequest>()("InvalidRequest", {
  problems: Schema.Array(Problem)
}) {
  override get message() {
    return `invalid request: ` + this.problems.map((p) => `${p.path}: ${p.message}`).join("; ")
  }
}

export class ServiceNotFound extends Schema.TaggedError<ServiceNotFound>()("ServiceNotFound", {
  service: Schema.String
}) {
  override get message() {
    return `service "${this.service}" is not deployed here; check the name with mcp ps`
  }
}

export class NodeNotFound extends Schema.TaggedError<NodeNotFound>()("NodeNotFound", {
  node: Schema.String
}) {
  override get message() {
    return `node "${this.node}" is not known; list nodes with mcp node list`
  }
}

export class PlacementFailed extends Schema.TaggedError<PlacementFailed>()("PlacementFailed", {
  service: Schema.String,
  reason: Schema.String
}) {
  override get message() {
    return `cannot place service "${this.service}": ${this.reason}`
  }
}

export class NodeUnreachable extends Schema.TaggedError<NodeUnreachable>()("NodeUnreachable", {
  node: Schema.String,
  addresses: Schema.Array(Schema.String),
  reason: Schema.String
}) {
  override get message() {
    return `node "${this.node}" did not answer at ${this.addresses.join(", ")}: ${this.reason}`
  }
}

export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  reason: Schema.String
}) {
  override get message() {
    return `unauthorized: ${this.reason}`
  }
}

export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  principal: Schema.String,
  role: Schema.String,
  rpc: Schema.String,
  /** The least role the RPC needs (absent from peers that predate roles with meaning). */
  needs: Schema.optional(Schema.String),
  /** A rule other than a least role that refused the call, with its fix (e.g. a node's own token for /control). */
  rule: Schema.optional(Schema.String)
}) {
  override get message() {
    if (this.rule !== undefined) return `${this.principal} (role ${this.role}) may not call ${this.rpc}: ${this.rule}`
    return this.needs === undefined
      ? `${this.principal} (role ${this.role}) may not call ${this.rpc}; ask an admin for a token with the user or admin role`
      : `${this.principal} (role ${this.role}) may not call ${this.rpc}: it needs the ${this.needs} role${this.needs === "admin" ? "" : " or above"}; ask an admin for such a token`
  }
}

/** The peer speaks another protocol version and lacks (or no longer has) what was asked. */
/**
 * A request carrying fields its RPC does not declare: refused by name rather than dropped, since
 * a field the sender thinks matters (and the daemon would ignore) is a mistake or a version skew.
 */
export class UnknownFields extends Schema.TaggedError<UnknownFields>()("UnknownFields", {
  rpc: Schema.String,
  fields: Schema.Array(Schema.String)
}) {
  override get message() {
    const list = this.fields.map((f) => `"${f}"`).join(", ")
    return `the ${this.rpc} request has ${this.fields.length === 1 ? "a field" : "fields"} this daemon does not know: ${list}; remove ${this.fields.length === 1 ? "it" : "them"}, or upgrade the daemon if the client is newer`
  }
}

/**
 * A caller that already holds as many streaming RPCs (Logs or Events follows, deploys) open on
 * this daemon as one caller may: the next is refused until an earlier one closes.
 */
export class TooBusy extends Schema.TaggedError<TooBusy>()("TooBusy", {
  principal: Schema.String,
  rpc: Schema.String,
  /** How many streams one caller may hold open at once on this daemon. */
  limit: Schema.Int
}) {
  override get message() {
    return `${this.principal} already has ${this.limit} streaming calls open on this daemon, the most one caller may hold at once; ${this.rpc} was refused: close an earlier Logs or Events follow (or wait for a deploy to finish) and retry`
  }
}

export class VersionSkew extends Schema.TaggedError<VersionSkew>()("VersionSkew", {
  rpc: Schema.String,
  localVersion: Schema.Int,
  remoteVersion: Schema.Int
}) {
  get olderSide(): "local" | "remote" {
    return this.localVersion < this.remoteVersion ? "local" : "remote"
  }
  override get message() {
    const older = this.olderSide === "remote" ? "the remote side" : "this side"
    return `${this.rpc} is not available: protocol version ${this.localVersion} here, ${this.remoteVersion} remote; ${older} is older: upgrade it to the same MCP release as the other`
  }
}

/** A container a failed deploy's rollback could not remove, and the host ports it publishes. */
export const DeployLeftover = Schema.Struct({
  container: Schema.String,
  /** Kept reserved for the service until the container is gone. */
  hostPorts: Schema.Array(Schema.Number)
})
export type DeployLeftover = typeof DeployLeftover.Type

/** A deploy step failed; the saga compensated what it had done before reporting this. */
export class DeployFailed extends Schema.TaggedError<DeployFailed>()("DeployFailed", {
  service: Schema.String,
  step: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean,
  /**
   * Containers the rollback could not remove (the engine refused): they may still run, so their
   * host ports stay reserved until a later rollback removes them. Absent when there are none
   * (and from an older agent).
   */
  leftovers: Schema.optional(Schema.Array(DeployLeftover))
}) {
  override get message() {
    const rolledBack = this.leftovers !== undefined && this.leftovers.length > 0
      ? `rollback incomplete: ${this.leftovers.map((l) => `${l.container} (host ports ${l.hostPorts.join(", ")})`).join(", ")} left`
      : "rolled back"
    return `deploy of "${this.service}" failed at ${this.step}: ${this.reason} (${rolledBack}${this.retryable ? "; retrying may succeed" : ""})`
  }
}

/** An external system (engine, proxy, CA, DNS) failed; `peer` names it. */
export class PeerFailed extends Schema.TaggedError<PeerFailed>()("PeerFailed", {
  peer: Schema.String,
  operation: Schema.String,
  reason: Schema.String,
  retryable: Schema.Boolean
}) {
  override get message() {
    return `${this.peer} failed to ${this.operation}: ${this.reason}`
  }
}

/**
 * The definition asks for something the deploy policy (`[policy]` on the master) refuses this
 * caller; nothing was stored, placed or created. Each violation names the field, the rule and who
 * may do it.
 */
export class PolicyViolation extends Schema.TaggedError<PolicyViolation>()("PolicyViolation", {
  service: Schema.String,
  violations: Schema.Array(Violation)
}) {
  override get message() {
    return `deploy of "${this.service}" refused by the deploy policy:\n` +
      this.violations.map((v) => `  ${v.path} (${v.rule}): ${v.message}`).join("\n")
  }
}
