/**
 * The fixture corpus in test/fixtures/services: every good definition decodes, and every bad
 * one fails with the problems its header announces.
 *
 * A bad fixture starts with comment lines:
 *   # expect: <path>                  a problem with exactly this path must be reported
 *   # expect-message: <substring>     ...and its message contains this (applies to the expect above)
 *   # expect-count: <n>               optional: exactly n problems in all (no noise next to the real one)
 */
import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import { readdirSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { decodeDefinitionToml, type Problem } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.metacircular.net" }

const fixtures = new URL("../../../test/fixtures/services/", import.meta.url)

const tomlFiles = (kind: "good" | "bad"): Array<{ name: string; text: string }> => {
  const dir = new URL(`${kind}/`, fixtures)
  return readdirSync(fileURLToPath(dir))
    .filter((f) => f.endsWith(".toml"))
    .sort()
    .map((name) => ({ name, text: readFileSync(new URL(name, dir), "utf8") }))
}

interface Expectation {
  readonly path: string
  message?: string
}

interface Expectations {
  readonly problems: Array<Expectation>
  count?: number
}

/** Reads the directives from the file's leading comment block. */
const expectationsOf = (text: string): Expectations => {
  const out: Expectations = { problems: [] }
  for (const line of text.split("\n")) {
    if (!line.startsWith("#")) break
    const m = /^#\s*(expect|expect-message|expect-count):\s?(.*)$/.exec(line)
    if (m === null) continue
    const [, key, rawValue] = m
    const value = rawValue!.trim()
    if (key === "expect") out.problems.push({ path: value })
    else if (key === "expect-count") out.count = Number(value)
    else {
      const last = out.problems[out.problems.length - 1]
      if (last === undefined) throw new Error(`"# expect-message:" before any "# expect:" line`)
      last.message = value
    }
  }
  return out
}

const show = (problems: ReadonlyArray<Problem>) => problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")

const good = tomlFiles("good")
const bad = tomlFiles("bad")

describe("good service definitions", () => {
  it("the corpus is there", () => {
    expect(good.length).toBeGreaterThan(0)
  })

  for (const { name, text } of good) {
    it(`${name} decodes`, () => {
      const result = decodeDefinitionToml(text, ctx)
      const problems = Either.isLeft(result) ? result.left : []
      expect(problems, `${name} should decode, but:\n${show(problems)}`).toEqual([])
    })
  }
})

describe("bad service definitions", () => {
  it("the corpus covers at least 20 rules", () => {
    expect(bad.length).toBeGreaterThanOrEqual(20)
  })

  for (const { name, text } of bad) {
    it(`${name} is rejected as announced`, () => {
      const expected = expectationsOf(text)
      expect(expected.problems.length, `${name} has no "# expect:" line`).toBeGreaterThan(0)

      const result = decodeDefinitionToml(text, ctx)
      if (Either.isRight(result)) {
        expect.fail(`${name} decoded, but it should be rejected at ${expected.problems.map((e) => e.path).join(", ")}`)
        return
      }
      const problems = result.left
      for (const want of expected.problems) {
        const atPath = problems.filter((p) => p.path === want.path)
        expect(atPath.length, `${name}: no problem at "${want.path}"; got:\n${show(problems)}`).toBeGreaterThan(0)
        if (want.message !== undefined) {
          const matching = atPath.some((p) => p.message.includes(want.message!))
          expect(matching, `${name}: no problem at "${want.path}" mentions ${JSON.stringify(want.message)}; got:\n${show(problems)}`).toBe(true)
        }
      }
      if (expected.count !== undefined) {
        expect(problems.length, `${name}: expected ${expected.count} problem(s); got:\n${show(problems)}`).toBe(expected.count)
      }
    })
  }
})
