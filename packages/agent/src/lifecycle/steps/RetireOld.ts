/**
 * Deploy step "retire-old", only for an in-place redeploy (a proxy that cannot steer traffic,
 * or a service without routes): the running version's containers are removed so the new ones
 * can take their names and host ports. Undone by recreating the recorded containers, while the
 * service is still active (a stopped service stays stopped).
 */
import { Effect, Schema } from "effect"
import { ContainerRuntime } from "../../engine/ContainerRuntime.js"
import { type ComponentRow, Registry } from "../../registry/Registry.js"
import { isActive, relaunchRecorded } from "../Converge.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "retire-old",
  Intent: Schema.Struct({ service: Schema.String }),
  Result: Schema.Null,
  compensate: ({ intent }) =>
    Effect.gen(function* () {
      if (!(yield* isActive(intent.service))) return
      const registry = yield* Registry
      yield* relaunchRecorded(yield* registry.components(intent.service))
    })
})

export const step = (service: string, running: ReadonlyArray<ComponentRow>) =>
  Saga.step(
    journaled,
    { service },
    Effect.flatMap(ContainerRuntime, (runtime) => Effect.forEach(running, (c) => runtime.remove(c.spec.name), { discard: true })),
    () => null
  )
