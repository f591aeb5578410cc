/**
 * One boot sequence: the configured stages plus an implicit last one for the services in
 * none, gated in order, then supervised for as long as the agent runs (over the registry's
 * services as they are at each check, not as they were at the start).
 */
import { Failures } from "@mcp/rpc"
import { Effect, Either } from "effect"
import { ContainerRuntime } from "../engine/ContainerRuntime.js"
import { Registry, UnreadableDefinition } from "../registry/Registry.js"
import { type BootSettings, event, registryFatal } from "./Model.js"
import { gateFrom, withUnstaged } from "./Stages.js"
import { reset } from "./Status.js"
import { supervise } from "./Supervision.js"

export const run = (boot: BootSettings) =>
  Effect.gen(function* () {
    const rows = yield* registryFatal(Effect.flatMap(Registry, (registry) => registry.services))
    for (const row of rows) {
      if (row.definition instanceof UnreadableDefinition) yield* reportUnreadable(row.name, row.definition)
    }
    const stages = withUnstaged(boot.stages, rows)
    yield* reset(stages)
    yield* noticeEngineReset
    yield* gateFrom(stages, 0)
    yield* supervise(boot)
  })

/** Reported once per sequence here, not by the checks that fall back for it (they run every interval). */
const reportUnreadable = (service: string, definition: UnreadableDefinition) =>
  Effect.zipRight(
    Failures.reported("reading a stored definition", `${service}: ${definition.reason}`),
    event(`the stored definition of ${service} cannot be read (${definition.reason}); its components are gated on running until it is redeployed`, service)
  )

/** Said only when every container is gone: a few missing ones are drift the stages repair without remark. */
const noticeEngineReset = Effect.gen(function* () {
  const runtime = yield* ContainerRuntime
  const components = yield* registryFatal(Effect.flatMap(Registry, (registry) => registry.allComponents))
  const present = yield* Effect.forEach(components, (c) => Effect.map(Effect.either(runtime.inspect(c.spec.name)), Either.isRight))
  if (components.length > 0 && present.every((p) => !p)) {
    yield* event(`the engine has none of the registry's ${components.length} containers (engine reset?); recovering them in stage order`)
  }
})
