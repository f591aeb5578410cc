/**
 * The boot status: every stage's state, its latest check results and timings, as `mcp boot
 * status` shows them. One Ref per sequencer, written by the stage runner and supervision.
 */
import type { Operations } from "@mcp/domain"
import { Context, Effect, Ref } from "effect"
import { NodeSettings } from "../NodeSettings.js"
import type { Stage, StageState } from "./Model.js"

export type BootStates = Ref.Ref<ReadonlyArray<StageState>>
export const BootStates = Context.GenericTag<BootStates>("@mcp/agent/boot/BootStates")

const waiting = (s: Stage): StageState => ({ name: s.name, state: "waiting", services: [...s.services], checks: [], attempts: 0 })

/** Every stage waiting, none tried: the status at the start of a sequence. */
export const reset = (stages: ReadonlyArray<Stage>) => Effect.flatMap(BootStates, (states) => Ref.set(states, stages.map(waiting)))

/**
 * The status made to follow the stages as they are now (the implicit last stage changes as
 * services are deployed and undeployed): each stage keeps its state and lists its current
 * services, a stage new to it is added waiting, one no longer there is dropped. Returns the
 * names of the stages added.
 */
export const follow = (stages: ReadonlyArray<Stage>) =>
  Effect.flatMap(BootStates, (states) =>
    Ref.modify(states, (all): [ReadonlyArray<string>, ReadonlyArray<StageState>] => {
      const known = new Map(all.map((s) => [s.name, s]))
      const next = stages.map((s) => {
        const state = known.get(s.name)
        return state === undefined ? waiting(s) : { ...state, services: [...s.services] }
      })
      return [stages.filter((s) => !known.has(s.name)).map((s) => s.name), next]
    }))

export const update = (name: string, f: (s: StageState) => StageState) =>
  Effect.flatMap(BootStates, (states) => Ref.update(states, (all) => all.map((s) => (s.name === name ? f(s) : s))))

export const stageState = (name: string) =>
  Effect.map(Effect.flatMap(BootStates, Ref.get), (all) => all.find((s) => s.name === name))

export const status: Effect.Effect<Operations.BootStatus, never, BootStates | NodeSettings> = Effect.gen(function* () {
  const settings = yield* NodeSettings
  return { node: settings.node, stages: yield* Ref.get(yield* BootStates) }
})
