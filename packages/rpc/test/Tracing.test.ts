// Spans for the calls an agent makes on its peers, and the [tracing] config section.
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Tracing from "../src/Tracing.js"

const spanName = Effect.map(Effect.currentSpan, (span) => span.name)

describe("Tracing", () => {
  it.effect("runs every Effect a port's member returns in a span named `<port>.<member>`, and passes the rest through", () =>
    Effect.gen(function* () {
      const engine = Tracing.traced("engine", {
        create: (name: string) => Effect.map(spanName, (span) => `${span} ${name}`),
        list: spanName,
        socket: "/run/podman/podman.sock",
        describe: (id: string) => `container ${id}`
      })
      expect(yield* engine.create("web")).toBe("engine.create web")
      expect(yield* engine.list).toBe("engine.list")
      expect(engine.socket).toBe("/run/podman/podman.sock")
      expect(engine.describe("c1")).toBe("container c1")
    }))

  it("takes an http or https collector URL, and says what it wants otherwise", () => {
    const decode = Schema.decodeUnknownEither(Tracing.TracingSection)
    expect(decode({ otlp_url: "http://127.0.0.1:4318/v1/traces" })._tag).toBe("Right")
    expect(decode({ otlp_url: "https://otel.example/v1/traces" })._tag).toBe("Right")
    const ftp = decode({ otlp_url: "ftp://otel.example/" })
    expect(ftp._tag === "Left" ? ftp.left.message : "").toContain("must be an http:// or https:// URL")
    const text = decode({ otlp_url: "collector" })
    expect(text._tag === "Left" ? text.left.message : "").toContain(`e.g. "http://127.0.0.1:4318/v1/traces"`)
  })
})
