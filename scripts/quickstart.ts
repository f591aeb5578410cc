/**
 * The quick start's main job, on this machine: a container engine (Podman's API service on a
 * private socket), a platform CA and tokens, a master and an agent with embedded defaults, and
 * a real service deployed through `mcp`, then `mcp ps` and a request to it. Ctrl-C cleans up.
 *
 *   npx tsx scripts/quickstart.ts            # run, then wait for Ctrl-C
 *   npx tsx scripts/quickstart.ts --once     # run, clean up and exit (CI, scripts)
 */
import { rmSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as LocalFleet from "../test/support/LocalFleet.js"
import { startPodmanService } from "../test/support/Podman.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const dir = join(repo, ".mcp-local", "quickstart")
const once = process.argv.includes("--once")
const cleanups: Array<() => Promise<void>> = []

const step = (message: string) => console.log(`\n==> ${message}`)

const cleanup = async () => {
  step("cleaning up")
  for (const c of cleanups.reverse()) await c().catch((e) => console.error(`cleanup: ${e}`))
}

const run = async (fleet: LocalFleet.Fleet, args: ReadonlyArray<string>) => {
  console.log(`$ mcp ${args.join(" ")}`)
  const r = await LocalFleet.mcp(fleet, args)
  process.stdout.write(r.stdout)
  process.stderr.write(r.stderr)
  if (r.code !== 0) throw new Error(`mcp ${args[0]} failed with exit code ${r.code}`)
  return r
}

const main = async () => {
  rmSync(dir, { recursive: true, force: true })
  step("starting the container engine (Podman API service on a private socket)")
  const podman = await startPodmanService()
  cleanups.push(() => podman.stop())
  console.log(`podman API at ${podman.socketPath}`)

  step("creating a platform CA, server certificate and tokens in .mcp-local/quickstart")
  const masterPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  const fleet = await LocalFleet.prepare(dir, { masters })

  step(`starting mcp-master on 127.0.0.1:${masterPort}`)
  const master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "2s" }))
  cleanups.push(() => master.stop())

  step("enrolling node 'local': a certificate naming it and a system token named after it (what `mcp ca issue` and `mcp token create --kind system --name local` make)")
  await LocalFleet.enrolNode(fleet, "local")

  step("starting mcp-agent for node 'local' (it registers with the master, with its own token)")
  const agentPort = await LocalFleet.freePort()
  const agentConfig = LocalFleet.writeAgentConfig(fleet, { node: "local", port: agentPort, socket: podman.socketPath, masters })
  const agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, agentConfig)
  cleanups.push(() => agent.stop())
  cleanups.push(async () => void (await LocalFleet.mcp(fleet, ["undeploy", "hello"])))
  for (let i = 0; i < 60; i++) {
    const nodes = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
    if (nodes.code === 0 && JSON.parse(nodes.stdout).some((n: { health: string }) => n.health === "healthy")) break
    await new Promise((r) => setTimeout(r, 500))
  }
  await run(fleet, ["node", "list"])

  step("deploying the example service 'hello' (test/fixtures/services/good/hello.toml)")
  await run(fleet, ["deploy", "hello"])
  step("what runs")
  const ps = await LocalFleet.mcp(fleet, ["ps", "--json"])
  const hostPort = JSON.parse(ps.stdout).services[0].components[0].routes[0].hostPort as number
  await run(fleet, ["ps"])
  step(`a request to the service at http://127.0.0.1:${hostPort}/`)
  const res = await fetch(`http://127.0.0.1:${hostPort}/`)
  console.log(`HTTP ${res.status}: ${(await res.text()).trim()}`)

  if (!once) {
    step("running; press Ctrl-C to undeploy and stop everything")
    await new Promise<void>((resolve) => {
      process.once("SIGINT", () => resolve())
      process.once("SIGTERM", () => resolve())
    })
  }
}

main()
  .then(cleanup)
  .catch(async (e) => {
    console.error(`\nquick start failed: ${e instanceof Error ? e.message : String(e)}`)
    await cleanup()
    process.exitCode = 1
  })
