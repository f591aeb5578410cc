// The one error reporter and argument decoding, without a process: which failures are usage
// errors (exit 2) and which are operational (exit 1), and what a rejected argument says.
import { ValidationError } from "@effect/cli"
import * as HelpDoc from "@effect/cli/HelpDoc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import { describe, expect, it } from "@effect/vitest"
import { Errors, Hostname, Names, Node } from "@mcp/domain"
import { Effect, Either, Option } from "effect"
import * as Arguments from "../src/Arguments.js"
import { CliConfigError } from "../src/CliConfig.js"
import * as Report from "../src/Report.js"

describe("Report.describe", () => {
  it("usage errors exit 2; a parse error from @effect/cli is not printed twice", () => {
    expect(Report.describe(new Report.UsageError({ message: "--direct needs --node <host:port> of the agent" }))).toEqual({
      message: "--direct needs --node <host:port> of the agent",
      exitCode: 2
    })
    expect(Report.describe(ValidationError.missingValue(HelpDoc.p("Missing argument <service>")))).toEqual({ message: undefined, exitCode: 2 })
  })

  it("operational failures exit 1 with the error's own message", () => {
    const wire = new Errors.NodeNotFound({ node: "rift" })
    expect(Report.describe(wire)).toEqual({ message: wire.message, exitCode: 1 })
    const config = new CliConfigError({ path: "/etc/mcp.toml", problems: ["ca: cannot read ca.crt"] })
    expect(Report.describe(config)).toEqual({ message: "/etc/mcp.toml:\n  ca: cannot read ca.crt", exitCode: 1 })
    const unreachable = new Report.Unreachable({
      server: "master",
      attempts: [{ address: "10.0.0.1:9555", reason: "connect ECONNREFUSED 10.0.0.1:9555" }],
      hint: "check that mcp-master runs"
    })
    expect(Report.describe(unreachable)).toEqual({
      message: "cannot reach the master at 10.0.0.1:9555 (connect ECONNREFUSED 10.0.0.1:9555); check that mcp-master runs",
      exitCode: 1
    })
    const transport = new RpcClientError({ reason: "Protocol", message: "Failed to send HTTP request", cause: new Error("socket hang up") })
    expect(Report.describe(transport)).toEqual({ message: "cannot reach the server: Failed to send HTTP request (socket hang up)", exitCode: 1 })
  })
})

describe("Arguments", () => {
  const fails = <A>(effect: Effect.Effect<A, Report.UsageError>) => Either.getLeft(Effect.runSync(Effect.either(effect))).pipe(Option.getOrThrow)

  it("a rejected branded name names the argument and the rule", () => {
    const error = fails(Arguments.decode(Names.ServiceName, "<service>")("Web_App"))
    expect(error._tag).toBe("UsageError")
    expect(error.message).toBe(`<service>: service name "Web_App" may only hold a-z, 0-9 and "-", and must start and end with a letter or digit`)
    expect(fails(Arguments.decode(Hostname.Hostname, "<hostname>")("App.example.com")).message).toBe(
      `<hostname>: hostname "App.example.com" has upper-case letters; write it in lower case`
    )
    expect(Effect.runSync(Arguments.decode(Names.NodeName, "--node")("rift"))).toBe("rift")
  })

  it("optional values decode only when given", () => {
    expect(Effect.runSync(Arguments.decodeOption(Names.ComponentName, "--component")(Option.none()))).toEqual(Option.none())
    expect(fails(Arguments.decodeOption(Names.ComponentName, "--component")(Option.some("-web"))).message).toMatch(/^--component: component name "-web"/)
  })

  it("a struct from several arguments names each failing field by its argument", () => {
    const Pair = Node.NodeInfo.pick("name", "addresses")
    const error = fails(Arguments.decodeFields(Pair, { name: "<name>", addresses: "<address>" })({ name: "Rift", addresses: ["10.0.0.5"] }))
    expect(error.message).toContain(`<name>: node name "Rift" may only hold`)
    expect(error.message).toContain(`<address>: address "10.0.0.5" must be "host:port", e.g. "10.0.0.5:9444"`)
  })
})
