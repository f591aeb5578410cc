/** `mcp-agent --config <file>`: runs one node's agent until SIGINT/SIGTERM. */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Either, Layer, Logger, LogLevel } from "effect"
import { readFileSync } from "node:fs"
import * as Agent from "./Agent.js"
import * as AgentConfig from "./AgentConfig.js"

const usage = "usage: mcp-agent --config <mcp-agent.toml>"
const args = process.argv.slice(2)

if (args.includes("--version")) {
  console.log(`mcp-agent ${Agent.VERSION}`)
  process.exit(0)
}
const at = args.indexOf("--config")
const path = at >= 0 ? args[at + 1] : undefined
if (path === undefined || args.includes("--help")) {
  console.error(usage)
  process.exit(path === undefined && !args.includes("--help") ? 2 : 0)
}

let text: string
try {
  text = readFileSync(path, "utf8")
} catch (e) {
  console.error(`mcp-agent: cannot read config ${path}: ${(e as Error).message}`)
  process.exit(1)
}
const decoded = AgentConfig.decode(text)
if (Either.isLeft(decoded)) {
  for (const p of decoded.left) console.error(`${path}: ${p.path}: ${p.message}`)
  process.exit(1)
}
const config = decoded.right

Effect.gen(function* () {
  const address = (yield* HttpServer.HttpServer).address
  yield* Effect.logInfo(`mcp-agent ${config.node} listening on https://${address._tag === "TcpAddress" ? `${address.hostname}:${address.port}` : config.listen}/agent`)
  return yield* Effect.never
}).pipe(
  Effect.provide(Agent.layer(config)),
  Effect.provide(Layer.merge(Logger.logFmt, Logger.minimumLogLevel(LogLevel.Info))),
  Effect.tapErrorCause((cause) => Effect.logError("mcp-agent stopped", cause)),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
