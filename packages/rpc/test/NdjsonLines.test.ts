/**
 * The client's ndjson framing (HttpProtocol.ndjsonLines): whatever chunks an answer arrives in,
 * cut anywhere (inside a line, inside a multi-byte character), the messages come out whole, in
 * order, each once its newline has arrived.
 */
import { describe, expect, it } from "@effect/vitest"
import { FastCheck as fc } from "effect"
import { ndjsonLines } from "../src/HttpProtocol.js"

describe("ndjson lines", () => {
  it.prop(
    "the same messages, in order, however the body is cut",
    [fc.array(fc.jsonValue(), { minLength: 1, maxLength: 8 }), fc.array(fc.nat(), { maxLength: 20 })],
    ([messages, cuts]) => {
      const text = Buffer.from(messages.map((m) => `${JSON.stringify(m)}\n`).join(""))
      const points = [...new Set(cuts.map((c) => c % (text.length + 1)))].sort((a, b) => a - b)
      const lines = ndjsonLines()
      const out: Array<unknown> = []
      let from = 0
      for (const at of [...points, text.length]) {
        out.push(...lines(text.subarray(from, at)))
        from = at
      }
      expect(out).toEqual(messages.map((m) => JSON.parse(JSON.stringify(m))))
    },
    { fastCheck: { numRuns: 200 } }
  )

  it("a line is handed on only once its newline arrives, and a multi-byte character cut in two survives", () => {
    const lines = ndjsonLines()
    const bytes = Buffer.from(`${JSON.stringify({ name: "ü€😀" })}\n`)
    const cut = bytes.indexOf(Buffer.from("😀")) + 2
    expect(lines(bytes.subarray(0, cut))).toEqual([])
    expect(lines(bytes.subarray(cut))).toEqual([{ name: "ü€😀" }])
  })

  it("a line that is not JSON fails the answer", () => {
    expect(() => ndjsonLines()(Buffer.from("{not json\n"))).toThrow(SyntaxError)
  })
})
