/**
 * Deploy step "containers": the new version's containers, created and started. Every one
 * carries the saga's id as its deploy label, so the compensation removes exactly what this saga
 * created, found through the engine even if the agent died before recording it.
 */
import { Effect, Schema } from "effect"
import { ContainerRuntime, LABEL_DEPLOY } from "../../engine/ContainerRuntime.js"
import type { PlannedComponent } from "../ContainerPlan.js"
import { launch } from "../Converge.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "containers",
  Intent: Schema.Struct({ sagaId: Schema.String }),
  Result: Schema.Null,
  compensate: ({ intent }) =>
    Effect.gen(function* () {
      const runtime = yield* ContainerRuntime
      const found = yield* runtime.list({ [LABEL_DEPLOY]: intent.sagaId })
      yield* Effect.forEach(found, (c) => runtime.remove(c.id), { discard: true })
    })
})

/** Gives the container id of each component, by component name. */
export const step = (sagaId: string, components: ReadonlyArray<PlannedComponent>) =>
  Saga.step(
    journaled,
    { sagaId },
    Effect.map(Effect.forEach(components, (c) => Effect.map(launch(c.spec), (id) => [c.name, id] as const)), (ids) => new Map(ids)),
    () => null
  )
