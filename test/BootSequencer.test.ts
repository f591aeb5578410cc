/**
 * The incident replay: services in three stages, every container removed behind the agent's
 * back, the agent restarted: stages come back in order, gated on their checks, on the same
 * host ports. Then a DNS-stage container killed while apps run is restarted first and the
 * later stages re-gated; and a stage whose check never passes holds back the later ones.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, makePrivateStorage, type PodmanService, resetContainerState, startPodmanService } from "./support/Podman.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-boot-"))
let podman: PodmanService
let fleet: LocalFleet.Fleet
const running: Array<LocalFleet.Daemon> = []

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const containers = (node: string) =>
  spawnSync("podman", ["ps", "-a", "--filter", `label=mcp.node=${node}`, "--format", "{{.Names}} {{.State}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)
const removeAll = (node: string) => {
  for (const c of containers(node)) spawnSync("podman", ["rm", "-f", c.split(" ")[0]!], { env: podmanEnv() })
}

const service = (name: string) => {
  const file = join(dir, `${name}.toml`)
  writeFileSync(file, `name = "${name}"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\nrestart = "no"\ncmd = ["sh", "-c", "mkdir -p /www && echo ${name} > /www/index.html && exec httpd -f -p $PORT -h /www"]\n[[components.routes]]\nport = 8443\nmode = "l7"\n[components.health]\nkind = "http"\npath = "/"\ninterval = "1s"\n`)
  return file
}

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

const waitFor = async <A>(what: string, probe: () => Promise<A | undefined>, timeoutMs = 60_000): Promise<A> => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`timed out waiting for ${what}`)
}

interface Stage { name: string; state: string; startedAt?: string; upAt?: string; lastError?: string; checks: Array<{ service: string; check: string; ok: boolean; detail: string }> }
const bootStatus = async (node: Array<string>) => JSON.parse(await cli(["boot", "status", "--json", ...node])).stages as Array<Stage>

const startAgent = async (config: string) => {
  const d = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, config)
  running.push(d)
  return d
}

beforeAll(async () => {
  podman = await startPodmanService()
  fleet = await LocalFleet.prepare(join(dir, "fleet"))
}, 120_000)

afterAll(async () => {
  for (const d of running) await d.stop()
  removeAll("boot")
  removeAll("stuck")
  removeAll("bound")
  await podman?.stop()
})

describe("boot sequencer", () => {
  it("brings stages back in order after the engine lost every container, and restarts an earlier stage first", async () => {
    const port = await LocalFleet.freePort()
    const sequence = `[boot]\ncheck_interval = "1s"\nrestart_after = 2\n` +
      `[[boot.sequence]]\nname = "dns"\nservices = ["dns"]\ntimeout = "30s"\n[[boot.sequence.checks]]\nservice = "dns"\nkind = "tcp"\n` +
      `[[boot.sequence]]\nname = "core"\nservices = ["core"]\ntimeout = "30s"\n[[boot.sequence.checks]]\nservice = "core"\nkind = "http"\npath = "/"\n` +
      `[[boot.sequence]]\nname = "apps"\nservices = ["app"]\ntimeout = "30s"\n`
    const config = LocalFleet.writeAgentConfig(fleet, { node: "boot", port, socket: podman.socketPath, extra: sequence })
    const node = ["--direct", "--node", `127.0.0.1:${port}`]
    let agent = await startAgent(config)
    for (const s of ["dns", "core", "app"]) await cli(["deploy", s, "--file", service(s), ...node])
    const before = JSON.parse(await cli(["ps", "--json", ...node])) as Array<{ service: string; components: Array<{ routes: Array<{ hostPort: number }> }> }>
    const portsBefore = Object.fromEntries(before.map((s) => [s.service, s.components[0]!.routes[0]!.hostPort]))

    // The incident: the engine loses every container while the agent is down.
    await agent.stop()
    removeAll("boot")
    expect(containers("boot")).toEqual([])
    agent = await startAgent(config)
    const stages = await waitFor("all stages up", async () => {
      const s = await bootStatus(node)
      return s.length === 3 && s.every((x) => x.state === "up") ? s : undefined
    })
    expect(stages.map((s) => s.name)).toEqual(["dns", "core", "apps"])
    // Each stage started only after the one before it was up.
    for (let i = 1; i < stages.length; i++) expect(Date.parse(stages[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(stages[i - 1]!.upAt!))
    const after = JSON.parse(await cli(["ps", "--json", ...node])) as Array<{ service: string; components: Array<{ state: string; routes: Array<{ hostPort: number }> }> }>
    expect(Object.fromEntries(after.map((s) => [s.service, s.components[0]!.routes[0]!.hostPort]))).toEqual(portsBefore)
    expect(after.every((s) => s.components[0]!.state === "running")).toBe(true)
    expect(await cli(["events", ...node])).toMatch(/none of the registry's 3 containers/)

    // Kill the DNS-stage container while apps run: it is restarted first, the rest re-gated.
    const dnsContainer = containers("boot").find((c) => c.startsWith("dns-"))!.split(" ")[0]!
    spawnSync("podman", ["kill", dnsContainer], { env: podmanEnv() })
    await waitFor("dns restarted by the sequencer", async () => {
      const events = await cli(["events", ...node])
      return /stage dns: dns failed 2 checks in a row; restarting, then re-gating the later stages/.test(events) ? true : undefined
    })
    const healed = await waitFor("all stages up again", async () => {
      const s = await bootStatus(node)
      return s.every((x) => x.state === "up") ? s : undefined
    })
    expect(Date.parse(healed[1]!.upAt!)).toBeGreaterThanOrEqual(Date.parse(healed[0]!.upAt!))
    expect(containers("boot").find((c) => c.startsWith("dns-"))).toMatch(/running|Up/i)
  }, 240_000)

  it("after the engine's container database is reset, the stages come back in order on the same ports", async () => {
    // A Podman of its own, so resetting its storage touches nothing else on the machine.
    const storage = makePrivateStorage()
    let engine = await startPodmanService({ storage })
    const port = await LocalFleet.freePort()
    const sequence = `[[boot.sequence]]\nname = "dns"\nservices = ["r-dns"]\ntimeout = "30s"\n` +
      `[[boot.sequence]]\nname = "core"\nservices = ["r-core"]\ntimeout = "30s"\n` +
      `[[boot.sequence]]\nname = "apps"\nservices = ["r-app"]\ntimeout = "30s"\n`
    const configFor = (socket: string) => LocalFleet.writeAgentConfig(fleet, { node: "reset", port, socket, extra: sequence })
    const node = ["--direct", "--node", `127.0.0.1:${port}`]
    let agent = await startAgent(configFor(engine.socketPath))
    try {
      for (const s of ["r-dns", "r-core", "r-app"]) await cli(["deploy", s, "--file", service(s), ...node])
      const portsOf = async () => Object.fromEntries((JSON.parse(await cli(["ps", "--json", ...node])) as Array<{ service: string; components: Array<{ state: string; routes: Array<{ hostPort: number }> }> }>)
        .map((s) => [s.service, `${s.components[0]!.state} ${s.components[0]!.routes[0]!.hostPort}`]))
      const before = await portsOf()
      await agent.stop()
      await engine.stop()
      resetContainerState(storage)
      engine = await startPodmanService({ storage })
      agent = await startAgent(configFor(engine.socketPath))
      const stages = await waitFor("all stages up after the reset", async () => {
        const s = await bootStatus(node)
        return s.length === 3 && s.every((x) => x.state === "up") ? s : undefined
      })
      for (let i = 1; i < stages.length; i++) expect(Date.parse(stages[i]!.startedAt!)).toBeGreaterThanOrEqual(Date.parse(stages[i - 1]!.upAt!))
      expect(await portsOf()).toEqual(before)
      expect(Object.values(before).every((v) => v.startsWith("running"))).toBe(true)
    } finally {
      await agent.stop()
      resetContainerState(storage)
      await engine.stop()
    }
  }, 240_000)

  it("a stage whose check never passes holds back the later stages and says why", async () => {
    const port = await LocalFleet.freePort()
    const closed = await LocalFleet.freePort()
    const sequence = `[[boot.sequence]]\nname = "dns"\nservices = ["s1"]\ntimeout = "3s"\n[[boot.sequence.checks]]\nservice = "s1"\nkind = "tcp"\nport = ${closed}\n` +
      `[[boot.sequence]]\nname = "apps"\nservices = ["s2"]\n`
    const config = LocalFleet.writeAgentConfig(fleet, { node: "stuck", port, socket: podman.socketPath, extra: sequence })
    const node = ["--direct", "--node", `127.0.0.1:${port}`]
    let agent = await startAgent(config)
    for (const s of ["s1", "s2"]) await cli(["deploy", s, "--file", service(s), ...node])
    await agent.stop()
    removeAll("stuck")
    agent = await startAgent(config)
    const stages = await waitFor("the first stage to fail", async () => {
      const s = await bootStatus(node)
      return s[0]?.lastError !== undefined ? s : undefined
    })
    expect(stages[0]!.lastError).toMatch(new RegExp(`s1 tcp: .*`))
    expect(stages[1]!.state).toBe("waiting")
    expect(containers("stuck").some((c) => c.startsWith("s2-"))).toBe(false)
    const table = await cli(["boot", "status", ...node])
    expect(table).toMatch(/dns\s+(failed|retrying)/)
  }, 120_000)

  it("on a node that publishes ports on one address ([ports] bind), the checks probe that address: healthy services come up and are never restarted", async () => {
    // 127.0.0.2: a port published there answers nothing on 127.0.0.1, as on a host whose
    // services are bound to its private address. (The chaos fleet found the checks probing
    // 127.0.0.1, failing, and the supervisor restarting every service once its stage timed out.)
    const port = await LocalFleet.freePort()
    const sequence = `[ports]\nbind = "127.0.0.2"\n[boot]\ncheck_interval = "1s"\nrestart_after = 2\n` +
      `[[boot.sequence]]\nname = "core"\nservices = ["b-core"]\ntimeout = "20s"\n[[boot.sequence.checks]]\nservice = "b-core"\nkind = "http"\npath = "/"\n` +
      `[[boot.sequence]]\nname = "apps"\nservices = ["b-app"]\ntimeout = "20s"\n`
    const config = LocalFleet.writeAgentConfig(fleet, { node: "bound", port, socket: podman.socketPath, extra: sequence })
    const node = ["--direct", "--node", `127.0.0.1:${port}`]
    await startAgent(config)
    for (const s of ["b-core", "b-app"]) await cli(["deploy", s, "--file", service(s), ...node])
    const stages = await waitFor("both stages up", async () => {
      const s = await bootStatus(node)
      return s.length === 2 && s.every((x) => x.state === "up" && x.checks.length > 0 && x.checks.every((c) => c.ok)) ? s : undefined
    }, 40_000).catch(async (e: unknown) => {
      throw new Error(`${String(e)}; boot status: ${JSON.stringify(await bootStatus(node).catch(() => "unreadable"))}`)
    })
    // The explicit check (core) and the service's own health check (apps) both passed.
    expect(stages.map((s) => s.checks.map((c) => `${c.service} ${c.check}`))).toEqual([["b-core http /"], ["b-app web http /"]])
    // Six more rounds of checks: none fails, nothing is restarted.
    await new Promise((r) => setTimeout(r, 6000))
    expect((await bootStatus(node)).every((x) => x.state === "up" && x.checks.every((c) => c.ok))).toBe(true)
    expect(await cli(["events", ...node])).not.toMatch(/restarting/)
    const bound = containers("bound")
    expect(bound.length === 2 && bound.every((c) => /running|Up/i.test(c)), bound.join("; ")).toBe(true)
  }, 120_000)
})
