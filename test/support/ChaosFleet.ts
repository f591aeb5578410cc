/**
 * A fleet for chaos runs (issue 18), as separate hosts on one machine: the master in this network
 * namespace (listening on the host end of a namespace of its own, so that its address is distinct
 * from every node's), and three agents each in a network namespace of its own: workers w1 and w2,
 * edge e1. Each namespace has a default route through this one (which forwards), so the edge
 * reaches the workers' proxies and every agent reaches the master.
 *
 * Each worker has its own Podman API service (in this namespace, on a private storage; the agent
 * reaches it over its unix socket, which crosses namespaces). Containers publish their ports on the
 * worker's veth address on this side (`[ports] bind = hostIp`), which the worker's HAProxy (run in
 * the worker's namespace, bound to its inner address) forwards to. The edge's HAProxy (in e1's
 * namespace) forwards public names to the workers' proxies. PowerDNS serves the public zone, so
 * the master's edge rule has an answer (no CNAME: the default edge e1).
 *
 * This namespace's routes to each node's /30 take the master's address as their source, so a
 * node tells the master's calls (not only its answers) by address; the request loops pick the
 * node's veth address instead (curl --interface). The edge agent points at w1's engine socket, as
 * in EdgeFleet (it runs no containers). Needs root, iproute2, nft, and IPv4 forwarding on here.
 *
 * The workers write their services' internal names (<service>.svc.mcp.internal) to both DNS
 * backends a user may pick: w1 to the master's zone, w2 to PowerDNS (its API on the master's
 * address), so a move between them changes servers. o3 is routed by its node's proxy only (not
 * public); the other services are published through the edge.
 *
 * The agents reach the master through a JitterRelay on the master's address, which holds every
 * chunk each way for a random 0..jitterMs (default 200 ms): the delay jitter of tc netem, which
 * this kernel lacks (no sch_netem). The CLI and the master's own calls to the agents go direct.
 *
 * Faults: an nft table `inet chaos` in each node's namespace (drop by address, or at random for
 * packet loss, in either direction); a node's link down (its end of the veth pair); SIGKILL by pid of the master, an agent, a node's HAProxy, a
 * worker's Podman API service or PowerDNS, with restarts; and a full disk under a worker agent's
 * data directory or under a node's proxy directory (each a tmpfs of its own, filled with files).
 * Everything started here is stopped by pid in `dispose`; the tmpfs mounts are unmounted and the
 * namespaces (and with them the nft tables) deleted.
 *
 * The checks compare, after each scenario: the master's placements, definitions, edge routes and
 * internal zone; each agent's services; each worker's containers, and the container processes
 * and runc states of its storage the engine does not list (killed by pid after the scenario);
 * each node's proxy routes and proxy certificates; each node's agent certificates; PowerDNS's
 * internal zone.
 */
import { NodeFileSystem } from "@effect/platform-node"
import Database from "better-sqlite3"
import { Duration, Effect, Redacted } from "effect"
import { execFile } from "node:child_process"
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statfsSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { AgentRpcs, MasterRpcs, Pki, Transport } from "../../packages/rpc/src/index.js"
import { haproxySection, publicServiceFile, waitFor } from "./EdgeFleet.js"
import { type HaproxyInstance, startHaproxy } from "./Haproxy.js"
import * as LocalFleet from "./LocalFleet.js"
import { type JitterRelay, startJitterRelay } from "./JitterRelay.js"
import { makeNetns, type Netns } from "./Netns.js"
import { type ContainerProcess, type EngineLeftovers, reapUnlisted, scanLeftovers, unlisted } from "./EngineLeftovers.js"
import {
  containersConfPath,
  listedIds,
  makePrivateStorage,
  type PodmanService,
  type PrivateStorage,
  startPodmanService,
  storageFlags,
  storagePlace
} from "./Podman.js"
import { createZone, type PowerDnsServer, startPowerDns } from "./PowerDns.js"

export const WORKERS = ["w1", "w2"] as const
export const NODES = ["w1", "w2", "e1"] as const
export type WorkerName = (typeof WORKERS)[number]
export type NodeName = (typeof NODES)[number]

/** The public domain the fleet's services are published under. */
export const DOMAIN = "example.com"

export interface RunResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs a command without blocking the event loop (the request loops keep their timing). */
export const run = (command: string, args: ReadonlyArray<string>, options: { readonly timeoutMs?: number; readonly input?: string; readonly env?: NodeJS.ProcessEnv } = {}) =>
  new Promise<RunResult>((resolve) => {
    const child = execFile(command, [...args], { timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, env: options.env ?? process.env }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr: stderr + (error !== null && typeof error.code !== "number" ? ` (${error.message})` : "") })
    )
    if (options.input !== undefined) child.stdin?.end(options.input)
  })

export interface ChaosNode {
  readonly name: NodeName
  readonly ns: Netns
  /** The agent's RPC address, `innerIp:port`. */
  readonly address: string
  readonly proxy: HaproxyInstance
  readonly agent: () => LocalFleet.Daemon | undefined
  /** Starts the agent again (after a kill) inside its namespace, on the same config and data. */
  readonly startAgent: () => Promise<void>
  /** A worker's engine: its Podman service and private storage; none on the edge. */
  readonly engine: { readonly service: () => PodmanService; readonly storage: PrivateStorage } | undefined
}

export interface EngineContainer {
  /** The full container id. */
  readonly id: string
  readonly name: string
  readonly service: string | undefined
  readonly node: string | undefined
  readonly running: boolean
}

/** The master's records, read from its database. */
export interface MasterRecords {
  readonly placements: ReadonlyMap<string, string>
  /** Each placed service's definition as stored (JSON text). */
  readonly definitions: ReadonlyMap<string, string>
  readonly edgeRoutes: ReadonlyArray<{ readonly hostname: string; readonly service: string; readonly state: string }>
  /**
   * The master's sagas still running (left open: a worker did not answer, or its rollback
   * failed). Until the master finishes them, an operation it reported as "not known yet" has no
   * outcome, and the fleet has not converged.
   */
  readonly openSagas: ReadonlyArray<{ readonly service: string; readonly kind: string }>
}

export interface AgentService {
  readonly service: string
  readonly node: string
  readonly active: boolean
}

/** Where a full disk is: under a worker agent's data directory, or under a node's proxy directory. */
export type DiskKind = "data" | "proxy"

/** A record of the internal zone, in whichever server its node writes to. */
export interface ZoneEntry {
  readonly name: string
  readonly address: string
  /** "master" (the master's zone, w1's) or "powerdns" (w2's). */
  readonly server: "master" | "powerdns"
}

/** The zone every service with a route gets `<service>.<zone>` in. */
export const INTERNAL_ZONE = "svc.mcp.internal"
/** How each worker's agent writes its internal names: both DNS backends a user may pick, under the same faults. */
export const DNS_SERVER_OF: Readonly<Record<WorkerName, ZoneEntry["server"]>> = { w1: "master", w2: "powerdns" }

export interface NodeHealth {
  readonly name: string
  readonly health: string
  readonly lastHeartbeat?: string | undefined
}

export interface ChaosFleet {
  readonly dir: string
  readonly fleet: LocalFleet.Fleet
  readonly masterIp: string
  readonly masterAddress: string
  readonly heartbeatMs: number
  /** The most a chunk between an agent and the master is held (0: not relayed). */
  readonly jitterMs: number
  /** The port the edge serves public names on, at e1's inner address. */
  readonly edgePort: number
  /** The port workers' proxies serve routes on (the services' route listener). */
  readonly workerListener: number
  readonly nodes: Readonly<Record<NodeName, ChaosNode>>
  readonly master: () => LocalFleet.Daemon | undefined
  readonly startMaster: () => Promise<void>
  /** SIGKILLs a worker's Podman API service (its containers keep running), and starts it again on the same socket. */
  readonly killEngine: (worker: WorkerName) => Promise<void>
  readonly startEngine: (worker: WorkerName) => Promise<void>
  /** SIGKILLs PowerDNS (the public zone's server), and starts it again on the same ports and records. */
  readonly killDns: () => Promise<void>
  readonly startDns: () => Promise<void>
  /** Fills the tmpfs under a worker agent's data directory, or under a node's proxy directory, to the last byte. */
  readonly fillDisk: (node: NodeName, disk: DiskKind) => Promise<void>
  readonly freeDisk: (node: NodeName, disk: DiskKind) => Promise<void>
  /** The internal zone's records: w1's in the master's zone, w2's in PowerDNS's. */
  readonly zoneRecords: () => Promise<ReadonlyArray<ZoneEntry>>
  /** The files in a node's agent certificate directory, and in its proxy's certificate directory. */
  readonly certFiles: (node: NodeName) => { readonly agent: ReadonlyArray<string>; readonly proxy: ReadonlyArray<string> }
  readonly masterDb: string
  /** The routes CA certificate: clients trust it for the proxies' certificates. */
  readonly routesCaFile: string
  /** Takes a node's link down (its end of the veth pair: the node is cut off from everything), or up again with its default route. */
  readonly setLink: (node: NodeName, up: boolean) => Promise<void>
  /** Replaces the chaos rules in a node's namespace (nft rule bodies, e.g. `ip saddr 1.2.3.4 drop`). */
  readonly setRules: (node: NodeName, rules: { readonly input: ReadonlyArray<string>; readonly output: ReadonlyArray<string> }) => Promise<void>
  /** curl https://<hostname>:<port>/ at `ip` (a node's inner address), from this side of its veth, trusting the routes CA. */
  readonly curl: (hostname: string, ip: string, port: number, maxTimeSeconds?: number) => Promise<{ code: number; body: string; phases: string }>
  readonly nodesList: (timeoutMs?: number) => Promise<ReadonlyArray<NodeHealth>>
  readonly agentPs: (node: NodeName, timeoutMs?: number) => Promise<ReadonlyArray<AgentService>>
  /** `mcp ps` as the master answers it: its fan-out to the agents, and the nodes it could not reach. */
  readonly masterPs: (timeoutMs?: number) => Promise<{ readonly services: ReadonlyArray<AgentService>; readonly unreachable: ReadonlyArray<string> }>
  readonly containers: (worker: WorkerName) => Promise<ReadonlyArray<EngineContainer>>
  /** Every container process and runc state of the worker's storage (to be judged against a list of the engine's taken after). */
  readonly scanEngine: (worker: WorkerName) => EngineLeftovers
  /** Scans, lists, then kills by pid the processes and deletes the runc states of what the engine does not list; returns them. */
  readonly reapStrays: (worker: WorkerName) => EngineLeftovers
  /** Hostnames in a node's proxy (its routes.json, which the agent keeps as the source of truth). */
  readonly proxyHostnames: (node: NodeName) => ReadonlyArray<string>
  readonly masterRecords: () => MasterRecords
  readonly mcp: (args: ReadonlyArray<string>, timeoutMs?: number) => Promise<RunResult>
  readonly dispose: () => Promise<void>
}

/** Splits curl's `-w` timings from the body it printed. */
const PHASES_MARK = "\n@@phases "

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

const nftSetup = `add table inet chaos
add chain inet chaos input { type filter hook input priority -10 ; policy accept ; }
add chain inet chaos output { type filter hook output priority -10 ; policy accept ; }
`

/** makeNetns, but never one whose /30 another of ours already has (the subnet comes from a random byte). */
const distinctNetns = (taken: Array<Netns>): Netns => {
  for (let attempt = 0; attempt < 10; attempt++) {
    const ns = makeNetns()
    if (!taken.some((t) => t.hostIp === ns.hostIp)) {
      taken.push(ns)
      return ns
    }
    ns.dispose()
  }
  throw new Error("could not make a network namespace on a /30 of its own")
}

export const startChaosFleet = async (dir: string, options: {
  readonly heartbeatSeconds?: number
  readonly reconcileInterval?: string
  /** The most each chunk between an agent and the master is held (JitterRelay); 0: no relay. Default 200. */
  readonly jitterMs?: number
} = {}): Promise<ChaosFleet> => {
  const namespaces: Array<Netns> = []
  const storages: Array<PrivateStorage> = []
  const podmans: Partial<Record<WorkerName, PodmanService>> = {}
  const engineDirs = {} as Record<WorkerName, string>
  const dataMounts: Array<string> = []
  const proxyMounts: Array<string> = []
  const proxies: Partial<Record<NodeName, HaproxyInstance>> = {}
  const agents: Partial<Record<NodeName, LocalFleet.Daemon>> = {}
  let master: LocalFleet.Daemon | undefined
  let pdns: PowerDnsServer | undefined
  let jitter: JitterRelay | undefined
  const jitterMs = options.jitterMs ?? 200
  const heartbeat = `${options.heartbeatSeconds ?? 1}s`
  const heartbeatMs = (options.heartbeatSeconds ?? 1) * 1000

  const storageOf = (w: WorkerName) => storages[WORKERS.indexOf(w)]
  const podmanOn = (w: WorkerName, args: ReadonlyArray<string>, timeoutMs = 30_000) => {
    const s = storageOf(w)!
    return run("podman", [...storageFlags(s), ...args], { env: podmanEnv(), timeoutMs })
  }

  let disposed = false
  const dispose = async () => {
    if (disposed) return
    disposed = true
    const said = (what: string) => (result: PromiseSettledResult<unknown>) => {
      if (result.status === "rejected") console.warn(`chaos fleet clean-up: ${what}: ${String(result.reason)}`)
    }
    ;(await Promise.allSettled([...Object.values(agents).map((a) => a.stop()), master?.stop()])).forEach(said("stop a daemon"))
    const unmountUnder = async (s: PrivateStorage) => {
      // Mounts a container left under this storage (its /dev/shm in a user namespace), deepest first.
      const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith(`${s.root}/`) || m.startsWith(`${s.runroot}/`))
        .sort((a, b) => b.length - a.length)
      for (const m of mounts) await run("umount", ["-l", m])
    }
    for (const w of WORKERS) {
      if (storageOf(w) === undefined || podmans[w] === undefined) continue
      // A private storage: every container in it is this fleet's.
      let rm = await podmanOn(w, ["rm", "-f", "-a", "-t", "0"], 120_000)
      if (rm.code !== 0) {
        await unmountUnder(storageOf(w)!)
        rm = await podmanOn(w, ["rm", "-f", "-a", "-t", "0"], 120_000)
      }
      if (rm.code !== 0) console.warn(`chaos fleet clean-up: podman rm -f -a on ${w}: ${rm.stderr}`)
      // What the engine lost track of survives its rm -a (a conmon and its runc init were seen
      // to outlive a run): every container process and runc state left in this storage.
      try {
        const left = reapUnlisted(storagePlace(storageOf(w)!), () => new Set())
        if (left.processes.length + left.states.length > 0) console.warn(`chaos fleet clean-up: on ${w}, killed ${describeStrays(left).join("; ")}`)
      } catch (e) {
        console.warn(`chaos fleet clean-up: ${String(e)}`)
      }
    }
    for (const m of proxyMounts) {
      const u = await run("umount", ["-l", m])
      if (u.code !== 0) console.warn(`chaos fleet clean-up: umount ${m}: ${u.stderr}`)
    }
    ;(await Promise.allSettled([...Object.values(proxies).map((p) => p.dispose()), pdns?.close(), ...Object.values(podmans).map((p) => p.stop())])).forEach(said("stop a peer"))
    for (const m of dataMounts) {
      const u = await run("umount", ["-l", m])
      if (u.code !== 0) console.warn(`chaos fleet clean-up: umount ${m}: ${u.stderr}`)
    }
    for (const s of storages) {
      // Never `podman system reset`: it reaches beyond a private storage (run dirs, networks).
      await unmountUnder(s)
      try {
        rmSync(dirname(s.root), { recursive: true, force: true })
      } catch (e) {
        console.warn(`chaos fleet clean-up: remove ${dirname(s.root)}: ${String(e)}`)
      }
    }
    await jitter?.close()
    for (const ns of namespaces) ns.dispose()
  }

  try {
    if (readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim() !== "1") {
      throw new Error("the chaos fleet routes between network namespaces through this one, which needs IPv4 forwarding. Fix (as root): sysctl -w net.ipv4.ip_forward=1")
    }
    const masterNs = distinctNetns(namespaces)
    const nsOf = {} as Record<NodeName, Netns>
    for (const n of NODES) nsOf[n] = distinctNetns(namespaces)
    const masterIp = masterNs.hostIp
    for (const n of NODES) {
      const ns = nsOf[n]
      const route = await run("ip", ["netns", "exec", ns.name, "ip", "route", "add", "default", "via", ns.hostIp])
      if (route.code !== 0) throw new Error(`default route in ${ns.name}: ${route.stderr}`)
      // What this namespace sends to a node's /30 leaves from the master's address, so a node
      // tells the master's calls (not only its answers) by address: a partition cuts both.
      // Other clients here (the request loops) pick their source address with curl --interface.
      const subnet = ns.innerIp.replace(/\.\d+$/, ".0")
      const src = await run("ip", ["route", "replace", `${subnet}/30`, "dev", `mo${ns.name.replace(/^mcp-/, "")}`, "proto", "kernel", "scope", "link", "src", masterIp])
      if (src.code !== 0) throw new Error(`route to ${subnet}/30 from ${masterIp}: ${src.stderr}`)
      const nft = await run("ip", ["netns", "exec", ns.name, "nft", "-f", "-"], { input: nftSetup })
      if (nft.code !== 0) throw new Error(`nft chaos table in ${ns.name}: ${nft.stderr}`)
    }
    for (const w of WORKERS) {
      storages.push(makePrivateStorage())
      engineDirs[w] = join(dir, `engine-${w}`)
      mkdirSync(engineDirs[w], { recursive: true, mode: 0o700 })
    }
    // PowerDNS's API on the master's address, for the worker that writes its internal names there.
    const pdnsApi = { address: masterIp, allowFrom: [`${masterIp}/32`, ...NODES.map((n) => `${nsOf[n].innerIp}/32`)] }
    const started = await Promise.all([...WORKERS.map((w, i) => startPodmanService({ storage: storages[i]!, dir: engineDirs[w] })), startPowerDns({ api: pdnsApi })])
    WORKERS.forEach((w, i) => (podmans[w] = started[i] as PodmanService))
    pdns = started[WORKERS.length] as PowerDnsServer
    await createZone(pdns, DOMAIN, [{ name: `e1.${DOMAIN}`, type: "A", content: nsOf.e1.innerIp }])
    await createZone(pdns, INTERNAL_ZONE, [])
    const pdnsKeyFile = join(dir, "pdns.key")
    writeFileSync(pdnsKeyFile, pdns.apiKey, { mode: 0o600 })

    const masterPort = await LocalFleet.freePort()
    const masterAddress = `${masterIp}:${masterPort}`
    const masters = [masterAddress]
    const f = await LocalFleet.prepare(join(dir, "fleet"), { masters })
    // The agents reach the master through the jitter relay (on the master's address), the CLI directly.
    if (jitterMs > 0) jitter = await startJitterRelay({ host: masterIp, target: { host: masterIp, port: masterPort }, maxDelayMs: jitterMs })
    const agentMasters = jitter === undefined ? masters : [jitter.address]
    // Each worker agent's data directory on a small tmpfs of its own, for the full-disk fault.
    for (const w of WORKERS) {
      const data = join(f.dir, w)
      mkdirSync(data, { recursive: true, mode: 0o700 })
      const m = await run("mount", ["-t", "tmpfs", "-o", "size=128m,mode=0700", "tmpfs", data])
      if (m.code !== 0) throw new Error(`cannot mount a tmpfs at ${data} (${m.stderr.trim()}); the chaos fleet needs root`)
      dataMounts.push(data)
    }
    await Effect.runPromise(
      Pki.issueCertificate(f.caDir, "hosts", {
        ips: ["127.0.0.1", masterIp, ...NODES.flatMap((n) => [nsOf[n].hostIp, nsOf[n].innerIp])],
        dns: ["localhost", ...NODES],
        usage: "both"
      }).pipe(Effect.provide(NodeFileSystem.layer))
    )
    const routesCaDir = join(dir, "routes-ca")
    await Effect.runPromise(
      Pki.initCa(routesCaDir, { commonName: Pki.DEFAULT_ROUTES_CA_COMMON_NAME, permittedDns: ["svc.mcp.internal", DOMAIN] }).pipe(Effect.provide(NodeFileSystem.layer))
    )
    const routesCaFile = join(routesCaDir, "ca.crt")
    // Each node's proxy directory on a small tmpfs of its own, for the full-disk fault there too.
    const smallDisk = async (proxyDir: string) => {
      const m = await run("mount", ["-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", proxyDir])
      if (m.code !== 0) throw new Error(`cannot mount a tmpfs at ${proxyDir} (${m.stderr.trim()}); the chaos fleet needs root`)
      proxyMounts.push(proxyDir)
    }
    const started2 = await Promise.all(NODES.map((n) =>
      startHaproxy({ bindAddress: nsOf[n].innerIp, prefix: nsOf[n].prefix, prepareDir: smallDisk, ...(n === "e1" ? { backendCaFile: routesCaFile } : {}) })
    ))
    NODES.forEach((n, i) => (proxies[n] = started2[i]!))

    const masterConfig = LocalFleet.writeMasterConfig(f, {
      port: masterPort,
      host: masterIp,
      cert: "hosts",
      interval: heartbeat,
      extra: `[edge]\nallowed_domains = ["${DOMAIN}"]\ndefault_node = "e1"\ndns_servers = ["127.0.0.1:${pdns.dnsPort}"]\nreconcile_interval = "${options.reconcileInterval ?? "2s"}"\n`
    })
    const startMaster = async () => {
      master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
    }
    await startMaster()

    const certs = `[certs]\nkind = "local-ca"\nca_dir = ${JSON.stringify(routesCaDir)}\n`
    const edgePort = await LocalFleet.freePort()
    const agentPorts = {} as Record<NodeName, number>
    const configs = {} as Record<NodeName, string>
    for (const [i, n] of NODES.entries()) {
      const ns = nsOf[n]
      agentPorts[n] = await LocalFleet.freePort()
      const isEdge = n === "e1"
      configs[n] = LocalFleet.writeAgentConfig(f, {
        node: n, role: isEdge ? "edge" : "worker", port: agentPorts[n], host: ns.innerIp, nodeAddress: ns.innerIp, cert: "hosts",
        socket: isEdge ? podmans.w1!.socketPath : podmans[n as WorkerName]!.socketPath, masters: agentMasters,
        extra: (isEdge ? "" : `[ports]\nmin = ${20000 + 10000 * i}\nmax = ${29999 + 10000 * i}\nbind = "${ns.hostIp}"\n`) +
          (isEdge ? "" : DNS_SERVER_OF[n as WorkerName] === "master" ? `[dns]\nkind = "master"\n`
            : `[dns]\nkind = "powerdns"\napi_url = ${JSON.stringify(pdns.apiUrl)}\napi_key_file = ${JSON.stringify(pdnsKeyFile)}\n`) +
          haproxySection(proxies[n]!, ns.innerIp, isEdge ? routesCaFile : undefined) +
          (isEdge ? `backend_networks = ${JSON.stringify(WORKERS.map((w) => `${nsOf[w].innerIp}/32`))}\n` : "") +
          certs + (isEdge ? `[edge]\nlistener = ${edgePort}\n` : "")
      })
    }
    const startAgent = (n: NodeName) => async () => {
      agents[n] = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, configs[n], /listening on/, 60_000, nsOf[n].prefix)
    }
    // One at a time: three agents starting at once on a loaded machine miss the engine's 2 s answer.
    for (const n of NODES) await startAgent(n)()

    const caPem = readFileSync(join(f.caDir, "ca.crt"), "utf8")
    const token = Redacted.make(f.operatorToken)
    const ask = <A>(effect: Effect.Effect<A, unknown, import("effect").Scope.Scope>, timeoutMs: number): Promise<A> =>
      Effect.runPromise(Effect.scoped(effect).pipe(Effect.timeoutFail({ duration: Duration.millis(timeoutMs), onTimeout: () => new Error(`no answer within ${timeoutMs} ms`) })))
    const nodesList = (timeoutMs = 3000) =>
      ask(Effect.flatMap(Transport.makeClient(MasterRpcs, { url: `https://${masterAddress}/master`, ca: caPem, token }), (c) => c.NodesList()), timeoutMs)
        .then((views) => views.map((v) => ({ name: v.info.name as string, health: v.health as string, lastHeartbeat: v.lastHeartbeat })))
    const agentPs = (n: NodeName, timeoutMs = 3000) =>
      ask(Effect.flatMap(Transport.makeClient(AgentRpcs, { url: `https://${nsOf[n].innerIp}:${agentPorts[n]}/agent`, ca: caPem, token }), (c) => c.Ps()), timeoutMs)
        .then((services) => services.map((s) => ({ service: s.service, node: s.node as string, active: s.active })))

    const masterPs = (timeoutMs = 4000) =>
      ask(Effect.flatMap(Transport.makeClient(MasterRpcs, { url: `https://${masterAddress}/master`, ca: caPem, token }), (c) => c.Ps()), timeoutMs)
        .then((ps) => ({ services: ps.services.map((s) => ({ service: s.service, node: s.node as string, active: s.active })), unreachable: ps.unreachable.map((u) => `${u.node}: ${u.reason}`) }))
    const diskOf = (n: NodeName, disk: DiskKind) => {
      if (disk === "proxy") return proxies[n]!.options.dir
      if (n === "e1") throw new Error("e1's agent data directory is not on a tmpfs of its own: a full data disk is a worker's fault")
      return join(f.dir, n)
    }
    const withMasterDb = <A>(read: (db: Database.Database) => A): A => {
      const db = new Database(join(f.dir, "master", "master.db"), { readonly: true, fileMustExist: true })
      try {
        return read(db)
      } finally {
        db.close()
      }
    }
    const nodes = {} as Record<NodeName, ChaosNode>
    for (const n of NODES) {
      const w = n === "e1" ? undefined : (n as WorkerName)
      nodes[n] = {
        name: n,
        ns: nsOf[n],
        address: `${nsOf[n].innerIp}:${agentPorts[n]}`,
        proxy: proxies[n]!,
        agent: () => agents[n],
        startAgent: startAgent(n),
        engine: w === undefined ? undefined : { service: () => podmans[w]!, storage: storageOf(w)! }
      }
    }
    const fleetApi: ChaosFleet = {
      dir,
      fleet: f,
      masterIp,
      masterAddress,
      heartbeatMs,
      jitterMs: jitter === undefined ? 0 : jitterMs,
      edgePort,
      workerListener: 8443,
      nodes,
      master: () => master,
      startMaster,
      killEngine: async (w) => {
        const service = podmans[w]!
        process.kill(service.pid, "SIGKILL")
        await service.stop()
      },
      startEngine: async (w) => {
        podmans[w] = await startPodmanService({ storage: storageOf(w)!, dir: engineDirs[w] })
      },
      killDns: async () => {
        const pid = pdns!.pid()
        if (pid !== undefined) process.kill(pid, "SIGKILL")
        await pdns!.stop()
      },
      startDns: () => pdns!.start(),
      fillDisk: async (n, disk) => {
        // What statfs calls available is not all fallocate can take at once (seen: ENOSPC for
        // all of it): files of halving sizes until not one block is left.
        const data = diskOf(n, disk)
        let size = statfsSync(data).bavail * statfsSync(data).bsize
        for (let i = 0; size >= statfsSync(data).bsize && i < 64; i++) {
          const r = await run("fallocate", ["-l", String(size), join(data, `chaos-filler-${i}`)])
          size = r.code === 0 ? statfsSync(data).bavail * statfsSync(data).bsize : Math.floor(size / 2)
        }
        const left = statfsSync(data).bavail * statfsSync(data).bsize
        if (left > 64 * 1024) throw new Error(`could not fill ${data}: ${left} bytes still free`)
      },
      freeDisk: async (n, disk) => {
        const data = diskOf(n, disk)
        for (const file of readdirSync(data).filter((n) => n.startsWith("chaos-filler-"))) rmSync(join(data, file), { force: true })
      },
      zoneRecords: async () => {
        const fromMaster = withMasterDb((db) => db.prepare("SELECT name, address FROM dns_records").all() as Array<{ name: string; address: string }>)
        const res = await fetch(`${pdns!.apiUrl}/api/v1/servers/localhost/zones/${INTERNAL_ZONE}.`, { headers: { "X-API-Key": pdns!.apiKey }, signal: AbortSignal.timeout(5000) })
        if (res.status !== 200) throw new Error(`PowerDNS: GET zone ${INTERNAL_ZONE}: HTTP ${res.status}: ${await res.text()}`)
        const zone = (await res.json()) as { rrsets: Array<{ name: string; type: string; records: Array<{ content: string }> }> }
        const fromPowerDns = zone.rrsets.filter((r) => r.type === "A").flatMap((r) => r.records.map((x) => ({ name: r.name.replace(/\.$/, ""), address: x.content })))
        return [...fromMaster.map((r) => ({ ...r, server: "master" as const })), ...fromPowerDns.map((r) => ({ ...r, server: "powerdns" as const }))]
      },
      certFiles: (n) => {
        const list = (d: string) => (existsSync(d) ? readdirSync(d).sort() : [])
        return { agent: list(join(f.dir, n, "certs")), proxy: list(join(proxies[n]!.options.dir, "certs")) }
      },
      masterDb: join(f.dir, "master", "master.db"),
      routesCaFile,
      setLink: async (n, up) => {
        const ns = nsOf[n]
        const dev = `mi${ns.name.replace(/^mcp-/, "")}`
        const link = await run("ip", ["netns", "exec", ns.name, "ip", "link", "set", dev, up ? "up" : "down"])
        if (link.code !== 0) throw new Error(`ip link set ${dev} ${up ? "up" : "down"} in ${ns.name} (${n}): ${link.stderr.trim()}`)
        // A link taken down loses its routes: the default one comes back with it.
        if (up) {
          const route = await run("ip", ["netns", "exec", ns.name, "ip", "route", "replace", "default", "via", ns.hostIp])
          if (route.code !== 0) throw new Error(`default route in ${ns.name} (${n}): ${route.stderr.trim()}`)
        }
      },
      setRules: async (n, rules) => {
        const script = ["flush chain inet chaos input", "flush chain inet chaos output",
          ...rules.input.map((r) => `add rule inet chaos input ${r}`), ...rules.output.map((r) => `add rule inet chaos output ${r}`)].join("\n") + "\n"
        const r = await run("ip", ["netns", "exec", nsOf[n].name, "nft", "-f", "-"], { input: script })
        if (r.code !== 0) throw new Error(`nft in ${nsOf[n].name} (${n}) failed: ${r.stderr}\n${script}`)
      },
      curl: (hostname, ip, port, maxTimeSeconds = 3) =>
        run("curl", ["-sS", "--max-time", String(maxTimeSeconds),
          // From the address of the target's own veth end, not the master's (see the routes above).
          ...NODES.filter((n) => nsOf[n].innerIp === ip).flatMap((n) => ["--interface", nsOf[n].hostIp]),
          // Where a slow request spent its time (written on a timeout too), after the body.
          "-w", `${PHASES_MARK}connect %{time_connect} s, tls %{time_appconnect} s, first byte %{time_starttransfer} s, total %{time_total} s`,
          "--resolve", `${hostname}:${port}:${ip}`, "--cacert", routesCaFile, `https://${hostname}:${port}/`], { timeoutMs: (maxTimeSeconds + 5) * 1000 })
          .then((r) => {
            const [body, phases] = r.stdout.split(PHASES_MARK)
            return { code: r.code, body: (body!.trim() + r.stderr.trim()), phases: phases ?? "" }
          }),
      nodesList,
      agentPs,
      masterPs,
      containers: async (w) => {
        const r = await podmanOn(w, ["ps", "-a", "--format", "json"])
        if (r.code !== 0) throw new Error(`podman ps on ${w}: ${r.stderr}`)
        const rows = JSON.parse(r.stdout.trim() === "" ? "[]" : r.stdout) as Array<{ Id?: string; Names?: Array<string>; Labels?: Record<string, string> | null; State?: string }>
        return rows.map((c) => {
          // Strays are what the engine does not list, by id: a list without ids would make every container one.
          if (c.Id === undefined || !/^[0-9a-f]{64}$/.test(c.Id)) throw new Error(`podman ps on ${w} listed a container without a full id: ${JSON.stringify(c).slice(0, 300)}`)
          return { id: c.Id, name: c.Names?.[0] ?? "?", service: c.Labels?.["mcp.service"], node: c.Labels?.["mcp.node"], running: c.State === "running" }
        })
      },
      scanEngine: (w) => scanLeftovers(storagePlace(storageOf(w)!)),
      reapStrays: (w) => reapUnlisted(storagePlace(storageOf(w)!), () => listedIds(storageOf(w)!)),
      proxyHostnames: (n) => {
        const file = join(proxies[n]!.options.dir, "routes.json")
        if (!existsSync(file)) return []
        const text = readFileSync(file, "utf8")
        return [...new Set([...text.matchAll(/"hostname"\s*:\s*"([^"]+)"/g)].map((m) => m[1]!))].sort()
      },
      masterRecords: () =>
        withMasterDb((db) => {
          const placements = new Map((db.prepare("SELECT service, node FROM placements").all() as Array<{ service: string; node: string }>).map((r) => [r.service, r.node]))
          const definitions = new Map((db.prepare("SELECT service, definition FROM definitions").all() as Array<{ service: string; definition: string }>).map((r) => [r.service, r.definition]))
          const edgeRoutes = db.prepare("SELECT hostname, service, state FROM edge_routes").all() as Array<{ hostname: string; service: string; state: string }>
          const openSagas = db.prepare("SELECT service, kind FROM sagas WHERE state = 'running'").all() as Array<{ service: string; kind: string }>
          return { placements, definitions, edgeRoutes, openSagas }
        }),
      mcp: (args, timeoutMs = 90_000) => run(process.execPath, [LocalFleet.bins.mcp, ...args, "--config", f.cliConfig], { timeoutMs }),
      dispose
    }
    await waitFor("every agent registered and healthy", async () => {
      try {
        const views = await nodesList()
        return NODES.every((n) => views.some((v) => v.name === n && v.health === "healthy"))
      } catch {
        return false
      }
    }, 90_000)
    return fleetApi
  } catch (e) {
    await dispose()
    throw e
  }
}

// ---------------------------------------------------------------------------------------------
// Plans: a seeded PRNG decides every fault and operation, so `seed` replays the same run.

/** mulberry32: a tiny deterministic PRNG, uniform in [0, 1). */
export const mulberry32 = (seed: number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export type FaultKind = "partition-master" | "partition-edge" | "loss" | "kill-master" | "kill-agent" | "kill-proxy" | "kill-engine" | "kill-dns" | "disk-full" | "link-down"
/** The kinds a plan draws from, in the order the draw uses (link-down is drawn as a third of the partitions from the master). */
const DRAWN_KINDS: ReadonlyArray<FaultKind> = ["partition-master", "partition-edge", "loss", "kill-master", "kill-agent", "kill-proxy", "kill-engine", "kill-dns", "disk-full"]
export const FAULT_KINDS: ReadonlyArray<FaultKind> = [...DRAWN_KINDS, "link-down"]

export interface Fault {
  readonly kind: FaultKind
  /** partition-master, link-down, loss, kill-agent, kill-proxy: any node; partition-edge, kill-engine: a worker; disk-full: a worker's data, any node's proxy. */
  readonly node?: NodeName
  /** disk-full: which disk. */
  readonly disk?: DiskKind
  /** Partitions and loss: "in" drops what the node receives (from the peer), "out" what it sends, "both" both. */
  readonly direction?: "both" | "in" | "out"
  /** loss: the share of packets the node drops, in percent. */
  readonly percent?: number
  /** From the start of the scenario, or with `duringOp` from the moment that operation reached its worker's proxy. */
  readonly atMs: number
  /** The index of the operation this fault lands in (a kill mid-saga), `atMs` after it started. */
  readonly duringOp?: number
  readonly durationMs: number
}

export type OpKind = "deploy" | "redeploy" | "move" | "stop" | "start" | "undeploy"

export interface Op {
  readonly kind: OpKind
  readonly service: string
  /** deploy/redeploy/move: where the definition pins it (a move: the other worker). */
  readonly node: WorkerName
  /** deploy/redeploy/move: the page it serves. */
  readonly page: string
  readonly atMs: number
}

export interface ScenarioPlan {
  readonly seed: number
  readonly index: number
  readonly faults: ReadonlyArray<Fault>
  readonly ops: ReadonlyArray<Op>
  readonly lengthMs: number
}

/** Deployed before the faults, never changed by a scenario, requested all the time. */
export const STEADY: ReadonlyArray<{ readonly service: string; readonly node: WorkerName }> = [{ service: "st1", node: "w1" }, { service: "st2", node: "w2" }]
/** What the operations change. */
export const CHANGING = ["o1", "o2", "o3"] as const
export const hostnameOf = (service: string) => `${service}.${DOMAIN}`
/** A service that is routed by its node's proxy only, never published through the edge. */
export const INTERNAL_ONLY: ReadonlyArray<string> = ["o3"]
export const isPublic = (service: string) => !INTERNAL_ONLY.includes(service)

/** A request that took longer than this (and succeeded) is counted as slow. */
export const SLOW_MS = 1000

/** The packet loss every scenario has one fault of: no node may be marked unhealthy for it. */
export const BACKGROUND_LOSS_PERCENT = 5

/**
 * `count` scenario plans for `seed`. Each has one random fault and one 5% loss on a random node
 * (planned one after the other, in random order; the random fault lands in an operation 7 times in
 * 10, which may make them overlap), and four operations at random times, chosen from the state the
 * plans before them would leave if every operation succeeded. The plans are exactly the same for a
 * seed; the interleaving with the fleet's own timing is not (an operation's length varies with load).
 */
export const makePlans = (seed: number, count: number, options: { readonly opsPerScenario?: number } = {}): ReadonlyArray<ScenarioPlan> => {
  const random = mulberry32(seed)
  const int = (lo: number, hi: number) => lo + Math.floor(random() * (hi - lo + 1))
  const pick = <T>(xs: ReadonlyArray<T>): T => xs[Math.floor(random() * xs.length)]!
  const model = new Map<string, { node: WorkerName; active: boolean }>()
  const plans: Array<ScenarioPlan> = []
  for (let index = 0; index < count; index++) {
    const kind = pick(DRAWN_KINDS)
    const direction = pick(["both", "in", "out"] as const)
    const randomFault: Omit<Fault, "atMs" | "durationMs"> =
      // (A seed's scenarios before its first partition from the master are planned as before link-down was one.)
      kind === "partition-master" ? (random() < 1 / 3 ? { kind: "link-down" as const, node: pick(NODES) } : { kind, node: pick(NODES), direction })
      : kind === "partition-edge" ? { kind, node: pick(WORKERS), direction }
      : kind === "loss" ? { kind, node: pick(NODES), direction, percent: 30 }
      : kind === "kill-agent" || kind === "kill-proxy" ? { kind, node: pick(NODES) }
      : kind === "kill-engine" ? { kind, node: pick(WORKERS) }
      // (A seed's scenarios before its first disk-full are planned as before the proxy's disk was one.)
      : kind === "disk-full" ? (random() < 0.5 ? { kind, node: pick(WORKERS), disk: "data" as const } : { kind, node: pick(NODES), disk: "proxy" as const })
      : { kind }
    const background: Omit<Fault, "atMs" | "durationMs"> = { kind: "loss", node: pick(NODES), direction: pick(["both", "in", "out"] as const), percent: BACKGROUND_LOSS_PERCENT }
    const ordered = random() < 0.5 ? [randomFault, background] : [background, randomFault]
    let t = int(1000, 2000)
    const faults: Array<Fault> = []
    for (const f of ordered) {
      const durationMs = int(2000, 6000)
      faults.push({ ...f, atMs: t, durationMs })
      t += durationMs + int(1000, 2000)
    }
    const lengthMs = t
    const times = Array.from({ length: options.opsPerScenario ?? 4 }, () => int(0, lengthMs - 1000)).sort((a, b) => a - b)
    const ops = times.map((atMs, k): Op => {
      const service = pick(CHANGING)
      const state = model.get(service)
      const page = `${service}-s${seed}-${index}-${k}`
      const kind: OpKind = state === undefined ? "deploy" : state.active ? pick(["redeploy", "move", "stop", "undeploy"] as const) : pick(["start", "undeploy"] as const)
      const node = kind === "move" ? WORKERS.find((w) => w !== state!.node)! : state?.node ?? pick(WORKERS)
      if (kind === "undeploy") model.delete(service)
      else model.set(service, { node, active: kind !== "stop" })
      return { kind, service, node, page, atMs }
    })
    // Most random faults land in an operation (a kill or a cut in the middle of its saga).
    if (random() < 0.7) {
      const i = faults.findIndex((f) => f.percent !== BACKGROUND_LOSS_PERCENT)
      // atMs from when the operation changes its worker's proxy: a stop's containers then stop for up to 2 s.
      faults[i] = { ...faults[i]!, duringOp: int(0, ops.length - 1), atMs: int(50, 1200) }
    }
    plans.push({ seed, index, faults, ops, lengthMs })
  }
  return plans
}

export const describeFault = (f: Fault) =>
  `${f.kind}${f.node === undefined ? "" : ` ${f.node}`}${f.disk === undefined ? "" : ` ${f.disk}`}${f.direction === undefined ? "" : ` ${f.direction}`}${f.percent === undefined ? "" : ` ${f.percent}%`} at ${f.atMs} ms${f.duringOp === undefined ? "" : ` into op ${f.duringOp}`} for ${f.durationMs} ms`
export const describeOp = (o: Op) =>
  `${o.kind} ${o.service}${o.kind === "deploy" || o.kind === "redeploy" || o.kind === "move" ? ` ${o.kind === "move" ? "to" : "on"} ${o.node} page ${o.page}` : ""} at ${o.atMs} ms`
export const describePlan = (p: ScenarioPlan, startedAt?: string) =>
  [`seed ${p.seed} scenario ${p.index} (${p.lengthMs} ms${startedAt === undefined ? "" : `, started ${startedAt}`}):`, ...p.faults.map((f) => `  fault ${describeFault(f)}`), ...p.ops.map((o) => `  op    ${describeOp(o)}`)].join("\n")

// ---------------------------------------------------------------------------------------------
// Running a scenario and checking the fleet after it

export interface FaultRecord {
  readonly fault: Fault
  injectedAt: number
  healedAt: number
  error?: string
}

export type OpOutcome = "done" | "undone" | "done-though-failed" | "failed-superseded" | "neither"

export interface OpRecord {
  readonly op: Op
  startedAt: number
  endedAt: number
  code: number
  output: string
  outcome?: OpOutcome
}

export interface RequestRecord {
  readonly service: string
  readonly path: "worker" | "edge"
  readonly node: WorkerName
  readonly startedAt: number
  readonly endedAt: number
  readonly ok: boolean
  readonly detail: string
  /** curl's timings: connect, TLS, first byte, total. */
  readonly phases: string
}

export interface UnhealthyVerdict {
  readonly node: string
  readonly atMs: number
  /** How old the master's last heartbeat from the node was when it said unhealthy. */
  readonly heartbeatAgeMs: number | undefined
  readonly explained: boolean
  readonly duringBackgroundLoss: boolean
}

export interface ScenarioReport {
  readonly plan: ScenarioPlan
  readonly faults: ReadonlyArray<FaultRecord>
  readonly ops: ReadonlyArray<OpRecord>
  readonly requests: {
    readonly total: number
    readonly failed: number
    readonly explained: number
    readonly unexplained: ReadonlyArray<RequestRecord>
    /** Answered right, but after more than SLOW_MS: where a stall shows before it becomes a timeout. */
    readonly slow: ReadonlyArray<RequestRecord>
  }
  readonly debris: ReadonlyArray<string>
  readonly disagreements: ReadonlyArray<string>
  readonly violations: ReadonlyArray<string>
  readonly unhealthy: ReadonlyArray<UnhealthyVerdict>
  readonly falseUnhealthy: ReadonlyArray<UnhealthyVerdict>
  /** From the moment every fault was healed and every operation ended; undefined when it never converged. */
  readonly convergenceMs: number | undefined
  /** From the last fault's heal until the master lists every node healthy; undefined when it never did. */
  readonly healthyAfterHealMs: number | undefined
  /** Everything that is wrong, in words; empty when the scenario passed. */
  readonly findings: ReadonlyArray<string>
  /** When the scenario started (its 0 ms), to find its moments in the daemons' logs. */
  readonly startedAt: string
  /** With findings or a convergence over two heartbeat intervals: what each daemon running at the end logged during the scenario, by node ("master", "w1", ...). */
  readonly logs: Readonly<Record<string, string>>
}

/** Observed state of a service: "absent", or `node|page|on` / `node|page|off`. */
type State = string
const ABSENT = "absent"
const stateOf = (node: string, page: string, active: boolean): State => `${node}|${page}|${active ? "on" : "off"}`
const after = (state: State, op: Op): State => {
  if (op.kind === "deploy" || op.kind === "redeploy" || op.kind === "move") return stateOf(op.node, op.page, true)
  if (op.kind === "undeploy" || state === ABSENT) return ABSENT
  const [node, page] = state.split("|")
  return stateOf(node!, page!, op.kind === "start")
}

interface Observation {
  readonly nodes: ReadonlyArray<NodeHealth> | string
  readonly masterPs: { readonly services: ReadonlyArray<AgentService>; readonly unreachable: ReadonlyArray<string> } | string
  readonly master: MasterRecords
  readonly agents: Record<NodeName, ReadonlyArray<AgentService> | string>
  readonly engines: Record<WorkerName, ReadonlyArray<EngineContainer>>
  /** Container processes and runc states of each worker's storage that its engine does not list. */
  readonly strays: Record<WorkerName, EngineLeftovers>
  readonly proxies: Record<NodeName, ReadonlyArray<string>>
  /** The internal zone in both servers, or why it could not be read. */
  readonly zone: ReadonlyArray<ZoneEntry> | string
  readonly certs: Record<NodeName, { readonly agent: ReadonlyArray<string>; readonly proxy: ReadonlyArray<string> }>
  /** Each node's address (what its internal names point at). */
  readonly addresses: Record<NodeName, string>
}

interface Analysis {
  readonly healthy: boolean
  readonly debris: ReadonlyArray<string>
  readonly disagreements: ReadonlyArray<string>
  readonly states: ReadonlyMap<string, State>
}

const ours = (service: string | undefined) => service !== undefined && (STEADY.some((s) => s.service === service) || (CHANGING as ReadonlyArray<string>).includes(service))

/** The hostname an agent certificate file is for (`<hostname>-<stamp>.crt|key`), or undefined for a file of no such shape. */
const agentCertHost = (file: string) => /^(.+)-[a-z0-9]+\.(crt|key)$/.exec(file)?.[1]
/** The hostname a proxy certificate file is for (`<listener>-<hostname>.pem`). */
const proxyCertHost = (file: string) => /^\d+-(.+)\.pem$/.exec(file)?.[1]

const pageOf = (definition: string | undefined) => /echo (\S+) >/.exec(definition ?? "")?.[1] ?? "?"

const analyse = (o: Observation): Analysis => {
  const debris: Array<string> = []
  const disagreements: Array<string> = []
  const states = new Map<string, State>()
  const healthy = typeof o.nodes !== "string" && NODES.every((n) => (o.nodes as ReadonlyArray<NodeHealth>).some((v) => v.name === n && v.health === "healthy"))
  if (typeof o.nodes === "string") disagreements.push(`master: node list: ${o.nodes}`)
  for (const n of NODES) if (typeof o.agents[n] === "string") disagreements.push(`${n}: ps: ${o.agents[n]}`)
  // The master's ps (its fan-out) against each agent's own.
  if (typeof o.masterPs === "string") disagreements.push(`master: ps: ${o.masterPs}`)
  else {
    for (const u of o.masterPs.unreachable) disagreements.push(`master: ps could not reach ${u}`)
    const line = (a: AgentService) => `${a.service} on ${a.node} ${a.active ? "active" : "stopped"}`
    const fromMaster = o.masterPs.services.filter((a) => ours(a.service)).map(line).sort().join("; ")
    const fromAgents = NODES.flatMap((n) => (typeof o.agents[n] === "string" ? [] : o.agents[n] as ReadonlyArray<AgentService>)).filter((a) => ours(a.service)).map(line).sort().join("; ")
    if (fromMaster !== fromAgents) disagreements.push(`master's ps [${fromMaster}] differs from the agents' [${fromAgents}]`)
  }
  const services = new Set<string>([...o.master.placements.keys()])
  for (const n of NODES) if (typeof o.agents[n] !== "string") for (const s of o.agents[n] as ReadonlyArray<AgentService>) services.add(s.service)
  for (const w of WORKERS) for (const c of o.engines[w]) if (c.service !== undefined) services.add(c.service)
  // Beyond what the engine lists: what it lost track of is debris whatever the records say.
  for (const w of WORKERS) for (const d of describeStrays(o.strays[w])) debris.push(`${w}: ${d}, which the engine does not list`)
  for (const n of NODES) for (const h of o.proxies[n]) services.add(h.split(".")[0]!)
  for (const r of o.master.edgeRoutes) services.add(r.service)
  const zone = typeof o.zone === "string" ? [] : o.zone
  if (typeof o.zone === "string") disagreements.push(`internal zone: ${o.zone}`)
  const serviceOfName = (name: string) => name.endsWith(`.${INTERNAL_ZONE}`) ? name.slice(0, -INTERNAL_ZONE.length - 1) : undefined
  for (const r of zone) {
    const s = serviceOfName(r.name)
    if (s === undefined) debris.push(`internal zone (${r.server}): ${r.name} is outside ${INTERNAL_ZONE}`)
    else services.add(s)
  }
  // Files that are no certificate at all: a write a full disk broke off, left behind.
  for (const n of NODES) {
    for (const file of o.certs[n].agent) if (agentCertHost(file) === undefined) debris.push(`${n}: ${file} in the agent's certificate directory`)
    for (const file of o.certs[n].proxy) if (proxyCertHost(file) === undefined) debris.push(`${n}: ${file} in the proxy's certificate directory`)
    for (const file of o.certs[n].agent) services.add((agentCertHost(file) ?? "").split(".")[0]!)
    // A proxy certificate is the route's: none without its route, whoever owns the name.
    for (const file of o.certs[n].proxy) {
      const host = proxyCertHost(file)
      if (host !== undefined && !o.proxies[n].includes(host)) debris.push(`${n}: ${file} in the proxy's certificate directory, no route ${host} in its proxy`)
    }
  }
  const agentCerts = (n: NodeName, host: string) => o.certs[n].agent.filter((f) => agentCertHost(f) === host && f.endsWith(".crt"))
  for (const saga of o.master.openSagas) disagreements.push(`${saga.service}: the master's ${saga.kind} is still open (it asks the worker again until it answers)`)
  for (const s of [...services].filter(ours).sort()) {
    const placed = o.master.placements.get(s)
    const listing = NODES.filter((n) => typeof o.agents[n] !== "string" && (o.agents[n] as ReadonlyArray<AgentService>).some((a) => a.service === s))
    const host = hostnameOf(s)
    const edgeRows = o.master.edgeRoutes.filter((r) => r.service === s)
    if (placed === undefined) {
      states.set(s, ABSENT)
      for (const n of listing) debris.push(`${s}: agent ${n} lists it, the master has no placement`)
      for (const w of WORKERS) for (const c of o.engines[w].filter((c) => c.service === s)) debris.push(`${s}: container ${c.name} (${c.running ? "running" : "not running"}) on ${w}, the master has no placement`)
      for (const n of NODES) if (o.proxies[n].includes(host)) debris.push(`${s}: route ${host} in ${n}'s proxy, the master has no placement`)
      for (const r of edgeRows) disagreements.push(`${s}: the master keeps edge route ${r.hostname} (${r.state}) without a placement`)
      for (const r of zone.filter((r) => r.name === `${s}.${INTERNAL_ZONE}`)) debris.push(`${s}: ${r.name} -> ${r.address} in the internal zone (${r.server}), the master has no placement`)
      for (const n of NODES) for (const c of agentCerts(n, host)) debris.push(`${s}: certificate ${c} on ${n}, the master has no placement`)
      continue
    }
    // Certificates: the service's own on the node it is placed on (one at a time), the edge's for its route.
    for (const w of WORKERS) {
      const own = agentCerts(w, host)
      if (w !== placed) for (const c of own) debris.push(`${s}: certificate ${c} on ${w}, the master places it on ${placed}`)
      else if (own.length > 1) debris.push(`${s}: ${own.length} certificates for ${host} on ${w} (${own.join(", ")})`)
    }
    const edgeCerts = agentCerts("e1", host)
    if (edgeCerts.length > 0 && edgeRows.length === 0) debris.push(`${s}: certificate ${edgeCerts.join(", ")} on e1, the master has no edge route for ${host}`)
    if (edgeCerts.length > 1) debris.push(`${s}: ${edgeCerts.length} certificates for ${host} on e1 (${edgeCerts.join(", ")})`)
    // The master keeps no active flag of its own (a definition's `active` is what was deployed):
    // its view of a stopped service is that the service publishes nothing through the edge.
    const definition = o.master.definitions.get(s)
    const agentView = typeof o.agents[placed as NodeName] === "string" ? undefined : (o.agents[placed as NodeName] as ReadonlyArray<AgentService>).find((a) => a.service === s)
    for (const n of listing) if (n !== placed) debris.push(`${s}: agent ${n} lists it, the master places it on ${placed}`)
    if (agentView === undefined) {
      if (typeof o.agents[placed as NodeName] !== "string") {
        disagreements.push(`${s}: the master places it on ${placed}, whose agent does not list it (master's edge routes: ${edgeRows.map((r) => `${r.hostname} ${r.state}`).join(", ") || "none"}; ` +
          `${host} ${o.proxies.e1.includes(host) ? "in" : "not in"} e1's proxy, ${o.proxies[placed as NodeName]?.includes(host) === true ? "in" : "not in"} ${placed}'s; ${placed}'s containers: ${o.engines[placed as WorkerName]?.filter((c) => c.service === s).map((c) => `${c.name} ${c.running ? "running" : "stopped"}`).join(", ") || "none"})`)
      }
      states.set(s, stateOf(placed, pageOf(definition), true))
      continue
    }
    const active = agentView.active
    states.set(s, stateOf(placed, pageOf(definition), active))
    for (const w of WORKERS) {
      const own = o.engines[w].filter((c) => c.service === s)
      if (w !== placed) {
        for (const c of own) debris.push(`${s}: container ${c.name} on ${w}, the master places it on ${placed}`)
        if (o.proxies[w].includes(host)) debris.push(`${s}: route ${host} in ${w}'s proxy, the master places it on ${placed}`)
        continue
      }
      const running = own.filter((c) => c.running)
      if (active && running.length === 0) disagreements.push(`${s}: active on ${w}, but no running container`)
      if (active && running.length > 1) debris.push(`${s}: ${running.length} running containers on ${w} (${running.map((c) => c.name).join(", ")})`)
      if (!active && running.length > 0) disagreements.push(`${s}: stopped on ${w}, but ${running.map((c) => c.name).join(", ")} running`)
      if (active !== o.proxies[w].includes(host)) disagreements.push(`${s}: ${active ? "active" : "stopped"} on ${w}, route ${host} ${o.proxies[w].includes(host) ? "present" : "absent"} in its proxy`)
    }
    // An active service's certificate: its own on its node, and its route's in that node's proxy.
    if (active && placed !== "e1") {
      if (agentCerts(placed as NodeName, host).length === 0) disagreements.push(`${s}: active on ${placed}, but no certificate for ${host} in its agent's directory`)
      if (!o.certs[placed as NodeName].proxy.some((f) => proxyCertHost(f) === host)) disagreements.push(`${s}: active on ${placed}, but no certificate for ${host} in its proxy's directory`)
    }
    // The internal name: at the placed node's address, in the server that node writes to, while it serves.
    const names = zone.filter((r) => r.name === `${s}.${INTERNAL_ZONE}`)
    const where = placed === "e1" ? undefined : DNS_SERVER_OF[placed as WorkerName]
    for (const r of names) {
      if (r.server !== where || r.address !== o.addresses[placed as NodeName]) debris.push(`${s}: ${r.name} -> ${r.address} in the internal zone (${r.server}), the master places it on ${placed} (${o.addresses[placed as NodeName]}, ${where ?? "no"} zone)`)
      else if (!active) disagreements.push(`${s}: stopped on ${placed}, but ${r.name} is still in the internal zone (${r.server})`)
    }
    if (active && !names.some((r) => r.server === where && r.address === o.addresses[placed as NodeName])) disagreements.push(`${s}: active on ${placed}, but ${s}.${INTERNAL_ZONE} is not in its internal zone (${where ?? "none"})`)
    const activeEdge = edgeRows.some((r) => r.state === "active")
    if (!isPublic(s)) {
      for (const r of edgeRows) debris.push(`${s}: not public, but the master keeps edge route ${r.hostname} (${r.state})`)
      continue
    }
    if (active && !activeEdge) disagreements.push(`${s}: active, but the master has no active edge route for ${host}`)
    if (!active && edgeRows.length > 0) disagreements.push(`${s}: stopped, but the master keeps edge route ${host} (${edgeRows.map((r) => r.state).join(", ")})`)
    if (activeEdge && !o.proxies.e1.includes(host)) disagreements.push(`${s}: the master's edge route ${host} is not in e1's proxy`)
    if (activeEdge && edgeCerts.length === 0) disagreements.push(`${s}: the master's edge route ${host} has no certificate on e1`)
    if (!active && o.proxies.e1.includes(host)) disagreements.push(`${s}: stopped, but route ${host} is still in e1's proxy`)
  }
  for (const h of o.proxies.e1) {
    if (!o.master.edgeRoutes.some((r) => r.hostname === h && r.state === "active") && ours(h.split(".")[0])) debris.push(`route ${h} in e1's proxy, no active edge route on the master`)
  }
  return { healthy, debris, disagreements, states }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Strays as text, one entry per container: its name (or id) and its processes, then runc states. */
export const describeStrays = (s: EngineLeftovers): Array<string> => {
  const byId = new Map<string, Array<ContainerProcess>>()
  for (const p of s.processes) byId.set(p.containerId, [...(byId.get(p.containerId) ?? []), p])
  return [
    ...[...byId].map(([id, ps]) =>
      `container ${ps.find((p) => p.name !== undefined)?.name ?? id.slice(0, 12)} (${id.slice(0, 12)}): ${ps.map((p) => `${p.kind === "conmon" ? "conmon" : "a container process"} pid ${p.pid}`).join(", ")}`
    ),
    ...s.states.filter((id) => !byId.has(id)).map((id) => `runc state ${id.slice(0, 12)}`)
  ]
}

/** Pids of processes whose command line has an argument containing `needle` (a private path of ours). */
const pidsRunning = (needle: string): Array<number> => {
  const pids: Array<number> = []
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue
    try {
      if (readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0").some((a) => a.includes(needle))) pids.push(Number(entry))
    } catch {
      // gone meanwhile
    }
  }
  return pids
}

const waitForNone = async (list: () => Array<number>, timeoutMs: number) => {
  const deadline = Date.now() + timeoutMs
  let left = list()
  while (left.length > 0 && Date.now() < deadline) {
    await sleep(100)
    left = list()
  }
  return left
}
const errorText = (e: unknown) => {
  const first = (e instanceof Error ? e.message : String(e)).split("\n")[0]!.slice(0, 300)
  // A daemon or peer that did not start: the end of what it printed says why.
  const tail = typeof e === "object" && e !== null && "outputTail" in e ? String(e.outputTail).trim().split("\n").slice(-3).join(" | ").slice(-600) : ""
  return tail === "" ? first : `${first}; its output ended: ${tail}`
}

/**
 * Starts a daemon as its systemd unit would after a crash (Restart=on-failure, RestartSec=5s):
 * a start that fails is tried again 5 s later, three times in all. The failures are kept: a
 * daemon that needed a second start is a finding (see `FaultRecord.error`) only when none worked.
 */
const likeSystemd = async (start: () => Promise<void>): Promise<void> => {
  let last: unknown
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) await sleep(5000)
    try {
      return await start()
    } catch (e) {
      last = e
      console.warn(`chaos: a daemon's start failed (attempt ${attempt + 1} of 3): ${errorText(e)}`)
    }
  }
  throw last
}

export interface ChaosSession {
  readonly fleet: ChaosFleet
  readonly runScenario: (plan: ScenarioPlan, log?: (line: string) => void) => Promise<ScenarioReport>
}

/** Deploys the steady services and returns a session that runs scenarios on the fleet. */
export const startSession = async (fleet: ChaosFleet, options: { readonly convergeTimeoutMs?: number } = {}): Promise<ChaosSession> => {
  const dir = fleet.dir
  const nodes = fleet.nodes
  const expected = new Map<string, Set<State>>()
  const serviceFile = (service: string, node: WorkerName, page: string) => publicServiceFile(dir, service, hostnameOf(service), page, `${service}-${page}`, node, isPublic(service))
  for (const s of STEADY) {
    const page = `${s.service}-steady`
    const r = await fleet.mcp(["deploy", s.service, "--file", serviceFile(s.service, s.node, page)])
    if (r.code !== 0) throw new Error(`deploy of steady service ${s.service} failed:\n${r.stdout}${r.stderr}`)
    expected.set(s.service, new Set([stateOf(s.node, page, true)]))
  }
  for (const s of CHANGING) expected.set(s, new Set([ABSENT]))
  for (const s of STEADY) {
    await waitFor(`${s.service} to answer through ${s.node}'s proxy and the edge`, async () =>
      (await fleet.curl(hostnameOf(s.service), nodes[s.node].ns.innerIp, fleet.workerListener)).code === 0 &&
      (await fleet.curl(hostnameOf(s.service), nodes.e1.ns.innerIp, fleet.edgePort)).code === 0, 60_000)
  }

  const observe = async (): Promise<Observation> => {
    // Before the engines' lists (see scanLeftovers).
    const scans = Object.fromEntries(WORKERS.map((w) => [w, fleet.scanEngine(w)])) as Record<WorkerName, EngineLeftovers>
    const [nodeList, masterPs, ...rest] = await Promise.all([
      fleet.nodesList(2000).catch((e: unknown) => errorText(e)),
      fleet.masterPs(4000).catch((e: unknown) => errorText(e)),
      ...NODES.map((n) => fleet.agentPs(n, 3000).catch((e: unknown) => errorText(e))),
      ...WORKERS.map((w) => fleet.containers(w))
    ])
    const agents = {} as Record<NodeName, ReadonlyArray<AgentService> | string>
    NODES.forEach((n, i) => (agents[n] = rest[i] as ReadonlyArray<AgentService> | string))
    const engines = {} as Record<WorkerName, ReadonlyArray<EngineContainer>>
    WORKERS.forEach((w, i) => (engines[w] = rest[NODES.length + i] as ReadonlyArray<EngineContainer>))
    const strays = {} as Record<WorkerName, EngineLeftovers>
    for (const w of WORKERS) strays[w] = unlisted(scans[w], new Set(engines[w].map((c) => c.id)))
    const proxies = {} as Record<NodeName, ReadonlyArray<string>>
    for (const n of NODES) proxies[n] = fleet.proxyHostnames(n)
    const certs = {} as Observation["certs"]
    for (const n of NODES) certs[n] = fleet.certFiles(n)
    const addresses = {} as Record<NodeName, string>
    for (const n of NODES) addresses[n] = nodes[n].ns.innerIp
    return {
      zone: await fleet.zoneRecords().catch((e: unknown) => errorText(e)),
      certs,
      addresses,
      nodes: nodeList as ReadonlyArray<NodeHealth> | string,
      masterPs: masterPs as Observation["masterPs"],
      master: fleet.masterRecords(),
      agents,
      engines,
      strays,
      proxies
    }
  }

  /** The chaos rules each node's namespace needs for the network faults in `active`. */
  const rulesFor = (n: NodeName, active: ReadonlyArray<Fault>) => {
    const input: Array<string> = []
    const output: Array<string> = []
    for (const f of active) {
      if (f.node !== n) continue
      if (f.kind === "loss") {
        if (f.direction !== "out") input.push(`numgen random mod 100 < ${f.percent ?? 0} drop`)
        if (f.direction !== "in") output.push(`numgen random mod 100 < ${f.percent ?? 0} drop`)
      }
      if (f.kind === "partition-master" || f.kind === "partition-edge") {
        const peer = f.kind === "partition-master" ? fleet.masterIp : nodes.e1.ns.innerIp
        if (f.direction !== "out") input.push(`ip saddr ${peer} drop`)
        if (f.direction !== "in") output.push(`ip daddr ${peer} drop`)
      }
    }
    return { input, output }
  }

  /** Where each running daemon's output stands, to cut out what it logs during a scenario. */
  const daemons = (): Record<string, LocalFleet.Daemon | undefined> => ({ master: fleet.master(), ...Object.fromEntries(NODES.map((n) => [n, nodes[n].agent()])) })
  const markLogs = () => new Map(Object.values(daemons()).flatMap((d) => (d === undefined ? [] : [[d, d.output.length] as const])))
  const logsSince = (marks: ReadonlyMap<LocalFleet.Daemon, number>) =>
    Object.fromEntries(Object.entries(daemons()).flatMap(([name, d]) => (d === undefined ? [] : [[name, d.output.slice(marks.get(d) ?? 0)]])))

  const runScenario = async (plan: ScenarioPlan, log: (line: string) => void = () => {}): Promise<ScenarioReport> => {
    const t0 = Date.now()
    const logMarks = markLogs()
    const now = () => Date.now() - t0
    const activeNet: Array<Fault> = []
    const faultRecords: Array<FaultRecord> = plan.faults.map((fault) => ({ fault, injectedAt: -1, healedAt: -1 }))
    const applyNet = async (n: NodeName) => fleet.setRules(n, rulesFor(n, activeNet))
    const inject = async (f: Fault) => {
      switch (f.kind) {
        case "partition-master":
        case "partition-edge":
        case "loss":
          activeNet.push(f)
          return applyNet(f.node!)
        case "kill-master":
          return fleet.master()?.kill9()
        case "kill-agent":
          return nodes[f.node!].agent()?.kill9()
        case "kill-proxy": {
          const proxy = nodes[f.node!].proxy
          process.kill(proxy.pid(), "SIGKILL")
          await proxy.stop()
          // Its workers go with their master process; one that stays would keep serving.
          const orphans = await waitForNone(() => pidsRunning(proxy.options.dir), 3000)
          if (orphans.length > 0) {
            for (const pid of orphans) process.kill(pid, "SIGKILL")
            throw new Error(`HAProxy workers ${orphans.join(", ")} outlived their killed master process (killed by pid)`)
          }
          return
        }
        case "kill-engine":
          return fleet.killEngine(f.node as WorkerName)
        case "kill-dns":
          return fleet.killDns()
        case "disk-full":
          return fleet.fillDisk(f.node!, f.disk ?? "data")
        case "link-down":
          return fleet.setLink(f.node!, false)
      }
    }
    const heal = async (f: Fault) => {
      switch (f.kind) {
        case "partition-master":
        case "partition-edge":
        case "loss":
          activeNet.splice(activeNet.indexOf(f), 1)
          return applyNet(f.node!)
        case "kill-master":
          return likeSystemd(fleet.startMaster)
        case "kill-agent":
          return likeSystemd(nodes[f.node!].startAgent)
        case "kill-proxy":
          return nodes[f.node!].proxy.start()
        case "kill-engine":
          return fleet.startEngine(f.node as WorkerName)
        case "kill-dns":
          return fleet.startDns()
        case "disk-full":
          return fleet.freeDisk(f.node!, f.disk ?? "data")
        case "link-down":
          return fleet.setLink(f.node!, true)
      }
    }
    const opStarted = plan.ops.map(() => {
      let resolve: (at: number) => void = () => {}
      const promise = new Promise<number>((r) => (resolve = r))
      return { promise, resolve }
    })
    const opEnded = plan.ops.map(() => {
      let resolve: () => void = () => {}
      const promise = new Promise<void>((r) => (resolve = r))
      return { promise, resolve }
    })
    /**
     * When operation k reaches its worker: the moment that worker's proxy routes change (a
     * deploy's routes step, a stop's or undeploy's first step), or else when the operation ends.
     * A fault "into op k" counts from there, not from the CLI's start, which varies with load.
     */
    const opReached = async (k: number): Promise<number> => {
      await opStarted[k]!.promise
      const routesFile = join(nodes[plan.ops[k]!.node].proxy.options.dir, "routes.json")
      const read = () => (existsSync(routesFile) ? readFileSync(routesFile, "utf8") : "")
      const initial = read()
      let ended = false
      void opEnded[k]!.promise.then(() => (ended = true))
      while (!ended && read() === initial) await sleep(25)
      return now()
    }
    // Each fault on its own timeline: one that lands in an operation must not wait for another to heal.
    const faultRunner = Promise.all(faultRecords.map(async (record) => {
      {
        const from = record.fault.duringOp === undefined ? 0 : await opReached(record.fault.duringOp)
        await sleep(Math.max(0, from + record.fault.atMs - now()))
        record.injectedAt = now()
        log(`  ${record.injectedAt} ms: inject ${describeFault(record.fault)}`)
        try {
          await inject(record.fault)
        } catch (e) {
          record.error = `inject: ${errorText(e)}`
        }
        await sleep(Math.max(0, record.injectedAt + record.fault.durationMs - now()))
        try {
          await heal(record.fault)
        } catch (e) {
          record.error = `${record.error ?? ""} heal: ${errorText(e)}`
        }
        record.healedAt = now()
        log(`  ${record.healedAt} ms: healed ${record.fault.kind}`)
      }
    }))

    const opRecords: Array<OpRecord> = []
    const before = new Map<OpRecord, Set<State>>()
    const afterStates = new Map<OpRecord, Set<State>>()
    const opRunner = (async () => {
      for (const [k, op] of plan.ops.entries()) {
        await sleep(Math.max(0, op.atMs - now()))
        const record: OpRecord = { op, startedAt: now(), endedAt: -1, code: -1, output: "" }
        opRecords.push(record)
        opStarted[k]!.resolve(record.startedAt)
        const args = op.kind === "deploy" || op.kind === "redeploy" || op.kind === "move" ? ["deploy", op.service, "--file", serviceFile(op.service, op.node, op.page)] : [op.kind, op.service]
        const r = await fleet.mcp(args, 90_000)
        opEnded[k]!.resolve()
        record.endedAt = now()
        record.code = r.code
        record.output = (r.stdout + r.stderr).trim().split("\n").slice(-4).join(" | ").slice(0, 600)
        const previous = expected.get(op.service)!
        const next = new Set([...previous].map((s) => after(s, op)))
        before.set(record, new Set(previous))
        afterStates.set(record, next)
        expected.set(op.service, r.code === 0 ? next : new Set([...previous, ...next]))
        log(`  ${record.endedAt} ms: ${describeOp(op)}: exit ${r.code}${r.code === 0 ? "" : `: ${record.output}`}`)
      }
    })()

    // Request loops and health samples for the whole scenario.
    let running = true
    const requests: Array<RequestRecord> = []
    const loops = STEADY.flatMap((s) => (["worker", "edge"] as const).map(async (path) => {
      const ip = path === "worker" ? nodes[s.node].ns.innerIp : nodes.e1.ns.innerIp
      const port = path === "worker" ? fleet.workerListener : fleet.edgePort
      while (running) {
        const startedAt = now()
        const r = await fleet.curl(hostnameOf(s.service), ip, port, 2)
        const ok = r.code === 0 && r.body === `${s.service}-steady`
        requests.push({ service: s.service, path, node: s.node, startedAt, endedAt: now(), ok, detail: ok ? "" : `curl exit ${r.code}: ${r.body.slice(0, 200)}`, phases: r.phases })
        await sleep(200)
      }
    }))
    const samples: Array<{ atMs: number; node: string; health: string; heartbeatAgeMs: number | undefined }> = []
    const sampler = (async () => {
      while (running) {
        const atMs = now()
        try {
          for (const v of await fleet.nodesList(2000)) {
            samples.push({ atMs, node: v.name, health: v.health, heartbeatAgeMs: v.lastHeartbeat === undefined ? undefined : t0 + atMs - Date.parse(v.lastHeartbeat) })
          }
        } catch {
          // the master is down or cut off: no verdict
        }
        await sleep(500)
      }
    })()

    // From the last heal: how long until the master lists every node healthy again.
    const healthyAfterHeal = faultRunner.then(async () => {
      const healedAt = now()
      const deadline = healedAt + (options.convergeTimeoutMs ?? 60_000)
      while (now() < deadline) {
        const views = await fleet.nodesList(2000).catch(() => [])
        if (NODES.every((n) => views.some((v) => v.name === n && v.health === "healthy"))) return now() - healedAt
        await sleep(250)
      }
      return undefined
    })
    try {
      await Promise.all([faultRunner, opRunner])
    } finally {
      // Also when a runner throws: no request loop may outlive the scenario.
      running = false
      await Promise.all([...loops, sampler])
    }
    // Heal everything, whatever the runner managed.
    for (const n of NODES) {
      await fleet.setRules(n, { input: [], output: [] })
      await fleet.setLink(n, true)
    }
    const settledAt = now()

    // Convergence: every node healthy and every view agreeing, polled every 250 ms.
    let analysis: Analysis | undefined
    let convergenceMs: number | undefined
    const deadline = Date.now() + (options.convergeTimeoutMs ?? 60_000)
    let observation: Observation
    for (;;) {
      observation = await observe()
      analysis = analyse(observation)
      if (analysis.healthy && analysis.debris.length === 0 && analysis.disagreements.length === 0) {
        convergenceMs = now() - settledAt
        break
      }
      if (Date.now() > deadline) break
      await sleep(250)
    }
    // Strays left now would be counted again by every later scenario: found once, then killed.
    for (const w of WORKERS) {
      if (observation.strays[w].processes.length + observation.strays[w].states.length === 0) continue
      try {
        const reaped = fleet.reapStrays(w)
        log(`  killed on ${w}: ${describeStrays(reaped).join("; ") || "nothing (gone meanwhile)"}`)
      } catch (e) {
        // The scenario's finding stands; later ones may count what is left again.
        console.warn(`chaos: ${String(e)}`)
      }
    }
    const healthyAfterHealMs = await healthyAfterHeal
    log(`  converged: ${convergenceMs === undefined ? "no" : `${convergenceMs} ms`}; every node healthy ${healthyAfterHealMs === undefined ? "never" : `${healthyAfterHealMs} ms`} after the last heal`)

    // Every operation done or undone; every service served its expected page.
    const violations: Array<string> = []
    for (const [service, allowed] of expected) {
      const observed = analysis.states.get(service) ?? ABSENT
      if (!allowed.has(observed)) violations.push(`${service}: observed ${observed}, expected one of ${[...allowed].join(", ")}`)
      else expected.set(service, new Set([observed]))
      if (observed.endsWith("|on")) {
        const [node, page] = observed.split("|") as [WorkerName, string]
        let last = { code: -1, body: "" }
        for (let i = 0; i < 5 && !(last.code === 0 && last.body === page); i++) {
          if (i > 0) await sleep(1000)
          last = await fleet.curl(hostnameOf(service), nodes[node].ns.innerIp, fleet.workerListener, 3)
        }
        if (!(last.code === 0 && last.body === page)) violations.push(`${service}: active on ${node} with page ${page}, but its proxy answers exit ${last.code}: ${last.body.slice(0, 200)}`)
      }
    }
    for (const record of opRecords) {
      if (record.code === 0) {
        record.outcome = "done"
        continue
      }
      if (opRecords.some((o) => o.op.service === record.op.service && o.startedAt > record.startedAt)) {
        record.outcome = "failed-superseded"
        continue
      }
      const observed = analysis.states.get(record.op.service) ?? ABSENT
      record.outcome = before.get(record)!.has(observed) ? "undone" : afterStates.get(record)!.has(observed) ? "done-though-failed" : "neither"
    }

    // Failed requests a fault explains: one on the request's path, from its injection to 1.5 s after it healed.
    const explains = (r: RequestRecord, f: FaultRecord) => {
      const onPath = ((f.fault.kind === "kill-proxy" || f.fault.kind === "loss" || f.fault.kind === "link-down") && f.fault.node === r.node) ||
        (r.path === "edge" && (((f.fault.kind === "loss" || f.fault.kind === "kill-proxy" || f.fault.kind === "link-down") && f.fault.node === "e1") || (f.fault.kind === "partition-edge" && f.fault.node === r.node)))
      const healedAt = f.healedAt < 0 ? settledAt : f.healedAt
      return onPath && f.injectedAt >= 0 && r.endedAt >= f.injectedAt - 100 && r.startedAt <= healedAt + 1500
    }
    const failed = requests.filter((r) => !r.ok)
    const slow = requests.filter((r) => r.ok && r.endedAt - r.startedAt > SLOW_MS)
    const unexplained = failed.filter((r) => !faultRecords.some((f) => explains(r, f)))

    // Unhealthy verdicts a fault explains: one that keeps the node's heartbeats from the master.
    const hbGrace = 3 * fleet.heartbeatMs + 3000
    const unhealthy: Array<UnhealthyVerdict> = samples.filter((s) => s.health === "unhealthy").map((s) => {
      const within = (f: FaultRecord) => f.injectedAt >= 0 && s.atMs >= f.injectedAt && s.atMs <= (f.healedAt < 0 ? settledAt : f.healedAt) + hbGrace
      const explained = faultRecords.some((f) => within(f) && (f.fault.kind === "kill-master" ||
        (f.fault.node === s.node && (f.fault.kind === "partition-master" || f.fault.kind === "link-down" || f.fault.kind === "kill-agent" || (f.fault.kind === "loss" && (f.fault.percent ?? 0) > BACKGROUND_LOSS_PERCENT)))))
      const duringBackgroundLoss = faultRecords.some((f) => within(f) && f.fault.kind === "loss" && f.fault.node === s.node && f.fault.percent === BACKGROUND_LOSS_PERCENT)
      return { node: s.node, atMs: s.atMs, heartbeatAgeMs: s.heartbeatAgeMs, explained, duringBackgroundLoss }
    })
    const falseUnhealthy = unhealthy.filter((u) => !u.explained)

    const findings: Array<string> = []
    for (const f of faultRecords) if (f.error !== undefined) findings.push(`fault ${describeFault(f.fault)}: ${f.error}`)
    for (const d of analysis.debris) findings.push(`debris: ${d}`)
    if (convergenceMs === undefined) for (const d of analysis.disagreements) findings.push(`not converged: ${d}`)
    if (healthyAfterHealMs === undefined) findings.push(`some node was not healthy within the convergence timeout after the last heal`)
    if (convergenceMs === undefined && !analysis.healthy) findings.push(`not converged: nodes ${JSON.stringify((await fleet.nodesList().catch(() => [])))}`)
    for (const v of violations) findings.push(`operation neither done nor undone: ${v}`)
    for (const o of opRecords) if (o.outcome === "neither") findings.push(`op ${describeOp(o.op)} (exit ${o.code}) left neither its before nor its after state: ${o.output}`)
    for (const r of unexplained.slice(0, 10)) findings.push(`unexplained failed request: ${r.service} via ${r.path} at ${r.startedAt}-${r.endedAt} ms: ${r.detail} (${r.phases})`)
    if (unexplained.length > 10) findings.push(`... and ${unexplained.length - 10} more unexplained failed requests`)
    for (const u of falseUnhealthy) {
      findings.push(`node ${u.node} marked unhealthy at ${u.atMs} ms with no fault cutting its heartbeats (last heartbeat ${u.heartbeatAgeMs ?? "?"} ms before)${u.duringBackgroundLoss ? ` (during ${BACKGROUND_LOSS_PERCENT}% loss)` : ""}`)
    }
    return {
      plan,
      faults: faultRecords,
      ops: opRecords,
      requests: { total: requests.length, failed: failed.length, explained: failed.length - unexplained.length, unexplained, slow },
      debris: analysis.debris,
      disagreements: convergenceMs === undefined ? analysis.disagreements : [],
      violations,
      unhealthy,
      falseUnhealthy,
      convergenceMs,
      healthyAfterHealMs,
      findings,
      startedAt: new Date(t0).toISOString(),
      // Also for a convergence slower than two heartbeat intervals (not a finding, but a promise).
      logs: findings.length === 0 && (convergenceMs ?? 0) <= 2 * fleet.heartbeatMs ? {} : logsSince(logMarks)
    }
  }
  return { fleet, runScenario }
}

/** A report as text: the plan (to replay), what happened and what is wrong. */
export const formatReport = (r: ScenarioReport) =>
  [
    describePlan(r.plan, r.startedAt),
    ...r.faults.map((f) => `  fault ${f.fault.kind}${f.fault.node === undefined ? "" : ` ${f.fault.node}`}: injected ${f.injectedAt} ms, healed ${f.healedAt} ms${f.error === undefined ? "" : `, ${f.error}`}`),
    ...r.ops.map((o) => `  op ${describeOp(o.op)}: ${o.startedAt}-${o.endedAt} ms, exit ${o.code}, ${o.outcome}${o.code === 0 ? "" : `: ${o.output}`}`),
    ...r.requests.slow.map((q) => `  slow request: ${q.service} via ${q.path} at ${q.startedAt}-${q.endedAt} ms (${q.phases})`),
    `  requests ${r.requests.total}, failed ${r.requests.failed} (${r.requests.explained} explained by a fault), unhealthy verdicts ${r.unhealthy.length} (${r.falseUnhealthy.length} false), convergence ${r.convergenceMs === undefined ? "none" : `${r.convergenceMs} ms`} after the last heal or operation, every node healthy ${r.healthyAfterHealMs === undefined ? "never" : `${r.healthyAfterHealMs} ms`} after the last heal`,
    ...(r.findings.length === 0 ? ["  no findings"] : r.findings.map((f) => `  FINDING ${f}`)),
    `  replay: node --import tsx bench/chaos.ts --seed ${r.plan.seed} --scenarios ${r.plan.index + 1}`
  ].join("\n")
