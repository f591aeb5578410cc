/**
 * The master's view of one node's health, as a pure state machine. The node supervisor feeds it
 * events (a heartbeat arrived, a heartbeat deadline passed, a probe answered) and carries out
 * the actions it returns; keeping it pure lets every transition be tested as data.
 *
 *   unknown --heartbeat--> healthy --N missed--> suspect --probe fails--> unhealthy
 *                                  (or suspected)
 *      ^                      ^                     |                         |
 *      |                      +----probe answers----+<------probe answers-----+
 *      +-- (start)            +<---------------------heartbeat----------------+
 */
import { Data, Schema } from "effect"

export const HealthStatus = Schema.Literal("unknown", "healthy", "suspect", "unhealthy")
export type HealthStatus = typeof HealthStatus.Type

export interface HealthState {
  readonly status: HealthStatus
  /** Heartbeat deadlines passed since the last sign of life. */
  readonly missed: number
  /** True while a probe is out; a second one is never sent on top. */
  readonly probing: boolean
}

export const initialHealth: HealthState = { status: "unknown", missed: 0, probing: false }

export type HealthEvent = Data.TaggedEnum<{
  HeartbeatReceived: {}
  DeadlineMissed: {}
  /**
   * A failure detector judged the silence too long (the phi-accrual detector, PhiAccrual.ts): the
   * node is probed at once, as when missThreshold deadlines have passed.
   */
  Suspected: { readonly reason: string }
  ProbeSucceeded: {}
  ProbeFailed: { readonly reason: string }
}>
export const HealthEvent = Data.taggedEnum<HealthEvent>()

export type HealthAction = Data.TaggedEnum<{
  /** Ask the agent directly, trying each of its addresses in order. */
  Probe: {}
  /** Record a status change in the event log. */
  Transition: { readonly from: HealthStatus; readonly to: HealthStatus; readonly reason: string }
}>
export const HealthAction = Data.taggedEnum<HealthAction>()

export interface HealthPolicy {
  /** Missed deadlines before the node is probed (and, while unhealthy, between re-probes). */
  readonly missThreshold: number
}

export interface HealthStep {
  readonly state: HealthState
  readonly actions: ReadonlyArray<HealthAction>
}

const moveTo = (state: HealthState, to: HealthStatus, reason: string, extra: Partial<HealthState> = {}): HealthStep => ({
  state: { ...state, ...extra, status: to },
  actions: state.status === to ? [] : [HealthAction.Transition({ from: state.status, to, reason })]
})

export const stepHealth = (state: HealthState, event: HealthEvent, policy: HealthPolicy): HealthStep =>
  HealthEvent.$match(event, {
    HeartbeatReceived: () => moveTo(state, "healthy", "heartbeat received", { missed: 0 }),
    ProbeSucceeded: () => moveTo(state, "healthy", "probe answered", { missed: 0, probing: false }),
    ProbeFailed: ({ reason }) =>
      // A probe that fails after a heartbeat already brought the node back changes nothing.
      state.status === "healthy"
        ? { state: { ...state, probing: false }, actions: [] }
        : moveTo(state, "unhealthy", `probe failed: ${reason}`, { probing: false }),
    Suspected: ({ reason }) => {
      if (state.probing) return { state, actions: [] }
      const probe = HealthAction.Probe()
      if (state.status === "healthy" || state.status === "unknown") {
        const step = moveTo(state, "suspect", reason, { probing: true })
        return { state: step.state, actions: [...step.actions, probe] }
      }
      return { state: { ...state, probing: true }, actions: [probe] }
    },
    DeadlineMissed: () => {
      const missed = state.missed + 1
      const due = missed % policy.missThreshold === 0
      if (!due || state.probing) return { state: { ...state, missed }, actions: [] }
      const probe = HealthAction.Probe()
      if (state.status === "healthy" || state.status === "unknown") {
        const step = moveTo(state, "suspect", `${missed} heartbeats missed`, { missed, probing: true })
        return { state: step.state, actions: [...step.actions, probe] }
      }
      // suspect or unhealthy: keep probing every `missThreshold` deadlines so a node whose
      // heartbeats cannot reach the master, but which answers probes, is seen as healthy.
      return { state: { ...state, missed, probing: true }, actions: [probe] }
    }
  })
