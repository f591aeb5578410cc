import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import type { HealthState } from "../src/Health.js"
import { HealthAction, HealthEvent, initialHealth, stepHealth } from "../src/Health.js"

const policy = { missThreshold: 3 }

const run = (events: ReadonlyArray<HealthEvent>, from: HealthState = initialHealth, p: { readonly missThreshold: number } = policy) => {
  let state = from
  const actions = []
  for (const e of events) {
    const step = stepHealth(state, e, p)
    state = step.state
    actions.push(...step.actions)
  }
  return { state, actions }
}

const hb = HealthEvent.HeartbeatReceived()
const miss = HealthEvent.DeadlineMissed()
const ok = HealthEvent.ProbeSucceeded()
const fail = HealthEvent.ProbeFailed({ reason: "connection refused" })
const suspected = HealthEvent.Suspected({ reason: "phi 8 reached" })

const event = fc.constantFrom<HealthEvent>(hb, miss, ok, fail, suspected)

const misses = (n: number): Array<HealthEvent> => Array.from({ length: n }, () => miss)
const probe = HealthAction.Probe()
const transition = (from: HealthState["status"], to: HealthState["status"], reason: string) => HealthAction.Transition({ from, to, reason })

/** States along the diagram, reached by events only (threshold 3). */
const healthy: HealthState = { status: "healthy", missed: 0, probing: false }
const suspect = run([hb, miss, miss, miss]).state // probe out
const unhealthy = run([fail], suspect).state // probe answered: failed

describe("probe rules, one example per transition of the diagram", () => {
  it("the reached states are the ones the diagram names", () => {
    expect(suspect).toEqual({ status: "suspect", missed: 3, probing: true })
    expect(unhealthy).toEqual({ status: "unhealthy", missed: 3, probing: false })
  })

  it("unknown -> healthy on a heartbeat, with one Transition naming it", () => {
    expect(stepHealth(initialHealth, hb, policy)).toEqual({ state: healthy, actions: [transition("unknown", "healthy", "heartbeat received")] })
  })

  it("N missed deadlines -> suspect and exactly one Probe, on the N-th and not before (from healthy and from unknown)", () => {
    const before = run(misses(2), healthy)
    expect(before).toEqual({ state: { status: "healthy", missed: 2, probing: false }, actions: [] })
    expect(stepHealth(before.state, miss, policy)).toEqual({
      state: { status: "suspect", missed: 3, probing: true },
      actions: [transition("healthy", "suspect", "3 heartbeats missed"), probe]
    })
    expect(run(misses(3)).actions).toEqual([transition("unknown", "suspect", "3 heartbeats missed"), probe])
    // With a threshold of 1 the first miss is due.
    expect(stepHealth(healthy, miss, { missThreshold: 1 }).actions).toEqual([transition("healthy", "suspect", "1 heartbeats missed"), probe])
  })

  it("further misses while the probe is out send no second Probe, even at later multiples of the threshold", () => {
    const more = run(misses(9), suspect)
    expect(more).toEqual({ state: { status: "suspect", missed: 12, probing: true }, actions: [] })
    // Threshold 1: every miss is due, and still only the first one probes.
    expect(run(misses(5), healthy, { missThreshold: 1 }).actions).toEqual([transition("healthy", "suspect", "1 heartbeats missed"), probe])
    // A heartbeat brings the node back but does not answer the probe: misses after it do not stack a probe either.
    const back = run([hb, ...misses(6)], suspect)
    expect(back.actions).toEqual([transition("suspect", "healthy", "heartbeat received")])
    expect(back.state).toEqual({ status: "healthy", missed: 6, probing: true })
  })

  it("ProbeFailed while suspect -> unhealthy, with the reason", () => {
    expect(stepHealth(suspect, fail, policy)).toEqual({
      state: { status: "unhealthy", missed: 3, probing: false },
      actions: [transition("suspect", "unhealthy", "probe failed: connection refused")]
    })
  })

  it("while unhealthy, a Probe every N misses, one at a time, and no Transition while it stays unhealthy", () => {
    const first = run(misses(3), unhealthy)
    expect(first).toEqual({ state: { status: "unhealthy", missed: 6, probing: true }, actions: [probe] })
    // Unanswered: three, six more misses send nothing.
    expect(run(misses(6), first.state)).toEqual({ state: { status: "unhealthy", missed: 12, probing: true }, actions: [] })
    // Answered (failed again): no Transition, and the next probe comes N misses later.
    const failedAgain = stepHealth(first.state, fail, policy)
    expect(failedAgain).toEqual({ state: { status: "unhealthy", missed: 6, probing: false }, actions: [] })
    expect(run(misses(2), failedAgain.state).actions).toEqual([])
    expect(run(misses(3), failedAgain.state).actions).toEqual([probe])
  })

  it("ProbeSucceeded -> healthy with the missed count reset, from suspect and from unhealthy", () => {
    expect(stepHealth(suspect, ok, policy)).toEqual({ state: healthy, actions: [transition("suspect", "healthy", "probe answered")] })
    const reprobing = run(misses(3), unhealthy).state
    expect(stepHealth(reprobing, ok, policy)).toEqual({ state: healthy, actions: [transition("unhealthy", "healthy", "probe answered")] })
    // After the reset, a full N misses are needed before the next probe.
    expect(run(misses(2), stepHealth(suspect, ok, policy).state).actions).toEqual([])
  })

  it("a heartbeat while suspect or unhealthy -> healthy, with missed reset", () => {
    expect(stepHealth(suspect, hb, policy)).toEqual({
      state: { status: "healthy", missed: 0, probing: true },
      actions: [transition("suspect", "healthy", "heartbeat received")]
    })
    expect(stepHealth(unhealthy, hb, policy)).toEqual({ state: healthy, actions: [transition("unhealthy", "healthy", "heartbeat received")] })
  })

  it("ProbeFailed after a heartbeat made the node healthy changes nothing but ends the probe", () => {
    const back = stepHealth(suspect, hb, policy).state
    expect(stepHealth(back, fail, policy)).toEqual({ state: healthy, actions: [] })
    // Likewise with some misses since the heartbeat: still healthy, the count kept.
    const later = run([miss, miss], back).state
    expect(stepHealth(later, fail, policy)).toEqual({ state: { status: "healthy", missed: 2, probing: false }, actions: [] })
  })

  it("Transition actions only on an actual status change", () => {
    expect(stepHealth(healthy, hb, policy).actions).toEqual([])
    expect(stepHealth(healthy, ok, policy)).toEqual({ state: healthy, actions: [] })
    expect(stepHealth(unhealthy, fail, policy)).toEqual({ state: unhealthy, actions: [] })
    expect(stepHealth(run(misses(3), unhealthy).state, miss, policy).actions).toEqual([])
    const { actions } = run([hb, hb, ...misses(3), miss, fail, fail, miss, miss, hb, hb, ok])
    expect(actions.flatMap((a) => (a._tag === "Transition" ? [[a.from, a.to, a.reason]] : []))).toEqual([
      ["unknown", "healthy", "heartbeat received"],
      ["healthy", "suspect", "3 heartbeats missed"],
      ["suspect", "unhealthy", "probe failed: connection refused"],
      ["unhealthy", "healthy", "heartbeat received"]
    ])
  })
})

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
      // Only a failed probe makes a node unhealthy; any other event leaves an unhealthy one so at most.
      if (next.status === "unhealthy" && state.status !== "unhealthy") expect(e._tag).toBe("ProbeFailed")
      state = next
    }
  }, { fastCheck: { numRuns: 2000 } })

  /**
   * What the supervisor does, as commands: an answer is delivered only while a probe is out (it
   * answers that probe); a stray result (a late or duplicated answer) only while none is out.
   * Misses dominate, so sequences run past several multiples of the threshold with a probe out.
   */
  type Command = "heartbeat" | "miss" | "suspected" | "answer-ok" | "answer-fail" | "stray-ok" | "stray-fail"
  const command = fc.oneof(
    { weight: 6, arbitrary: fc.constant<Command>("miss") },
    { weight: 1, arbitrary: fc.constant<Command>("suspected") },
    { weight: 1, arbitrary: fc.constant<Command>("heartbeat") },
    { weight: 2, arbitrary: fc.constantFrom<Array<Command>>("answer-ok", "answer-fail") },
    { weight: 1, arbitrary: fc.constantFrom<Array<Command>>("stray-ok", "stray-fail") }
  )

  it.prop(
    "at most one probe is out at a time: no Probe until the outstanding one is answered",
    [fc.integer({ min: 1, max: 4 }), fc.array(command, { minLength: 20, maxLength: 80 })],
    ([missThreshold, commands]) => {
      let state = initialHealth
      let outstanding = 0
      const trace: Array<string> = []
      for (const c of commands) {
        let e: HealthEvent
        if (c === "heartbeat") e = hb
        else if (c === "miss") e = miss
        else if (c === "suspected") e = suspected
        else if (c.startsWith("answer")) {
          if (outstanding === 0) continue
          outstanding -= 1
          e = c === "answer-ok" ? ok : fail
        } else {
          if (outstanding > 0) continue
          e = c === "stray-ok" ? ok : fail
        }
        const step = stepHealth(state, e, { missThreshold })
        outstanding += step.actions.filter((a) => a._tag === "Probe").length
        trace.push(`${e._tag} -> ${step.state.status}/${step.state.missed}${step.actions.some((a) => a._tag === "Probe") ? " +Probe" : ""}`)
        expect(outstanding, `threshold ${missThreshold}:\n${trace.join("\n")}`).toBeLessThanOrEqual(1)
        expect(step.state.probing, `probing flag, threshold ${missThreshold}:\n${trace.join("\n")}`).toBe(outstanding === 1)
        // A failed probe answers for a node that was not healthy; one that is healthy again stays so.
        if (e._tag === "ProbeFailed" && state.status === "healthy") expect(step.state.status, trace.join("\n")).toBe("healthy")
        state = step.state
      }
    }
  )
})

describe("Suspected (the phi detector's verdict)", () => {
  it("a healthy node is suspected and probed at once, without waiting for missThreshold deadlines", () => {
    const { state, actions } = run([suspected], healthy)
    expect(state).toEqual({ status: "suspect", missed: 0, probing: true })
    expect(actions).toEqual([transition("healthy", "suspect", "phi 8 reached"), probe])
  })
  it("while a probe is out it changes nothing; an unhealthy node is probed again", () => {
    expect(run([suspected], suspect)).toEqual({ state: suspect, actions: [] })
    expect(run([suspected], unhealthy)).toEqual({ state: { ...unhealthy, probing: true }, actions: [probe] })
  })
  it("then deadlines re-probe every missThreshold, as with the fixed detector", () => {
    const after = run([suspected, ok, miss, miss, miss], healthy)
    expect(after.state).toEqual({ status: "suspect", missed: 3, probing: true })
    expect(after.actions.filter((a) => a._tag === "Probe")).toHaveLength(2)
  })
})
