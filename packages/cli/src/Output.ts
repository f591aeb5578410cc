/** Plain-text tables and the one-line error format the CLI prints. */
import { Console, Effect } from "effect"

export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

/** Prints `mcp: <message>` to stderr and marks the process failed; no stack trace. */
export const fail = (message: string) =>
  Effect.zipRight(Console.error(`mcp: ${message}`), Effect.sync(() => { process.exitCode = 1 }))

export const describeError = (e: unknown): string => {
  const message = e instanceof Error ? e.message : String(e)
  const isTransport = typeof e === "object" && e !== null && "_tag" in e && e._tag === "RpcClientError"
  if (!isTransport) return message
  const cause = "cause" in e && e.cause instanceof Error ? ` (${e.cause.message})` : ""
  return `cannot reach the server: ${message}${cause}`
}
