import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { initial, phi, phiAfter, type PhiPolicy, type PhiState, recordArrival, statistics, suspectAfterMs } from "../src/PhiAccrual.js"

const policy = fc.record<PhiPolicy>({
  threshold: fc.double({ min: 1, max: 12, noNaN: true }),
  windowSize: fc.integer({ min: 2, max: 200 }),
  minStdDevMs: fc.integer({ min: 1, max: 2_000 }),
  acceptablePauseMs: fc.integer({ min: 0, max: 5_000 })
})

/** A node's history: the expected interval, then heartbeats at gaps around it. */
const history = fc.record({
  expected: fc.integer({ min: 100, max: 60_000 }),
  gaps: fc.array(fc.double({ min: 0.1, max: 3, noNaN: true }), { maxLength: 60 })
})

const replay = (expected: number, gaps: ReadonlyArray<number>, p: PhiPolicy): PhiState => {
  let state = recordArrival(initial(expected), 0, p)
  let at = 0
  for (const g of gaps) {
    at += Math.round(g * expected)
    state = recordArrival(state, at, p)
  }
  return state
}

describe("PhiAccrual: suspicion from a node's own arrival history", () => {
  it.prop(
    "phi never decreases while the silence lasts",
    [policy, history, fc.array(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 2, maxLength: 20 })],
    ([p, h, times]) => {
      const state = replay(h.expected, h.gaps, p)
      const sorted = [...times].sort((a, b) => a - b)
      for (let i = 1; i < sorted.length; i++) expect(phiAfter(state, sorted[i]!, p)).toBeGreaterThanOrEqual(phiAfter(state, sorted[i - 1]!, p))
    },
    { fastCheck: { numRuns: 1000 } }
  )

  it.prop(
    "suspectAfterMs is the first millisecond at which phi reaches the threshold",
    [policy, history],
    ([p, h]) => {
      const state = replay(h.expected, h.gaps, p)
      const t = suspectAfterMs(state, p)
      expect(phiAfter(state, t, p)).toBeGreaterThanOrEqual(p.threshold)
      if (t > 0) expect(phiAfter(state, t - 1, p)).toBeLessThan(p.threshold)
      // Never sooner than the mean (phi there is at most log10(2)), and within 7 deviations for thresholds up to 12.
      const { mean, stdDev } = statistics(state, p)
      expect(t).toBeGreaterThanOrEqual(Math.floor(mean))
      expect(t).toBeLessThanOrEqual(Math.ceil(mean + 7 * stdDev) + 1)
    },
    { fastCheck: { numRuns: 2000 } }
  )

  it.prop(
    "heartbeats that keep within J of their interval are never suspected when the deviation assumed is at least J and the threshold at least 2",
    [
      fc.integer({ min: 100, max: 60_000 }),
      fc.double({ min: 0, max: 0.25, noNaN: true }),
      fc.array(fc.double({ min: -1, max: 1, noNaN: true }), { minLength: 1, maxLength: 300 }),
      fc.integer({ min: 2, max: 200 }),
      fc.double({ min: 2, max: 12, noNaN: true }),
      fc.integer({ min: 0, max: 1_000 })
    ],
    ([interval, jitterFraction, draws, windowSize, threshold, acceptablePauseMs]) => {
      const jitter = Math.floor(interval * jitterFraction)
      const p: PhiPolicy = { threshold, windowSize, minStdDevMs: Math.max(1, jitter), acceptablePauseMs }
      let state = recordArrival(initial(interval), 0, p)
      let at = 0
      for (const d of draws) {
        const gap = interval + Math.round(d * jitter)
        // Judged before the heartbeat is recorded: was the node already suspected when it arrived?
        expect(gap).toBeLessThan(suspectAfterMs(state, p))
        at += gap
        state = recordArrival(state, at, p)
      }
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "the window keeps only the most recent windowSize intervals; a heartbeat older than the last changes nothing",
    [policy, history, fc.integer({ min: 1, max: 1_000 })],
    ([p, h, back]) => {
      const state = replay(h.expected, h.gaps, p)
      expect(state.intervals.length).toBeLessThanOrEqual(Math.max(p.windowSize, 2))
      const last = state.intervals[state.intervals.length - 1]!
      if (h.gaps.length > 0) expect(last).toBe(Math.round(h.gaps[h.gaps.length - 1]! * h.expected))
      expect(recordArrival(state, state.lastArrival! - back, p)).toBe(state)
    }
  )

  it("examples: nothing is suspected before the first heartbeat; a clockwork 1 s node is suspected a little after 1 s, a jittery one later", () => {
    const p: PhiPolicy = { threshold: 8, windowSize: 100, minStdDevMs: 50, acceptablePauseMs: 0 }
    expect(phi(initial(1000), 1_000_000, p)).toBe(0)
    let steady = recordArrival(initial(1000), 0, p)
    let jittery = steady
    for (let i = 1; i <= 100; i++) {
      steady = recordArrival(steady, i * 1000, p)
      jittery = recordArrival(jittery, i * 1000 + (i % 2 === 0 ? 300 : -300), p)
    }
    const steadyAfter = suspectAfterMs(steady, p)
    const jitteryAfter = suspectAfterMs(jittery, p)
    expect(steadyAfter).toBeGreaterThan(1000)
    expect(steadyAfter).toBeLessThan(1400) // mean 1000, deviation 50: about 5.6 deviations
    expect(jitteryAfter).toBeGreaterThan(steadyAfter + 1000)
    expect(phi(steady, 100_000 + steadyAfter, p)).toBeGreaterThanOrEqual(8)
  })
})
