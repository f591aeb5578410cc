/**
 * What the boot modules share: the stages as configured, the status they report, and the
 * registry's boot events. The registry is fatal here: boot cannot go on without it.
 */
import type { Operations } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { type Duration, Effect } from "effect"
import { Registry } from "../registry/Registry.js"

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

export type StageState = Operations.BootStatus["stages"][number]
export type CheckResult = StageState["checks"][number]

export const describe = (e: unknown): string => (e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e))
export const now = () => new Date().toISOString()

export const registryFatal = Failures.fatal("the agent registry")

export const event = (message: string, service?: string) => registryFatal(Effect.flatMap(Registry, (registry) => registry.addEvent("boot", service, message)))

/** The failed checks as one line: "service check: detail; ...". */
export const summarize = (checks: ReadonlyArray<CheckResult>) =>
  checks.filter((c) => !c.ok).map((c) => `${c.service} ${c.check}: ${c.detail}`).join("; ")
