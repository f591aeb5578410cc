/**
 * The raw-body checks the transport runs before any JSON is parsed: frames per request and
 * nesting depth, each just under and just over its limit, and strings that only look nested.
 */
import { describe, expect, it } from "@effect/vitest"
import { checkBody } from "../src/RequestLimits.js"

const limits = { maxMessages: 3, maxDepth: 4 }
const nest = (n: number) => "[".repeat(n) + "]".repeat(n)

describe("checkBody", () => {
  it("counts ndjson frames: the limit passes, one more is TooManyMessages", () => {
    expect(checkBody("{}\n{}\n{}\n", limits)).toBeUndefined()
    expect(checkBody("{}\n{}\n{}\n{}\n", limits)).toEqual({ _tag: "TooManyMessages", limit: 3 })
    // An unterminated last line is not a frame: the ndjson parser never decodes it.
    expect(checkBody("{}\n{}\n{}\n{}", limits)).toBeUndefined()
  })

  it("measures nesting per frame: the limit passes, one more is TooDeep naming the frame", () => {
    expect(checkBody(`${nest(4)}\n${nest(4)}\n`, limits)).toBeUndefined()
    expect(checkBody(`${nest(4)}\n{"a":${nest(4)}}\n`, limits)).toEqual({ _tag: "TooDeep", limit: 4, line: 2 })
    // Siblings do not add up: depth is how far in, not how many.
    expect(checkBody(`[${nest(3)},${nest(3)},{"a":{"b":{}}}]\n`, limits)).toBeUndefined()
  })

  it("brackets inside strings, escaped quotes included, are not nesting", () => {
    expect(checkBody(`{"a":"[[[[[[{{{{"}\n`, limits)).toBeUndefined()
    expect(checkBody(`{"a":"\\"[[[[[[\\\\"}\n`, limits)).toBeUndefined()
    // After an escaped backslash the quote closes the string, so what follows counts again.
    expect(checkBody(`{"a":"\\\\",${`"b":[[[[`}]]]]}\n`, limits)).toEqual({ _tag: "TooDeep", limit: 4, line: 1 })
  })

  it("a million levels is refused without recursion", () => {
    expect(checkBody("[".repeat(1_000_000) + "\n", { maxMessages: 64, maxDepth: 32 })).toEqual({ _tag: "TooDeep", limit: 32, line: 1 })
  })
})
