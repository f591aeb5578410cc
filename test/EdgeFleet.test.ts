/**
 * Edge routing end to end, as separate hosts on one machine: the master, a worker agent with its
 * HAProxy and real Podman in this network namespace, and an edge agent with its own HAProxy in a
 * network namespace the test makes (joined by a veth pair). PowerDNS serves the public zone the
 * master reads CNAMEs from. A public hostname is served by the edge, through the worker's proxy,
 * from the container; undeploy removes both routes and both certificates; a deploy that cannot
 * get its edge route leaves nothing on the worker, including when the edge agent dies mid-setup.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { existsSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Pki } from "../packages/rpc/src/index.js"
import { type HaproxyInstance, startHaproxy } from "./support/Haproxy.js"
import * as LocalFleet from "./support/LocalFleet.js"
import { makeNetns, type Netns } from "./support/Netns.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"
import { createZone, type PowerDnsServer, startPowerDns } from "./support/PowerDns.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-edge-"))
let ns: Netns | undefined
let podman: PodmanService | undefined
let pdns: PowerDnsServer | undefined
let workerProxy: HaproxyInstance | undefined
let edgeProxy: HaproxyInstance | undefined
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon | undefined
let worker: LocalFleet.Daemon | undefined
let edge: LocalFleet.Daemon | undefined
let edgeConfig = ""
let edgePort = 0

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const workerContainers = () =>
  spawnSync("podman", ["ps", "-a", "--filter", "label=mcp.node=w1", "--format", "{{.Names}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** curl https://<hostname>:<port>/ at `ip`, trusting only the fleet's CA. */
const curl = (hostname: string, ip: string, port: number) =>
  new Promise<{ code: number; body: string }>((resolve) =>
    execFile("curl", ["-sS", "--max-time", "5", "--resolve", `${hostname}:${port}:${ip}`, "--cacert", join(fleet.caDir, "ca.crt"), `https://${hostname}:${port}/`], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, body: stdout.trim() + stderr.trim() })
    )
  )

/** Through the edge, as a client on the internet would reach it. */
const curlViaEdge = (hostname: string) => curl(hostname, ns!.innerIp, edgePort)

const service = (name: string, hostname: string) => {
  const file = join(dir, `${name}.toml`)
  writeFileSync(file, `name = "${name}"
node = "w1"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
cmd = ["sh", "-c", "mkdir -p /www && echo ${name} says hello > /www/index.html && exec httpd -f -p $PORT_PUBLIC -h /www"]
[[components.routes]]
name = "public"
port = 8443
mode = "l7"
hostname = "${hostname}"
public = true
[components.health]
kind = "http"
path = "/"
interval = "1s"
`)
  return file
}

const haproxySection = (h: HaproxyInstance, bind: string, backendCa?: string) =>
  `[proxy]\nkind = "haproxy"\ndir = ${JSON.stringify(h.options.dir)}\nmaster_socket = ${JSON.stringify(h.options.masterSocket)}\nstats_socket = ${JSON.stringify(h.options.statsSocket)}\nbind = "${bind}"\n${backendCa === undefined ? "" : `backend_ca = ${JSON.stringify(backendCa)}\n`}`

/** Both agents issue from the fleet CA: the edge's HAProxy trusts the worker's proxy by it, and so does curl. */
const certsSection = () => `[certs]\nkind = "local-ca"\nca_dir = ${JSON.stringify(fleet.caDir)}\n`

const startEdge = async () => {
  edge = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, edgeConfig, /listening on/, 30_000, ns!.prefix)
}

const edgeRoutesOnMaster = async () => JSON.parse(await cli(["edge", "list", "--json"])) as Array<{ hostname: string; edgeNode: string; backendHostname: string; backendPort: number; certSerial: string; certNotAfter: string }>

/** Route hostnames in an agent's proxy, asked of that agent directly. */
const proxyRoutes = async (node: "w1" | "e1") =>
  (JSON.parse(await cli(["route", "list", "--node", node, "--json"])) as Array<{ hostname: string }>).map((r) => r.hostname)

/** Certificate files in an agent's data dir for a hostname. */
const certFiles = (node: string, hostname: string) => {
  const certs = join(fleet.dir, node, "certs")
  return existsSync(certs) ? readdirSync(certs).filter((f) => f.startsWith(hostname)) : []
}

beforeAll(async () => {
  // Each peer fails with how to install it when it is missing.
  ns = makeNetns()
  ;[podman, pdns] = await Promise.all([startPodmanService(), startPowerDns()])
  const masterPort = await LocalFleet.freePort()
  const masters = [`${ns.hostIp}:${masterPort}`]
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters })
  // One certificate for every daemon, valid at both hosts' addresses.
  await Effect.runPromise(Pki.issueCertificate(fleet.caDir, "hosts", { ips: ["127.0.0.1", ns.hostIp, ns.innerIp], dns: ["localhost"], usage: "both" }))
  const caFile = join(fleet.caDir, "ca.crt")
  await createZone(pdns, "example.com", [
    { name: "hello.example.com", type: "CNAME", content: "e1.example.com" },
    { name: "e1.example.com", type: "A", content: ns.innerIp }
  ])
  ;[workerProxy, edgeProxy] = await Promise.all([
    startHaproxy({ bindAddress: ns.hostIp }),
    startHaproxy({ bindAddress: ns.innerIp, backendCaFile: caFile, prefix: ns.prefix })
  ])
  const masterConfig = LocalFleet.writeMasterConfig(fleet, {
    port: masterPort,
    host: ns.hostIp,
    cert: "hosts",
    extra: `[edge]\nallowed_domains = ["example.com"]\ndefault_node = "e1"\ndns_servers = ["127.0.0.1:${pdns.dnsPort}"]\nreconcile_interval = "2s"\n`
  })
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
  const workerConfig = LocalFleet.writeAgentConfig(fleet, {
    node: "w1", role: "worker", port: await LocalFleet.freePort(), host: ns.hostIp, nodeAddress: ns.hostIp, cert: "hosts",
    socket: podman.socketPath, masters, extra: haproxySection(workerProxy, ns.hostIp) + certsSection()
  })
  edgePort = await LocalFleet.freePort()
  edgeConfig = LocalFleet.writeAgentConfig(fleet, {
    node: "e1", role: "edge", port: await LocalFleet.freePort(), host: ns.innerIp, nodeAddress: ns.innerIp, cert: "hosts",
    socket: podman.socketPath, masters, extra: haproxySection(edgeProxy, ns.innerIp, caFile) + certsSection() + `[edge]\nlistener = ${edgePort}\n`
  })
  worker = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, workerConfig)
  await startEdge()
  await waitFor("both agents registered and healthy", async () =>
    (JSON.parse(await cli(["node", "list", "--json"])) as Array<{ health: string }>).filter((n) => n.health === "healthy").length === 2)
}, 180_000)

afterAll(async () => {
  for (const name of ["hello", "later", "dies"]) if (master !== undefined) await LocalFleet.mcp(fleet, ["undeploy", name]).catch(() => undefined)
  await Promise.allSettled([edge?.stop(), worker?.stop(), master?.stop()])
  for (const c of workerContainers()) spawnSync("podman", ["rm", "-f", c], { env: podmanEnv() })
  await Promise.allSettled([workerProxy?.dispose(), edgeProxy?.dispose(), pdns?.close(), podman?.stop()])
  ns?.dispose()
})

describe("edge routing across nodes", () => {
  it("serves a public hostname through the edge and the worker's proxy, and undeploy removes both", async () => {
    const out = await cli(["deploy", "hello", "--file", service("hello", "hello.example.com")])
    expect(out).toMatch(/e1/)
    // The worker's proxy serves the public name itself, on the listener the edge forwards to.
    expect(await curl("hello.example.com", ns!.hostIp, 8443)).toEqual({ code: 0, body: "hello says hello" })
    const page = await curlViaEdge("hello.example.com")
    expect(page).toEqual({ code: 0, body: "hello says hello" })

    const [route] = await edgeRoutesOnMaster()
    expect(route).toMatchObject({ hostname: "hello.example.com", edgeNode: "e1", backendHostname: ns!.hostIp, backendPort: 8443 })
    expect(route!.certSerial).toMatch(/^[0-9a-f]+$/i)
    expect(Date.parse(route!.certNotAfter)).toBeGreaterThan(Date.now() + 80 * 24 * 3600 * 1000)
    // The edge forwards to the worker's proxy listener, which serves the same name.
    expect(await proxyRoutes("e1")).toEqual(["hello.example.com"])
    expect(await proxyRoutes("w1")).toContain("hello.example.com")
    expect(certFiles("e1", "hello.example.com").length).toBeGreaterThan(0)
    // DNS points the name at e1 (CNAME): the check passes.
    const check = JSON.parse(await cli(["dns", "check", "--json"])) as Array<{ hostname: string; ok: boolean }>
    expect(check).toEqual([expect.objectContaining({ hostname: "hello.example.com", ok: true })])

    await cli(["undeploy", "hello"])
    expect(await edgeRoutesOnMaster()).toEqual([])
    expect(await proxyRoutes("e1")).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("hello.example.com")
    expect(certFiles("e1", "hello.example.com")).toEqual([])
    expect(certFiles("w1", "hello.example.com")).toEqual([])
    expect(workerContainers()).toEqual([])
    expect((await curlViaEdge("hello.example.com")).code).not.toBe(0)
  })

  it("rejects a hostname outside the allowed domains before anything changes", async () => {
    const r = await LocalFleet.mcp(fleet, ["deploy", "later", "--file", service("later", "later.example.org")])
    expect(r.code).not.toBe(0)
    expect(r.stdout + r.stderr).toMatch(/components\[0\]\.routes\[0\]\.hostname/)
    expect(r.stdout + r.stderr).toMatch(/allowed_domains/)
    expect(workerContainers()).toEqual([])
  })

  it("with the edge agent down, the deploy fails naming it and the worker is rolled back; a name without DNS uses the default edge", async () => {
    await edge!.stop()
    const r = await LocalFleet.mcp(fleet, ["deploy", "later", "--file", service("later", "later.example.com")])
    expect(r.code).not.toBe(0)
    expect(r.stdout + r.stderr).toMatch(/e1/)
    expect(workerContainers()).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("later.example.com")
    await startEdge()
    // No CNAME for this name: the default edge serves it, and `mcp dns check` says what to create.
    await waitFor("the master to see e1 again", async () => (await LocalFleet.mcp(fleet, ["deploy", "later", "--file", service("later", "later.example.com")])).code === 0, 60_000)
    expect((await curlViaEdge("later.example.com")).body).toBe("later says hello")
    const check = await LocalFleet.mcp(fleet, ["dns", "check"])
    expect(check.code).toBe(1)
    expect(check.stdout + check.stderr).toMatch(/later\.example\.com/)
    expect(check.stdout + check.stderr).toMatch(/e1/)
    await cli(["undeploy", "later"])
  })

  it("an edge agent killed mid-setup: the master rolls the worker back and the half-made edge route is cleaned up", async () => {
    // Freeze the edge's HAProxy so the edge agent hangs inside SetupEdgeRoute, then kill it there.
    const deploying: ChildProcess = spawn(process.execPath, [LocalFleet.bins.mcp, "deploy", "dies", "--file", service("dies", "dies.example.com"), "--config", fleet.cliConfig], { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const finished = new Promise<number>((resolve) => deploying.once("exit", (code) => resolve(code ?? 1)))
    deploying.stdout!.on("data", (d: Buffer) => (output += d.toString()))
    deploying.stderr!.on("data", (d: Buffer) => (output += d.toString()))
    process.kill(edgeProxy!.pid(), "SIGSTOP")
    try {
      // The worker's last steps come just before the edge step, which then waits on the frozen proxy.
      await waitFor("the worker's part of the deploy", async () => /\[w1\] dns: /.test(output), 60_000)
      await new Promise((r) => setTimeout(r, 1000))
      await edge!.kill9()
    } finally {
      process.kill(edgeProxy!.pid(), "SIGCONT")
    }
    expect(await finished).not.toBe(0)
    expect(output).toMatch(/e1/)
    expect(workerContainers()).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("dies.example.com")

    // The edge comes back: it finishes its own open work (the setup it died in), and the
    // master's reconciler drops the route it had deferred.
    await startEdge()
    await waitFor("the edge agent to close its unfinished setup", async () => /closed the unfinished setting-up of edge route dies\.example\.com/.test(edge!.output), 30_000)
    await waitFor("the edge route to be gone everywhere", async () =>
      (await edgeRoutesOnMaster()).length === 0 && (await proxyRoutes("e1")).length === 0, 60_000)
    expect(certFiles("e1", "dies.example.com")).toEqual([])
  })
})
