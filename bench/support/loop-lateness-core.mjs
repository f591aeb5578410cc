/**
 * How late an event loop runs a timer set every 10 ms, reported every 100 ms as one line
 *
 *   MCP_BENCH_LOOP <monotonic µs> <max ms> <bound ms>:<ticks> ...
 *
 * with the ticks of each bucket that has any (a tick falls in the first bound of BOUNDS_MS it
 * does not exceed). Both timers are unref'd. Used by the masters' preload (loop-lateness.mjs) and
 * by bench/heartbeats.ts for its own loop, so both are measured the same way on the same clock.
 */
const BOUNDS_MS = [1, 2, 3, 5, 7, 10, 15, 20, 30, 50, 100, 200, 500, Infinity]
const TICK_MS = 10

/** Starts measuring; `report` gets each line. */
export const reportLoopLateness = (report) => {
  let counts = BOUNDS_MS.map(() => 0)
  let max = 0
  let due = performance.now() + TICK_MS
  setInterval(() => {
    const now = performance.now()
    const late = Math.max(0, now - due)
    due = now + TICK_MS
    counts[BOUNDS_MS.findIndex((bound) => late <= bound)]++
    if (late > max) max = late
  }, TICK_MS).unref()
  setInterval(() => {
    const buckets = BOUNDS_MS.flatMap((bound, i) => (counts[i] === 0 ? [] : [`${bound}:${counts[i]}`]))
    report(`MCP_BENCH_LOOP ${process.hrtime.bigint() / 1000n} ${max.toFixed(1)} ${buckets.join(" ")}`)
    counts = BOUNDS_MS.map(() => 0)
    max = 0
  }, 100).unref()
}
