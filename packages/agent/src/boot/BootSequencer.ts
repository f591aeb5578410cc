/**
 * Brings a node's services up in health-gated stages after the agent starts (e.g. dns, then
 * core, then management, then apps), recreating lost containers from the registry, and keeps
 * watching: when a service of an earlier stage fails its checks repeatedly, it is restarted
 * first and the later stages are re-gated behind it (rest_for_one).
 *
 * This module is the service the daemon and the tests hold; the work is in its own modules:
 * the sequence from start to supervision (Sequence), the stage runner (Stages), the checks
 * that gate a service (Checks) and the explicit ones' probes (Probes), supervision
 * (Supervision), the status (Status), and what they share (Model).
 */
import type { HttpClient } from "@effect/platform"
import { Context, Effect, Ref } from "effect"
import type { ContainerRuntime } from "../engine/ContainerRuntime.js"
import type { Lifecycle } from "../lifecycle/Lifecycle.js"
import type { ServiceActors } from "../lifecycle/ServiceActors.js"
import type { NodeSettings } from "../NodeSettings.js"
import type { Registry } from "../registry/Registry.js"
import type { BootSettings, StageState } from "./Model.js"
import { run } from "./Sequence.js"
import { BootStates, status } from "./Status.js"

export type { BootSettings, Stage, StageCheck } from "./Model.js"

/** What the sequence runs against, besides the status this service adds. */
type Ports = Registry | ContainerRuntime | Lifecycle | ServiceActors | NodeSettings | HttpClient.HttpClient

export class BootSequencer extends Effect.Service<BootSequencer>()("@mcp/agent/BootSequencer", {
  effect: Effect.gen(function* () {
    const ports = yield* Effect.context<Ports>()
    const states = yield* Ref.make<ReadonlyArray<StageState>>([])
    const context = Context.add(ports, BootStates, states)
    const bound = <A, E>(effect: Effect.Effect<A, E, Ports | BootStates>): Effect.Effect<A, E> => Effect.provide(effect, context)
    return {
      run: (boot: BootSettings): Effect.Effect<void> => bound(run(boot)),
      status: bound(status)
    } as const
  })
}) {}
