import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { HealthState } from "../src/Health.js"
import { HealthEvent, initialHealth, stepHealth } from "../src/Health.js"

const policy = { missThreshold: 3 }

const run = (events: ReadonlyArray<HealthEvent>, from: HealthState = initialHealth) => {
  let state = from
  const actions = []
  for (const e of events) {
    const step = stepHealth(state, e, policy)
    state = step.state
    actions.push(...step.actions)
  }
  return { state, actions }
}

const hb = HealthEvent.HeartbeatReceived()
const miss = HealthEvent.DeadlineMissed()
const ok = HealthEvent.ProbeSucceeded()
const fail = HealthEvent.ProbeFailed({ reason: "connection refused" })

const event = fc.constantFrom<HealthEvent>(hb, miss, ok, fail)

describe("node health state machine", () => {
  it("probes after the threshold of missed heartbeats, then marks unhealthy when the probe fails", () => {
    const healthy = run([hb]).state
    expect(healthy.status).toBe("healthy")
    const twoMissed = run([miss, miss], healthy)
    expect(twoMissed.state.status).toBe("healthy")
    expect(twoMissed.actions).toEqual([])
    const third = stepHealth(twoMissed.state, miss, policy)
    expect(third.state.status).toBe("suspect")
    expect(third.actions.map((a) => a._tag)).toEqual(["Transition", "Probe"])
    const failed = stepHealth(third.state, fail, policy)
    expect(failed.state.status).toBe("unhealthy")
    expect(failed.actions).toEqual([
      { _tag: "Transition", from: "suspect", to: "unhealthy", reason: "probe failed: connection refused" }
    ])
  })

  it("comes back on a heartbeat or on a probe that answers", () => {
    const unhealthy = run([hb, miss, miss, miss, fail]).state
    expect(unhealthy.status).toBe("unhealthy")
    expect(stepHealth(unhealthy, hb, policy).state).toEqual({ status: "healthy", missed: 0, probing: false })
    const reprobe = run([miss, miss, miss], unhealthy)
    expect(reprobe.actions.map((a) => a._tag)).toEqual(["Probe"])
    expect(stepHealth(reprobe.state, ok, policy).state.status).toBe("healthy")
  })

  it("a flapping node alternates cleanly and never stacks probes", () => {
    const { state, actions } = run([hb, miss, miss, miss, fail, miss, miss, miss, hb, ok, miss, miss, miss, fail, hb])
    expect(state).toEqual({ status: "healthy", missed: 0, probing: false })
    expect(actions.filter((a) => a._tag === "Probe")).toHaveLength(3)
    expect(actions.flatMap((a) => (a._tag === "Transition" ? [a.to] : []))).toEqual([
      "healthy", "suspect", "unhealthy", "healthy", "suspect", "unhealthy", "healthy"
    ])
  })

  it.prop("never goes from unhealthy to healthy without a heartbeat or a successful probe", [fc.array(event, { maxLength: 60 })], ([events]) => {
    let state = initialHealth
    for (const e of events) {
      const next = stepHealth(state, e, policy).state
      if (state.status === "unhealthy" && next.status === "healthy") {
        expect(["HeartbeatReceived", "ProbeSucceeded"]).toContain(e._tag)
      }
      if (next.status === "unhealthy") expect(["ProbeFailed", "DeadlineMissed"]).toContain(e._tag)
      state = next
    }
  }, { fastCheck: { numRuns: 2000 } })

  it.prop("at most one probe is out at a time", [fc.array(event, { maxLength: 60 })], ([events]) => {
    let state = initialHealth
    let outstanding = 0
    for (const e of events) {
      const step = stepHealth(state, e, policy)
      if (e._tag === "ProbeSucceeded" || e._tag === "ProbeFailed") outstanding = 0
      outstanding += step.actions.filter((a) => a._tag === "Probe").length
      expect(outstanding).toBeLessThanOrEqual(1)
      state = step.state
    }
  })
})
