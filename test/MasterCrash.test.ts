/**
 * The master SIGKILLed in the middle of real cross-node deploys, redeploys and undeploys (the edge
 * fleet: a worker with Podman and HAProxy, an edge agent with its own HAProxy in a network
 * namespace). After each kill the master starts again on the same database; its start-up
 * recovery finishes or undoes the saga the journal shows open, and the edge reconciler
 * converges. Then, every time: no saga open, no edge route (on the edge or in the master) for a
 * service that is not placed, no container on the worker for a service that is not placed, and a
 * placed service is whole: its container, its worker route, its edge route, and the edge serving
 * the definition the master recorded.
 *
 * MCP_MASTER_CRASH_TRIALS overrides the number of kills (default 20).
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import Database from "better-sqlite3"
import { spawn } from "node:child_process"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { type EdgeFleet, publicServiceFile, startEdgeFleet, waitFor } from "./support/EdgeFleet.js"
import * as LocalFleet from "./support/LocalFleet.js"

const TRIALS = Number(process.env["MCP_MASTER_CRASH_TRIALS"] ?? "") || 20
const SERVICE = "crashy"
const HOSTNAME = "crashy.example.com"

const dir = mkdtempSync(join(tmpdir(), "mcp-master-crash-"))
let edgeFleet: EdgeFleet

/** Version `version` of the service: its page says which version it is. */
const definition = (version: number) => publicServiceFile(dir, SERVICE, HOSTNAME, `${SERVICE} v${version}`, `${SERVICE}-${version}`)

/** What the master recorded, read from its database file (the master may be down). */
const masterState = () => {
  const db = new Database(edgeFleet.masterDb, { readonly: true, fileMustExist: true })
  try {
    return {
      openSagas: db.prepare("SELECT kind FROM sagas WHERE state = 'running'").all() as Array<{ kind: string }>,
      placement: (db.prepare("SELECT node FROM placements WHERE service = ?").get(SERVICE) as { node: string } | undefined)?.node,
      definition: (db.prepare("SELECT definition FROM definitions WHERE service = ?").get(SERVICE) as { definition: string } | undefined)?.definition,
      rows: db.prepare("SELECT hostname, state FROM edge_routes WHERE service = ?").all(SERVICE) as Array<{ hostname: string; state: string }>
    }
  } finally {
    db.close()
  }
}

/** The worker's containers of the service, in any state. */
const workerContainers = () =>
  edgeFleet.podman(["ps", "-a", "--filter", `label=mcp.service=${SERVICE}`, "--filter", "label=mcp.node=w1", "--format", "{{.Names}} {{.State}}"]).split("\n").filter((l) => l.length > 0)

const proxyRoutes = async (node: "w1" | "e1") => {
  const r = await LocalFleet.mcp(edgeFleet.fleet, ["route", "list", "--node", node, "--json"])
  if (r.code !== 0) return undefined
  return (JSON.parse(r.stdout) as Array<{ hostname: string }>).map((route) => route.hostname)
}

/** The service's page through a proxy (the edge, or the worker's own), as a client would ask. */
const page = (via: "edge" | "worker") =>
  via === "edge" ? edgeFleet.curl(HOSTNAME, edgeFleet.ns.innerIp, edgeFleet.edgePort) : edgeFleet.curl(HOSTNAME, edgeFleet.ns.hostIp, 8443)

/**
 * Why the fleet is not (yet) consistent, or undefined when it is. `listProxies` also asks both
 * agents for their proxies' routes (through the master and the CLI, slower than the rest).
 */
const inconsistency = async (listProxies: boolean): Promise<string | undefined> => {
  // A restarted master knows its nodes again only once each has reported to it: until then it
  // refuses to place anything on them ("has not reported to the master yet").
  const nodes = await LocalFleet.mcp(edgeFleet.fleet, ["node", "list", "--json"])
  if (nodes.code !== 0) return `the master does not list its nodes yet: ${nodes.stderr.trim()}`
  const unhealthy = (JSON.parse(nodes.stdout) as Array<{ info: { name: string }; health: string }>).filter((n) => n.health !== "healthy")
  if (unhealthy.length > 0) return `nodes not healthy at the master yet: ${unhealthy.map((n) => `${n.info.name} ${n.health}`).join(", ")}`
  const m = masterState()
  if (m.openSagas.length > 0) return `sagas still open: ${m.openSagas.map((s) => s.kind).join(", ")}`
  const containers = workerContainers()
  const [viaEdge, viaWorker] = await Promise.all([page("edge"), page("worker")])
  if (m.placement === undefined) {
    if (containers.length > 0) return `not placed, but the worker has containers: ${containers.join(", ")}`
    if (m.rows.length > 0) return `not placed, but the master has edge rows: ${JSON.stringify(m.rows)}`
    if (viaEdge.code === 0) return `not placed, but the edge answers for it: ${viaEdge.body}`
    if (viaWorker.code === 0) return `not placed, but the worker's proxy answers for it: ${viaWorker.body}`
  } else {
    if (m.placement !== "w1") return `placed on ${m.placement}`
    if (containers.length !== 1 || !/ (running|Up)/.test(containers[0]!)) return `placed, but the worker's containers are: ${containers.join(", ") || "none"}`
    if (m.rows.length !== 1 || m.rows[0]!.hostname !== HOSTNAME || m.rows[0]!.state !== "active") return `placed, but the master's edge rows are ${JSON.stringify(m.rows)}`
    const version = /^crashy (v\d+)$/.exec(viaEdge.body)?.[1]
    if (viaEdge.code !== 0 || version === undefined) return `placed, but the edge does not serve it: ${viaEdge.body}`
    if (!m.definition?.includes(`${SERVICE} ${version} >`)) return `the edge serves ${version}, not the definition the master recorded`
    if (viaWorker.body !== viaEdge.body) return `the worker's proxy serves "${viaWorker.body}", the edge "${viaEdge.body}"`
  }
  if (!listProxies) return undefined
  const [onEdge, onWorker] = await Promise.all([proxyRoutes("e1"), proxyRoutes("w1")])
  if (onEdge === undefined || onWorker === undefined) return "the proxies cannot be listed yet"
  const want = m.placement === undefined ? [] : [HOSTNAME]
  if (JSON.stringify(onEdge) !== JSON.stringify(want)) return `the edge's proxy routes ${JSON.stringify(onEdge)}, the master wants ${JSON.stringify(want)}`
  if (onWorker.includes(HOSTNAME) !== (m.placement !== undefined)) return `the worker's proxy routes ${JSON.stringify(onWorker)}`
  return undefined
}

/** Waits until the quick checks pass and then the whole check does. */
const waitConsistent = async (what: string) => {
  let reason: string | undefined = "not checked"
  try {
    await waitFor(what, async () => (reason = await inconsistency(false)) === undefined && (reason = await inconsistency(true)) === undefined, 90_000)
  } catch (e) {
    throw new Error(`${String(e)}; last seen: ${reason}`)
  }
}

/** Runs the CLI in the background, with its output and exit code. */
const runCli = (args: ReadonlyArray<string>) => {
  const cli = spawn(process.execPath, [LocalFleet.bins.mcp, ...args, "--config", edgeFleet.fleet.cliConfig], { stdio: ["ignore", "pipe", "pipe"] })
  let output = ""
  cli.stdout!.on("data", (d: Buffer) => (output += d.toString()))
  cli.stderr!.on("data", (d: Buffer) => (output += d.toString()))
  const exited = new Promise<number>((resolve) => cli.once("exit", (code) => resolve(code ?? 1)))
  return { exited, done: () => cli.exitCode !== null, output: () => output }
}

beforeAll(async () => {
  edgeFleet = await startEdgeFleet(dir, { privateStorage: true })
}, 180_000)

afterAll(async () => {
  await edgeFleet?.dispose([SERVICE])
})

describe("a master killed during cross-node work", () => {
  it(`finishes or undoes what it was doing when it starts again (${TRIALS} kills)`, async () => {
    // How long each operation takes here, unharmed: the kills are spread over that time.
    const took: Record<"deploy" | "redeploy" | "undeploy", number> = { deploy: 0, redeploy: 0, undeploy: 0 }
    for (const [op, args] of [["deploy", ["deploy", SERVICE, "--file", definition(0)]], ["redeploy", ["deploy", SERVICE, "--file", definition(1)]], ["undeploy", ["undeploy", SERVICE]]] as const) {
      const started = Date.now()
      const cli = runCli(args)
      expect(await cli.exited, `${op} without a kill: ${cli.output()}`).toBe(0)
      took[op] = Date.now() - started
      await waitConsistent(`${op} without a kill: a consistent fleet`)
    }

    /** Runs an operation to its end (no kill), to set up the next trial. */
    const settle = async (args: ReadonlyArray<string>) => {
      const cli = runCli(args)
      expect(await cli.exited, `mcp ${args.join(" ")}: ${cli.output()}`).toBe(0)
      await waitConsistent(`mcp ${args.join(" ")}: a consistent fleet`)
    }

    const summary: Array<string> = []
    const ops = ["deploy", "redeploy", "undeploy"] as const
    for (let trial = 1; trial <= TRIALS; trial++) {
      const op = ops[trial % ops.length]!
      // A deploy starts from nothing; a redeploy or an undeploy from the service deployed.
      const placed = masterState().placement !== undefined
      if (op === "deploy" && placed) await settle(["undeploy", SERVICE])
      if (op !== "deploy" && !placed) await settle(["deploy", SERVICE, "--file", definition(1000 + trial)])
      const args = op === "undeploy" ? ["undeploy", SERVICE] : ["deploy", SERVICE, "--file", definition(trial + 1)]
      // Spread over the time the operation takes (golden-ratio steps: the same spread each run).
      const delayMs = Math.round(((trial * 0.6180339887) % 1) * took[op])
      const cli = runCli(args)
      await new Promise((r) => setTimeout(r, delayMs))
      const finishedFirst = cli.done()
      await edgeFleet.master().kill9()
      const code = await cli.exited
      const restarted = Date.now()
      await edgeFleet.startMaster()
      await waitConsistent(`trial ${trial} (${op}, master killed after ${delayMs} ms): a consistent fleet`)
      const state = masterState().placement === undefined ? "not deployed" : "deployed"
      summary.push(`${trial}: ${op} killed after ${delayMs} of ${took[op]} ms (${finishedFirst ? `had finished, exit ${code}` : `cut short, exit ${code}`}): consistent ${Date.now() - restarted} ms after the restart; ${state}`)
    }
    console.log(`master kills:\n${summary.join("\n")}`)
    // Every kind of operation was cut short at least once.
    for (const op of ["deploy", "redeploy", "undeploy"]) expect(summary.some((s) => s.includes(`: ${op} killed`) && s.includes("cut short")), `no ${op} was cut short:\n${summary.join("\n")}`).toBe(true)
  }, 1_800_000)
})
