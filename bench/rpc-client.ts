/**
 * bench/rpc-client: what one call of our RPC client costs the caller, in process: the master's
 * fan-outs (`mcp ps`, `mcp agent status`) make one such call per agent, so this cost times the
 * number of agents is most of what a fleet view takes on the master (bench/heartbeats.ts, its
 * fan-out part).
 *
 * N plain node:https servers in this process answer every request with an empty Ps answer (an
 * ndjson Exit), over keep-alive connections made before the timed rounds. Two clients ask them,
 * ROUNDS rounds of one call per server at FANOUT concurrency, the same way:
 *   - floor: node:https with a keep-alive agent per server, posting the ndjson frame and parsing
 *     the Exit (JSON.parse), no library;
 *   - the platform's HTTP client alone (NodeHttpClient with the same keep-alive agent), posting
 *     the same frame: what HttpProtocol.ts sent through until it posted with node:https itself;
 *   - ours: Transport.makeClient(AgentRpcs), one client per server as the master keeps them
 *     (AgentClients.ts), calling Ps().
 * Printed: wall per round and CPU per call of this process (client and servers; the servers'
 * share is the same in both), and the ratio to the floor.
 *
 *   node --import tsx bench/rpc-client.ts [--servers=100] [--rounds=20]
 */
import { HttpBody, HttpClient } from "@effect/platform"
import { NodeHttpClient } from "@effect/platform-node"
import { AgentRpcs } from "@mcp/rpc/Contracts"
import { PROTOCOL_HEADER, PROTOCOL_VERSION, RPC_TAG_HEADER } from "@mcp/rpc/Protocol"
import * as Transport from "@mcp/rpc/Transport"
import { Context, Effect, Exit, Layer, Redacted, Scope } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { prepare } from "../test/support/LocalFleet.js"

const option = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback)
const SERVERS = option("servers", 100)
const ROUNDS = option("rounds", 20)
/** As the master's fan-outs (FANOUT_CONCURRENCY in packages/master/src/daemon/handlers/Common.ts). */
const FANOUT = 64

const dir = mkdtempSync(join(tmpdir(), "mcp-bench-rpc-client-"))
const fleet = await prepare(dir)
const cert = readFileSync(join(fleet.caDir, "server.crt"))
const key = readFileSync(join(fleet.caDir, "server.key"))
const ca = readFileSync(join(fleet.caDir, "ca.crt"), "utf8")

const servers: Array<https.Server> = []
for (let i = 0; i < SERVERS; i++) {
  const server = https.createServer({ cert, key }, (request, response) => {
    let body = ""
    request.setEncoding("utf8")
    request.on("data", (d: string) => (body += d))
    request.on("end", () => {
      const { id } = JSON.parse(body.split("\n")[0]!) as { id: string }
      response.setHeader("content-type", "application/ndjson")
      response.setHeader(PROTOCOL_HEADER, String(PROTOCOL_VERSION))
      response.end(`${JSON.stringify({ _tag: "Exit", requestId: id, exit: { _tag: "Success", value: [] } })}\n`)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))
  servers.push(server)
}
const ports = servers.map((s) => (s.address() as AddressInfo).port)

/** At most `limit` of `items` at once through `f`. */
const bounded = async <A>(items: ReadonlyArray<A>, limit: number, f: (a: A) => Promise<unknown>) => {
  let next = 0
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await f(items[next++]!)
  }))
}

interface Figures {
  readonly msPerRound: number
  readonly cpuMsPerCall: number
}

/** One warm-up round (connections made), then ROUNDS timed ones. */
const measure = async (round: () => Promise<unknown>): Promise<Figures> => {
  await round()
  const cpu = process.cpuUsage()
  const started = performance.now()
  for (let r = 0; r < ROUNDS; r++) await round()
  const used = process.cpuUsage(cpu)
  return { msPerRound: (performance.now() - started) / ROUNDS, cpuMsPerCall: (used.user + used.system) / 1000 / (SERVERS * ROUNDS) }
}

// Floor: node:https, a keep-alive agent per server, the same frame and headers.
const agents = ports.map((port) => ({ port, agent: new https.Agent({ keepAlive: true, ca }) }))
let id = 0
const plainCall = ({ port, agent }: { readonly port: number; readonly agent: https.Agent }) =>
  new Promise<void>((resolve, reject) => {
    const frame = `${JSON.stringify({ _tag: "Request", id: String(++id), tag: "Ps", payload: {}, headers: [] })}\n`
    const request = https.request({
      host: "127.0.0.1",
      port,
      path: "/agent",
      method: "POST",
      agent,
      headers: { "content-type": "application/ndjson", authorization: `Bearer ${"x".repeat(40)}`, [PROTOCOL_HEADER]: String(PROTOCOL_VERSION), [RPC_TAG_HEADER]: "Ps" }
    }, (response) => {
      let text = ""
      response.setEncoding("utf8")
      response.on("data", (d: string) => (text += d))
      response.on("end", () => {
        const exit = JSON.parse(text.split("\n")[0]!) as { readonly _tag: string }
        return exit._tag === "Exit" ? resolve() : reject(new Error(`not an Exit: ${text}`))
      })
    })
    request.on("error", reject)
    request.end(frame)
  })
const floor = await measure(() => bounded(agents, FANOUT, plainCall))
for (const { agent } of agents) agent.destroy()

// The platform's HTTP client alone (what HttpProtocol.ts sent through before it posted with
// node:https itself), the same frame.
const httpScope = Effect.runSync(Scope.make())
const httpClients = await Effect.runPromise(
  Effect.forEach(ports, (port) =>
    Effect.map(
      Layer.build(Layer.provide(NodeHttpClient.layerWithoutAgent, NodeHttpClient.makeAgentLayer({ keepAlive: true, ca }))),
      (context) => ({ port, client: Context.get(context, HttpClient.HttpClient) })
    )).pipe(Scope.extend(httpScope))
)
const httpCall = ({ client, port }: { readonly port: number; readonly client: HttpClient.HttpClient }) =>
  client.post(`https://127.0.0.1:${port}/agent`, {
    body: HttpBody.text(`${JSON.stringify({ _tag: "Request", id: String(++id), tag: "Ps", payload: {}, headers: [] })}\n`, "application/ndjson"),
    headers: { authorization: `Bearer ${"x".repeat(40)}`, [PROTOCOL_HEADER]: String(PROTOCOL_VERSION), [RPC_TAG_HEADER]: "Ps" }
  }).pipe(
    Effect.flatMap((response) => response.text),
    Effect.map((text) => JSON.parse(text.split("\n")[0]!) as unknown),
    Effect.scoped
  )
const platform = await measure(() => Effect.runPromise(Effect.forEach(httpClients, httpCall, { concurrency: FANOUT, discard: true })))
await Effect.runPromise(Scope.close(httpScope, Exit.void))

// Ours: a typed client per server, as AgentClients keeps them.
const scope = Effect.runSync(Scope.make())
const clients = await Effect.runPromise(
  Effect.forEach(ports, (port) => Transport.makeClient(AgentRpcs, { url: `https://127.0.0.1:${port}/agent`, ca, token: Redacted.make("x".repeat(40)) })).pipe(Scope.extend(scope))
)
const ours = await measure(() => Effect.runPromise(Effect.forEach(clients, (client) => client.Ps(), { concurrency: FANOUT, discard: true })))
await Effect.runPromise(Scope.close(scope, Exit.void))

const row = (name: string, f: Figures) =>
  `  ${name.padEnd(26)} ${f.msPerRound.toFixed(1).padStart(8)} ms/round ${f.cpuMsPerCall.toFixed(3).padStart(8)} ms CPU/call ${(f.cpuMsPerCall / floor.cpuMsPerCall).toFixed(1).padStart(6)}x floor`
console.log(`bench/rpc-client: ${SERVERS} servers x ${ROUNDS} rounds, ${FANOUT} calls at once, node ${process.version}`)
console.log(row("floor (node:https)", floor))
console.log(row("platform HttpClient only", platform))
console.log(row("Transport.makeClient", ours))

for (const server of servers) server.closeAllConnections(), server.close()
rmSync(dir, { recursive: true, force: true })
