/** `mcp-master --config <file>`: runs the master until SIGINT/SIGTERM. */
import { HttpServer } from "@effect/platform"
import { NodeRuntime } from "@effect/platform-node"
import { Effect, Either, Layer, Logger, LogLevel } from "effect"
import { readFileSync } from "node:fs"
import * as Master from "./Master.js"
import * as MasterConfig from "./MasterConfig.js"

const args = process.argv.slice(2)
if (args.includes("--version")) {
  console.log(`mcp-master ${Master.VERSION}`)
  process.exit(0)
}
const at = args.indexOf("--config")
const path = at >= 0 ? args[at + 1] : undefined
if (path === undefined || args.includes("--help")) {
  console.error("usage: mcp-master --config <mcp-master.toml>")
  process.exit(path === undefined && !args.includes("--help") ? 2 : 0)
}

let text: string
try {
  text = readFileSync(path, "utf8")
} catch (e) {
  console.error(`mcp-master: cannot read config ${path}: ${(e as Error).message}`)
  process.exit(1)
}
const decoded = MasterConfig.decode(text)
if (Either.isLeft(decoded)) {
  for (const p of decoded.left) console.error(`${path}: ${p.path}: ${p.message}`)
  process.exit(1)
}
const config = decoded.right

Effect.gen(function* () {
  const address = (yield* HttpServer.HttpServer).address
  yield* Effect.logInfo(`mcp-master listening on https://${address._tag === "TcpAddress" ? `${address.hostname}:${address.port}` : config.listen}/master`)
  return yield* Effect.never
}).pipe(
  Effect.provide(Master.layer(config)),
  Effect.provide(Layer.merge(Logger.logFmt, Logger.minimumLogLevel(LogLevel.Info))),
  Effect.tapErrorCause((cause) => Effect.logError("mcp-master stopped", cause)),
  NodeRuntime.runMain({ disableErrorReporting: true })
)
