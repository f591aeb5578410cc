/**
 * A master and three agents (two workers, one edge) as separate processes on loopback over real
 * Podman: placement, the fleet view, a dead agent turning unhealthy and back, and a master
 * restart that leaves running containers alone.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-fleet-"))
let podman: PodmanService
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon
let masterConfig = ""
const agents = new Map<string, { daemon: LocalFleet.Daemon; config: string }>()

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const fleetContainers = () =>
  spawnSync("podman", ["ps", "-a", "--filter", "label=mcp.service", "--format", "{{.ID}} {{.Names}} {{.Labels}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => /mcp\.node:(w1|w2|e1)/.test(l)).map((l) => l.split(" ").slice(0, 2).join(" ")).sort()

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

const nodeHealth = async () =>
  Object.fromEntries((JSON.parse(await cli(["node", "list", "--json"])) as Array<{ info: { name: string }; health: string }>).map((n) => [n.info.name, n.health]))

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check()) return Date.now() - start
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

const service = (name: string, pin?: string) => {
  const file = join(dir, `${name}.toml`)
  writeFileSync(file, `name = "${name}"\n${pin === undefined ? "" : `node = "${pin}"\n`}[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\ncmd = ["sh", "-c", "mkdir -p /www && echo ${name} > /www/index.html && exec httpd -f -p $PORT -h /www"]\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
  return file
}

const startAgent = async (name: string, role: "worker" | "edge", masters: ReadonlyArray<string>) => {
  const existing = agents.get(name)
  const port = await LocalFleet.freePort()
  const config = existing?.config ?? LocalFleet.writeAgentConfig(fleet, { node: name, role, port, socket: podman.socketPath, masters })
  agents.set(name, { daemon: await LocalFleet.spawnDaemon(LocalFleet.bins.agent, config), config })
}

beforeAll(async () => {
  podman = await startPodmanService()
  const masterPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters })
  masterConfig = LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "1s", missThreshold: 3, probeTimeout: "1s" })
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
  await Promise.all([startAgent("w1", "worker", masters), startAgent("w2", "worker", masters), startAgent("e1", "edge", masters)])
  await waitFor("all nodes healthy", async () => Object.values(await nodeHealth()).filter((h) => h === "healthy").length === 3)
}, 120_000)

afterAll(async () => {
  for (const name of ["pinned", "floating"]) await LocalFleet.mcp(fleet, ["undeploy", name]).catch(() => undefined)
  for (const { daemon } of agents.values()) await daemon.stop()
  await master?.stop()
  for (const c of fleetContainers()) spawnSync("podman", ["rm", "-f", c.split(" ")[0]!], { env: podmanEnv() })
  await podman?.stop()
})

describe("a master with three agents", () => {
  it("places, survives a dead agent and a master restart", async () => {
    await cli(["deploy", "pinned", "--file", service("pinned", "w2")])
    await cli(["deploy", "floating", "--file", service("floating")])
    const ps = JSON.parse(await cli(["ps", "--json"]))
    const where = Object.fromEntries(ps.services.map((s: { service: string; node: string }) => [s.service, s.node]))
    expect(where["pinned"]).toBe("w2")
    expect(["w1", "w2"]).toContain(where["floating"]) // a worker, never the edge
    expect(ps.unreachable).toEqual([])
    const table = await cli(["ps"])
    expect(table).toMatch(/pinned\s+w2\s+web\s+running/)

    // An edge node never gets containers, even when pinned.
    const refused = await LocalFleet.mcp(fleet, ["deploy", "edgy", "--file", service("edgy", "e1")])
    expect(refused.code).toBe(1)
    expect(refused.stderr).toContain(`node "e1" is an edge node`)

    // Kill w1: unhealthy after 3 missed heartbeats (1 s each) and a failed probe.
    await agents.get("w1")!.daemon.kill9()
    const tookMs = await waitFor("w1 unhealthy", async () => (await nodeHealth())["w1"] === "unhealthy")
    expect(tookMs).toBeLessThan(15_000)
    const partial = JSON.parse(await cli(["ps", "--json"]))
    expect(partial.unreachable.map((u: { node: string }) => u.node)).toEqual(["w1"])
    expect(partial.services.some((s: { service: string }) => s.service === "pinned")).toBe(true)
    const events = await cli(["events"])
    expect(events).toMatch(/w1\s+health\s+-\s+-\s+healthy -> suspect/)
    expect(events).toMatch(/w1\s+health\s+-\s+-\s+suspect -> unhealthy: probe failed/)

    // Bring it back: healthy again.
    await startAgent("w1", "worker", [])
    await waitFor("w1 healthy again", async () => (await nodeHealth())["w1"] === "healthy")

    // Restart the master: the fleet view comes back and no container was touched.
    const before = fleetContainers()
    await master.stop()
    master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
    await waitFor("all nodes healthy after master restart", async () => Object.values(await nodeHealth()).filter((h) => h === "healthy").length === 3)
    const after = JSON.parse(await cli(["ps", "--json"]))
    expect(Object.fromEntries(after.services.map((s: { service: string; node: string }) => [s.service, s.node]))).toEqual(where)
    expect(fleetContainers()).toEqual(before)
    // The restarted master's live tree: three node fibers running, each node healthy, and the edge reconciler's rounds.
    expect(await cli(["tree"])).toMatch(/NodeSupervisors {2}\[3 node fibers supervised\][\s\S]*w1 {2}\[running, node healthy\][\s\S]*w2 {2}\[running, node healthy\][\s\S]*EdgeReconciler {2}\[running, \d+ rounds?/)
  }, 240_000)
})
