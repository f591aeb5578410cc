/**
 * The `mcp` operator CLI. `mcp --version` and `mcp version [--json]` answer at once from what
 * the build baked in; every other command line loads the command tree (commands/Root.ts), and of
 * the commands only the one it names.
 */
import { buildInfo, formatVersion } from "./commands/Version.js"

const args = process.argv.slice(2)
const quick = args.length === 1 && args[0] === "--version" ? false
  : args[0] === "version" && (args.length === 1 || (args.length === 2 && args[1] === "--json")) ? args.length === 2
  : undefined
if (quick !== undefined) {
  console.log(formatVersion(buildInfo(), quick))
} else {
  const Root = await import("./commands/Root.js")
  await Root.run(process.argv)
}
