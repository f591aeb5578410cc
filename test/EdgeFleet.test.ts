/**
 * Edge routing end to end, as separate hosts on one machine: the master, a worker agent with its
 * HAProxy and real Podman in this network namespace, and an edge agent with its own HAProxy in a
 * network namespace the test makes (joined by a veth pair). PowerDNS serves the public zone the
 * master reads CNAMEs from. A public hostname is served by the edge, through the worker's proxy,
 * from the container; stop takes the edge route away and start puts it back; undeploy removes
 * both routes and both certificates; a deploy that cannot get its edge route leaves nothing on
 * the worker, including when the edge agent dies mid-setup.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type EdgeFleet, publicServiceFile, startEdgeFleet, waitFor } from "./support/EdgeFleet.js"
import * as LocalFleet from "./support/LocalFleet.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-edge-"))
let edgeFleet: EdgeFleet

const cli = async (args: ReadonlyArray<string>) => {
  const r = await LocalFleet.mcp(edgeFleet.fleet, args)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

/** Through the edge, as a client on the internet would reach it. */
const curlViaEdge = (hostname: string) => edgeFleet.curl(hostname, edgeFleet.ns.innerIp, edgeFleet.edgePort)

const service = (name: string, hostname: string) => publicServiceFile(dir, name, hostname, `${name} says hello`)

const edgeRoutesOnMaster = async () => JSON.parse(await cli(["edge", "list", "--json"])) as Array<{ hostname: string; edgeNode: string; backendHostname: string; backendPort: number; certSerial: string; certNotAfter: string }>

/** Route hostnames in an agent's proxy, asked of that agent. */
const proxyRoutes = async (node: "w1" | "e1") =>
  (JSON.parse(await cli(["route", "list", "--node", node, "--json"])) as Array<{ hostname: string }>).map((r) => r.hostname)

beforeAll(async () => {
  edgeFleet = await startEdgeFleet(dir)
}, 180_000)

afterAll(async () => {
  await edgeFleet?.dispose(["hello", "later", "dies"])
})

describe("edge routing across nodes", () => {
  it("serves a public hostname through the edge and the worker's proxy, and undeploy removes both", async () => {
    const out = await cli(["deploy", "hello", "--file", service("hello", "hello.example.com")])
    expect(out).toMatch(/e1/)
    // The worker's proxy serves the public name itself, on the listener the edge forwards to.
    expect(await edgeFleet.curl("hello.example.com", edgeFleet.ns.hostIp, 8443)).toEqual({ code: 0, body: "hello says hello" })
    const page = await curlViaEdge("hello.example.com")
    expect(page).toEqual({ code: 0, body: "hello says hello" })
    // A stopped service is not published: its edge route goes, and start sets it up again (what
    // follows checks the route, certificate and DNS as start left them).
    await cli(["stop", "hello"])
    expect({ edge: await proxyRoutes("e1"), master: await edgeRoutesOnMaster() }).toEqual({ edge: [], master: [] })
    await cli(["start", "hello"])

    const [route] = await edgeRoutesOnMaster()
    expect(route).toMatchObject({ hostname: "hello.example.com", edgeNode: "e1", backendHostname: edgeFleet.ns.hostIp, backendPort: 8443 })
    expect(route!.certSerial).toMatch(/^[0-9a-f]+$/i)
    expect(Date.parse(route!.certNotAfter)).toBeGreaterThan(Date.now() + 80 * 24 * 3600 * 1000)
    // The edge forwards to the worker's proxy listener, which serves the same name.
    expect(await proxyRoutes("e1")).toEqual(["hello.example.com"])
    expect(await proxyRoutes("w1")).toContain("hello.example.com")
    expect(edgeFleet.certFiles("e1", "hello.example.com").length).toBeGreaterThan(0)
    // DNS points the name at e1 (CNAME): the check passes.
    const check = JSON.parse(await cli(["dns", "check", "--json"])) as Array<{ hostname: string; ok: boolean }>
    expect(check).toEqual([expect.objectContaining({ hostname: "hello.example.com", ok: true })])

    await cli(["undeploy", "hello"])
    expect(await edgeRoutesOnMaster()).toEqual([])
    expect(await proxyRoutes("e1")).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("hello.example.com")
    expect(edgeFleet.certFiles("e1", "hello.example.com")).toEqual([])
    expect(edgeFleet.certFiles("w1", "hello.example.com")).toEqual([])
    expect(edgeFleet.workerContainers()).toEqual([])
    expect((await curlViaEdge("hello.example.com")).code).not.toBe(0)
  })

  it("rejects a hostname outside the allowed domains before anything changes", async () => {
    const r = await LocalFleet.mcp(edgeFleet.fleet, ["deploy", "later", "--file", service("later", "later.example.org")])
    expect(r.code).not.toBe(0)
    expect(r.stdout + r.stderr).toMatch(/components\[0\]\.routes\[0\]\.hostname/)
    expect(r.stdout + r.stderr).toMatch(/allowed_domains/)
    expect(edgeFleet.workerContainers()).toEqual([])
  })

  it("with the edge agent down, the deploy fails naming it and the worker is rolled back; a name without DNS uses the default edge", async () => {
    await edgeFleet.edge().stop()
    const r = await LocalFleet.mcp(edgeFleet.fleet, ["deploy", "later", "--file", service("later", "later.example.com")])
    expect(r.code).not.toBe(0)
    expect(r.stdout + r.stderr).toMatch(/e1/)
    expect(edgeFleet.workerContainers()).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("later.example.com")
    await edgeFleet.startEdge()
    // No CNAME for this name: the default edge serves it, and `mcp dns check` says what to create.
    await waitFor("the master to see e1 again", async () => (await LocalFleet.mcp(edgeFleet.fleet, ["deploy", "later", "--file", service("later", "later.example.com")])).code === 0, 60_000)
    expect((await curlViaEdge("later.example.com")).body).toBe("later says hello")
    const check = await LocalFleet.mcp(edgeFleet.fleet, ["dns", "check"])
    expect(check.code).toBe(1)
    expect(check.stdout + check.stderr).toMatch(/later\.example\.com/)
    expect(check.stdout + check.stderr).toMatch(/e1/)
    await cli(["undeploy", "later"])
  })

  it("an edge agent killed mid-setup: the master rolls the worker back and the half-made edge route is cleaned up", async () => {
    // Freeze the edge's HAProxy so the edge agent hangs inside SetupEdgeRoute, then kill it there.
    const deploying: ChildProcess = spawn(process.execPath, [LocalFleet.bins.mcp, "deploy", "dies", "--file", service("dies", "dies.example.com"), "--config", edgeFleet.fleet.cliConfig], { stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const finished = new Promise<number>((resolve) => deploying.once("exit", (code) => resolve(code ?? 1)))
    deploying.stdout!.on("data", (d: Buffer) => (output += d.toString()))
    deploying.stderr!.on("data", (d: Buffer) => (output += d.toString()))
    process.kill(edgeFleet.edgeProxy.pid(), "SIGSTOP")
    try {
      // The worker's last steps come just before the edge step, which then waits on the frozen proxy.
      await waitFor("the worker's part of the deploy", async () => /\[w1\] dns: /.test(output), 60_000)
      await new Promise((r) => setTimeout(r, 1000))
      await edgeFleet.edge().kill9()
    } finally {
      process.kill(edgeFleet.edgeProxy.pid(), "SIGCONT")
    }
    expect(await finished).not.toBe(0)
    expect(output).toMatch(/e1/)
    expect(edgeFleet.workerContainers()).toEqual([])
    expect(await proxyRoutes("w1")).not.toContain("dies.example.com")

    // The edge comes back: it finishes its own open work (the setup it died in), and the
    // master's reconciler drops the route it had deferred.
    await edgeFleet.startEdge()
    await waitFor("the edge agent to close its unfinished setup", async () => /closed the unfinished setting-up of edge route dies\.example\.com/.test(edgeFleet.edge().output), 30_000)
    await waitFor("the edge route to be gone everywhere", async () =>
      (await edgeRoutesOnMaster()).length === 0 && (await proxyRoutes("e1")).length === 0, 60_000)
    expect(edgeFleet.certFiles("e1", "dies.example.com")).toEqual([])
  })
})
