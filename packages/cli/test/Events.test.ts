/**
 * `mcp events` lines: the `who` column names the caller of an audit event (`-` for the daemons'
 * own events), and --json carries `who` as the object the daemon sent.
 */
import { describe, expect, it } from "@effect/vitest"
import type { Events } from "@mcp/domain"
import { formatEvent } from "../src/commands/Events.js"

const audit: Events.FleetEvent = {
  at: "2026-01-10T12:00:00Z",
  node: "master",
  kind: "audit",
  service: "web",
  message: "Deploy service=web dryRun=false: ok",
  who: { name: "alice", kind: "human", role: "admin" }
}
const health: Events.FleetEvent = { at: "2026-01-10T12:00:01Z", node: "n1", kind: "health", message: "up -> down: missed heartbeats" }

describe("mcp events", () => {
  it("shows who did what: name, token kind and role", () => {
    expect(formatEvent(audit, false)).toBe("2026-01-10T12:00:00Z  master  audit   web  alice (human/admin)  Deploy service=web dryRun=false: ok")
  })

  it("an event nobody called for shows `-` for who and for a missing service", () => {
    expect(formatEvent(health, false)).toBe("2026-01-10T12:00:01Z  n1  health  -  -  up -> down: missed heartbeats")
  })

  it("--json includes who", () => {
    expect(JSON.parse(formatEvent(audit, true))).toEqual(audit)
    expect(JSON.parse(formatEvent(health, true))).not.toHaveProperty("who")
  })
})
