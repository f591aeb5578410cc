/**
 * bench/heap-summary: what a heap snapshot holds, by kind of object (V8's node type and
 * constructor or name): how many and their own bytes. Given two snapshots of the master at two
 * fleet sizes (bench/heartbeats.ts --heap-snapshot), prints what the larger holds more, per node
 * of the difference: the cost of one more node, by kind of object.
 *
 *   node --max-old-space-size=8192 --import tsx bench/heap-summary.ts <a.heapsnapshot> [<b.heapsnapshot> --nodes=<Nb - Na>] [--top=30]
 */
import { readFileSync } from "node:fs"

interface Snapshot {
  readonly snapshot: { readonly meta: { readonly node_fields: ReadonlyArray<string>; readonly node_types: ReadonlyArray<ReadonlyArray<string> | string> } }
  readonly nodes: ReadonlyArray<number>
  readonly strings: ReadonlyArray<string>
}

const args = process.argv.slice(2)
const files = args.filter((a) => !a.startsWith("--"))
const option = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const top = Number(option("top") ?? 30)
const perNodes = option("nodes") === undefined ? undefined : Number(option("nodes"))
if (files.length < 1 || files.length > 2 || (files.length === 2 && !(perNodes !== undefined && perNodes > 0))) {
  console.error("usage: node --import tsx bench/heap-summary.ts <a.heapsnapshot> [<b.heapsnapshot> --nodes=<Nb - Na>] [--top=30]")
  process.exit(2)
}

/** Kind -> [count, self bytes]. A kind is "type: name" (names of strings and numbers are their values: by type only). */
const summarize = (file: string) => {
  const s = JSON.parse(readFileSync(file, "utf8")) as Snapshot
  const fields = s.snapshot.meta.node_fields
  const types = s.snapshot.meta.node_types[0] as ReadonlyArray<string>
  const width = fields.length
  const [typeAt, nameAt, sizeAt] = [fields.indexOf("type"), fields.indexOf("name"), fields.indexOf("self_size")]
  const kinds = new Map<string, [number, number]>()
  let total = 0
  for (let i = 0; i < s.nodes.length; i += width) {
    const type = types[s.nodes[i + typeAt]!]!
    const byValue = type === "string" || type === "number" || type === "concatenated string" || type === "sliced string" || type === "code"
    const kind = byValue ? type : `${type}: ${s.strings[s.nodes[i + nameAt]!]!.slice(0, 80)}`
    const size = s.nodes[i + sizeAt]!
    const entry = kinds.get(kind) ?? [0, 0]
    entry[0]++
    entry[1] += size
    kinds.set(kind, entry)
    total += size
  }
  return { kinds, total, count: s.nodes.length / width }
}

const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`
const a = summarize(files[0]!)
if (files.length === 1) {
  console.log(`${files[0]}: ${a.count} objects, ${mib(a.total)}`)
  for (const [kind, [n, bytes]] of [...a.kinds].sort((x, y) => y[1][1] - x[1][1]).slice(0, top)) console.log(`${mib(bytes).padStart(12)} ${String(n).padStart(9)}  ${kind}`)
} else {
  const b = summarize(files[1]!)
  const n = perNodes!
  console.log(`${files[0]}: ${a.count} objects, ${mib(a.total)}; ${files[1]}: ${b.count} objects, ${mib(b.total)}`)
  console.log(`the second holds ${((b.total - a.total) / n / 1024).toFixed(1)} KiB more per node (${n} nodes more); by kind, bytes and objects per node:`)
  const delta = [...new Set([...a.kinds.keys(), ...b.kinds.keys()])].map((kind) => {
    const [na, ba] = a.kinds.get(kind) ?? [0, 0]
    const [nb, bb] = b.kinds.get(kind) ?? [0, 0]
    return { kind, bytes: (bb - ba) / n, objects: (nb - na) / n }
  })
  for (const d of delta.sort((x, y) => y.bytes - x.bytes).slice(0, top)) console.log(`${d.bytes.toFixed(0).padStart(8)} B ${d.objects.toFixed(2).padStart(8)}  ${d.kind}`)
}
