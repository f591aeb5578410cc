import { describe, expect, it } from "@effect/vitest"
import { Arbitrary, Either } from "effect"
import { ServiceDefinition } from "../src/ServiceDefinition.js"
import { decodeDefinitionToml, encodeDefinitionToml } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.internal" }

describe("service definitions through TOML", () => {
  it.prop(
    "any definition the schema generates survives encode -> TOML -> decode unchanged",
    [Arbitrary.make(ServiceDefinition)],
    ([def]) => {
      const text = encodeDefinitionToml(def)
      const back = decodeDefinitionToml(text, ctx)
      if (Either.isLeft(back)) expect.fail(`${text}\n${JSON.stringify(back.left, null, 1)}`)
      expect(back.right).toEqual(def)
    },
    // 300 runs take 1-2 s alone; a loaded machine (two cores, other suites) takes several times that.
    { timeout: 30_000, fastCheck: { numRuns: 300 } }
  )
})
