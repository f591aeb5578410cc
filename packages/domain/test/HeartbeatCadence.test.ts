import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { baseIntervalMs, type CadencePolicy, detectionBoundMs, firstIntervalMs, nextIntervalMs } from "../src/HeartbeatCadence.js"

const policy = fc.record<CadencePolicy>({
  minIntervalMs: fc.integer({ min: 100, max: 120_000 }),
  maxRate: fc.integer({ min: 1, max: 10_000 }),
  jitter: fc.double({ min: 0, max: 1, noNaN: true })
})
const random = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

describe("HeartbeatCadence: the interval each node is given", () => {
  it.prop(
    "N nodes at their given intervals send at most max_rate heartbeats per second, whatever N and the jitter draws",
    [policy, fc.integer({ min: 1, max: 3_000 }), fc.array(random, { minLength: 1, maxLength: 64 })],
    ([p, nodes, draws]) => {
      // Every node gets one of the draws (cycled): the total is each node's rate summed.
      let perSecond = 0
      for (let i = 0; i < nodes; i++) perSecond += 1000 / nextIntervalMs(p, nodes, draws[i % draws.length]!)
      expect(perSecond).toBeLessThanOrEqual(p.maxRate * (1 + 1e-9))
    },
    { fastCheck: { numRuns: 500 } }
  )

  it.prop(
    "never below the configured interval, never more than the jitter above the base",
    [policy, fc.integer({ min: 0, max: 1_000_000 }), random],
    ([p, nodes, r]) => {
      const base = baseIntervalMs(p, nodes)
      const next = nextIntervalMs(p, nodes, r)
      expect(next).toBeGreaterThanOrEqual(p.minIntervalMs)
      expect(next).toBeGreaterThanOrEqual(base)
      expect(next).toBeLessThanOrEqual(base * (1 + p.jitter))
      // A fleet of a million nodes still has the total bounded: N per base interval.
      expect((nodes * 1000) / base).toBeLessThanOrEqual(p.maxRate * (1 + 1e-9))
    },
    { fastCheck: { numRuns: 2000 } }
  )

  it.prop(
    "a fleet small enough for the rate keeps the configured interval; a larger one only slows down as it grows",
    [policy, fc.integer({ min: 0, max: 100_000 }), fc.integer({ min: 0, max: 100_000 })],
    ([p, a, b]) => {
      const [small, large] = a <= b ? [a, b] : [b, a]
      expect(baseIntervalMs(p, small)).toBeLessThanOrEqual(baseIntervalMs(p, large))
      if (small * 1000 <= p.maxRate * p.minIntervalMs) expect(baseIntervalMs(p, small)).toBe(p.minIntervalMs)
    }
  )

  it.prop(
    "a first interval falls anywhere over one base interval, from the jitter's share of it to the longest",
    [policy, fc.integer({ min: 0, max: 100_000 }), random, random],
    ([p, nodes, r1, r2]) => {
      const base = baseIntervalMs(p, nodes)
      const a = firstIntervalMs(p, nodes, r1)
      expect(a).toBeGreaterThanOrEqual(Math.max(1, Math.floor(base * p.jitter)))
      expect(a).toBeLessThanOrEqual(base * (1 + p.jitter))
      // Uniform over the range: the draw's order is kept, and its place in it (to the millisecond).
      if (r1 < r2) expect(a).toBeLessThanOrEqual(firstIntervalMs(p, nodes, r2))
      expect(Math.abs(a - Math.max(1, base * (p.jitter + r1)))).toBeLessThanOrEqual(1)
    }
  )

  it.prop(
    "the detection bound covers missThreshold of the longest interval a node can be given, plus its probe",
    [policy, fc.integer({ min: 0, max: 100_000 }), random, fc.integer({ min: 1, max: 10 }), fc.integer({ min: 100, max: 30_000 }), fc.integer({ min: 1, max: 4 })],
    ([p, nodes, r, missThreshold, probeTimeoutMs, addresses]) => {
      const bound = detectionBoundMs(p, nodes, { missThreshold, probeTimeoutMs, addresses })
      expect(bound).toBeGreaterThanOrEqual(nextIntervalMs(p, nodes, r) * missThreshold + probeTimeoutMs * addresses)
    }
  )

  it("examples: 20 nodes keep 30 s; 10,000 nodes at 100/s get 100 s, up to 110 s with 10% jitter", () => {
    const p = { minIntervalMs: 30_000, maxRate: 100, jitter: 0.1 }
    expect(nextIntervalMs(p, 20, 0)).toBe(30_000)
    expect(firstIntervalMs(p, 20, 0.5)).toBe(18_000)
    expect(nextIntervalMs(p, 10_000, 0)).toBe(100_000)
    expect(nextIntervalMs(p, 10_000, 0.999999)).toBe(109_999)
    expect(detectionBoundMs(p, 10_000, { missThreshold: 3, probeTimeoutMs: 5_000, addresses: 1 })).toBe(335_000)
    expect(detectionBoundMs(p, 10_000, { missThreshold: 3, probeTimeoutMs: 5_000, addresses: 1, deadlineLatenessMs: 50 })).toBe(335_050)
  })
})
