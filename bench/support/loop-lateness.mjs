/**
 * Preload (`node --import`) for the masters bench/heartbeats.ts starts: the master's event-loop
 * lateness (loop-lateness-core.mjs), one MCP_BENCH_LOOP line on stderr every 100 ms.
 * The bench sums the lines of a phase's window (its clock is the same CLOCK_MONOTONIC), so the
 * master's own delays are told apart from the load generator's pauses, which its round trips
 * include. Not the master's /metrics: a scrape to start the window would be inside it.
 */
import { reportLoopLateness } from "./loop-lateness-core.mjs"

reportLoopLateness((line) => process.stderr.write(`${line}\n`))
