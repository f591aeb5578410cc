import { describe, expect, it } from "@effect/vitest"
import { Either, ParseResult, Schema } from "effect"
import { ProxyRoute } from "../src/Routes.js"

const messages = <A, I>(schema: Schema.Schema<A, I>, value: unknown) => {
  const result = Schema.decodeUnknownEither(schema, { errors: "all" })(value)
  return Either.isLeft(result) ? ParseResult.ArrayFormatter.formatErrorSync(result.left).map((i) => ({ path: i.path, message: i.message })) : []
}

describe("proxy routes", () => {
  it("the backend must be host:port", () => {
    const route = { listener: 8443, hostname: "web.svc.mcp.internal", backend: "127.0.0.1", mode: "l7", backendTls: false }
    expect(messages(ProxyRoute, route)).toEqual([{ path: ["backend"], message: `backend must be "host:port", e.g. "127.0.0.1:8080"` }])
    expect(messages(ProxyRoute, { ...route, backend: "127.0.0.1:8080" })).toEqual([])
  })
})
