/**
 * The CLI's one error reporter: every failure a command can end with becomes one message on
 * stderr (`mcp: ...`) and an exit code, 2 for a bad command line and 1 for everything else.
 * The union below is the whole list, so a new kind of failure does not compile until it is
 * placed here.
 */
import * as ValidationError from "@effect/cli/ValidationError"
import type { RpcClientError } from "@effect/rpc/RpcClientError"
import type { Errors } from "@mcp/domain"
import type * as Pki from "@mcp/rpc/Pki"
import type * as TokenFile from "@mcp/rpc/TokenFile"
import { Data, Effect } from "effect"
import { printError } from "./Output.js"
import type { CliConfigError } from "./CliConfig.js"
import type { ProvisionFailed } from "./provision/Provision.js"
import type { UpgradeIncomplete } from "./provision/UpgradeRun.js"

/** Exit codes: 1 when something failed, 2 when the command line was wrong (nothing was tried). */
export const EXIT_FAILURE = 1
export const EXIT_USAGE = 2

/** A missing, malformed or contradictory argument, found before anything was contacted. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** A command that ran and failed for a reason it explains itself (a bad file, DNS records to fix). */
export class CommandFailed extends Data.TaggedError("CommandFailed")<{ readonly message: string }> {}

/** No address of a server answered; `attempts` says what went wrong at each, in the order tried. */
export class Unreachable extends Data.TaggedError("Unreachable")<{
  readonly server: "master" | "agent"
  readonly attempts: ReadonlyArray<{ readonly address: string; readonly reason: string }>
  readonly hint: string
}> {
  override get message() {
    return `cannot reach the ${this.server} at ${this.attempts.map((a) => `${a.address} (${a.reason})`).join(", ")}; ${this.hint}`
  }
}

/** A release as `mcp agent status` compares them: the version and the protocol it speaks. */
export interface Release {
  readonly version: string
  readonly protocol: number
}

const release = (r: { readonly version: string; readonly protocol?: number | undefined }) =>
  `${r.version} (protocol ${r.protocol ?? "unknown"})`

/**
 * Agents that run another release than the master (or than this CLI, when `cli` is set: the CLI's
 * build differs from the master's). Its message names each node and the command that upgrades
 * them; with no node listed, only the master and the CLI differ.
 */
export class FleetVersionSkew extends Data.TaggedError("FleetVersionSkew")<{
  readonly nodes: ReadonlyArray<{ readonly node: string; readonly version: string; readonly protocol?: number | undefined }>
  readonly master: Release
  readonly cli?: Release | undefined
}> {
  override get message() {
    const reference = `the master runs ${release(this.master)}${this.cli === undefined ? "" : `, this CLI ${release(this.cli)}`}`
    if (this.nodes.length === 0) return `version skew: ${reference}; upgrade the older of the two to the same MCP release`
    const nodes = this.nodes.map((n) => `${n.node} runs ${release(n)}`).join(", ")
    return `version skew: ${nodes}; ${reference}; upgrade ${this.nodes.length === 1 ? "it" : "them"} with: mcp agent upgrade ${this.nodes.map((n) => n.node).join(" ")}`
  }
}

/** Errors that cross the wire from a master or agent; each message already says what to do. */
export type WireError =
  | Errors.InvalidDefinition
  | Errors.PolicyViolation
  | Errors.InvalidRequest
  | Errors.ServiceNotFound
  | Errors.NodeNotFound
  | Errors.PlacementFailed
  | Errors.NodeUnreachable
  | Errors.Unauthorized
  | Errors.Forbidden
  | Errors.VersionSkew
  | Errors.UnknownFields
  | Errors.TooBusy
  | Errors.DeployFailed
  | Errors.PeerFailed

/** Errors of the local files the CLI manages (token files, the CA). */
export type LocalFileError =
  | TokenFile.TokenFileError
  | TokenFile.TokenNameTaken
  | TokenFile.TokenNameUnknown
  | TokenFile.InvalidTokenRequest
  | Pki.PkiError

/** Everything a command can fail with. */
export type CliFailure =
  | ProvisionFailed
  | UpgradeIncomplete
  | UsageError
  | CommandFailed
  | Unreachable
  | FleetVersionSkew
  | CliConfigError
  | RpcClientError
  | WireError
  | LocalFileError

export interface Outcome {
  /** What to print after `mcp: `; undefined when it has been printed already. */
  readonly message: string | undefined
  readonly exitCode: typeof EXIT_FAILURE | typeof EXIT_USAGE
}

/** The message and exit code for a failure. */
export const describe = (e: CliFailure | ValidationError.ValidationError): Outcome => {
  // @effect/cli prints its own parse errors (with the usage) before failing with them.
  if (ValidationError.isValidationError(e)) return { message: undefined, exitCode: EXIT_USAGE }
  switch (e._tag) {
    case "UsageError":
      return { message: e.message, exitCode: EXIT_USAGE }
    case "RpcClientError": {
      // A transport failure other than an unreachable address (those are Unreachable): the
      // connection broke or the answer could not be read.
      const cause = e.cause instanceof Error ? ` (${e.cause.message})` : ""
      return { message: `cannot reach the server: ${e.message}${cause}`, exitCode: EXIT_FAILURE }
    }
    case "CommandFailed":
    case "Unreachable":
    case "FleetVersionSkew":
    case "CliConfigError":
    case "InvalidDefinition":
    case "PolicyViolation":
    case "InvalidRequest":
    case "ServiceNotFound":
    case "NodeNotFound":
    case "PlacementFailed":
    case "NodeUnreachable":
    case "Unauthorized":
    case "Forbidden":
    case "VersionSkew":
    case "UnknownFields":
    case "TooBusy":
    case "DeployFailed":
    case "PeerFailed":
    case "TokenFileInsecure":
    case "TokenFileInvalid":
    case "TokenFileUnavailable":
    case "TokenNameTaken":
    case "TokenNameUnknown":
    case "InvalidTokenRequest":
    case "PkiError":
    case "ProvisionFailed":
    case "UpgradeIncomplete":
      return { message: e.message, exitCode: EXIT_FAILURE }
  }
}

/** Prints the failure, if not printed yet, and sets the exit code; no stack trace for a problem the user can fix. */
export const report = <A, R>(effect: Effect.Effect<A, CliFailure | ValidationError.ValidationError, R>) =>
  Effect.catchAll(effect, (e) => {
    const { exitCode, message } = describe(e)
    return Effect.zipRight(
      message === undefined ? Effect.void : printError(`mcp: ${message}`),
      Effect.sync(() => {
        process.exitCode = exitCode
      })
    )
  })
