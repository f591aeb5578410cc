// The managed HAProxy's pure parts: the restart backoff and its `mcp tree` entry. Its life with a
// real HAProxy (restart after a kill, reload, stop with the agent) is in test/ManagedProxy.test.ts.
import { describe, expect, it } from "@effect/vitest"
import { Duration } from "effect"
import { nextBackoff, treeEntry } from "../src/proxy/ManagedHaproxy.js"

const backoff = { initial: Duration.millis(500), max: Duration.seconds(30), stableAfter: Duration.seconds(60) }

describe("managed HAProxy", () => {
  it("doubles the wait after each short life up to the maximum, and starts over after a stable one", () => {
    const waits: Array<number> = []
    let wait: Duration.Duration | undefined = undefined
    for (let i = 0; i < 10; i++) {
      wait = nextBackoff(wait, 100, backoff)
      waits.push(Duration.toMillis(wait))
    }
    expect(waits).toEqual([500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000, 30000])
    expect(Duration.toMillis(nextBackoff(Duration.seconds(30), 60_000, backoff))).toBe(500)
    expect(Duration.toMillis(nextBackoff(Duration.seconds(30), 59_999, backoff))).toBe(30_000)
  })

  it("shows its phase, pid, uptime, restarts and last error in the tree", () => {
    const now = 1_000_000
    expect(treeEntry({ current: { phase: "running", pid: 42, since: now - 125_000 }, restarts: 0 }, now)).toEqual({
      name: "proxy (haproxy, managed)", state: "running, pid 42, up 2m 5s", restarts: 0, children: []
    })
    expect(treeEntry({ current: { phase: "starting", pid: 43 }, restarts: 1, lastError: "exited with code 1" }, now)).toEqual({
      name: "proxy (haproxy, managed)", state: "starting, pid 43", restarts: 1, lastError: "exited with code 1", children: []
    })
    expect(treeEntry({ current: { phase: "restarting", at: now + 4000 }, restarts: 2, lastError: "ended: signal SIGKILL" }, now).state).toBe("restarting in 4s")
  })
})
