/**
 * HTML built only through the `html` template: every interpolated value is escaped unless it is
 * itself `Html` (a fragment built the same way). Service names, events and node reports are user
 * input; nothing reaches a page without passing through here.
 */

export class Html {
  constructor(readonly text: string) {}
  toString() {
    return this.text
  }
}

const ENTITIES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;", "`": "&#96;" }

/** Text made safe in element content and in quoted attribute values. */
export const escape = (text: string): string => text.replace(/[&<>"'`]/g, (c) => ENTITIES[c]!)

const render = (value: unknown): string => {
  if (value instanceof Html) return value.text
  if (Array.isArray(value)) return value.map(render).join("")
  if (value === undefined || value === null || value === false) return ""
  return escape(String(value))
}

/** A fragment: the literal parts as written, each value escaped (arrays joined, nullish and false dropped). */
export const html = (strings: TemplateStringsArray, ...values: ReadonlyArray<unknown>): Html =>
  new Html(strings.reduce((out, part, i) => out + part + (i < values.length ? render(values[i]) : ""), ""))
