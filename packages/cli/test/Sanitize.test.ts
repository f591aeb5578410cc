// What the CLI prints passes one sanitizer: control characters from the master (names,
// messages) are shown as \uXXXX instead of acting on the terminal; --json stays valid JSON.
import { describe, expect, it } from "@effect/vitest"
import { Errors, type Status } from "@mcp/domain"
import { Console, Effect } from "effect"
import { formatStatuses } from "../src/commands/Service.js"
import { print, sanitize } from "../src/Output.js"
import { report } from "../src/Report.js"

/** Runs `effect` with a Console that records what it prints. */
const captured = <A, E>(effect: Effect.Effect<A, E>) =>
  Effect.gen(function* () {
    const out: Array<string> = []
    const err: Array<string> = []
    const console = { ...(yield* Effect.console), log: (...a: ReadonlyArray<unknown>) => Effect.sync(() => void out.push(a.join(" "))), error: (...a: ReadonlyArray<unknown>) => Effect.sync(() => void err.push(a.join(" "))) } as Console.Console
    yield* Effect.withConsole(effect, console)
    return { out: out.join("\n"), err: err.join("\n") }
  })

describe("sanitize", () => {
  it("shows C0, DEL and C1 control characters as \\uXXXX; newlines only in multi-line text", () => {
    expect(sanitize("web\u001b[2Jx")).toBe("web\\u001b[2Jx")
    expect(sanitize("a\u009b31mb\u007f\u0000")).toBe("a\\u009b31mb\\u007f\\u0000")
    expect(sanitize("one\ntwo\r\tthree")).toBe("one\\u000atwo\\u000d\\u0009three")
    expect(sanitize("one\ntwo\rthree", { multiLine: true })).toBe("one\ntwo\\u000dthree")
    expect(sanitize("plain – ünïcode ✓")).toBe("plain – ünïcode ✓")
  })

  it("keeps JSON output valid JSON with the same value", () => {
    const value = { service: "web\u001b]0;owned\u0007", note: "c1 \u009b here" }
    const printed = sanitize(JSON.stringify(value, null, 2), { multiLine: true })
    expect(printed).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/)
    expect(JSON.parse(printed)).toEqual(value)
  })
})

describe("printed output", () => {
  it.effect("mcp ps: a service name with a terminal escape is printed escaped, the table intact", () =>
    Effect.gen(function* () {
      const status = {
        service: "evil\u001b[2J\u001b]0;pwned\u0007",
        node: "n1",
        active: true,
        components: [{ name: "app", image: "r/app:v1", version: "v1", state: "running", routes: [], restarts: 0 }],
        warnings: []
      } as unknown as Status.ServiceStatus
      const { out } = yield* captured(print(formatStatuses([status])))
      expect(out).not.toMatch(/[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/)
      expect(out).toContain("evil\\u001b[2J\\u001b]0;pwned\\u0007")
      expect(out.split("\n")).toHaveLength(2)
    }))

  it.effect("an error message from the master is printed escaped on stderr", () =>
    Effect.gen(function* () {
      const { err } = yield* captured(report(Effect.fail(new Errors.ServiceNotFound({ service: "x\u001b[31m" } as never))))
      expect(err).toContain("x\\u001b[31m")
      expect(err).not.toContain("\u001b")
      process.exitCode = 0
    }))
})
