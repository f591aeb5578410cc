/**
 * The drift and flap monitor against real Podman: a container stopped by hand is reported and,
 * with reconcile on, restarted; a crash-looping one is reported as flapping while the
 * monitor's restart backoff grows.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-monitor-"))
let podman: PodmanService
let fleet: LocalFleet.Fleet
let agent: LocalFleet.Daemon
let node: Array<string>

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const containers = () =>
  spawnSync("podman", ["ps", "-a", "--filter", "label=mcp.node=watched", "--format", "{{.Names}} {{.State}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)

const definition = (name: string, cmd: string) => {
  const file = join(dir, `${name}.toml`)
  writeFileSync(file, `name = "${name}"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\nrestart = "no"\ncmd = ["sh", "-c", ${JSON.stringify(cmd)}]\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
  return file
}

const events = async () => (await LocalFleet.mcp(fleet, ["events", "--limit", "500", ...node])).stdout

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 60_000) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`timed out waiting for ${what}:\n${await events()}`)
}

beforeAll(async () => {
  podman = await startPodmanService()
  fleet = await LocalFleet.prepare(join(dir, "fleet"))
  const port = await LocalFleet.freePort()
  const monitor = `[monitor]\ninterval = "1s"\nreconcile = true\nflap_restarts = 2\nflap_window = "5m"\nbackoff_initial = "1s"\nbackoff_max = "8s"\nstable_after = "5m"\n`
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: "watched", port, socket: podman.socketPath, extra: monitor }))
  node = ["--direct", "--node", `127.0.0.1:${port}`]
}, 120_000)

afterAll(async () => {
  await agent?.stop()
  for (const c of containers()) spawnSync("podman", ["rm", "-f", c.split(" ")[0]!], { env: podmanEnv() })
  await podman?.stop()
})

describe("monitor over real Podman", () => {
  it("reports a container stopped by hand and restarts it", async () => {
    const r = await LocalFleet.mcp(fleet, ["deploy", "steady", "--file", definition("steady", "mkdir -p /www && exec httpd -f -p $PORT -h /www"), ...node])
    expect(r.code, r.stderr).toBe(0)
    const name = containers().find((c) => c.startsWith("steady-"))!.split(" ")[0]!
    spawnSync("podman", ["stop", "-t", "1", name], { env: podmanEnv() })
    await waitFor("a drift event", async () => /drift\s+steady\s+.*stopped/.test(await events()))
    await waitFor("the monitor's restart", async () => /restarted steady\/web \(it was stopped\)/.test(await events()))
    await waitFor("the container running again", async () => containers().some((c) => c.startsWith("steady-") && /running|Up/i.test(c)))
  }, 120_000)

  it("reports a crash-looping container as flapping while its restart backoff grows", async () => {
    const r = await LocalFleet.mcp(fleet, ["deploy", "crashy", "--file", definition("crashy", "sleep 1; exit 1"), ...node])
    expect(r.code, r.stderr).toBe(0)
    await waitFor("a flap event", async () => /flap\s+crashy\s+.*restarted \d+ times/.test(await events()), 90_000)
    const waits = [...(await events()).matchAll(/restarted crashy\/web \(it was stopped\) after a (\d+)s backoff/g)].map((m) => Number(m[1]))
    expect(waits.length).toBeGreaterThanOrEqual(2)
    for (let i = 1; i < waits.length; i++) expect(waits[i]!).toBeGreaterThanOrEqual(waits[i - 1]!)
    expect(waits.at(-1)!).toBeGreaterThan(waits[0]!)
    const ps = JSON.parse((await LocalFleet.mcp(fleet, ["ps", "--json", ...node])).stdout) as Array<{ service: string; warnings: Array<string> }>
    expect(ps.find((s) => s.service === "crashy")!.warnings.join(" ")).toMatch(/restarted/)
  }, 150_000)
})
