import { describe, expect, it } from "@effect/vitest"
import { FastCheck } from "effect"
import * as HeartbeatAges from "../src/dashboard/HeartbeatAges.js"
import * as Pages from "../src/dashboard/Pages.js"

const HOUR = 3_600_000

/** The same hour kept the plain way (a Map per sample), to compare with. */
const reference = (samples: ReadonlyArray<{ at: number; ages: ReadonlyArray<readonly [string, number]> }>, windowMs: number, maxSeries: number) => {
  const last = samples.at(-1)?.at ?? 0
  const kept = samples.filter((s) => s.at >= last - windowMs).map((s) => ({ at: s.at, ages: new Map(s.ages.map(([n, v]) => [n, Math.fround(v)])) }))
  const peak = new Map<string, number>()
  for (const s of kept) for (const [n, v] of s.ages) peak.set(n, Math.max(peak.get(n) ?? -Infinity, v))
  const drawn = [...peak.keys()].sort((a, b) => peak.get(b)! - peak.get(a)! || a.localeCompare(b)).slice(0, maxSeries)
  return {
    nodes: peak.size,
    series: drawn.map((node) => ({ node, points: kept.flatMap((s) => (s.ages.has(node) ? [[s.at, s.ages.get(node)!] as const] : [])) }))
  }
}

describe("the dashboard's hour of heartbeat ages", () => {
  it("a node's age comes from its supervisor's last heartbeat, else from the stored one; a node with neither has none", () => {
    const now = 100_000
    const live = [
      ["heard", now - 2_500],
      ["restarted", undefined],
      ["new", undefined],
      ["ahead", now + 1_000]
    ] as const
    const stored = new Map([["heard", new Date(0).toISOString()], ["restarted", new Date(now - 60_000).toISOString()]])
    const ages: Array<readonly [string, number]> = []
    HeartbeatAges.agesAt(now, (each) => live.forEach(([node, at]) => each(node, at)), stored)((node, age) => ages.push([node, age]))
    expect(ages).toEqual([["heard", 2.5], ["restarted", 60], ["ahead", 0]])
  })

  it("keeps the window, and draws the nodes whose heartbeats were oldest", () => {
    const ages = HeartbeatAges.make(HOUR)
    ages.record(0, HeartbeatAges.agesOf([["gone", 500], ["w1", 1]]))
    ages.record(HOUR / 2, HeartbeatAges.agesOf([["w1", 2], ["w2", 9], ["w3", 3]]))
    ages.record(HOUR + 1, HeartbeatAges.agesOf([["w1", 4], ["w2", 1], ["w3", 3]]))
    // The first sample left the window with "gone", the only node it had an age for.
    expect(ages.chart(2)).toEqual({
      nodes: 3,
      series: [
        { node: "w2", points: [[HOUR / 2, 9], [HOUR + 1, 1]] },
        { node: "w1", points: [[HOUR / 2, 2], [HOUR + 1, 4]] }
      ]
    })
    expect(ages.chart(0)).toEqual({ nodes: 3, series: [] })
  })

  it.prop(
    "draws what a Map per sample would, whatever the nodes and ages",
    {
      samples: FastCheck.array(
        FastCheck.record({
          gap: FastCheck.integer({ min: 0, max: HOUR / 3 }),
          ages: FastCheck.uniqueArray(FastCheck.tuple(FastCheck.constantFrom("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l"), FastCheck.float({ min: 0, max: 1e5, noNaN: true })), { selector: ([n]) => n, maxLength: 6 })
        }),
        { maxLength: 40 }
      ),
      maxSeries: FastCheck.integer({ min: 0, max: 8 })
    },
    ({ maxSeries, samples }) => {
      const ages = HeartbeatAges.make(HOUR)
      let at = 0
      const timed = samples.map((s) => ({ at: (at += s.gap), ages: s.ages }))
      for (const s of timed) ages.record(s.at, HeartbeatAges.agesOf(s.ages))
      expect(ages.chart(maxSeries)).toEqual(reference(timed, HOUR, maxSeries))
    }
  )

  it("keeps every age of a sample of thousands of nodes", () => {
    const ages = HeartbeatAges.make(HOUR)
    const fleet = Array.from({ length: 2_500 }, (_, i) => [`n${i}`, i / 10] as const)
    ages.record(1_000, HeartbeatAges.agesOf(fleet))
    ages.record(2_000, HeartbeatAges.agesOf(fleet.slice(0, 3)))
    const chart = ages.chart(3)
    expect(chart.nodes).toBe(2_500)
    expect(chart.series).toEqual([
      { node: "n2499", points: [[1_000, Math.fround(249.9)]] },
      { node: "n2498", points: [[1_000, Math.fround(249.8)]] },
      { node: "n2497", points: [[1_000, Math.fround(249.7)]] }
    ])
  })

  it("forgets the names of nodes replaced under new names", () => {
    const ages = HeartbeatAges.make(HOUR)
    // A fleet of 10 whose nodes are all replaced every 20 minutes, for a day.
    for (let generation = 0; generation < 72; generation++) {
      ages.record(generation * HOUR / 3, HeartbeatAges.agesOf(Array.from({ length: 10 }, (_, i) => [`g${generation}-n${i}`, i] as const)))
    }
    // The window holds 4 samples (40 names): at most as many others are kept.
    expect(ages.indexed()).toBeLessThanOrEqual(80)
    const chart = ages.chart(100)
    expect(chart.nodes).toBe(40)
    expect(chart.series.find((s) => s.node === "g71-n9")?.points).toEqual([[71 * HOUR / 3, 9]])
  })

  it("the page draws at most MAX_CHART_SERIES lines and says which nodes they are", () => {
    const ages = HeartbeatAges.make(HOUR)
    const fleet = Array.from({ length: 20 }, (_, i) => `n${String(i).padStart(2, "0")}`)
    ages.record(1_000, HeartbeatAges.agesOf(fleet.map((n, i) => [n, i] as const)))
    const picture: Pages.FleetPicture = { now: 2_000, nodes: [], services: [], unreachable: [], hostnames: [], dns: new Map(), heartbeats: ages.chart(Pages.MAX_CHART_SERIES), deploys: [] }
    const chart = Pages.parts(picture).text.match(/<figure id="heartbeat-chart">[\s\S]*?<\/figure>/)![0]
    expect(chart.match(/<polyline/g)).toHaveLength(Pages.MAX_CHART_SERIES)
    expect(chart).toContain(`of the ${Pages.MAX_CHART_SERIES} nodes (of 20) whose heartbeats were oldest this hour`)
    // The oldest first: n19 down to n12.
    expect([...chart.matchAll(/<li><span class="swatch s\d"><\/span>([^<]+)<\/li>/g)].map((m) => m[1])).toEqual(fleet.slice(-Pages.MAX_CHART_SERIES).reverse())
  })
})
