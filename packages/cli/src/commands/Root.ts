/**
 * The `mcp` command tree, run on a command line. Only the modules of the command named on it
 * are loaded (each command module brings its own dependencies: the RPC client, the PKI, ...);
 * a command line that names none (`mcp`, `mcp --help`, an unknown command) loads them all, so
 * help lists every command and a wrong one is reported against the whole tree.
 */
import type * as CliApp from "@effect/cli/CliApp"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Runtime from "@effect/platform/Runtime"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import * as NodePath from "@effect/platform-node/NodePath"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as NodeTerminal from "@effect/platform-node/NodeTerminal"
import { Effect, Layer, type Scope } from "effect"
import { print } from "../Output.js"
import { type CliFailure, report } from "../Report.js"
import { buildInfo, formatVersion } from "./Version.js"

/** A command the root can run: what it needs is provided below, and every failure is one `report` knows. */
// `any`: each command has its own name and parsed config.
type AnyCommand = Command.Command<any, CliApp.CliApp.Environment | Scope.Scope, CliFailure, any>

/**
 * What @effect/cli needs (files, paths, the terminal), not all of NodeContext: its command
 * executor and worker manager load child_process and worker modules on every command, which
 * none of ours uses.
 */
const platform = Layer.mergeAll(NodeFileSystem.layer, NodePath.layer, NodeTerminal.layer)

const version = Command.make("version", { json: Options.boolean("json").pipe(Options.withDescription("print JSON for scripts")) }, (o) =>
  print(formatVersion(buildInfo(), o.json))
).pipe(Command.withDescription("print the version, git commit and protocol version"))

/**
 * With OTEL_EXPORTER_OTLP_TRACES_ENDPOINT set (the OpenTelemetry variable), the command's spans go
 * there over OTLP/HTTP, sent before it exits; the exporter is loaded only then.
 */
const tracing = (endpoint: string | undefined): Layer.Layer<never> =>
  endpoint === undefined || endpoint === ""
    ? Layer.empty
    : !/^https?:\/\/[^/]/.test(endpoint)
    ? Layer.effectDiscard(Effect.sync(() => console.error(`mcp: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT must be an http:// or https:// URL (got ${JSON.stringify(endpoint)}); no traces are sent`)))
    : Layer.unwrapEffect(Effect.map(Effect.promise(() => import("@mcp/rpc/Tracing")), (Tracing) => Tracing.layerOtlp({ name: "mcp", version: buildInfo().version }, endpoint)))

/** Every command, in the order help lists them, with the module that defines it. */
const commands: ReadonlyArray<readonly [string, () => Promise<AnyCommand>]> = [
  ["deploy", async () => (await import("./Service.js")).deploy],
  ["stop", async () => (await import("./Service.js")).stop],
  ["start", async () => (await import("./Service.js")).start],
  ["restart", async () => (await import("./Service.js")).restart],
  ["undeploy", async () => (await import("./Service.js")).undeploy],
  ["ps", async () => (await import("./Status.js")).ps],
  ["status", async () => (await import("./Status.js")).status],
  ["logs", async () => (await import("./Service.js")).logs],
  ["events", async () => (await import("./Service.js")).events],
  ["sync", async () => (await import("./Fleet.js")).sync],
  ["node", async () => (await import("./Fleet.js")).node],
  ["tree", async () => (await import("./Fleet.js")).tree],
  ["agent", async () => (await import("./Fleet.js")).agent],
  ["route", async () => (await import("./Route.js")).route],
  ["edge", async () => (await import("./Edge.js")).edge],
  ["dns", async () => (await import("./Edge.js")).dns],
  ["boot", async () => (await import("./Boot.js")).boot],
  ["validate", async () => (await import("./Validate.js")).validate],
  ["ca", async () => (await import("./Ca.js")).ca],
  ["token", async () => (await import("./Token.js")).token],
  ["version", async () => version]
]

/** The commands a command line needs: the one it names first, or all of them. */
export const load = async (args: ReadonlyArray<string>): Promise<Array<AnyCommand>> => {
  const named = args[0] === undefined ? undefined : commands.find(([name]) => name === args[0])
  return Promise.all((named === undefined ? commands : [named]).map(([, make]) => make()))
}

/** Parses `argv` (process.argv: node, script, arguments) and runs the command, as the `mcp` process. */
export const run = async (argv: ReadonlyArray<string>) => {
  const subcommands = await load(argv.slice(2))
  const mcp = Command.make("mcp").pipe(
    Command.withDescription("MCP: deploy and run containers on a small fleet of nodes"),
    Command.withSubcommands(subcommands as [AnyCommand, ...Array<AnyCommand>])
  )
  const cli = Command.run(mcp, { name: "mcp", version: buildInfo().version })
  cli(argv).pipe(
    // The command's root span: what it calls on the master (and the master on agents) hangs below.
    Effect.withSpan(`mcp ${argv[2] ?? ""}`.trim()),
    // Commands fail with typed errors and report nothing themselves: one reporter for all of them.
    report,
    Effect.provide(tracing(process.env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"])),
    // Connections a command opened close when it ends.
    Effect.scoped,
    Effect.provide(platform),
    NodeRuntime.runMain({
      disableErrorReporting: false,
      // Exit at once, on success too (runMain exits only on failure or a signal, else lets the
      // event loop drain): a drained loop makes Node tear the whole heap down page by page
      // first, some 10 ms after the command's work is done. Nothing is lost: the command has
      // ended and its scope is closed (connections too), and stdout and stderr write
      // synchronously to files, pipes and terminals on Linux. No argument: a command that
      // reported its own failure has set process.exitCode.
      teardown: (exit, onExit) =>
        Runtime.defaultTeardown(exit, (code) => {
          onExit(code)
          process.exit()
        })
    })
  )
}
