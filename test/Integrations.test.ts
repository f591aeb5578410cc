/**
 * A real agent process with real peers: HAProxy (routes), PowerDNS (records), its local CA or
 * pebble's ACME (certificates) and Podman (containers). A deployed busybox httpd answers over
 * HTTPS through HAProxy, its name resolves, a redeploy under load fails no request, stop takes
 * route and record away, and a peer that is down fails the deploy cleanly until it is back.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { Pki } from "@mcp/rpc"
import { Effect } from "effect"
import { spawnSync } from "node:child_process"
import * as http from "node:http"
import * as dns from "node:dns"
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type HaproxyInstance, startHaproxy } from "./support/Haproxy.js"
import * as LocalFleet from "./support/LocalFleet.js"
import { type Pebble, startPebble } from "./support/Pebble.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"
import { type PowerDnsServer, startPowerDns } from "./support/PowerDns.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-integrations-"))
let podman: PodmanService
let haproxy: HaproxyInstance
let pdns: PowerDnsServer
let pebble: Pebble
let fleet: LocalFleet.Fleet
const daemons: Array<LocalFleet.Daemon> = []
const agents: Record<"local" | "acme", { node: Array<string>; name: string }> = { local: { node: [], name: "" }, acme: { node: [], name: "" } }

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const containersOf = (node: string) =>
  spawnSync("podman", ["ps", "-a", "--filter", `label=mcp.node=${node}`, "--format", "{{.Names}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)

/** GET https://<hostname>:<port>/ through the proxy on 127.0.0.1, trusting only `ca`. */
const viaProxy = (hostname: string, port: number, ca: string) =>
  new Promise<string>((resolve, reject) => {
    const req = https.get({ host: "127.0.0.1", port, servername: hostname, headers: { host: hostname }, path: "/", ca, timeout: 3000 }, (res) => {
      let body = ""
      res.on("data", (d: Buffer) => (body += d.toString()))
      res.on("end", () => (res.statusCode === 200 ? resolve(body.trim()) : reject(new Error(`HTTP ${res.statusCode}`))))
    })
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", reject)
  })

const resolver = () => {
  const r = new dns.promises.Resolver()
  r.setServers([`127.0.0.1:${pdns.dnsPort}`])
  return r
}

const service = (name: string, listener: number, text: string) => {
  const file = join(dir, `${name}-${text}.toml`)
  writeFileSync(file, `name = "${name}"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
cmd = ["sh", "-c", "mkdir -p /www && echo ${text} > /www/index.html && exec httpd -f -p $PORT -h /www"]
[[components.routes]]
port = ${listener}
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

const registryPorts = (node: string) => {
  const db = new Database(join(fleet.dir, node, "registry.db"), { readonly: true })
  try {
    return db.prepare("SELECT port FROM ports").all()
  } finally {
    db.close()
  }
}

beforeAll(async () => {
  ;[podman, haproxy, pdns] = await Promise.all([startPodmanService(), startHaproxy(), startPowerDns()])
  pebble = await startPebble({ alwaysValid: true })
  fleet = await LocalFleet.prepare(join(dir, "fleet"))
  const apiKeyFile = join(dir, "pdns.key")
  writeFileSync(apiKeyFile, pdns.apiKey, { mode: 0o600 })
  const pebbleCa = join(dir, "pebble-ca.crt")
  writeFileSync(pebbleCa, pebble.tlsCa)
  const proxy = `[proxy]\nkind = "haproxy"\ndir = ${JSON.stringify(haproxy.options.dir)}\nmaster_socket = ${JSON.stringify(haproxy.options.masterSocket)}\nstats_socket = ${JSON.stringify(haproxy.options.statsSocket)}\nbind = "127.0.0.1"\n`
  const dnsSection = `[dns]\nkind = "powerdns"\napi_url = ${JSON.stringify(pdns.apiUrl)}\napi_key_file = ${JSON.stringify(apiKeyFile)}\n`
  for (const [name, certs] of [
    ["local", ""],
    ["acme", `[certs]\nkind = "acme"\ndirectory_url = ${JSON.stringify(pebble.directoryUrl)}\nhttp_port = ${await LocalFleet.freePort()}\nca_bundle = ${JSON.stringify(pebbleCa)}\n`]
  ] as const) {
    const port = await LocalFleet.freePort()
    const config = LocalFleet.writeAgentConfig(fleet, { node: name, port, socket: podman.socketPath, extra: proxy + dnsSection + certs })
    daemons.push(await LocalFleet.spawnDaemon(LocalFleet.bins.agent, config))
    agents[name] = { node: ["--direct", "--node", `127.0.0.1:${port}`], name }
  }
}, 180_000)

afterAll(async () => {
  for (const d of daemons) await d.stop()
  for (const node of ["local", "acme"]) for (const c of containersOf(node)) spawnSync("podman", ["rm", "-f", c], { env: podmanEnv() })
  await Promise.allSettled([haproxy?.dispose(), pdns?.close(), pebble?.stop(), podman?.stop()])
})

describe("deploys through HAProxy, PowerDNS and a CA", () => {
  it("serves over HTTPS with a local-CA certificate, resolves, switches routes under load, and stop removes route and record", async () => {
    const listener = await LocalFleet.freePort()
    const { node } = agents.local
    const host = "tls-web.svc.mcp.internal"
    await cli(["deploy", "tls-web", "--file", service("tls-web", listener, "v1"), ...node])
    // The local CA is created on first use, in the agent's data dir.
    const localCa = readFileSync(join(fleet.dir, "local", "ca", "ca.crt"), "utf8")
    expect(await viaProxy(host, listener, localCa)).toBe("v1")
    expect(await resolver().resolve4(host)).toEqual(["127.0.0.1"])

    // A steady, bounded request loop while the service is redeployed: no request may fail.
    let failures = 0
    let served = 0
    const seen = new Set<string>()
    let running = true
    const loop = (async () => {
      for (let i = 0; running && i < 2000; i++) {
        await viaProxy(host, listener, localCa).then((b) => { served++; seen.add(b) }, () => failures++)
        await new Promise((r) => setTimeout(r, 10))
      }
    })()
    await cli(["deploy", "tls-web", "--file", service("tls-web", listener, "v2"), ...node])
    await new Promise((r) => setTimeout(r, 300))
    running = false
    await loop
    expect(failures).toBe(0)
    expect(served).toBeGreaterThan(10)
    expect(seen).toEqual(new Set(["v1", "v2"]))
    // The old container is stopped and removed once the new one serves (the engine may list it
    // for a moment while it finishes removing it).
    for (let i = 0; i < 30 && containersOf("local").length > 1; i++) await new Promise((r) => setTimeout(r, 500))
    expect(containersOf("local"), `old containers left after the redeploy; agent events:\n${(await LocalFleet.mcp(fleet, ["events", ...node])).stdout}`).toHaveLength(1)

    await cli(["stop", "tls-web", ...node])
    await expect(viaProxy(host, listener, localCa)).rejects.toThrow()
    await expect(resolver().resolve4(host)).rejects.toThrow()
    await cli(["undeploy", "tls-web", ...node])
    expect(containersOf("local")).toEqual([])
  }, 180_000)

  it("serves with an ACME certificate from pebble", async () => {
    const listener = await LocalFleet.freePort()
    const { node } = agents.acme
    await cli(["deploy", "acme-web", "--file", service("acme-web", listener, "acme"), ...node])
    expect(await viaProxy("acme-web.svc.mcp.internal", listener, await pebble.issuingRoot())).toBe("acme")
    await cli(["undeploy", "acme-web", ...node])
  }, 120_000)

  it("mcp route add/list/remove manages a manual route in the node's proxy", async () => {
    const backend = http.createServer((_, res) => res.end("manual backend\n"))
    // A manual route to this node reaches only the agent's port range ([ports], 10000-60000 by default).
    for (;;) {
      await new Promise<void>((r) => backend.listen(0, "127.0.0.1", () => r()))
      if ((backend.address() as { port: number }).port <= 60000) break
      await new Promise((r) => backend.close(r))
    }
    const backendPort = (backend.address() as { port: number }).port
    try {
      const cert = await Effect.runPromise(
        Pki.issueCertificate(fleet.caDir, "manual", { ips: [], dns: ["manual.example.com"], usage: "server" }).pipe(Effect.provide(NodeFileSystem.layer))
      )
      const listener = await LocalFleet.freePort()
      const node = ["-n", agents.local.node[2]!, "--direct"]
      // The CLI reads the files here and sends PEM; the agent writes them into its own certs dir.
      await cli(["route", "add", `:${listener}`, "manual.example.com", `127.0.0.1:${backendPort}`, "--mode", "l7", "--tls-cert", cert.certPath, "--tls-key", cert.keyPath, ...node])
      const certDir = join(fleet.dir, agents.local.name, "certs")
      const written = readdirSync(certDir).filter((f) => f.startsWith(`manual-${listener}-manual.example.com-`))
      expect(written).toHaveLength(2)
      for (const f of written) expect(statSync(join(certDir, f)).mode & 0o777).toBe(0o600)
      // A backend the agent never forwards to is refused over the wire, naming the field.
      const metadata = await LocalFleet.mcp(fleet, ["route", "add", `:${listener}`, "meta.example.com", "169.254.169.254:80", "--mode", "l4", ...node])
      expect(metadata.code).not.toBe(0)
      expect(metadata.stderr).toMatch(/backend: "169\.254\.169\.254" is link-local/)
      expect(JSON.parse(await cli(["route", "list", "--json", ...node]))).not.toContainEqual(expect.objectContaining({ hostname: "meta.example.com" }))
      const listed = JSON.parse(await cli(["route", "list", "--json", ...node]))
      expect(listed).toContainEqual(expect.objectContaining({ listener, hostname: "manual.example.com", backend: `127.0.0.1:${backendPort}`, mode: "l7" }))
      expect(await viaProxy("manual.example.com", listener, readFileSync(join(fleet.caDir, "ca.crt"), "utf8"))).toBe("manual backend")
      await cli(["route", "remove", `:${listener}`, "manual.example.com", ...node])
      expect(JSON.parse(await cli(["route", "list", "--json", ...node]))).not.toContainEqual(expect.objectContaining({ hostname: "manual.example.com" }))
    } finally {
      backend.close()
    }
  }, 60_000)

  it("a peer that is down fails the deploy, names it, leaves nothing behind, and the next deploy succeeds once it is back", async () => {
    const localCa = () => readFileSync(join(fleet.dir, "local", "ca", "ca.crt"), "utf8")
    for (const [peer, stop, start, pattern] of [
      ["haproxy", () => haproxy.stop(), () => haproxy.start(), /haproxy/i],
      ["powerdns", () => pdns.stop(), () => pdns.start(), /PowerDNS/]
    ] as const) {
      const listener = await LocalFleet.freePort()
      const file = service(`down-${peer}`, listener, peer)
      await stop()
      const failed = await LocalFleet.mcp(fleet, ["deploy", `down-${peer}`, "--file", file, ...agents.local.node])
      expect(failed.code, failed.stderr).toBe(1)
      expect(failed.stderr).toMatch(pattern)
      expect(containersOf("local")).toEqual([])
      expect(registryPorts("local")).toEqual([])
      await start()
      await cli(["deploy", `down-${peer}`, "--file", file, ...agents.local.node])
      expect(await viaProxy(`down-${peer}.svc.mcp.internal`, listener, localCa())).toBe(peer)
      await cli(["undeploy", `down-${peer}`, ...agents.local.node])
    }
    // The ACME agent with pebble down.
    const listener = await LocalFleet.freePort()
    await pebble.stop()
    const failed = await LocalFleet.mcp(fleet, ["deploy", "down-acme", "--file", service("down-acme", listener, "x"), ...agents.acme.node])
    expect(failed.code).toBe(1)
    expect(failed.stderr).toMatch(/ACME/)
    expect(containersOf("acme")).toEqual([])
    expect(registryPorts("acme")).toEqual([])
  }, 240_000)
})
