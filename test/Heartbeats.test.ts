/**
 * A node's heartbeats keep their time whatever holds them up: a container engine that stops
 * answering about containers (one SIGKILLed while it held a container's lock does), and a
 * connection to the master that goes silent (a master killed behind a partition never resets
 * it). Real master and agent daemons on loopback, real Podman behind a relay this test can make
 * hang, and the agent's connections to the master through a relay this test can silence.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { spawnSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-heartbeats-"))
let podman: PodmanService
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon
let masterPort = 0
const daemons: Array<LocalFleet.Daemon> = []
const closers: Array<() => Promise<void>> = []
const releases: Array<() => void> = []
const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

/** The engine's API through this test: while `hang` is set, calls about containers never get an answer. */
const engineRelay = async (target: string) => {
  const socketPath = join(dir, "engine.sock")
  const held = new Set<http.ServerResponse>()
  const state = { hang: false, held: 0 }
  const server = http.createServer((req, res) => {
    if (state.hang && req.url?.includes("/containers/") === true) {
      state.held++
      held.add(res)
      return
    }
    const upstream = http.request({ socketPath: target, path: req.url, method: req.method, headers: req.headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      answer.pipe(res)
    })
    upstream.on("error", (e) => res.destroy(e))
    req.pipe(upstream)
  })
  await new Promise<void>((r) => server.listen(socketPath, () => r()))
  releases.push(() => {
    state.hang = false
    for (const res of held) res.destroy()
  })
  closers.push(() => new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  }))
  return { socketPath, state }
}

/** A TCP relay to the master; `silence` makes every connection open now drop what it carries, both ways, without closing. */
const masterRelay = async (port: number) => {
  const open = new Set<{ silent: boolean; client: net.Socket; upstream: net.Socket }>()
  const server = net.createServer((client) => {
    const upstream = net.connect(port, "127.0.0.1")
    const link = { silent: false, client, upstream }
    open.add(link)
    client.on("data", (d) => link.silent || upstream.write(d))
    upstream.on("data", (d) => link.silent || client.write(d))
    const close = () => {
      open.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on("close", close)
    upstream.on("close", close)
    client.on("error", close)
    upstream.on("error", close)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
  closers.push(() => new Promise<void>((r) => {
    for (const l of open) {
      l.client.destroy()
      l.upstream.destroy()
    }
    server.close(() => r())
  }))
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    silence: () => {
      for (const l of open) l.silent = true
      return open.size
    }
  }
}

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

interface NodeView { info: { name: string }; health: string; lastHeartbeat?: string }
const nodeView = async (name: string) => (JSON.parse(await cli(["node", "list", "--json"])) as Array<NodeView>).find((n) => n.info.name === name)
const heartbeatAgeMs = (view: NodeView | undefined) => (view?.lastHeartbeat === undefined ? Infinity : Date.now() - Date.parse(view.lastHeartbeat))

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** The oldest heartbeat age seen over `ms`, sampled every 250 ms. */
const oldestHeartbeatOver = async (node: string, ms: number) => {
  let oldest = 0
  const end = Date.now() + ms
  while (Date.now() < end) {
    oldest = Math.max(oldest, heartbeatAgeMs(await nodeView(node)))
    await new Promise((r) => setTimeout(r, 250))
  }
  return oldest
}

const startAgent = async (name: string, socket: string, masters: ReadonlyArray<string>) => {
  const port = await LocalFleet.freePort()
  const config = LocalFleet.writeAgentConfig(fleet, { node: name, port, socket, masters })
  daemons.push(await LocalFleet.spawnDaemon(LocalFleet.bins.agent, config))
}

beforeAll(async () => {
  podman = await startPodmanService()
  masterPort = await LocalFleet.freePort()
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters: [`127.0.0.1:${masterPort}`] })
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "1s", missThreshold: 3, probeTimeout: "1s" }))
}, 120_000)

afterAll(async () => {
  // What the engine relay still holds fails first, so that nothing waits on it.
  for (const release of releases) release()
  const undeploy = await LocalFleet.mcp(fleet, ["undeploy", "hb-web"])
  if (undeploy.code !== 0) console.warn(`heartbeats: undeploy hb-web: ${undeploy.stderr}`)
  for (const d of daemons) await d.stop()
  await master?.stop()
  for (const close of closers.reverse()) await close()
  // Whatever the undeploy could not remove (the machine's own storage: only this test's node).
  const left = spawnSync("podman", ["ps", "-aq", "--filter", "label=mcp.node=hb-engine"], { encoding: "utf8", env: podmanEnv() }).stdout.trim()
  for (const id of left.split("\n").filter((l) => l !== "")) spawnSync("podman", ["rm", "-f", "-t", "0", id], { env: podmanEnv() })
  await podman?.stop()
  rmSync(dir, { recursive: true, force: true })
}, 120_000)

describe("heartbeats", () => {
  it("keep their time while the container engine answers nothing about containers", async () => {
    const engine = await engineRelay(podman.socketPath)
    await startAgent("hb-engine", engine.socketPath, [`127.0.0.1:${masterPort}`])
    await waitFor("hb-engine healthy", async () => (await nodeView("hb-engine"))?.health === "healthy")
    const file = join(dir, "hb-web.toml")
    writeFileSync(file, `name = "hb-web"\nnode = "hb-engine"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\ncmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
    await cli(["deploy", "hb-web", "--file", file])

    engine.state.hang = true
    // Every heartbeat reads the service status and counts containers: both now wait for good.
    const oldest = await oldestHeartbeatOver("hb-engine", 8000)
    expect(engine.state.held, "the agent asked the hung engine about containers").toBeGreaterThan(0)
    // One interval (1 s), half of it spent waiting for the engine, and the sampling's own 250 ms.
    expect(oldest).toBeLessThan(2500)
    expect((await nodeView("hb-engine"))?.health).toBe("healthy")
    expect(await cli(["events"])).not.toMatch(/hb-engine\s+health.*-> suspect/)
    engine.state.hang = false
  }, 120_000)

  it("give up an answer that does not come, and the next goes out on a new connection", async () => {
    const relay = await masterRelay(masterPort)
    await startAgent("hb-silent", podman.socketPath, [relay.address])
    await waitFor("hb-silent healthy", async () => (await nodeView("hb-silent"))?.health === "healthy")
    expect(relay.silence(), "the agent's connection to the master").toBeGreaterThan(0)
    // The beat on the silenced connection waits at most 2 s; the one after connects anew.
    await new Promise((r) => setTimeout(r, 5000))
    const oldest = await oldestHeartbeatOver("hb-silent", 4000)
    expect(oldest).toBeLessThan(2500)
  }, 120_000)
})

describe("the interval the master gives", () => {
  it("an agent heartbeats at the interval its master's answers give it: max_rate = 1 with two nodes stretches 1 s to 2 s", async () => {
    const port = await LocalFleet.freePort()
    const slow = await LocalFleet.prepare(join(dir, "fleet-rate"), { masters: [`127.0.0.1:${port}`] })
    const slowMaster = await LocalFleet.spawnDaemon(
      LocalFleet.bins.master,
      LocalFleet.writeMasterConfig(slow, { port, interval: "1s", missThreshold: 3, probeTimeout: "1s", extra: "max_rate = 1" })
    )
    daemons.push(slowMaster)
    for (const name of ["rate-a", "rate-b"]) {
      const config = LocalFleet.writeAgentConfig(slow, { node: name, port: await LocalFleet.freePort(), socket: podman.socketPath, masters: [`127.0.0.1:${port}`] })
      daemons.push(await LocalFleet.spawnDaemon(LocalFleet.bins.agent, config))
    }
    const views = async () => {
      const r = await LocalFleet.mcp(slow, ["node", "list", "--json"])
      if (r.code !== 0) throw new Error(`mcp node list: ${r.stderr}`)
      return JSON.parse(r.stdout) as Array<NodeView & { heartbeatIntervalMs?: number; heartbeatDeadline?: string }>
    }
    await waitFor("both nodes healthy", async () => (await views()).filter((v) => v.health === "healthy").length === 2)
    // Every heartbeat seen for rate-a over 12 s: each arrives about 2 s (up to 2.2 s) after the last.
    const seen = new Set<string>()
    const end = Date.now() + 12_000
    let last: (NodeView & { heartbeatIntervalMs?: number; heartbeatDeadline?: string }) | undefined
    while (Date.now() < end) {
      last = (await views()).find((v) => v.info.name === "rate-a")
      if (last?.lastHeartbeat !== undefined) seen.add(last.lastHeartbeat)
      await new Promise((r) => setTimeout(r, 100))
    }
    const times = [...seen].map((t) => Date.parse(t)).sort((a, b) => a - b)
    const gaps = times.slice(2).map((t, i) => t - times[i + 1]!) // after the first interval, which is drawn over a whole one
    expect(gaps.length, `heartbeats seen: ${[...seen].join(", ")}`).toBeGreaterThanOrEqual(3)
    for (const gap of gaps) {
      expect(gap).toBeGreaterThanOrEqual(1_950)
      expect(gap).toBeLessThan(2_800)
    }
    expect(last?.heartbeatIntervalMs).toBeGreaterThanOrEqual(2_000)
    expect(last?.heartbeatIntervalMs).toBeLessThanOrEqual(2_200)
    expect(Date.parse(last!.heartbeatDeadline!) - Date.parse(last!.lastHeartbeat!)).toBe(last!.heartbeatIntervalMs)
    const table = await LocalFleet.mcp(slow, ["node", "list"])
    expect(table.stdout).toMatch(/INTERVAL\s+DEADLINE/)
    expect(table.stdout).toMatch(/rate-a\s.*\s2\.\ds\s+\d{4}-/)
  }, 120_000)
})
