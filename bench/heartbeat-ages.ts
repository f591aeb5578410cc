/**
 * bench/heartbeat-ages: the memory of the dashboard's hour of heartbeat ages at N nodes (one
 * sample every 10 s, 360 kept), held as HeartbeatAges holds it, against a Map per sample (how it
 * was held before, measured in the same run), the time to record a sample and to pick the chart's
 * lines.
 *
 *   node --expose-gc --import tsx bench/heartbeat-ages.ts [--nodes N (10000)]
 */
import * as HeartbeatAges from "../packages/master/src/dashboard/HeartbeatAges.js"
const i = process.argv.indexOf("--nodes")
const N = i < 0 ? 10_000 : Number(process.argv[i + 1]), S = 360
if (typeof (globalThis as any).gc !== "function") throw new Error("run with node --expose-gc")
const gc = (globalThis as any).gc as () => void
const heap = () => { gc(); gc(); return process.memoryUsage().heapUsed }
const names = Array.from({ length: N }, (_, i) => `node-${i}`)
let h0 = heap()
const maps: Array<{ at: number; ages: Map<string, number> }> = []
for (let s = 0; s < S; s++) maps.push({ at: s * 10_000, ages: new Map(names.map((n, i) => [n, (i % 7) + s / 100])) })
const mapBytes = heap() - h0
maps.length = 0
h0 = heap()
const ages = HeartbeatAges.make(3_600_000)
let recordMs = 0
for (let s = 0; s < S; s++) {
  const t0 = performance.now()
  ages.record(s * 10_000, (add) => names.forEach((n, i) => add(n, (i % 7) + s / 100)))
  recordMs += performance.now() - t0
}
const arrBytes = heap() - h0
const t = performance.now(); const c = ages.chart(8); const chartMs = performance.now() - t
console.log(`N=${N} samples=${S}: Map per sample ${(mapBytes / 2 ** 20).toFixed(1)} MiB; HeartbeatAges ${(arrBytes / 2 ** 20).toFixed(1)} MiB heap (+ ${(S * N * 4 / 2 ** 20).toFixed(1)} MiB of Float32Array backing store outside the heap); record ${(recordMs / S).toFixed(2)} ms a sample; chart(8) ${chartMs.toFixed(1)} ms, ${c.series.length} series of ${c.nodes}`)
console.log(`rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MiB, arrayBuffers ${(process.memoryUsage().arrayBuffers / 2 ** 20).toFixed(1)} MiB`)
