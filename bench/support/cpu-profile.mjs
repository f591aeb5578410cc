/**
 * A CPU profile of any Node process, for a flag Node 20 refuses in NODE_OPTIONS (`--cpu-prof is
 * not allowed in NODE_OPTIONS`): `NODE_OPTIONS="--import <this file>"` and MCP_CPU_PROFILE_DIR=<dir>
 * write <dir>/<pid>.cpuprofile when the process exits. It reaches processes a bench starts through
 * a launcher (the repository's bin, the release's `mcp`), which a node flag on a command line does
 * not. Sampled every 200 µs, like --cpu-prof-interval 200.
 */
import { mkdirSync, writeFileSync } from "node:fs"
import { Session } from "node:inspector"
import { join } from "node:path"

const dir = process.env.MCP_CPU_PROFILE_DIR
if (dir !== undefined && dir !== "") {
  mkdirSync(dir, { recursive: true })
  const session = new Session()
  session.connect()
  session.post("Profiler.enable")
  session.post("Profiler.setSamplingInterval", { interval: 200 })
  session.post("Profiler.start")
  // The session of the main thread answers synchronously, so the profile is written before exit.
  process.on("exit", () => {
    session.post("Profiler.stop", (error, answer) => {
      if (error !== null) process.stderr.write(`cpu-profile: no profile of pid ${process.pid}: ${error.message}\n`)
      else writeFileSync(join(dir, `${process.pid}.cpuprofile`), JSON.stringify(answer.profile))
    })
  })
}
