/**
 * One real agent process over real Podman, driven by the real CLI with --direct: the whole
 * lifecycle of a busybox httpd service, and bad input that must change nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { AgentRpcs, Transport } from "@mcp/rpc"
import { Effect, Redacted, Stream } from "effect"
import { readFileSync } from "node:fs"
import Database from "better-sqlite3"
import { spawnSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

let podman: PodmanService
let fleet: LocalFleet.Fleet
let agent: LocalFleet.Daemon
let node: Array<string>
let agentUrl = ""
const dir = mkdtempSync(join(tmpdir(), "mcp-agent-it-"))

const definition = (name: string, explicitPort: number, extra = "") => {
  const file = join(dir, `${name}-${Math.random().toString(36).slice(2)}.toml`)
  writeFileSync(file, `name = "${name}"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
# One httpd on $PORT (the route), one on 8080 (the explicit port mapping).
cmd = ["sh", "-c", "mkdir -p /www /x && echo port=$PORT > /www/index.html && echo explicit > /x/index.html && httpd -p 8080 -h /x && exec httpd -f -p $PORT -h /www"]
ports = ["127.0.0.1:${explicitPort}:8080"]
${extra}
[[components.routes]]
port = 8443
mode = "l7"

[components.health]
kind = "http"
path = "/"
interval = "1s"
`)
  return file
}

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

const statusOf = async (service: string) => JSON.parse(await cli(["status", service, ...node, "--json"]))

const get = (port: number) => fetch(`http://127.0.0.1:${port}/`).then(async (r) => (await r.text()).trim(), (e: Error) => `unreachable: ${e.message}`)

const engineContainers = (service: string) =>
  spawnSync("podman", ["ps", "-a", "--filter", `label=mcp.service=${service}`, "--filter", "label=mcp.node=it", "--format", "{{.Names}} {{.State}}"], {
    encoding: "utf8",
    env: { ...process.env, CONTAINERS_CONF: containersConfPath() }
  }).stdout.trim().split("\n").filter((l) => l.length > 0)

/** The deploy id of each of the service's containers, and whether it runs, as the engine has them. */
const engineDeploys = (service: string) =>
  spawnSync("podman", ["ps", "-a", "--filter", `label=mcp.service=${service}`, "--filter", "label=mcp.node=it", "--format", `{{index .Labels "mcp.deploy"}} {{.Status}}`], {
    encoding: "utf8",
    env: { ...process.env, CONTAINERS_CONF: containersConfPath() }
  }).stdout.trim().split("\n").filter((l) => l.length > 0).map((l) => `${l.split(" ")[0]} ${/ Up /.test(` ${l} `) ? "running" : "not running"}`)

/**
 * A service whose http health check passes (httpd on $PORT), or one whose tcp check on $PORT never
 * does (nothing listens: the container only sleeps). Short intervals keep the failing gate brief.
 */
const healthDefinition = (name: string, healthy: boolean) => {
  const file = join(dir, `${name}-${healthy ? "healthy" : "sick"}-${Math.random().toString(36).slice(2)}.toml`)
  writeFileSync(file, `name = "${name}"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
${healthy
  ? `cmd = ["sh", "-c", "mkdir -p /www && echo healthy=$PORT > /www/index.html && exec httpd -f -p $PORT -h /www"]`
  : `cmd = ["sleep", "3600"]\nenv = ["VERSION=sick"]`}
[[components.routes]]
port = 8443
mode = "l7"

[components.health]
${healthy ? `kind = "http"\npath = "/"` : `kind = "tcp"`}
interval = "200ms"
timeout = "200ms"
retries = ${healthy ? 25 : 2}
`)
  return file
}

const registryPorts = () => {
  const db = new Database(join(fleet.dir, "it", "registry.db"), { readonly: true })
  try {
    return db.prepare("SELECT port, service, saga_id FROM ports ORDER BY port").all() as Array<{ port: number; service: string; saga_id: string | null }>
  } finally {
    db.close()
  }
}

beforeAll(async () => {
  podman = await startPodmanService()
  fleet = await LocalFleet.prepare(join(dir, "fleet"))
  const port = await LocalFleet.freePort()
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: "it", port, socket: podman.socketPath }))
  node = ["--direct", "--node", `127.0.0.1:${port}`]
  agentUrl = `https://127.0.0.1:${port}/agent`
}, 120_000)

/** Sends a raw Deploy payload, as a client that skipped the CLI's own validation would. */
const rawDeploy = (definition: unknown) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const client = yield* Transport.makeClient(AgentRpcs, {
          url: agentUrl,
          ca: readFileSync(join(fleet.caDir, "ca.crt"), "utf8"),
          token: Redacted.make(fleet.operatorToken)
        })
        return yield* Effect.flip(Stream.runDrain(client.Deploy({ definition, dryRun: false })))
      })
    )
  )

afterAll(async () => {
  await agent?.stop()
  for (const name of engineContainers("web").concat(engineContainers("badimg"), engineContainers("sick"))) {
    spawnSync("podman", ["rm", "-f", name.split(" ")[0]!], { env: { ...process.env, CONTAINERS_CONF: containersConfPath() } })
  }
  await podman?.stop()
})

describe("mcp-agent over real Podman", () => {
  it("deploys, stops, starts, restarts, redeploys on the same port and undeploys a service", async () => {
    const explicit = await LocalFleet.freePort()
    await cli(["deploy", "web", "--file", definition("web", explicit), ...node])
    const deployed = await statusOf("web")
    const component = deployed.components[0]
    const hostPort = component.routes[0].hostPort as number
    expect(component.state).toBe("running")
    expect(hostPort).toBeGreaterThanOrEqual(10000)
    expect(hostPort).toBeLessThanOrEqual(60000)
    // $PORT is the assigned host port, and the explicit mapping is published too.
    expect(await get(hostPort)).toBe(`port=${hostPort}`)
    expect(await get(explicit)).toBe("explicit")
    expect(registryPorts().map((p) => [p.port, p.service, p.saga_id])).toEqual(
      [[hostPort, "web", null], [explicit, "web", null]].sort((a, b) => (a[0] as number) - (b[0] as number))
    )

    await cli(["stop", "web", ...node])
    expect((await statusOf("web")).active).toBe(false)
    expect(await get(hostPort)).toMatch(/^unreachable/)

    await cli(["start", "web", ...node])
    expect((await statusOf("web")).components[0].state).toBe("running")
    expect(await get(hostPort)).toBe(`port=${hostPort}`)

    await cli(["restart", "web", ...node])
    expect(await get(hostPort)).toBe(`port=${hostPort}`)

    await cli(["deploy", "web", "--file", definition("web", explicit, `env = ["VERSION=2"]`), ...node])
    const redeployed = await statusOf("web")
    expect(redeployed.components[0].routes[0].hostPort).toBe(hostPort)
    expect(redeployed.components[0].containerId).not.toBe(component.containerId)
    expect(engineContainers("web")).toHaveLength(1)

    await cli(["undeploy", "web", ...node])
    expect(engineContainers("web")).toEqual([])
    expect(registryPorts()).toEqual([])
    const ps = JSON.parse(await cli(["ps", ...node, "--json"]))
    expect(ps).toEqual([])
  }, 120_000)

  it("a health check that never passes fails the deploy at health, leaves nothing of it, and keeps the old version serving", async () => {
    const ps = async () => (JSON.parse(await cli(["ps", ...node, "--json"])) as Array<{ service: string }>).map((s) => s.service)
    const portsOf = (service: string) => registryPorts().filter((p) => p.service === service)
    let undeployed = false
    try {
      // A new service that never gets healthy: nothing of it stays.
      const fresh = await LocalFleet.mcp(fleet, ["deploy", "sick", "--file", healthDefinition("sick", false), ...node])
      expect(fresh.code).toBe(1)
      expect(fresh.stderr).toMatch(/deploy of "sick" failed at health: component web failed its tcp check/)
      expect(engineContainers("sick")).toEqual([])
      expect(await ps()).not.toContain("sick")
      expect(portsOf("sick")).toEqual([])

      // A healthy version, then a redeploy that never gets healthy: the healthy one keeps serving.
      await cli(["deploy", "sick", "--file", healthDefinition("sick", true), ...node])
      const good = await statusOf("sick")
      const hostPort = good.components[0].routes[0].hostPort as number
      expect(await get(hostPort)).toBe(`healthy=${hostPort}`)
      const deploys = engineDeploys("sick")
      expect(deploys).toHaveLength(1)
      expect(deploys[0]).toMatch(/ running$/)
      const portsBefore = portsOf("sick")
      expect(portsBefore.map((p) => [p.port, p.saga_id])).toEqual([[hostPort, null]])

      const redeploy = await LocalFleet.mcp(fleet, ["deploy", "sick", "--file", healthDefinition("sick", false), ...node])
      expect(redeploy.code).toBe(1)
      expect(redeploy.stderr).toMatch(/deploy of "sick" failed at health: component web failed its tcp check/)
      // The engine has only the healthy deploy's container (recreated from its record if the deploy replaced it in place).
      expect(engineDeploys("sick")).toEqual(deploys)
      const after = await statusOf("sick")
      expect(after.components.map((c: { state: string; routes: Array<{ hostPort: number }> }) => [c.state, c.routes[0]!.hostPort])).toEqual([["running", hostPort]])
      expect(await get(hostPort)).toBe(`healthy=${hostPort}`)
      expect(portsOf("sick")).toEqual(portsBefore)
      expect(registryPorts().filter((p) => p.saga_id !== null)).toEqual([])
      await cli(["undeploy", "sick", ...node])
      undeployed = true
    } finally {
      // After a failure too, so that the other tests find no "sick" service.
      if (!undeployed) await LocalFleet.mcp(fleet, ["undeploy", "sick", ...node])
    }
    expect(engineContainers("sick")).toEqual([])
    expect(await ps()).not.toContain("sick")
    expect(portsOf("sick")).toEqual([])
  }, 120_000)

  it("bad input gets a typed error and changes nothing", async () => {
    const before = registryPorts()
    // An invalid definition, sent past the CLI's own check: the agent decodes it itself.
    const bad = await LocalFleet.mcp(fleet, ["deploy", "web", "--file", join(dir, "missing.toml"), ...node])
    expect(bad.code).toBe(1)
    expect(bad.stderr).toContain("cannot read the definition")

    const invalid = await rawDeploy({ name: "web", components: [{ name: "Web", image: "localhost/x:latest", routes: [{ port: 0, mode: "l7", publik: true }] }] })
    expect(invalid).toBeInstanceOf(Errors.InvalidDefinition)
    expect((invalid as Errors.InvalidDefinition).problems.map((p) => p.path)).toEqual(
      expect.arrayContaining(["components[0].name", "components[0].image", "components[0].routes[0].port", "components[0].routes[0].publik"])
    )

    const missingImage = join(dir, "badimg.toml")
    writeFileSync(missingImage, `name = "badimg"\n[[components]]\nname = "web"\nimage = "registry.invalid/mcp/none:v9"\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
    const noImage = await LocalFleet.mcp(fleet, ["deploy", "badimg", "--file", missingImage, ...node])
    expect(noImage.code).toBe(1)
    expect(noImage.stderr).toMatch(/deploy of "badimg" failed at pull: image registry\.invalid\/mcp\/none:v9 is not available/)
    expect(engineContainers("badimg")).toEqual([])
    expect(registryPorts()).toEqual(before)
    expect(JSON.parse(await cli(["ps", ...node, "--json"]))).toEqual([])
  }, 60_000)

  it("an exhausted port range is a typed error that leaves nothing behind", async () => {
    const port = await LocalFleet.freePort()
    const low = await LocalFleet.freePort()
    // A second agent whose range holds two ports, asked for three routes.
    const narrow = await LocalFleet.spawnDaemon(
      LocalFleet.bins.agent,
      LocalFleet.writeAgentConfig(fleet, { node: "narrow", port, socket: podman.socketPath, extra: `[ports]\nmin = ${low}\nmax = ${low + 1}` })
    )
    try {
      const file = join(dir, "many.toml")
      writeFileSync(file, `name = "many"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\n` +
        ["a", "b", "c"].map((r) => `[[components.routes]]\nname = "${r}"\nport = 8443\nmode = "l4"\n`).join(""))
      const r = await LocalFleet.mcp(fleet, ["deploy", "many", "--file", file, "--direct", "--node", `127.0.0.1:${port}`])
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(/failed at ports: no free host port in \d+-\d+/)
      const ps = await LocalFleet.mcp(fleet, ["ps", "--json", "--direct", "--node", `127.0.0.1:${port}`])
      expect(JSON.parse(ps.stdout)).toEqual([])
      const db = new Database(join(fleet.dir, "narrow", "registry.db"), { readonly: true })
      expect(db.prepare("SELECT COUNT(*) AS n FROM ports").get()).toEqual({ n: 0 })
      db.close()
    } finally {
      await narrow.stop()
    }
  }, 60_000)
})
