/**
 * A phi-accrual failure detector (Hayashibara et al., as in Akka and Cassandra), a pure state
 * machine: it keeps a window of a node's recent heartbeat inter-arrival times and, instead of a
 * yes/no deadline, says how unlikely the silence so far is given that history:
 *
 *   phi(t) = -log10(1 - F(t - last)),  F the normal CDF with the window's mean and deviation
 *
 * phi 1 means a 10% chance the node is still alive and only late, phi 8 one in 10^8. A node whose
 * heartbeats arrive like clockwork is suspected soon after its usual interval; one on a jittery
 * link is given proportionally longer, so a slow network does not read as a dead node.
 *
 * The master uses it beside the fixed miss threshold ([heartbeat] detector = "phi"): the
 * supervisor asks `suspectAfterMs` when the silence will cross the threshold and arms its timer
 * for then, so nothing polls.
 */

export interface PhiPolicy {
  /** The phi at which the node is suspected (and probed): 8 is Akka's default. */
  readonly threshold: number
  /** How many recent inter-arrival times are kept. */
  readonly windowSize: number
  /**
   * The smallest standard deviation assumed, ms: without it a perfectly regular node would be
   * suspected the moment a heartbeat is a millisecond late.
   */
  readonly minStdDevMs: number
  /** Added to the mean: a pause this long (a GC, a busy link) is never suspicious on its own. */
  readonly acceptablePauseMs: number
}

export interface PhiState {
  /** The most recent inter-arrival times, oldest first, at most windowSize. */
  readonly intervals: ReadonlyArray<number>
  /** When the last heartbeat arrived, ms; undefined before the first. */
  readonly lastArrival: number | undefined
}

/**
 * Before any history, the window holds the expected interval as if two heartbeats had come on
 * time, with a deviation of a quarter of it (as Akka bootstraps), so the first silence is judged
 * against the cadence the master asked for.
 */
export const initial = (expectedIntervalMs: number): PhiState => ({
  intervals: [expectedIntervalMs - expectedIntervalMs / 4, expectedIntervalMs + expectedIntervalMs / 4],
  lastArrival: undefined
})

/** A heartbeat arrived at `at` (ms). Arrivals out of order (an earlier `at`) only move nothing. */
export const recordArrival = (state: PhiState, at: number, policy: PhiPolicy): PhiState => {
  if (state.lastArrival === undefined) return { ...state, lastArrival: at }
  if (at < state.lastArrival) return state
  const intervals = [...state.intervals, at - state.lastArrival]
  return { intervals: intervals.length > policy.windowSize ? intervals.slice(intervals.length - policy.windowSize) : intervals, lastArrival: at }
}

/** The window's mean (plus the acceptable pause) and standard deviation (at least the minimum). */
export const statistics = (state: PhiState, policy: PhiPolicy): { readonly mean: number; readonly stdDev: number } => {
  const n = state.intervals.length
  const mean = state.intervals.reduce((a, b) => a + b, 0) / n
  const variance = state.intervals.reduce((a, b) => a + (b - mean) * (b - mean), 0) / n
  return { mean: mean + policy.acceptablePauseMs, stdDev: Math.max(Math.sqrt(variance), policy.minStdDevMs) }
}

/**
 * phi after `elapsedMs` of silence, with Akka's logistic approximation of the normal CDF (close
 * to the exact tail and cheap; far past the mean it reaches Infinity, which is simply "past any
 * threshold"). It grows with the silence.
 */
export const phiAfter = (state: PhiState, elapsedMs: number, policy: PhiPolicy): number => {
  const { mean, stdDev } = statistics(state, policy)
  const y = (elapsedMs - mean) / stdDev
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
  return elapsedMs > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e))
}

/** phi at time `now` (ms); 0 before the first heartbeat (nothing is expected yet). */
export const phi = (state: PhiState, now: number, policy: PhiPolicy): number =>
  state.lastArrival === undefined ? 0 : phiAfter(state, Math.max(0, now - state.lastArrival), policy)

/**
 * How long after the last heartbeat phi reaches the threshold: the first whole millisecond at
 * which it does, when the supervisor should suspect the node if nothing arrives. phi grows with
 * the silence, so a bisection over whole milliseconds finds it; the upper bound doubles from the
 * mean until phi is past the threshold.
 */
export const suspectAfterMs = (state: PhiState, policy: PhiPolicy): number => {
  if (phiAfter(state, 0, policy) >= policy.threshold) return 0
  const { mean, stdDev } = statistics(state, policy)
  let low = 0 // phi below the threshold here
  let high = Math.max(1, Math.ceil(mean + stdDev))
  while (phiAfter(state, high, policy) < policy.threshold) {
    low = high
    high *= 2
  }
  while (high - low > 1) {
    const mid = Math.floor((low + high) / 2)
    if (phiAfter(state, mid, policy) < policy.threshold) low = mid
    else high = mid
  }
  return high
}
