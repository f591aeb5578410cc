/**
 * The quick start's main job, on this machine: a container engine (Podman's API service on a
 * private socket), a platform CA and tokens, a master serving the internal DNS zone and an agent
 * running its own HAProxy, a real service deployed through `mcp`, then `mcp ps` and a request to
 * it by name: resolved by the master's DNS server, through the proxy, with its certificate
 * verified against the agent's CA. Ctrl-C cleans up.
 *
 *   npx tsx scripts/quickstart.ts            # run, then wait for Ctrl-C
 *   npx tsx scripts/quickstart.ts --once     # run, clean up and exit (CI, scripts)
 *
 * MCP_QUICKSTART_DIR puts its files elsewhere than .mcp-local/quickstart (the tests use it).
 */
import { readFileSync, rmSync } from "node:fs"
import { Resolver } from "node:dns/promises"
import * as https from "node:https"
import * as net from "node:net"
import { join, relative } from "node:path"
import type { TLSSocket } from "node:tls"
import { fileURLToPath } from "node:url"
import * as LocalFleet from "../test/support/LocalFleet.js"
import { leaveSignalsToCaller } from "../test/support/ManagedProcess.js"
import { startPodmanService } from "../test/support/Podman.js"

const repo = fileURLToPath(new URL("..", import.meta.url))
const dir = process.env["MCP_QUICKSTART_DIR"] ?? join(repo, ".mcp-local", "quickstart")
const once = process.argv.includes("--once")
const cleanups: Array<() => Promise<void>> = []
/** The example's route (test/fixtures/services/good/hello.toml) and the name the agent gives it. */
const LISTENER = 8443
const NAME = "hello.svc.mcp.internal"

/** A path as the user can type it from here: relative under the current directory, else absolute. */
const shown = (path: string) => (relative(process.cwd(), path).startsWith("..") ? path : relative(process.cwd(), path))

const step = (message: string) => console.log(`\n==> ${message}`)

const cleanup = async () => {
  step("cleaning up")
  for (const c of cleanups.splice(0).reverse()) await c().catch((e) => console.error(`cleanup: ${e}`))
}

// Ctrl-C (or SIGTERM) at any point undeploys and stops the daemons gracefully: the agent then
// stops the HAProxy it runs. (The harness would otherwise SIGKILL them at once.)
leaveSignalsToCaller()
let stopRequested: (signal: NodeJS.Signals) => void = () => undefined
const stopSignal = new Promise<NodeJS.Signals>((resolve) => (stopRequested = resolve))
for (const sig of ["SIGINT", "SIGTERM"] as const) process.on(sig, () => stopRequested(sig))

/**
 * An earlier quick start killed outright leaves its agent's HAProxy running, holding port 8443:
 * stop it (its pid file, checked against its command line) before its directory is wiped.
 */
const stopLeftBehindProxy = () => {
  const config = join(dir, "local-proxy", "haproxy.cfg")
  let pid: number
  try {
    pid = Number(readFileSync(join(dir, "local-proxy", "haproxy.pid"), "utf8").trim())
    if (!readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").includes(config)) return
  } catch {
    return
  }
  console.log(`stopping HAProxy (pid ${pid}) left running by an earlier quick start`)
  try {
    process.kill(-pid, "SIGTERM")
  } catch {
    // gone already
  }
}

/** Fails, saying what to do, when something else holds the example's proxy port. */
const requireFreeListener = () =>
  new Promise<void>((resolve, reject) => {
    const server = net.createServer()
    server.once("error", (e) =>
      reject(new Error(`port ${LISTENER} on 127.0.0.1 is in use (${e.message}); the example service's route listens there through the proxy: stop what holds it (ss -ltnp 'sport = :${LISTENER}')`)))
    server.listen({ host: "127.0.0.1", port: LISTENER, exclusive: true }, () => server.close(() => resolve()))
  })

const run = async (fleet: LocalFleet.Fleet, args: ReadonlyArray<string>) => {
  console.log(`$ mcp ${args.join(" ")}`)
  const r = await LocalFleet.mcp(fleet, args)
  process.stdout.write(r.stdout)
  process.stderr.write(r.stderr)
  if (r.code !== 0) throw new Error(`mcp ${args[0]} failed with exit code ${r.code}`)
  return r
}

const main = async () => {
  stopLeftBehindProxy()
  await new Promise((r) => setTimeout(r, 300))
  await requireFreeListener()
  rmSync(dir, { recursive: true, force: true })
  step("starting the container engine (Podman API service on a private socket)")
  const podman = await startPodmanService()
  cleanups.push(() => podman.stop())
  console.log(`podman API at ${podman.socketPath}`)

  step(`creating a platform CA, server certificate and tokens in ${shown(dir)}`)
  const masterPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  const fleet = await LocalFleet.prepare(dir, { masters })

  // The master serves the fleet's internal zone (svc.mcp.internal); not on port 53, which a
  // shared machine's own resolver may hold.
  const dnsPort = await LocalFleet.freePort()
  step(`starting mcp-master on 127.0.0.1:${masterPort}, serving the zone svc.mcp.internal on 127.0.0.1:${dnsPort} (UDP and TCP)`)
  const masterConfig = LocalFleet.writeMasterConfig(fleet, { port: masterPort, interval: "2s", extra: `[dns]\nlisten = "127.0.0.1:${dnsPort}"\n` })
  const master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, masterConfig)
  cleanups.push(() => master.stop())

  step("enrolling node 'local': a certificate naming it and a system token named after it (what `mcp ca issue` and `mcp token create --kind system --name local` make)")
  await LocalFleet.enrolNode(fleet, "local")

  step("starting mcp-agent for node 'local': it registers with the master (with its own token), runs HAProxy as its TLS proxy and puts its services' names in the master's zone")
  const agentPort = await LocalFleet.freePort()
  const proxyDir = join(dir, "local-proxy")
  const extra = [
    "[proxy]",
    `kind = "haproxy"`,
    "managed = true",
    `dir = ${JSON.stringify(proxyDir)}`,
    `master_socket = ${JSON.stringify(join(proxyDir, "master.sock"))}`,
    `stats_socket = ${JSON.stringify(join(proxyDir, "stats.sock"))}`,
    `bind = "127.0.0.1"`,
    "[dns]",
    `kind = "master"`,
    ""
  ].join("\n")
  const agentConfig = LocalFleet.writeAgentConfig(fleet, { node: "local", port: agentPort, socket: podman.socketPath, masters, extra })
  const agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, agentConfig)
  cleanups.push(() => agent.stop())
  cleanups.push(async () => void (await LocalFleet.mcp(fleet, ["undeploy", "hello"])))
  for (let i = 0; i < 60; i++) {
    const nodes = await LocalFleet.mcp(fleet, ["node", "list", "--json"])
    if (nodes.code === 0 && JSON.parse(nodes.stdout).some((n: { health: string }) => n.health === "healthy")) break
    await new Promise((r) => setTimeout(r, 500))
  }
  await run(fleet, ["node", "list"])

  step("deploying the example service 'hello' (test/fixtures/services/good/hello.toml)")
  await run(fleet, ["deploy", "hello"])
  step("what runs")
  await run(fleet, ["ps"])
  step("the internal zone the master serves")
  await run(fleet, ["dns", "list"])
  step("what the master and the agent supervise")
  await run(fleet, ["tree"])

  step(`resolving ${NAME} at the master's DNS server`)
  console.log(`$ dig @127.0.0.1 -p ${dnsPort} +short ${NAME}`)
  const resolver = new Resolver({ timeout: 2000, tries: 2 })
  resolver.setServers([`127.0.0.1:${dnsPort}`])
  const [address] = await resolver.resolve4(NAME)
  if (address === undefined) throw new Error(`the master's DNS server has no A record for ${NAME}`)
  console.log(address)

  const ca = join(fleet.dir, "local", "ca", "ca.crt")
  step(`a request by name through the proxy, its certificate verified against the agent's CA (${shown(ca)})`)
  console.log(`$ curl --cacert ${shown(ca)} --resolve ${NAME}:${LISTENER}:${address} https://${NAME}:${LISTENER}/`)
  const answer = await getByName(address, readFileSync(ca, "utf8"))
  console.log(answer.body.trim())
  console.log(`(HTTP ${answer.status}; the certificate names ${answer.subject}, issued by "${answer.issuer}", verified)`)
  if (answer.status !== 200) throw new Error(`the request through the proxy answered HTTP ${answer.status}`)

  if (!once) {
    // The master's own certificate is signed by the platform CA (not the agent's route CA above).
    console.log(`\nthe dashboard: https://127.0.0.1:${masterPort}/ (trust ${shown(join(fleet.caDir, "ca.crt"))} or accept the certificate; sign in with the token in ${shown(join(fleet.dir, "operator.token"))})`)
    step("running; press Ctrl-C to undeploy and stop everything")
    serving = true
    await stopSignal
  }
}

/**
 * GET https://hello.svc.mcp.internal:8443/ at `address` (what curl --resolve does), trusting only
 * `ca`: the TLS handshake fails unless the proxy presents a certificate for the name from that CA.
 */
const getByName = (address: string, ca: string) =>
  new Promise<{ status: number; body: string; subject: string; issuer: string }>((resolve, reject) => {
    const req = https.get({ host: address, port: LISTENER, servername: NAME, headers: { host: `${NAME}:${LISTENER}` }, ca, agent: false, timeout: 5000 }, (res) => {
      const peer = (res.socket as TLSSocket).getPeerCertificate()
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (chunk: string) => (body += chunk))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, subject: peer.subjectaltname ?? "(no names)", issuer: [peer.issuer?.CN ?? ""].flat().join(",") }))
    })
    req.on("timeout", () => req.destroy(new Error("no answer within 5 s")))
    req.on("error", reject)
  })

// A signal during the setup stops it there: what was started so far is cleaned up.
let serving = false
const interrupted = stopSignal.then((sig) => {
  if (!serving) throw new Error(`interrupted (${sig})`)
})
Promise.race([main(), interrupted])
  .then(cleanup)
  .catch(async (e) => {
    console.error(`\nquick start failed: ${e instanceof Error ? e.message : String(e)}`)
    await cleanup()
    process.exitCode = 1
  })
  .finally(() => process.exit())
