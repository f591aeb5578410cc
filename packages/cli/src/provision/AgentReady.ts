/**
 * "The agent is up": it answers over RPC at its address under its node's name, at the expected
 * version, as a new process when one was asked for, and the master lists it healthy at that
 * version (registered and heartbeating). What provisioning and upgrades wait for.
 */
import { Data, Duration, Effect, Either, Option, Schedule } from "effect"
import type * as CliConfig from "../CliConfig.js"
import * as Common from "../commands/Common.js"

export class AgentNotReady extends Data.TaggedError("AgentNotReady")<{ readonly reason: string }> {}

export interface Expectation {
  readonly node: string
  /** host:port of the agent. */
  readonly address: string
  readonly version: string
  /** The start time the agent reported before a restart: a process that still reports it is the old one. */
  readonly notStartedAt?: string | undefined
  readonly waitSeconds: number
}

export interface Ready {
  readonly address: string
  readonly startedAt: string | undefined
}

/** The agent's start time as it reports it now, or undefined when it does not answer. */
export const agentStart = (cfg: CliConfig.LoadedConfig, address: string): Effect.Effect<string | undefined> =>
  Effect.scoped(Effect.gen(function* () {
    const agent = yield* Common.agentClient(cfg, [address])
    const info = yield* Effect.either(agent.call((a) => a.NodeInfo()).pipe(Effect.timeout(Duration.seconds(5))))
    return Either.isRight(info) ? info.right.startedAt ?? "" : undefined
  }))

/** Polls every second until the expectation holds or `waitSeconds` have passed; the reason names the last thing missing. */
export const awaitAgent = (cfg: CliConfig.LoadedConfig, expect: Expectation): Effect.Effect<Ready, AgentNotReady> =>
  Effect.scoped(Effect.gen(function* () {
    const master = yield* Effect.mapError(Common.masterClient(cfg), (e) => new AgentNotReady({ reason: e.message }))
    const agent = yield* Common.agentClient(cfg, [expect.address])
    let last = "it has not answered yet"
    let startedAt: string | undefined
    const check = Effect.gen(function* () {
      const info = yield* Effect.either(agent.call((a) => a.NodeInfo()).pipe(Effect.timeout(Duration.seconds(5))))
      if (Either.isLeft(info)) {
        last = `it does not answer at ${expect.address}: ${info.left.message}`
        return false
      }
      const report = info.right
      if (report.info.name !== expect.node) {
        last = `${expect.address} answers as ${report.info.name}, not ${expect.node}`
        return false
      }
      if (report.info.version !== expect.version) {
        last = `it answers with version ${report.info.version}, not ${expect.version}`
        return false
      }
      if (expect.notStartedAt !== undefined && report.startedAt === expect.notStartedAt) {
        last = `the agent that answers is the one from before the restart (started ${expect.notStartedAt})`
        return false
      }
      startedAt = report.startedAt
      const nodes = yield* Effect.either(master.call((m) => m.NodesList()))
      if (Either.isLeft(nodes)) {
        last = `it answers, but the master does not: ${nodes.left.message}`
        return false
      }
      const view = nodes.right.find((n) => n.info.name === expect.node)
      if (view === undefined || view.health !== "healthy" || view.info.version !== expect.version) {
        last = view === undefined ? "it answers, but has not registered with the master" : `it answers; the master lists it ${view.health}, version ${view.info.version}`
        return false
      }
      return true
    })
    const ready = yield* check.pipe(
      Effect.repeat({ schedule: Schedule.spaced(Duration.seconds(1)), until: (ok) => ok }),
      Effect.timeoutOption(Duration.seconds(expect.waitSeconds))
    )
    if (Option.isNone(ready)) return yield* new AgentNotReady({ reason: `not ready within ${expect.waitSeconds} s: ${last}` })
    return { address: expect.address, startedAt }
  }))
