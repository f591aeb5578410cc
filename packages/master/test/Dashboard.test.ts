import { describe, expect, it } from "@effect/vitest"
import { Principal } from "@mcp/rpc/Principal"
import { Effect, Option, Redacted, TestClock } from "effect"
import { escape, html } from "../src/dashboard/Html.js"
import * as Pages from "../src/dashboard/Pages.js"
import * as Sessions from "../src/dashboard/Sessions.js"

const HOSTILE = `<script>alert("x")</script>'&`
const NOW = Date.parse("2026-06-01T12:00:00Z")

/** Every field holds `name`; names are checked on the way in, so the branded ones are forced here (the page must escape them anyway). */
const picture = (name: string): Pages.FleetPicture => ({
  now: NOW,
  nodes: [{
    info: { name: name as never, role: "worker", addresses: ["127.0.0.1:1"], arch: name, version: name },
    health: "healthy",
    lastHeartbeat: new Date(NOW - 2_000).toISOString(),
    resources: { cpuCores: 2, load1: 0.5, memoryTotalBytes: 2 ** 32, memoryFreeBytes: 2 ** 31, diskTotalBytes: 2 ** 36, diskFreeBytes: 2 ** 35, containers: 3 }
  }],
  services: [{
    service: name,
    node: name as never,
    active: true,
    components: [{ name, image: name, version: name, state: "unhealthy", routes: [{ hostname: name, listener: 8443, mode: "l7", hostPort: 30000 }], restarts: 0 }],
    warnings: [name],
    certificates: [{ hostname: name, notAfter: new Date(NOW + 10 * 86_400_000).toISOString() }]
  }],
  unreachable: [{ node: name, reason: name }],
  hostnames: [{ hostname: name as never, edgeNode: name, workerNode: name, backendHostname: name, backendPort: 8443, service: name, certSerial: name, certNotAfter: new Date(NOW + 60 * 86_400_000).toISOString() }],
  dns: new Map([[name, { hostname: name, edgeNode: name, ok: false, resolvesTo: [], problem: name, fix: name }]]),
  heartbeats: { nodes: 1, series: [{ node: name, points: [[NOW - 60_000, 1], [NOW, 2]] }] },
  deploys: [{ service: name, endedAt: NOW - 1_000, durationMs: 2_500, result: name }]
})

describe("dashboard pages", () => {
  it("escape every value from the fleet: no markup of a name reaches the page", () => {
    const page = Pages.dashboard({ name: HOSTILE, role: "guest" }, picture(HOSTILE), HOSTILE).text
    expect(page).not.toContain("<script>alert")
    expect(page).not.toContain(`"x"`)
    expect(page).toContain(escape(HOSTILE))
    // The only script is the master's own file.
    expect(page.match(/<script/g)).toHaveLength(1)
    expect(page).toContain(`<script src="/ui/app.js"></script>`)
    // Nothing inline that a strict Content-Security-Policy would refuse.
    expect(page).not.toMatch(/ style=| on[a-z]+=/)
  })

  it("show the figures: heartbeat age, certificate days, the charts' series and marks", () => {
    const parts = Pages.parts(picture("w1")).text
    expect(parts).toContain(`data-node="w1" data-health="healthy"`)
    expect(parts).toContain("<td>2 s</td>")
    expect(parts).toMatch(/w1: <span class="bad" title="[^"]+">10 d<\/span>/)
    expect(parts).toMatch(/<span class="" title="[^"]+">60 d<\/span>/)
    expect(parts).toContain(`<polyline points="`)
    expect(parts).toContain(`<circle`)
    expect(parts).toContain("w1: not asked or did not answer")
  })

  it("say so when there is nothing to show", () => {
    const empty: Pages.FleetPicture = { now: NOW, nodes: [], services: [], unreachable: [], hostnames: [], dns: new Map(), heartbeats: { nodes: 0, series: [] }, deploys: [] }
    const parts = Pages.parts(empty).text
    expect(parts).toContain("No node has registered.")
    expect(parts).toContain("No service is deployed.")
    expect(parts).toContain("No public hostname is routed.")
  })

  it("html keeps fragments and drops nothing but nullish and false", () => {
    expect(html`<b>${"<i>"}</b>${html`<i>${1}</i>`}${[html`<u>`, "&"]}${undefined}${false}${0}`.text).toBe("<b>&lt;i&gt;</b><i>1</i><u>&amp;0")
  })
})

describe("dashboard sessions", () => {
  const principal = new Principal({ name: "viewer", kind: "human", role: "guest" })
  const token = Redacted.make("secret")

  it.effect("end after their time to live, and the oldest goes first beyond the cap", () =>
    Effect.gen(function* () {
      const sessions = Sessions.make({ ttlMs: 60_000, max: 2, maxPerPrincipal: 5 })
      const a = yield* sessions.open(token, principal)
      const b = yield* sessions.open(token, principal)
      expect(a).not.toBe(b)
      expect(a).toMatch(/^[A-Za-z0-9_-]{43}$/)
      const c = yield* sessions.open(token, principal)
      expect(Option.isNone(yield* sessions.find(a))).toBe(true)
      expect(Option.isSome(yield* sessions.find(b))).toBe(true)
      yield* TestClock.adjust(60_000)
      expect(Option.isNone(yield* sessions.find(c))).toBe(true)
      expect(yield* sessions.size).toBe(1)
    }))

  it.effect("one token signing in again and again pushes out its own sessions, not others'", () =>
    Effect.gen(function* () {
      const sessions = Sessions.make({ ttlMs: 60_000, max: 10, maxPerPrincipal: 2 })
      const other = yield* sessions.open(token, new Principal({ name: "other", kind: "human", role: "user" }))
      const mine = [yield* sessions.open(token, principal), yield* sessions.open(token, principal), yield* sessions.open(token, principal)]
      expect(Option.isSome(yield* sessions.find(other))).toBe(true)
      expect(Option.isNone(yield* sessions.find(mine[0]!))).toBe(true)
      expect(Option.isSome(yield* sessions.find(mine[2]!))).toBe(true)
      expect(yield* sessions.size).toBe(3)
    }))

  it("read their cookie, and set it HttpOnly, Secure and SameSite=Strict", () => {
    expect(Sessions.sessionId("a=1; mcp_session=abc=; b=2")).toBe("abc=")
    expect(Sessions.sessionId("mcp_sessionx=1")).toBeUndefined()
    expect(Sessions.sessionId(undefined)).toBeUndefined()
    expect(Sessions.cookie("id", 60)).toBe("mcp_session=id; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=60")
  })

  it("accept a post only from the dashboard's own origin", () => {
    expect(Sessions.sameOrigin({ host: "m:8443", origin: "https://m:8443" })).toBe(true)
    expect(Sessions.sameOrigin({ host: "m:8443", referer: "https://m:8443/ui" })).toBe(true)
    expect(Sessions.sameOrigin({ host: "m:8443", origin: "https://evil.example" })).toBe(false)
    expect(Sessions.sameOrigin({ host: "m:8443", origin: "http://m:8443" })).toBe(false)
    expect(Sessions.sameOrigin({ host: "m:8443", origin: "null" })).toBe(false)
    expect(Sessions.sameOrigin({ host: "m:8443" })).toBe(false)
    expect(Sessions.sameOrigin({ host: "m:8443", referer: "not a url" })).toBe(false)
    expect(Sessions.sameOrigin({ origin: "https://m:8443" })).toBe(false)
  })
})
