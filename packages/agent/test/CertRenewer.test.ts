import { describe, expect, it } from "@effect/vitest"
import { Clock, Duration, Effect, FastCheck, Fiber, HashSet, Logger, LogLevel, Ref, TestClock } from "effect"
import { DEFAULT_MARGIN, makeRenewer, type RenewableCertificate, renewDue, runRenewer } from "../src/certs/CertRenewer.js"

const DAY = 24 * 3600 * 1000
const at = (ms: number): string => new Date(ms).toISOString()
const cert = (hostname: string, notAfterMs: number): RenewableCertificate & { readonly serial: string } => ({
  hostname,
  notAfter: at(notAfterMs),
  serial: hostname
})

describe("renewDue", () => {
  const now = Date.parse("2030-01-01T00:00:00Z")

  it("selects certificates expiring within the margin and expired ones, soonest first", () => {
    const certs = [
      cert("later.test", now + 60 * DAY),
      cert("soon.test", now + 10 * DAY),
      cert("expired.test", now - DAY),
      cert("edge.test", now + 30 * DAY),
      cert("just-after-edge.test", now + 30 * DAY + 1)
    ]
    expect(renewDue(certs, now).map((c) => c.hostname)).toEqual(["expired.test", "soon.test", "edge.test"])
  })

  it("defaults to a 30-day margin, takes a Date or epoch millis, and keeps the caller's fields", () => {
    expect(Duration.toMillis(DEFAULT_MARGIN)).toBe(30 * DAY)
    const certs = [cert("a.test", now + 29 * DAY), cert("b.test", now + 31 * DAY)]
    const due = renewDue(certs, new Date(now))
    expect(due).toEqual(renewDue(certs, now, "30 days"))
    expect(due[0]?.serial).toBe("a.test")
    expect(renewDue(certs, now, "45 days").map((c) => c.hostname)).toEqual(["a.test", "b.test"])
    expect(renewDue(certs, now, Duration.zero)).toEqual([])
  })

  it("treats an unreadable expiry as due, ahead of everything else", () => {
    const certs = [cert("soon.test", now + DAY), { hostname: "garbled.test", notAfter: "next tuesday", serial: "x" }]
    expect(renewDue(certs, now).map((c) => c.hostname)).toEqual(["garbled.test", "soon.test"])
  })

  it.prop(
    "selects exactly the certificates expiring within the margin",
    {
      offsets: FastCheck.array(FastCheck.integer({ min: -100 * DAY, max: 100 * DAY }), { maxLength: 30 }),
      marginDays: FastCheck.integer({ min: 0, max: 90 })
    },
    ({ marginDays, offsets }) => {
      const certs = offsets.map((offset, i) => cert(`c${i}.test`, now + offset))
      const due = renewDue(certs, now, Duration.days(marginDays))
      const dueSet = new Set(due)
      for (const c of certs) expect(dueSet.has(c)).toBe(Date.parse(c.notAfter) <= now + marginDays * DAY)
      const times = due.map((c) => Date.parse(c.notAfter))
      expect(times).toEqual([...times].sort((a, b) => a - b))
    }
  )
})

// ---------------------------------------------------------------------------------------------

interface Store {
  readonly certs: Ref.Ref<ReadonlyArray<RenewableCertificate>>
  readonly renewals: Ref.Ref<ReadonlyArray<string>>
}

const makeStore = (certs: ReadonlyArray<RenewableCertificate>) =>
  Effect.map(Effect.all([Ref.make(certs), Ref.make<ReadonlyArray<string>>([])]), ([c, r]): Store => ({ certs: c, renewals: r }))

/** Renewing replaces the certificate with one valid for 90 days from the (test) clock's now. */
const renewIn = (store: Store) => (c: RenewableCertificate) =>
  Effect.gen(function*() {
    const now = yield* Clock.currentTimeMillis
    yield* Ref.update(store.renewals, (r) => [...r, c.hostname])
    yield* Ref.update(store.certs, (all) => all.map((x) => (x.hostname === c.hostname ? { ...x, notAfter: at(now + 90 * DAY) } : x)))
  })

const captureLogs = Effect.map(Ref.make<ReadonlyArray<{ level: string; message: string }>>([]), (logs) => ({
  logs,
  layer: Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ logLevel, message }) => {
      Effect.runSync(Ref.update(logs, (l) => [...l, { level: logLevel.label, message: Array.isArray(message) ? message.join(" ") : String(message) }]))
    })
  )
}))

describe("runRenewer", () => {
  it.effect("renews due certificates at start and each round, and nothing else", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([cert("soon.test", 10 * DAY), cert("later.test", 60 * DAY)])
      const fiber = yield* Effect.fork(runRenewer({ every: "1 day", list: Ref.get(store.certs), renew: renewIn(store) }))
      yield* TestClock.adjust(0)
      expect(yield* Ref.get(store.renewals)).toEqual(["soon.test"])

      // later.test enters the 30-day margin 30 days in (the round on day 30); the renewed
      // soon.test (90 days from day 0) does not.
      yield* TestClock.adjust(Duration.days(29))
      expect(yield* Ref.get(store.renewals)).toEqual(["soon.test"])
      yield* TestClock.adjust(Duration.days(1))
      expect(yield* Ref.get(store.renewals)).toEqual(["soon.test", "later.test"])
      yield* TestClock.adjust(Duration.days(10))
      expect(yield* Ref.get(store.renewals)).toEqual(["soon.test", "later.test"])

      yield* Fiber.interrupt(fiber)
      // 60 days on, both would be due again: an interrupted renewer renews nothing.
      yield* TestClock.adjust(Duration.days(80))
      expect(yield* Ref.get(store.renewals)).toEqual(["soon.test", "later.test"])
    }))

  it.effect("a failing renewal is logged, counted and retried each round; the others still renew", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([cert("bad.test", 5 * DAY), cert("good.test", 6 * DAY)])
      const attempts = yield* Ref.make(0)
      const { layer, logs } = yield* captureLogs
      const renewer = yield* makeRenewer({
        every: "1 hour",
        list: Ref.get(store.certs),
        renew: (c) =>
          c.hostname === "bad.test"
            ? Effect.zipRight(Ref.update(attempts, (n) => n + 1), Effect.fail(new Error("the CA said no")))
            : renewIn(store)(c)
      })
      const fiber = yield* Effect.fork(Effect.provide(renewer.run, layer))
      yield* TestClock.adjust(0)
      yield* TestClock.adjust("2 hours")

      expect(yield* Ref.get(attempts)).toBe(3)
      expect(yield* Ref.get(store.renewals)).toEqual(["good.test"])
      const stats = yield* renewer.stats
      expect(stats).toMatchObject({ rounds: 3, renewed: 1, failures: 3 })
      expect(stats.lastRound?.failed).toEqual([{ hostname: "bad.test", error: "the CA said no" }])
      const warnings = (yield* Ref.get(logs)).filter((l) => l.level === "WARN")
      expect(warnings).toHaveLength(3)
      expect(warnings[0]?.message).toContain("bad.test")
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("a failed listing and a defect in renew are counted, and the renewer keeps going", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([cert("boom.test", DAY), cert("ok.test", DAY)])
      const listCalls = yield* Ref.make(0)
      const { layer, logs } = yield* captureLogs
      const renewer = yield* makeRenewer({
        every: "10 minutes",
        // The first listing fails (say the state store is busy), later ones work.
        list: Effect.flatMap(Ref.getAndUpdate(listCalls, (n) => n + 1), (n) =>
          n === 0 ? Effect.fail("state store busy") : Ref.get(store.certs)),
        renew: (c) => (c.hostname === "boom.test" ? Effect.dieMessage("bug in renew") : renewIn(store)(c))
      })
      const fiber = yield* Effect.fork(Effect.provide(renewer.run, layer))
      yield* TestClock.adjust(0)
      expect((yield* renewer.stats).lastRound?.listError).toBe("state store busy")
      yield* TestClock.adjust("10 minutes")

      const stats = yield* renewer.stats
      expect(stats).toMatchObject({ rounds: 2, renewed: 1, failures: 2 })
      expect(stats.lastRound?.failed[0]?.hostname).toBe("boom.test")
      expect(stats.lastRound?.failed[0]?.error).toContain("bug in renew")
      const levels = HashSet.fromIterable((yield* Ref.get(logs)).map((l) => l.level))
      expect(HashSet.has(levels, LogLevel.Error.label)).toBe(true)
      expect(HashSet.has(levels, LogLevel.Warning.label)).toBe(true)
      expect(fiber.unsafePoll()).toBeNull()
      yield* Fiber.interrupt(fiber)
    }))

  it.effect("runOnce reports the round without sleeping", () =>
    Effect.gen(function*() {
      const store = yield* makeStore([cert("a.test", DAY), cert("b.test", 40 * DAY)])
      const renewer = yield* makeRenewer({ every: "1 day", list: Ref.get(store.certs), renew: renewIn(store), margin: "7 days" })
      const round = yield* renewer.runOnce
      expect(round).toEqual({ checked: 2, renewed: ["a.test"], failed: [], listError: undefined })
    }))
})
