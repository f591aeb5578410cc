/**
 * The agent side of edge routing with real peers: an `mcp-agent` process with role "edge",
 * HAProxy as its proxy and a local CA (an existing CA directory, `[certs] ca_dir`) for public
 * certificates. The backend stands in for a worker's proxy: a Node HTTPS server on this host's
 * own (non-loopback) address, inside the edge's `[proxy] backend_networks`, whose certificate, for the public name, comes from the platform CA the edge's HAProxy trusts
 * (`[proxy] backend_ca`). SetupEdgeRoute makes the public name answer through the edge with a
 * certificate from the edge's CA; RemoveEdgeRoute takes route and certificate away.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { AgentRpcs, Pki, Transport } from "@mcp/rpc"
import { Effect, Redacted } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { networkInterfaces, tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { type HaproxyInstance, startHaproxy } from "./support/Haproxy.js"
import * as LocalFleet from "./support/LocalFleet.js"
import { type PodmanService, startPodmanService } from "./support/Podman.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-edge-agent-"))
const PUBLIC = "shop.example.test"
let podman: PodmanService
let haproxy: HaproxyInstance
let fleet: LocalFleet.Fleet
let agent: LocalFleet.Daemon
let backend: https.Server
let backendPort = 0
let backendIp = ""
let listener = 0
let agentUrl = ""
/** The CA the edge issues public certificates from (what a browser would trust). */
const publicCaDir = join(dir, "public-ca")
const edgeDataDir = () => join(fleet.dir, "edge")

/** This host's IPv4 address on its default route (not loopback), else its first non-loopback one. */
const hostAddress = () => {
  const defaultIface = readFileSync("/proc/net/route", "utf8").split("\n").slice(1).map((l) => l.trim().split(/\s+/)).find((f) => f[1] === "00000000")?.[0]
  const v4 = (name: string) => (networkInterfaces()[name] ?? []).find((i) => i.family === "IPv4" && !i.internal)?.address
  const address = (defaultIface === undefined ? undefined : v4(defaultIface)) ?? Object.keys(networkInterfaces()).map(v4).find((a) => a !== undefined)
  if (address === undefined) throw new Error("this host has no non-loopback IPv4 address for the test's backend")
  return address
}

/** Runs `f` with an AgentRpcs client of the edge agent, as the master would call it. */
const withClient = <A, E>(f: (client: Effect.Effect.Success<ReturnType<typeof makeClient>>) => Effect.Effect<A, E>) =>
  Effect.runPromise(Effect.scoped(Effect.flatMap(makeClient(), f)))

const makeClient = () =>
  Transport.makeClient(AgentRpcs, {
    url: agentUrl,
    ca: readFileSync(join(fleet.caDir, Pki.CA_CERT_FILE), "utf8"),
    token: Redacted.make(fleet.operatorToken)
  })

/** curl to the public name on the edge's listener, pinned to 127.0.0.1 and trusting only the edge's CA. */
const curl = () =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(
      "curl",
      ["-sS", "--max-time", "5", "--resolve", `${PUBLIC}:${listener}:127.0.0.1`, "--cacert", join(publicCaDir, Pki.CA_CERT_FILE), `https://${PUBLIC}:${listener}/`],
      (error, stdout, stderr) => resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr })
    )
  )

/** The serial of the certificate the edge serves for the public name (upper-case hex, as Pki writes it). */
const servedSerial = () =>
  new Promise<string>((resolve, reject) => {
    const socket = tls.connect({ host: "127.0.0.1", port: listener, servername: PUBLIC, ca: readFileSync(join(publicCaDir, Pki.CA_CERT_FILE), "utf8") }, () => {
      resolve(socket.getPeerCertificate().serialNumber.toUpperCase())
      socket.end()
    })
    socket.on("error", reject)
  })

/** The public certificate's files: the issuer's (cert and key) and HAProxy's PEM copy. */
const certFiles = () => readdirSync(join(edgeDataDir(), "certs")).filter((f) => f.startsWith(`${PUBLIC}-`))
const proxyPems = () => readdirSync(join(haproxy.options.dir, "certs")).filter((f) => f.includes(PUBLIC))

beforeAll(async () => {
  ;[podman, fleet] = await Promise.all([startPodmanService(), LocalFleet.prepare(join(dir, "fleet"))])
  await Effect.runPromise(Pki.initCa(publicCaDir, { commonName: "MCP edge public CA" }).pipe(Effect.provide(NodeFileSystem.layer)))
  // The worker side: a certificate for the public name from the platform CA (what a worker's
  // proxy gets when its agent issues from `[certs] ca_dir` = the platform CA).
  const worker = await Effect.runPromise(
    Pki.issueCertificate(fleet.caDir, "shop-worker", { ips: [], dns: [PUBLIC], usage: "server", outDir: join(dir, "worker") }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  backend = https.createServer({ cert: readFileSync(worker.certPath), key: readFileSync(worker.keyPath) }, (req, res) => {
    res.writeHead(200, { "content-type": "text/plain" })
    res.end(`hello from the worker for ${req.headers.host}\n`)
  })
  // Not loopback: an edge never forwards to its own loopback (its agent's and proxy's admin
  // ports live there). The worker stands on this host's own address, inside backend_networks.
  backendIp = hostAddress()
  await new Promise<void>((resolve) => backend.listen(0, backendIp, resolve))
  backendPort = (backend.address() as AddressInfo).port

  const platformCa = join(fleet.caDir, Pki.CA_CERT_FILE)
  haproxy = await startHaproxy({ backendCaFile: platformCa })
  listener = await LocalFleet.freePort()
  const port = await LocalFleet.freePort()
  const extra = [
    `[proxy]`,
    `kind = "haproxy"`,
    `dir = ${JSON.stringify(haproxy.options.dir)}`,
    `master_socket = ${JSON.stringify(haproxy.options.masterSocket)}`,
    `stats_socket = ${JSON.stringify(haproxy.options.statsSocket)}`,
    `bind = "127.0.0.1"`,
    `backend_ca = ${JSON.stringify(platformCa)}`,
    `backend_networks = ["${backendIp}/32"]`,
    `[certs]`,
    `kind = "local-ca"`,
    `ca_dir = ${JSON.stringify(publicCaDir)}`,
    // No master here: the public domains come from the agent's own config until one pushes them.
    `allowed_domains = ["example.test"]`,
    `[edge]`,
    `listener = ${listener}`,
    ``
  ].join("\n")
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: "edge", role: "edge", port, socket: podman.socketPath, extra }))
  agentUrl = `https://127.0.0.1:${port}/agent`
}, 120_000)

afterAll(async () => {
  await agent?.stop()
  await Promise.allSettled([haproxy?.dispose(), podman?.stop(), new Promise((r) => (backend === undefined ? r(undefined) : backend.close(r)))])
  rmSync(dir, { recursive: true, force: true })
})

describe("an edge agent with HAProxy and a local CA", () => {
  it("publishes a public name through the edge, lists it, and removes it with its certificate", async () => {
    const route = await withClient((client) =>
      client.SetupEdgeRoute({ hostname: PUBLIC, service: "shop" as never, workerNode: "rift" as never, backendHostname: backendIp, backendPort })
    )
    expect(route).toMatchObject({ hostname: PUBLIC, edgeNode: "edge", workerNode: "rift", backendHostname: backendIp, backendPort, service: "shop" })
    expect(route.certSerial).toMatch(/^[0-9A-F]+$/)
    expect(Date.parse(route.certNotAfter)).toBeGreaterThan(Date.now() + 60 * 24 * 3600 * 1000)

    const served = await curl()
    expect(served.stderr).toBe("")
    expect(served.stdout).toBe(`hello from the worker for ${PUBLIC}:${listener}\n`)
    // The edge serves its own certificate for the public name: the one the route reports.
    expect(await servedSerial()).toBe(route.certSerial)
    expect(certFiles()).toHaveLength(2) // the certificate and its key
    expect(proxyPems()).toEqual([`${listener}-${PUBLIC}.pem`])

    // The same request again: the same route and certificate.
    const again = await withClient((client) =>
      client.SetupEdgeRoute({ hostname: PUBLIC, service: "shop" as never, workerNode: "rift" as never, backendHostname: backendIp, backendPort })
    )
    expect(again).toEqual(route)
    expect(certFiles()).toHaveLength(2)

    const listed = await withClient((client) => client.ListEdgeRoutes())
    expect(listed).toEqual([route])

    await withClient((client) => client.RemoveEdgeRoute({ hostname: PUBLIC }))
    expect((await curl()).code).not.toBe(0)
    expect(certFiles()).toEqual([])
    expect(proxyPems()).toEqual([])
    expect(await withClient((client) => client.ListEdgeRoutes())).toEqual([])
    // Removing it again succeeds.
    await withClient((client) => client.RemoveEdgeRoute({ hostname: PUBLIC }))
  }, 60_000)

  it("refuses an internal name, over the wire, naming the field", async () => {
    const error = await withClient((client) =>
      Effect.flip(client.SetupEdgeRoute({ hostname: "shop.svc.mcp.internal", service: "shop" as never, workerNode: "rift" as never, backendHostname: backendIp, backendPort }))
    )
    expect(error).toBeInstanceOf(Errors.InvalidRequest)
    expect(error instanceof Errors.InvalidRequest ? error.problems.map((p) => p.path) : []).toEqual(["hostname"])
    expect(await withClient((client) => client.ListEdgeRoutes())).toEqual([])
  }, 30_000)

  it("refuses a name outside the allowed domains and a loopback or link-local backend, over the wire, writing nothing", async () => {
    const paths = (e: unknown) => (e instanceof Errors.InvalidRequest ? e.problems.map((p) => p.path) : [`not InvalidRequest: ${String(e)}`])
    const setup = (hostname: string, backendHostname: string) =>
      withClient((client) => Effect.flip(client.SetupEdgeRoute({ hostname, service: "shop" as never, workerNode: "rift" as never, backendHostname, backendPort })))
    expect(paths(await setup("shop.example.org", backendIp))).toEqual(["hostname"])
    for (const ip of ["127.0.0.1", "169.254.169.254"]) expect(paths(await setup(PUBLIC, ip))).toEqual(["backendHostname"])
    expect(paths(await setup(PUBLIC, "198.51.100.7"))).toEqual(["backendHostname"])
    expect(await withClient((client) => client.ListEdgeRoutes())).toEqual([])
    expect(certFiles()).toEqual([])
    expect(proxyPems()).toEqual([])
  }, 30_000)
})
