/** The `mcp` operator CLI: parses the command line and runs the chosen command. */
import { Command } from "@effect/cli"
import { NodeContext, NodeRuntime } from "@effect/platform-node"
import { Effect } from "effect"
import { boot } from "./commands/Boot.js"
import { ca } from "./commands/Ca.js"
import { dns, edge } from "./commands/Edge.js"
import { agent, node, sync, tree } from "./commands/Fleet.js"
import { route } from "./commands/Route.js"
import { deploy, events, logs, ps, restart, start, status, stop, undeploy } from "./commands/Service.js"
import { token } from "./commands/Token.js"
import { validate } from "./commands/Validate.js"
import { report } from "./Report.js"

const mcp = Command.make("mcp").pipe(
  Command.withDescription("MCP: deploy and run containers on a small fleet of nodes"),
  Command.withSubcommands([deploy, stop, start, restart, undeploy, ps, status, logs, events, sync, node, tree, agent, route, edge, dns, boot, validate, ca, token])
)

const cli = Command.run(mcp, { name: "mcp", version: "0.1.0" })

cli(process.argv).pipe(
  // Commands fail with typed errors and report nothing themselves: one reporter for all of them.
  report,
  // Connections a command opened close when it ends.
  Effect.scoped,
  Effect.provide(NodeContext.layer),
  NodeRuntime.runMain({ disableErrorReporting: false })
)
