// /metrics as Prometheus reads it: counters typed as counters (with _total), histograms with
// buckets, gauges of state listing only what exists at the scrape, a failing gauge left out and
// counted, and the process's own figures. The serialization is OpenTelemetry's; what is tested
// here is what this codebase feeds it.
import { describe, expect, it } from "@effect/vitest"
import { Data, Effect, Exit, FiberId, Metric, Schema } from "effect"
import * as CallMetrics from "../src/CallMetrics.js"
import { MetricsSection } from "../src/Daemon.js"
import * as Exposition from "../src/Exposition.js"

class Refused extends Data.TaggedError("Refused")<{ readonly message: string }> {}

const scrape = Effect.flatMap(Exposition.Exposition, (e) => e.text)

/** The value of the sample `series` (name and labels exactly as printed), or undefined. */
const sample = (text: string, series: string): number | undefined => {
  const line = text.split("\n").find((l) => l.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

describe("Exposition", () => {
  it.scoped("writes counters as counters, histograms with their buckets, and the process's figures", () =>
    Effect.gen(function* () {
      const counter = Metric.counter("mcp_test_things", { incremental: true, description: "things, by kind" })
      yield* Metric.incrementBy(Metric.tagged(counter, "kind", "a"), 3)
      yield* Effect.void.pipe(CallMetrics.timed(CallMetrics.rpcDuration, { rpc: "TestCall" }))
      yield* Effect.fail(new Refused({ message: "not you" })).pipe(
        CallMetrics.timed(CallMetrics.rpcDuration, { rpc: "TestCall" }),
        Effect.ignore
      )
      const text = yield* scrape
      expect(text).toContain("# TYPE mcp_test_things_total counter")
      expect(sample(text, `mcp_test_things_total{kind="a"}`)).toBe(3)
      expect(text).toContain("# TYPE mcp_rpc_duration_seconds histogram")
      expect(sample(text, `mcp_rpc_duration_seconds_count{rpc="TestCall",result="ok"}`)).toBe(1)
      expect(sample(text, `mcp_rpc_duration_seconds_count{rpc="TestCall",result="Refused"}`)).toBe(1)
      expect(sample(text, `mcp_rpc_duration_seconds_bucket{rpc="TestCall",result="ok",le="+Inf"}`)).toBe(1)
      expect(text).toMatch(/^target_info\{service_name="mcp-test",.*service_version="9\.9\.9".*\} 1$/m)
      expect(sample(text, "mcp_process_resident_memory_bytes")).toBeGreaterThan(1_000_000)
      expect(sample(text, "mcp_process_cpu_seconds_total")).toBeGreaterThan(0)
      expect(sample(text, `mcp_process_event_loop_delay_seconds{quantile="0.99"}`)).toBeGreaterThanOrEqual(0)
    }).pipe(Effect.provide(Exposition.layer({ name: "mcp-test", version: "9.9.9" }))))

  it.scopedLive("reports an event-loop stall wherever it happens: in a setImmediate callback or in a fiber", () =>
    Effect.gen(function* () {
      const busy = (ms: number) => {
        const end = performance.now() + ms
        while (performance.now() < end) {
          // holding the loop, as a long synchronous step would
        }
      }
      // A scrape resets the delay; the next one reports the stall between them.
      const stallOf = (block: Effect.Effect<void>) =>
        Effect.gen(function* () {
          yield* scrape
          yield* block
          yield* Effect.sleep("50 millis")
          return sample(yield* scrape, `mcp_process_event_loop_delay_seconds{quantile="1"}`)
        })
      const inImmediate = Effect.async<void>((resume) => {
        setImmediate(() => {
          busy(200)
          resume(Effect.void)
        })
      })
      const inFiber = Effect.zipRight(Effect.yieldNow(), Effect.sync(() => busy(200)))
      expect(yield* stallOf(inImmediate)).toBeGreaterThanOrEqual(0.15)
      expect(yield* stallOf(inFiber)).toBeGreaterThanOrEqual(0.15)
      // And a quiet loop reads as one.
      expect(yield* stallOf(Effect.void)).toBeLessThan(0.15)
    }).pipe(Effect.provide(Exposition.layer({ name: "mcp-test", version: "1" }))))

  it.scoped("reads gauges of state at each scrape, so what went away leaves no series, and leaves out a gauge that fails", () =>
    Effect.gen(function* () {
      const nodes = new Map([["w1", 1], ["w2", 0]])
      let reads = 0
      const layer = Exposition.layer({ name: "mcp-test", version: "1" }, [
        {
          name: "mcp_test_node_up",
          description: "up, by node",
          read: Effect.sync(() => {
            reads++
            return [...nodes].map(([node, value]) => ({ value, labels: { node } }))
          })
        },
        { name: "mcp_test_broken", description: "never readable", read: Effect.fail(new Error("database locked")) },
        { name: "mcp_test_pings", description: "pings, by node", counter: true, read: Effect.sync(() => [...nodes.keys()].map((node) => ({ value: 7, labels: { node } }))) }
      ])
      const [first, second] = yield* Effect.gen(function* () {
        const first = yield* scrape
        nodes.delete("w2")
        nodes.set("w1", 0)
        return [first, yield* scrape] as const
      }).pipe(Effect.provide(layer))
      expect(reads).toBe(2)
      expect(sample(first, `mcp_test_node_up{node="w1"}`)).toBe(1)
      expect(sample(first, `mcp_test_node_up{node="w2"}`)).toBe(0)
      expect(sample(second, `mcp_test_node_up{node="w1"}`)).toBe(0)
      expect(second).not.toContain(`mcp_test_node_up{node="w2"}`)
      expect(second).not.toMatch(/^mcp_test_broken/m)
      expect(sample(second, `mcp_metrics_collection_errors_total{part="mcp_test_broken"}`)).toBe(2)
      // A counter of state: typed as a counter, gone with what it counted.
      expect(first).toContain("# TYPE mcp_test_pings_total counter")
      expect(sample(first, `mcp_test_pings_total{node="w2"}`)).toBe(7)
      expect(second).not.toContain(`mcp_test_pings_total{node="w2"}`)
    }))

  it.scopedLive("writes a large scrape in pieces, giving the event loop back between them, with one header per family and target_info once", () =>
    Effect.gen(function* () {
      const NODES = 10_000
      const layer = Exposition.layer({ name: "mcp-test", version: "1" }, [
        {
          name: "mcp_test_node_state",
          description: "a state set, by node",
          read: Effect.sync(() => Array.from({ length: NODES }, (_, i) => [0, 1].map((value) => ({ value, labels: { node: `n${i}`, state: value === 1 ? "up" : "down" } }))).flat())
        },
        { name: "mcp_test_empty", description: "nothing to list", read: Effect.succeed([]) }
      ])
      // A setImmediate chain counts the I/O turns the loop takes while the scrape runs.
      let turns = 0
      let counting = true
      const count = () => {
        if (!counting) return
        turns++
        setImmediate(count)
      }
      setImmediate(count)
      const text = yield* scrape.pipe(Effect.provide(layer))
      counting = false
      const lines = text.split("\n")
      expect(lines.filter((l) => l === "# TYPE mcp_test_node_state gauge")).toHaveLength(1)
      expect(lines.filter((l) => l.startsWith("# HELP mcp_test_node_state "))).toHaveLength(1)
      expect(lines.filter((l) => l.startsWith("mcp_test_node_state{"))).toHaveLength(2 * NODES)
      expect(sample(text, `mcp_test_node_state{node="n0",state="down"}`)).toBe(0)
      expect(sample(text, `mcp_test_node_state{node="n${NODES - 1}",state="up"}`)).toBe(1)
      expect(lines.filter((l) => l === "# TYPE target_info gauge")).toHaveLength(1)
      expect(lines.filter((l) => l === "# TYPE mcp_test_empty gauge")).toHaveLength(1)
      // Every sample line belongs to the family whose TYPE came last, as Prometheus reads it.
      let family = ""
      for (const line of lines) {
        if (line.startsWith("# TYPE ")) family = line.split(" ")[2]!
        else if (line !== "" && !line.startsWith("#")) expect(line.startsWith(family)).toBe(true)
      }
      // 20,000 series: at least one turn per 2,000 of them.
      expect(turns).toBeGreaterThanOrEqual(9)
    }))

  it("labels a result by the error's tag, and never by its message", () => {
    expect(CallMetrics.resultOf(Exit.succeed(1))).toBe("ok")
    expect(CallMetrics.resultOf(Exit.fail({ _tag: "Forbidden", message: "secret detail" }))).toBe("Forbidden")
    expect(CallMetrics.resultOf(Exit.fail("a string"))).toBe("error")
    expect(CallMetrics.resultOf(Exit.die(new Error("boom")))).toBe("defect")
    expect(CallMetrics.resultOf(Exit.interrupt(FiberId.none))).toBe("interrupted")
  })

  it("accepts a loopback [metrics] listen and refuses any other address, saying why", () => {
    const decode = Schema.decodeUnknownEither(MetricsSection)
    expect(decode({ listen: "127.0.0.1:9464" })._tag).toBe("Right")
    expect(decode({ listen: "[::1]:9464" })._tag).toBe("Right")
    const open = decode({ listen: "0.0.0.0:9464" })
    expect(open._tag).toBe("Left")
    expect(String(open._tag === "Left" ? open.left.message : "")).toContain("must be a loopback address")
    const noPort = decode({ listen: "127.0.0.1" })
    expect(String(noPort._tag === "Left" ? noPort.left.message : "")).toContain(`such as "127.0.0.1:9464"`)
  })
})
