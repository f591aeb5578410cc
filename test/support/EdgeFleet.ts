/**
 * A fleet with an edge node, as separate hosts on one machine: the master, a worker agent with
 * its own HAProxy and real Podman in this network namespace, and an edge agent with its own
 * HAProxy in a network namespace made for it (joined by a veth pair). PowerDNS serves the public
 * zone `example.com` the master reads CNAMEs from, with `hello.example.com` pointing at the edge.
 * Both agents issue certificates from the fleet CA, which the edge's HAProxy trusts for its
 * backends and clients trust for the edge. Used by the edge test and the edge benchmark.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { Effect } from "effect"
import { execFile, spawnSync } from "node:child_process"
import { existsSync, readdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { Pki } from "../../packages/rpc/src/index.js"
import { type HaproxyInstance, startHaproxy } from "./Haproxy.js"
import * as LocalFleet from "./LocalFleet.js"
import { makeNetns, type Netns } from "./Netns.js"
import { BUSYBOX_IMAGE, containersConfPath, makePrivateStorage, type PodmanService, startPodmanService, storageFlags } from "./Podman.js"
import { createZone, type PowerDnsServer, startPowerDns } from "./PowerDns.js"

export interface EdgeFleet {
  readonly ns: Netns
  readonly fleet: LocalFleet.Fleet
  readonly masterAddress: string
  /** The port the edge serves public hostnames on, at `ns.innerIp`. */
  readonly edgePort: number
  readonly edgeProxy: HaproxyInstance
  readonly master: () => LocalFleet.Daemon
  /** Starts the master again (after a stop or a kill) with the same config and database. */
  readonly startMaster: () => Promise<void>
  /** The master's SQLite database file. */
  readonly masterDb: string
  readonly edge: () => LocalFleet.Daemon
  /** Starts the edge agent again (after a stop or a kill) inside its namespace. */
  readonly startEdge: () => Promise<void>
  /** Names of the worker's containers in the engine. */
  readonly workerContainers: () => ReadonlyArray<string>
  /** Runs podman on the worker's engine storage (stdout, trimmed). */
  readonly podman: (args: ReadonlyArray<string>) => string
  /** curl https://<hostname>:<port>/ at `ip`, trusting only the fleet's CA. */
  readonly curl: (hostname: string, ip: string, port: number) => Promise<{ code: number; body: string }>
  /** Certificate files in an agent's data dir for a hostname. */
  readonly certFiles: (node: string, hostname: string) => ReadonlyArray<string>
  /** The routes CA's directory (ca.crt): the name-constrained CA the agents issue route certificates from. */
  readonly routesCaDir: string
  /** Every record in PowerDNS's zones, as `name type content` lines, sorted. */
  readonly dnsRecords: () => Promise<ReadonlyArray<string>>
  readonly dispose: (undeploy: ReadonlyArray<string>) => Promise<void>
}

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

/** The agent config's `[proxy]` table for a test-run HAProxy (not managed by the agent). */
export const haproxySection = (h: HaproxyInstance, bind: string, backendCa?: string) =>
  `[proxy]\nkind = "haproxy"\ndir = ${JSON.stringify(h.options.dir)}\nmaster_socket = ${JSON.stringify(h.options.masterSocket)}\nstats_socket = ${JSON.stringify(h.options.statsSocket)}\nbind = "${bind}"\n${backendCa === undefined ? "" : `backend_ca = ${JSON.stringify(backendCa)}\n`}`

/**
 * Writes a definition of service `name` on `node` (default w1) to `<dir>/<file>.toml`: busybox httpd answering
 * `page` for the public hostname `hostname` (published through the edge, unless `isPublic` is false:
 * then only the node's proxy routes it), with an HTTP health check. Its shell exits on SIGTERM, as
 * a real service does: `exec httpd` would be the container's PID 1, which ignores SIGTERM, so
 * every stop waited the agent's whole stop timeout before the engine's SIGKILL.
 */
export const publicServiceFile = (dir: string, name: string, hostname: string, page: string, file = name, node = "w1", isPublic = true) => {
  const path = join(dir, `${file}.toml`)
  writeFileSync(path, `name = "${name}"
node = "${node}"
[[components]]
name = "web"
image = "${BUSYBOX_IMAGE}"
cmd = ["sh", "-c", "mkdir -p /www && echo ${page} > /www/index.html; trap 'exit 0' TERM; httpd -f -p $PORT_PUBLIC -h /www & wait"]
[[components.routes]]
name = "public"
port = 8443
mode = "l7"
hostname = "${hostname}"
public = ${isPublic}
[components.health]
kind = "http"
path = "/"
interval = "1s"
`)
  return path
}

export const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs: number) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check()) return
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

/** Starts everything; each peer fails with how to install it when it is missing. */
export const startEdgeFleet = async (dir: string, options: {
  readonly reconcileInterval?: string
  /**
   * The worker's containers in a Podman storage of their own, so that another fleet's clean-up
   * (which removes the containers of its node w1) running at the same time cannot touch them.
   */
  readonly privateStorage?: boolean
  /**
   * The edge's `[proxy] backend_networks`: where its routes may forward to by IP (CIDR).
   * `"worker"` stands for the worker's address (`<hostIp>/32`), the default: the master sends the
   * worker's node address as the edge backend, which an edge refuses outside its networks.
   */
  readonly edgeBackendNetworks?: ReadonlyArray<string>
} = {}): Promise<EdgeFleet> => {
  const ns = makeNetns()
  const storage = options.privateStorage === true ? makePrivateStorage() : undefined
  const flags = storage === undefined ? [] : storageFlags(storage)
  const podmanRun = (args: ReadonlyArray<string>) => spawnSync("podman", [...flags, ...args], { encoding: "utf8", env: podmanEnv() })
  let podman: PodmanService | undefined
  let pdns: PowerDnsServer | undefined
  let workerProxy: HaproxyInstance | undefined
  let edgeProxy: HaproxyInstance | undefined
  let master: LocalFleet.Daemon | undefined
  let worker: LocalFleet.Daemon | undefined
  let edge: LocalFleet.Daemon | undefined
  let fleet: LocalFleet.Fleet | undefined

  const workerContainers = () =>
    podmanRun(["ps", "-a", "--filter", "label=mcp.node=w1", "--format", "{{.Names}}"]).stdout.trim().split("\n").filter((l) => l.length > 0)

  const dispose = async (undeploy: ReadonlyArray<string>) => {
    // Clean-up goes on past a failure, but says what it could not do.
    const said = (what: string) => (result: PromiseSettledResult<unknown>) => {
      if (result.status === "rejected") console.warn(`edge fleet clean-up: ${what}: ${String(result.reason)}`)
    }
    if (master !== undefined && fleet !== undefined) {
      for (const name of undeploy) {
        const r = await LocalFleet.mcp(fleet, ["undeploy", name])
        // A service the test already undeployed is not an error here.
        if (r.code !== 0 && !/is not deployed/.test(r.stdout + r.stderr)) console.warn(`edge fleet clean-up: mcp undeploy ${name}: ${r.stdout}${r.stderr}`)
      }
    }
    ;(await Promise.allSettled([edge?.stop(), worker?.stop(), master?.stop()])).forEach(said("stop a daemon"))
    if (podman !== undefined) {
      for (const c of workerContainers()) {
        const rm = podmanRun(["rm", "-f", c])
        if (rm.status !== 0) console.warn(`edge fleet clean-up: podman rm -f ${c}: ${rm.stderr}`)
      }
    }
    ;(await Promise.allSettled([workerProxy?.dispose(), edgeProxy?.dispose(), pdns?.close(), podman?.stop()])).forEach(said("stop a peer"))
    ns.dispose()
  }

  try {
    ;[podman, pdns] = await Promise.all([startPodmanService(storage === undefined ? {} : { storage }), startPowerDns()])
    const masterPort = await LocalFleet.freePort()
    const masterAddress = `${ns.hostIp}:${masterPort}`
    const masters = [masterAddress]
    const f = await LocalFleet.prepare(join(dir, "fleet"), { masters })
    fleet = f
    // One certificate for every daemon, valid at both hosts' addresses and naming both nodes
    // (the master calls an agent only if its certificate names it).
    await Effect.runPromise(
      Pki.issueCertificate(f.caDir, "hosts", { ips: ["127.0.0.1", ns.hostIp, ns.innerIp], dns: ["localhost", "w1", "e1"], usage: "both" }).pipe(
        Effect.provide(NodeFileSystem.layer)
      )
    )
    // Route certificates come from their own CA, name-constrained to the internal zone and the
    // allowed public domain: agents refuse the platform CA as [certs] ca_dir.
    const routesCaDir = join(dir, "routes-ca")
    await Effect.runPromise(
      Pki.initCa(routesCaDir, { commonName: Pki.DEFAULT_ROUTES_CA_COMMON_NAME, permittedDns: ["svc.mcp.internal", "example.com"] }).pipe(
        Effect.provide(NodeFileSystem.layer)
      )
    )
    const caFile = join(routesCaDir, "ca.crt")
    await createZone(pdns, "example.com", [
      { name: "hello.example.com", type: "CNAME", content: "e1.example.com" },
      { name: "e1.example.com", type: "A", content: ns.innerIp }
    ])
    ;[workerProxy, edgeProxy] = await Promise.all([
      startHaproxy({ bindAddress: ns.hostIp }),
      startHaproxy({ bindAddress: ns.innerIp, backendCaFile: caFile, prefix: ns.prefix })
    ])
    const masterConfig = LocalFleet.writeMasterConfig(f, {
      port: masterPort,
      host: ns.hostIp,
      cert: "hosts",
      extra: `[edge]\nallowed_domains = ["example.com"]\ndefault_node = "e1"\ndns_servers = ["127.0.0.1:${pdns.dnsPort}"]\nreconcile_interval = "${options.reconcileInterval ?? "2s"}"\n`
    })
    const startMaster = async () => {
      master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
    }
    await startMaster()
    // Both agents issue from the routes CA: the edge's HAProxy trusts the worker's proxy by it, and so do clients.
    const certs = `[certs]\nkind = "local-ca"\nca_dir = ${JSON.stringify(routesCaDir)}\n`
    const workerConfig = LocalFleet.writeAgentConfig(f, {
      node: "w1", role: "worker", port: await LocalFleet.freePort(), host: ns.hostIp, nodeAddress: ns.hostIp, cert: "hosts",
      socket: podman.socketPath, masters, extra: haproxySection(workerProxy, ns.hostIp) + certs
    })
    const edgePort = await LocalFleet.freePort()
    const edgeConfig = LocalFleet.writeAgentConfig(f, {
      node: "e1", role: "edge", port: await LocalFleet.freePort(), host: ns.innerIp, nodeAddress: ns.innerIp, cert: "hosts",
      socket: podman.socketPath, masters, extra: haproxySection(edgeProxy, ns.innerIp, caFile) +
        `backend_networks = ${JSON.stringify((options.edgeBackendNetworks ?? ["worker"]).map((n) => (n === "worker" ? `${ns.hostIp}/32` : n)))}\n` +
        certs + `[edge]\nlistener = ${edgePort}\n`
    })
    worker = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, workerConfig)
    const startEdge = async () => {
      edge = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, edgeConfig, /listening on/, 30_000, ns.prefix)
    }
    await startEdge()
    await waitFor("both agents registered and healthy", async () => {
      const r = await LocalFleet.mcp(f, ["node", "list", "--json"])
      return r.code === 0 && (JSON.parse(r.stdout) as Array<{ health: string }>).filter((n) => n.health === "healthy").length === 2
    }, 60_000)
    return {
      ns,
      fleet: f,
      masterAddress,
      edgePort,
      edgeProxy,
      master: () => master!,
      startMaster,
      masterDb: join(f.dir, "master", "master.db"),
      edge: () => edge!,
      startEdge,
      workerContainers,
      podman: (args) => podmanRun(args).stdout.trim(),
      curl: (hostname, ip, port) =>
        new Promise((resolve) =>
          execFile("curl", ["-sS", "--max-time", "5", "--resolve", `${hostname}:${port}:${ip}`, "--cacert", caFile, `https://${hostname}:${port}/`], (error, stdout, stderr) =>
            resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, body: stdout.trim() + stderr.trim() })
          )
        ),
      certFiles: (node, hostname) => {
        const files = join(f.dir, node, "certs")
        return existsSync(files) ? readdirSync(files).filter((name) => name.startsWith(hostname)) : []
      },
      routesCaDir,
      dnsRecords: async () => {
        const api = (path: string) =>
          fetch(`${pdns!.apiUrl}/api/v1/servers/localhost${path}`, { headers: { "X-API-Key": pdns!.apiKey }, signal: AbortSignal.timeout(5000) }).then(async (r) => {
            if (r.status !== 200) throw new Error(`PowerDNS answered ${r.status} to GET ${path}: ${await r.text()}`)
            return r.json() as Promise<unknown>
          })
        const zones = (await api("/zones")) as Array<{ id: string }>
        const lines: Array<string> = []
        for (const zone of zones) {
          const detail = (await api(`/zones/${encodeURIComponent(zone.id)}`)) as { rrsets: Array<{ name: string; type: string; records: Array<{ content: string }> }> }
          for (const rrset of detail.rrsets) for (const r of rrset.records) lines.push(`${rrset.name} ${rrset.type} ${r.content}`)
        }
        return lines.sort()
      },
      dispose
    }
  } catch (e) {
    await dispose([])
    throw e
  }
}
