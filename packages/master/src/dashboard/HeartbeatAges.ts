/**
 * The dashboard's hour of heartbeat ages: one sample of every node's age every sample interval,
 * held compactly, and the few nodes worth a line in the chart picked from it.
 *
 * Why compact: a Map of every node per sample costs about 80 bytes an entry, 290 MiB for an hour
 * of 10,000 nodes sampled every 10 s. Here a sample is one Float32Array indexed by node (4 bytes
 * an entry, 14 MiB for the same hour). Why few lines: a chart of thousands of lines says nothing
 * and weighs megabytes; the nodes whose heartbeats were oldest in the hour are the ones to look at.
 */

export interface Sample {
  readonly at: number
  /** Seconds since each node's last heartbeat, by the node's index in `names`; NaN: not known then. */
  readonly ages: Float32Array
}

/** One node's line: its samples as [time, age in seconds]. */
export interface Series {
  readonly node: string
  readonly points: ReadonlyArray<readonly [at: number, age: number]>
}

export interface Chart {
  /** The nodes drawn, oldest heartbeat of the window first. */
  readonly series: ReadonlyArray<Series>
  /** How many nodes had an age in the window (drawn or not). */
  readonly nodes: number
}

export interface HeartbeatAges {
  /** Adds a sample taken at `at` and forgets those older than the window. */
  readonly record: (at: number, ages: Ages) => void
  /** At most `maxSeries` lines: the nodes with the highest age in the window (ties by name). */
  readonly chart: (maxSeries: number) => Chart
  /** How many node names it keeps an index for (those of the window, and at most as many others). */
  readonly indexed: () => number
}

/**
 * A sample's ages, handed over one node at a time: `ages(add)` calls `add(node, ageSeconds)` for
 * each node that has one. A sample of 10,000 nodes then allocates nothing per node: a list of
 * pairs, and the collection after it, held the master's event loop about 150 ms each sample.
 */
export type Ages = (add: (node: string, ageSeconds: number) => void) => void

/** `pairs` as Ages. */
export const agesOf = (pairs: Iterable<readonly [node: string, ageSeconds: number]>): Ages => (add) => {
  for (const [node, age] of pairs) add(node, age)
}

/**
 * Each node's heartbeat age at `now` (clock millis), in seconds: from the heartbeat its supervisor
 * last received (`live` calls its function with each node and that time in clock millis), or for a
 * node not heard from since the master started, from the time the database holds (`stored`, ISO
 * text by node). A node with neither has no age yet.
 */
export const agesAt = (
  now: number,
  live: (each: (node: string, lastHeartbeat: number | undefined) => void) => void,
  stored: ReadonlyMap<string, string>
): Ages => (add) =>
  live((node, lastHeartbeat) => {
    const at = lastHeartbeat ?? Date.parse(stored.get(node) ?? "")
    if (!Number.isNaN(at)) add(node, Math.max(0, (now - at) / 1000))
  })

export const make = (windowMs: number): HeartbeatAges => {
  // A node keeps its index while some sample in the window has its age; names no sample holds
  // any more are dropped when they are most of the index (nodes replaced under new names).
  let index = new Map<string, number>()
  let names: Array<string> = []
  let samples: Array<Sample> = []

  /** Keeps only the names some sample has an age for, and rewrites each sample to the new indexes. */
  const compact = () => {
    const kept: Array<number> = []
    for (let i = 0; i < names.length; i++) if (samples.some((s) => i < s.ages.length && !Number.isNaN(s.ages[i]!))) kept.push(i)
    if (kept.length * 2 > names.length) return
    samples = samples.map((s) => ({ at: s.at, ages: Float32Array.from(kept, (i) => (i < s.ages.length ? s.ages[i]! : Number.NaN)) }))
    names = kept.map((i) => names[i]!)
    index = new Map(names.map((n, i) => [n, i]))
  }

  // A sample's (index, age) pairs as they come, before its row can be sized: kept between samples.
  let sampleIndexes = new Int32Array(1024)
  let sampleAges = new Float32Array(1024)

  const record = (at: number, ages: Ages) => {
    let count = 0
    ages((node, age) => {
      let i = index.get(node)
      if (i === undefined) {
        i = names.length
        index.set(node, i)
        names.push(node)
      }
      if (count === sampleIndexes.length) {
        const indexes = new Int32Array(count * 2)
        indexes.set(sampleIndexes)
        sampleIndexes = indexes
        const kept = new Float32Array(count * 2)
        kept.set(sampleAges)
        sampleAges = kept
      }
      sampleIndexes[count] = i
      sampleAges[count] = age
      count++
    })
    const row = new Float32Array(names.length).fill(Number.NaN)
    for (let k = 0; k < count; k++) row[sampleIndexes[k]!] = sampleAges[k]!
    samples.push({ at, ages: row })
    let old = 0
    while (old < samples.length && samples[old]!.at < at - windowMs) old++
    if (old > 0) {
      samples.splice(0, old)
      // Looked at only when the newest sample knows fewer than half the names: a fleet of
      // steady names never pays for it.
      if (count * 2 < names.length) compact()
    }
  }

  const chart = (maxSeries: number): Chart => {
    const peak = new Float64Array(names.length).fill(Number.NaN)
    for (const s of samples) {
      for (let i = 0; i < s.ages.length; i++) {
        const v = s.ages[i]!
        if (!Number.isNaN(v) && !(v <= peak[i]!)) peak[i] = v
      }
    }
    const seen: Array<number> = []
    for (let i = 0; i < names.length; i++) if (!Number.isNaN(peak[i]!)) seen.push(i)
    const drawn = seen
      .sort((a, b) => peak[b]! - peak[a]! || names[a]!.localeCompare(names[b]!))
      .slice(0, Math.max(0, maxSeries))
    return {
      nodes: seen.length,
      series: drawn.map((i) => ({
        node: names[i]!,
        points: samples.flatMap((s) => (i < s.ages.length && !Number.isNaN(s.ages[i]!) ? [[s.at, s.ages[i]!] as const] : []))
      }))
    }
  }

  return { record, chart, indexed: () => names.length }
}
