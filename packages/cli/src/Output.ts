/**
 * Plain-text tables and the one way the CLI prints; errors are described by Report.ts.
 *
 * Everything printed passes `sanitize`: names, messages and details come from the master or an
 * agent and could carry terminal escapes (`\x1b]…`, `\x9b…`), so C0 and C1 control characters
 * are shown as `\u001b` instead of acting on the terminal. `--json` output stays valid JSON:
 * JSON.stringify already escapes C0 characters, and the `\u009b` written for a C1 one is the
 * same JSON escape.
 */
import { Console } from "effect"

/** C0 (but tab/newline handled below), DEL and C1. */
const CONTROL_KEEPING_NEWLINES = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g

const visible = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`

/**
 * Replaces control characters with a visible `\uXXXX`; newlines are kept when `multiLine`
 * (a message of several lines), and escaped otherwise (a table cell, a name).
 */
export const sanitize = (text: string, options: { readonly multiLine?: boolean } = {}): string =>
  text.replace(options.multiLine === true ? CONTROL_KEEPING_NEWLINES : CONTROL, visible)

/** Prints to stdout, sanitized (lines kept). */
export const print = (text: string) => Console.log(sanitize(text, { multiLine: true }))

/** Prints to stderr, sanitized (lines kept). */
export const printError = (text: string) => Console.error(sanitize(text, { multiLine: true }))

export const table = (header: ReadonlyArray<string>, rawRows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const rows = rawRows.map((r) => r.map((cell) => sanitize(cell)))
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const line = (cells: ReadonlyArray<string>) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}
