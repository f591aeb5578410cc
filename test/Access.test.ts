/**
 * Guests against the real daemons: a real mcp-master and mcp-agent over their TLS transport,
 * with a token file holding a guest and a user token next to the fleet's admin tokens. Every
 * RPC of MasterRpcs, ControlRpcs (the master's /control) and AgentRpcs is called from the
 * groups' request lists, each with an access level and a payload written out here, so an RPC
 * added without an entry fails the test by name. On the master a guest may call the read RPCs
 * and is Forbidden from every other one, which changes nothing; the agent refuses guests
 * outright; a user's routine operations reach the master's handlers, while the agent refuses a
 * user every operate RPC (changes come from the master, which calls with its admin system
 * token), and a user is Forbidden from every admin RPC on the master and the agent, naming the
 * role it needs, with nothing changed. The
 * master's /control takes only a node's own system token, for that node: humans (admins too)
 * and a node speaking for another are refused, naming the rule. Last, `mcp agent status --json`
 * reports the agent's version, protocol, arch and uptime as it answers them, with no skew.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { AgentRpcs, AuthMiddleware, ControlRpcs, MasterRpcs, Protocol, TokenFile, Transport } from "@mcp/rpc"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { Cause, Effect, Exit, Redacted, Stream } from "effect"
import { execFile, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const NODE = "acc1"
const dir = mkdtempSync(join(tmpdir(), "mcp-access-"))
let podman: PodmanService | undefined
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon | undefined
let agent: LocalFleet.Daemon | undefined
let masterUrl = ""
let agentUrl = ""
let ca = ""
/** Where the master answers DNS queries for the internal zone. */
let dnsPort = 0
const tokens = { guest: "", user: "" }

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })
const nodeContainers = () =>
  spawnSync("podman", ["ps", "-a", "--filter", `label=mcp.node=${NODE}`, "--format", "{{.ID}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)

const waitFor = async (what: string, check: () => Promise<boolean>, timeoutMs = 30_000) => {
  const start = Date.now()
  while (Date.now() - start < timeoutMs) {
    if (await check().catch(() => false)) return
    await new Promise((r) => setTimeout(r, 250))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
}

const definition = (name: string) => ({
  name,
  components: [{ name: "web", image: BUSYBOX_IMAGE, cmd: ["sh", "-c", `echo ${name} up; exec sleep 3600`] }]
})

type AnyCall = (payload?: unknown) => Effect.Effect<unknown, unknown> | Stream.Stream<unknown, unknown>

/** Calls one RPC by tag on a real daemon; a stream is drained so its error (if any) shows. */
const call = <R extends Rpc.Any>(group: RpcGroup.RpcGroup<R>, url: string, token: string, tag: string, payload: unknown = noPayload) =>
  Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        const client = (yield* Transport.makeClient(group, { url, ca, token: Redacted.make(token) })) as unknown as Record<string, AnyCall>
        const fn = client[tag]
        if (fn === undefined) return yield* Effect.die(`the client has no ${tag}`)
        const result = payload === noPayload ? fn() : fn(payload)
        const effect = Stream.StreamTypeId in (result as object)
          ? Stream.runCollect(Stream.take(result as Stream.Stream<unknown, unknown>, 20))
          : (result as Effect.Effect<unknown, unknown>)
        return yield* Effect.exit(Effect.timeoutFail(effect, { duration: "20 seconds", onTimeout: () => `${tag} gave no answer in 20 s` }))
      })
    )
  )

const master_ = <A>(tag: string, payload: unknown = noPayload, token = fleet.operatorToken) =>
  call(MasterRpcs, masterUrl, token, tag, payload).then((exit) => {
    if (Exit.isSuccess(exit)) return exit.value as A
    throw new Error(`${tag} failed: ${JSON.stringify(exit.cause)}`)
  })

const noPayload = Symbol("no payload")

interface Call {
  /** Written out by hand, like the table in packages/rpc/test/Access.test.ts: not read from the contract. */
  readonly access: "read" | "operate" | "admin" | "node"
  readonly payload: unknown
}
const read = (payload: unknown = noPayload): Call => ({ access: "read", payload })
/** Routine work on services: a user's. */
const operate = (payload: unknown = noPayload): Call => ({ access: "operate", payload })
/** The fleet's shape and privileged operations: an admin's. */
const admin = (payload: unknown = noPayload): Call => ({ access: "admin", payload })
/** A node speaking for itself: only its own system token, whatever the role; no human. */
const node = (payload: unknown = noPayload): Call => ({ access: "node", payload })

/**
 * Each RPC with its access level and a minimal valid payload: for the writes, one that would
 * change something if it ran (the test then checks nothing changed). A new RPC needs an entry
 * here, or the test fails naming it.
 */
const masterCalls: Record<string, Call> = {
  Deploy: operate({ definition: definition("intruder"), dryRun: false }),
  Undeploy: operate({ service: "guarded" }),
  Stop: operate({ service: "guarded" }),
  Start: operate({ service: "guarded" }),
  Restart: operate({ service: "guarded" }),
  Ps: read(),
  Status: read({ service: "guarded" }),
  Sync: operate({ definitions: [definition("intruder")] }),
  NodesList: read(),
  NodesAdd: admin({ info: { name: "intruder", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "0" } }),
  NodesRemove: admin({ node: NODE }),
  EdgeRoutesList: read(),
  DnsCheck: read(),
  Logs: operate({ service: "guarded", follow: false, tail: 10 }),
  Events: read({ follow: false, limit: 10 }),
  AgentRecover: admin({ force: true }),
  AgentStatus: read(),
  ZoneList: read(),
  Tree: read()
}

const resources = { cpuCores: 1, load1: 0, memoryTotalBytes: 1, memoryFreeBytes: 1, diskTotalBytes: 1, diskFreeBytes: 1, containers: 0 }

/** The master's routes for agents: a guest must not register a node or fake a heartbeat. */
const controlCalls: Record<string, Call> = {
  Register: node({ info: { name: "intruder", role: "worker", addresses: ["127.0.0.1:1"], arch: "x64", version: "0" }, resources }),
  Heartbeat: node({ node: NODE, resources, services: [{ service: "intruder", running: 1, expected: 1 }] }),
  ZonePut: node({ node: NODE, name: `intruder.svc.mcp.internal`, address: "10.6.6.6" }),
  ZoneRemove: node({ node: NODE, name: `${NODE}.svc.mcp.internal` }),
  ZoneRecords: node({ node: NODE })
}

/** On the agent every RPC is refused to guests, and every operate one to users; the levels are listed for the messages. */
const agentCalls: Record<string, Call> = {
  Deploy: operate({ definition: definition("intruder"), dryRun: false }),
  Stop: operate({ service: "guarded" }),
  Start: operate({ service: "guarded" }),
  Restart: operate({ service: "guarded" }),
  Undeploy: operate({ service: "guarded" }),
  Ps: read(),
  Status: read({ service: "guarded" }),
  Logs: operate({ service: "guarded", follow: false, tail: 10 }),
  SetupEdgeRoute: admin({ hostname: "intruder.example.com", service: "guarded", workerNode: NODE, backendHostname: "guarded.internal", backendPort: 8443 }),
  RemoveEdgeRoute: admin({ hostname: "intruder.example.com" }),
  ListEdgeRoutes: read(),
  ProxyRoutesAdd: admin({ route: { listener: 8443, hostname: "intruder.example.com", backend: "127.0.0.1:1", mode: "l4", backendTls: false } }),
  ProxyRoutesRemove: admin({ listener: 8443, hostname: "intruder.example.com" }),
  ProxyRoutesList: read(),
  Recover: admin({ force: true }),
  BootStatus: read(),
  Health: read(),
  NodeInfo: read(),
  Events: read({ follow: false, limit: 10 })
}

/** The group's RPCs, each with its entry above; fails naming any RPC without one (or any stale entry). */
const plan = (name: string, group: { readonly requests: ReadonlyMap<string, unknown> }, calls: Record<string, Call>) => {
  const tags = [...group.requests.keys()]
  const missing = tags.filter((tag) => !(tag in calls))
  const stale = Object.keys(calls).filter((tag) => !group.requests.has(tag))
  if (missing.length > 0) throw new Error(`${name} has RPCs without an entry in test/Access.test.ts: ${missing.join(", ")}; add each with its access level and a minimal valid payload`)
  if (stale.length > 0) throw new Error(`test/Access.test.ts lists RPCs ${name} no longer has: ${stale.join(", ")}`)
  return tags.map((tag) => ({ tag, ...calls[tag]! }))
}

const failureOf = (exit: Exit.Exit<unknown, unknown>) =>
  Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error : exit.cause) : undefined

/** One line per outcome, so a failure names the RPC and what happened instead. */
const outcomeOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "answered"
  const error = failureOf(exit)
  if (error instanceof Errors.Forbidden) return `Forbidden(${error.principal}, ${error.role}, ${error.rpc})`
  if (typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" && exit.cause._tag === "Fail") return `failed with ${error._tag}`
  return `crashed: ${Cause.pretty(exit.cause)}`
}

const forbiddenToGuest = (tag: string) => `Forbidden(gina, guest, ${tag})`
const authFailure = /^(Forbidden|failed with (Unauthorized|VersionSkew))/

const fleetView = async () => {
  const nodes = await master_<ReadonlyArray<{ info: { name: string; role: string; addresses: ReadonlyArray<string> } }>>("NodesList")
  const ps = await master_<{ services: ReadonlyArray<{ service: string; node: string; active: boolean }> }>("Ps")
  return {
    nodes: nodes.map((n) => ({ name: n.info.name, role: n.info.role, addresses: n.info.addresses })),
    services: ps.services.map((s) => ({ service: s.service, node: s.node, active: s.active }))
  }
}

beforeAll(async () => {
  podman = await startPodmanService()
  const masterPort = await LocalFleet.freePort()
  const agentPort = await LocalFleet.freePort()
  const masters = [`127.0.0.1:${masterPort}`]
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters })
  // Before the daemons start, so both load them with the rest of the token file.
  const [guest, user] = await Effect.runPromise(
    Effect.all([
      TokenFile.createToken(fleet.tokenFile, { name: "gina", kind: "human", role: "guest" }),
      TokenFile.createToken(fleet.tokenFile, { name: "ursula", kind: "human", role: "user" })
    ]).pipe(Effect.provide(NodeFileSystem.layer))
  )
  tokens.guest = Redacted.value(guest)
  tokens.user = Redacted.value(user)
  ca = readFileSync(join(fleet.caDir, "ca.crt"), "utf8")
  masterUrl = `https://127.0.0.1:${masterPort}/master`
  agentUrl = `https://127.0.0.1:${agentPort}/agent`
  dnsPort = await LocalFleet.freePort()
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, extra: `[dns]\nlisten = "127.0.0.1:${dnsPort}"` }))
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, { node: NODE, port: agentPort, socket: podman.socketPath, masters }))
  await waitFor(`${NODE} registered and healthy`, async () =>
    (await master_<ReadonlyArray<{ info: { name: string }; health: string }>>("NodesList")).some((n) => n.info.name === NODE && n.health === "healthy"))
  // A service the guest will try to stop, restart and undeploy.
  await master_("Deploy", { definition: definition("guarded"), dryRun: false })
  const ps = await fleetView()
  expect(ps.services).toEqual([{ service: "guarded", node: NODE, active: true }])
}, 90_000)

afterAll(async () => {
  if (master !== undefined) await call(MasterRpcs, masterUrl, fleet.operatorToken, "Undeploy", { service: "guarded" }).catch(() => undefined)
  await agent?.stop()
  await master?.stop()
  for (const id of nodeContainers()) spawnSync("podman", ["rm", "-f", id], { env: podmanEnv() })
  await podman?.stop()
  rmSync(dir, { recursive: true, force: true })
}, 60_000)

describe("a guest and a user against the real master and agent", () => {
  it("the master: every operate and admin RPC is Forbidden to a guest and changes nothing; every read RPC answers", async () => {
    const before = await fleetView()
    const calls = [...plan("MasterRpcs", MasterRpcs, masterCalls), ...plan("ControlRpcs", ControlRpcs, controlCalls)]
    expect(calls.filter((c) => c.access !== "read").length).toBeGreaterThanOrEqual(12)
    const controlUrl = masterUrl.replace(/\/master$/, "/control")
    for (const { tag, access, payload } of calls) {
      const isControl = tag in controlCalls
      const exit = isControl
        ? await call(ControlRpcs, controlUrl, tokens.guest, tag, payload)
        : await call(MasterRpcs, masterUrl, tokens.guest, tag, payload)
      const outcome = outcomeOf(exit)
      if (access !== "read") {
        expect.soft(outcome, `a guest calling ${tag} (${access}) on the master`).toBe(forbiddenToGuest(tag))
        // The exact error, fields and class, as the CLI receives it.
        const needs = access === "admin" ? "admin" : "user"
        if (outcome === forbiddenToGuest(tag) && access === "node") expect((failureOf(exit) as Errors.Forbidden).rule).toMatch(new RegExp(`^${tag} is for agents only`))
        else if (outcome === forbiddenToGuest(tag)) expect(failureOf(exit)).toEqual(new Errors.Forbidden({ principal: "gina", role: "guest", rpc: tag, needs }))
      } else {
        // Answered, or a typed error from the handler; never an auth failure.
        expect.soft(outcome, `a guest calling ${tag} (read) on the master`).not.toMatch(authFailure)
        expect.soft(outcome, `a guest calling ${tag} (read) on the master`).not.toMatch(/^crashed/)
      }
    }
    // The guest read real data.
    const status = await call(MasterRpcs, masterUrl, tokens.guest, "Status", { service: "guarded" })
    expect(Exit.isSuccess(status) && (status.value as { service: string }).service).toBe("guarded")

    // Nothing changed: same nodes, "guarded" still deployed and running, no "intruder".
    expect(await fleetView()).toEqual(before)
    expect(outcomeOf(await call(MasterRpcs, masterUrl, fleet.operatorToken, "Status", { service: "intruder" }))).toBe("failed with ServiceNotFound")
    expect(nodeContainers()).toHaveLength(1)
  }, 60_000)

  it("the agent refuses a guest every RPC, reads included", async () => {
    for (const { tag, access } of plan("AgentRpcs", AgentRpcs, agentCalls)) {
      const outcome = outcomeOf(await call(AgentRpcs, agentUrl, tokens.guest, tag, agentCalls[tag]!.payload))
      expect.soft(outcome, `a guest calling ${tag} (${access}) on the agent`).toBe(forbiddenToGuest(tag))
    }
    expect(nodeContainers()).toHaveLength(1)
  }, 60_000)

  it("a user's write RPCs reach the master's handlers", async () => {
    // Undeploy of an unknown service: the handler's ServiceNotFound, not Forbidden.
    expect(failureOf(await call(MasterRpcs, masterUrl, tokens.user, "Undeploy", { service: "no-such-service" }))).toEqual(
      new Errors.ServiceNotFound({ service: "no-such-service" })
    )
    // Sync of nothing succeeds and stores nothing.
    expect(await call(MasterRpcs, masterUrl, tokens.user, "Sync", { definitions: [] })).toEqual(Exit.succeed({ stored: [], unchanged: [] }))
  }, 60_000)

  it("the agent refuses a user every operate RPC (logs too), naming the rule: changes come from the master; nothing changes", async () => {
    const before = await fleetView()
    const operateCalls = plan("AgentRpcs", AgentRpcs, agentCalls).filter((c) => c.access === "operate")
    expect(operateCalls.map((c) => c.tag).sort()).toEqual(["Deploy", "Logs", "Restart", "Start", "Stop", "Undeploy"])
    for (const { tag, payload } of operateCalls) {
      const exit = await call(AgentRpcs, agentUrl, tokens.user, tag, payload)
      expect.soft(failureOf(exit), `a user calling ${tag} (operate) on the agent`).toEqual(
        new Errors.Forbidden({ principal: "ursula", role: "user", rpc: tag, needs: "admin", rule: AuthMiddleware.operateOnAgentRule })
      )
    }
    // The message names the rule and both ways out.
    const stop = failureOf(await call(AgentRpcs, agentUrl, tokens.user, "Stop", { service: "guarded" })) as Errors.Forbidden
    expect(stop.message).toContain("on an agent, changes come from the master")
    expect(stop.message).toContain("deploy through the master")
    expect(stop.message).toContain("use an admin token")
    // "guarded" still runs, no "intruder"; a user still reads the agent.
    expect(await fleetView()).toEqual(before)
    expect(nodeContainers()).toHaveLength(1)
    expect(outcomeOf(await call(AgentRpcs, agentUrl, tokens.user, "Status", { service: "guarded" }))).toBe("answered")
    // Through the master (which calls the agent with its admin system token) the same user reads the logs.
    expect(outcomeOf(await call(MasterRpcs, masterUrl, tokens.user, "Logs", { service: "guarded", follow: false, tail: 10 }))).toBe("answered")
  }, 60_000)

  it("a user is refused every admin RPC, on the master and on the agent, naming the role it needs, and nothing changes", async () => {
    const before = await fleetView()
    const routesBefore = await call(AgentRpcs, agentUrl, fleet.operatorToken, "ProxyRoutesList", noPayload)
    const controlUrl = masterUrl.replace(/\/master$/, "/control")
    const adminCalls = [
      ...plan("MasterRpcs", MasterRpcs, masterCalls).map((c) => ({ ...c, group: MasterRpcs, url: masterUrl })),
      ...plan("ControlRpcs", ControlRpcs, controlCalls).map((c) => ({ ...c, group: ControlRpcs, url: controlUrl })),
      ...plan("AgentRpcs", AgentRpcs, agentCalls).map((c) => ({ ...c, group: AgentRpcs, url: agentUrl }))
    ].filter((c) => c.access === "admin")
    expect(adminCalls.map((c) => c.tag).sort()).toEqual(
      ["AgentRecover", "NodesAdd", "NodesRemove", "ProxyRoutesAdd", "ProxyRoutesRemove", "Recover", "RemoveEdgeRoute", "SetupEdgeRoute"]
    )
    for (const { tag, payload, group, url } of adminCalls) {
      const exit = await call(group as typeof MasterRpcs, url, tokens.user, tag, payload)
      expect.soft(outcomeOf(exit), `a user calling ${tag} (admin)`).toBe(`Forbidden(ursula, user, ${tag})`)
      expect.soft(failureOf(exit), `a user calling ${tag} (admin)`).toEqual(new Errors.Forbidden({ principal: "ursula", role: "user", rpc: tag, needs: "admin" }))
    }
    // Nothing changed: same nodes and services, no proxy route added or removed, one container.
    expect(await fleetView()).toEqual(before)
    expect(await call(AgentRpcs, agentUrl, fleet.operatorToken, "ProxyRoutesList", noPayload)).toEqual(routesBefore)
    expect(nodeContainers()).toHaveLength(1)
  }, 60_000)

  it("the master's /control: humans (the operator's admin token too) and a node speaking for another are refused, naming the rule", async () => {
    const before = await fleetView()
    const controlUrl = masterUrl.replace(/\/master$/, "/control")
    const nodeToken = readFileSync(LocalFleet.nodeTokenFile(fleet, NODE), "utf8")
    for (const { tag, payload } of plan("ControlRpcs", ControlRpcs, controlCalls)) {
      for (const [who, token] of [["ursula", tokens.user], ["operator", fleet.operatorToken]] as const) {
        const error = failureOf(await call(ControlRpcs, controlUrl, token, tag, payload))
        expect.soft(error, `${who} calling ${tag}`).toBeInstanceOf(Errors.Forbidden)
        expect.soft((error as Errors.Forbidden).rule, `${who} calling ${tag}`).toMatch(new RegExp(`^${tag} is for agents only`))
      }
    }
    // acc1's own token, registering "intruder" and heartbeating for it.
    const register = failureOf(await call(ControlRpcs, controlUrl, nodeToken, "Register", controlCalls.Register!.payload))
    expect((register as Errors.Forbidden).rule).toContain(`the token ${NODE} may not speak for node intruder`)
    const heartbeat = failureOf(await call(ControlRpcs, controlUrl, nodeToken, "Heartbeat", { node: "intruder", resources, services: [] }))
    expect((heartbeat as Errors.Forbidden).rule).toContain(`the token ${NODE} may not speak for node intruder`)
    // No "intruder" node, no placement learned for the "intruder" service.
    expect(await fleetView()).toEqual(before)
  }, 60_000)
})

interface AgentStatusJson {
  readonly at: string
  readonly master: { readonly version: string; readonly protocol: number; readonly uptimeSeconds: number }
  readonly cli: { readonly version: string; readonly protocol: number } | null
  readonly nodes: ReadonlyArray<{
    readonly node: string
    readonly reachable: boolean
    readonly version: string
    readonly protocol?: number
    readonly arch: string
    readonly startedAt?: string
    readonly uptimeSeconds?: number
    readonly status: string
  }>
  readonly skewed: ReadonlyArray<string>
}

describe("mcp agent status against the real master and agent", () => {
  it("reports the agent's version, protocol and arch as it answers them and a positive uptime; same release, so no skew", async () => {
    const status = async () => {
      const result = await LocalFleet.mcp(fleet, ["agent", "status", "--json"])
      expect(result.code, result.stderr).toBe(0)
      return JSON.parse(result.stdout) as AgentStatusJson
    }
    let json = await status()
    // Whole seconds: an agent started less than a second ago would say 0.
    if ((json.nodes.find((n) => n.node === NODE)?.uptimeSeconds ?? 0) < 1) {
      await new Promise((r) => setTimeout(r, 1100))
      json = await status()
    }
    expect(json.master).toMatchObject({ protocol: Protocol.PROTOCOL_VERSION })
    expect(json.cli).toEqual({ version: json.master.version, protocol: Protocol.PROTOCOL_VERSION })
    const agentRow = json.nodes.find((n) => n.node === NODE)
    expect(agentRow).toMatchObject({
      reachable: true,
      version: json.master.version,
      protocol: Protocol.PROTOCOL_VERSION,
      arch: process.arch === "x64" ? "amd64" : process.arch,
      status: "ok"
    })
    expect(agentRow!.uptimeSeconds).toBeGreaterThan(0)
    expect(Date.parse(agentRow!.startedAt!)).toBeLessThan(Date.parse(json.at))
    expect(json.skewed).toEqual([])
    // The table: the master's release on the header line, the agent's row marked ok.
    const text = await LocalFleet.mcp(fleet, ["agent", "status"])
    expect(text.code, text.stderr).toBe(0)
    const lines = text.stdout.trim().split("\n")
    const version = json.master.version.replace(/\./g, "\\.")
    const uptime = "\\d+[smhd]( \\d+[smh])?"
    const protocol = Protocol.PROTOCOL_VERSION
    expect(lines[0]).toMatch(new RegExp(`^master ${version} \\(protocol ${protocol}\\), up ${uptime}; this CLI ${version} \\(protocol ${protocol}\\)$`))
    expect(lines[2]).toMatch(/^NODE\s+ROLE\s+VERSION\s+PROTOCOL\s+ARCH\s+UPTIME\s+STATUS$/)
    expect(lines.find((l) => l.startsWith(`${NODE} `))).toMatch(new RegExp(`^${NODE}\\s+worker\\s+${version}\\s+${protocol}\\s+\\S+\\s+${uptime}\\s+ok$`))
  }, 60_000)
})

describe("the master's DNS server for the internal zone ([dns] listen)", () => {
  it("answers for the zone with its SOA and NS, refuses other names, and mcp dns list says where it serves", async () => {
    const dig = (...args: Array<string>) =>
      new Promise<string>((resolve, reject) =>
        execFile("dig", ["@127.0.0.1", "-p", String(dnsPort), "+time=2", "+tries=1", ...args], { encoding: "utf8" }, (error, stdout) =>
          error === null ? resolve(stdout) : reject(new Error(`dig ${args.join(" ")}: ${error.message}\n${stdout}`))))
    expect((await dig("+short", "svc.mcp.internal", "SOA")).trim()).toMatch(/^ns\.svc\.mcp\.internal\. hostmaster\.svc\.mcp\.internal\. \d+ 3600 600 86400 30$/)
    expect(await dig("svc.mcp.internal", "NS")).toMatch(/^ns\.svc\.mcp\.internal\.\s+30\s+IN\s+A\s+127\.0\.0\.1$/m)
    expect(await dig("example.com", "A")).toContain("status: REFUSED")
    expect(await dig("+tcp", "nothing-here.svc.mcp.internal", "A")).toContain("status: NXDOMAIN")
    const list = await LocalFleet.mcp(fleet, ["dns", "list", "--json"])
    expect(list.code, list.stderr).toBe(0)
    expect(JSON.parse(list.stdout)).toMatchObject({ zone: "svc.mcp.internal", listen: `127.0.0.1:${dnsPort}`, records: [] })
    expect(master!.output).toContain(`internal zone svc.mcp.internal answered over DNS on 127.0.0.1:${dnsPort} (UDP and TCP)`)
  }, 30_000)
})
