// `mcp edge list` and `mcp dns check`: the formatting on its own, then the real CLI process
// against a stub master over HTTPS (platform CA, token) that answers EdgeRoutesList and DnsCheck
// with what each test sets, so the table, the OK/WRONG report and the exit codes are what an
// operator sees. The stub also answers Tree, so `mcp tree` is seen nesting a node's agent's
// children under the node.
import { HttpServer } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import type { Operations, Routes } from "@mcp/domain"
import { AuthMiddleware, MasterRpcs, Pki, TokenFile, TokenFileAuthenticator, Transport } from "@mcp/rpc"
import { Effect, Exit, Layer, Redacted, Scope, Stream } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { formatDnsCheck, formatEdgeRoutes, formatExpiry, formatZone, summarizeDnsCheck } from "../src/commands/Edge.js"

type DnsCheckResult = typeof Routes.DnsCheckResult.Type

const NOW = new Date("2026-01-10T12:00:00Z")

const route = (over: Partial<Routes.EdgeRoute> = {}): Routes.EdgeRoute => ({
  hostname: "mcq.example.com" as Routes.EdgeRoute["hostname"],
  edgeNode: "svc",
  workerNode: "rift",
  backendHostname: "mcq.svc.mcp.example.com",
  backendPort: 8443,
  service: "mcq",
  certSerial: "4f:1a:09",
  certNotAfter: "2026-04-10T12:00:00Z",
  ...over
})

const ok: DnsCheckResult = { hostname: "mcq.example.com", edgeNode: "svc", ok: true, resolvesTo: ["svc.example.com", "198.51.100.5"] }
const wrong: DnsCheckResult = {
  hostname: "docs.example.com",
  edgeNode: "svc",
  ok: false,
  resolvesTo: [],
  problem: "docs.example.com does not resolve (no CNAME, no A/AAAA records)",
  fix: "create CNAME docs.example.com -> svc.example.com (or A docs.example.com -> 198.51.100.5)"
}

describe("formatting", () => {
  it("formatExpiry: the date and the days left, or how long ago it expired", () => {
    expect(formatExpiry("2026-04-10T12:00:00Z", NOW)).toBe("2026-04-10 (90 days left)")
    expect(formatExpiry("2026-01-11T13:00:00Z", NOW)).toBe("2026-01-11 (1 day left)")
    expect(formatExpiry("2026-01-07T00:00:00Z", NOW)).toBe("2026-01-07 (expired 4 days ago)")
    expect(formatExpiry("soon", NOW)).toBe("soon")
  })

  it("formatEdgeRoutes: one row per route with backend host:port and certificate", () => {
    const lines = formatEdgeRoutes([route(), route({ hostname: "a.example.com" as never, certSerial: "", certNotAfter: "" })], NOW).split("\n")
    expect(lines[0]).toMatch(/^HOSTNAME\s+EDGE NODE\s+SERVICE\s+WORKER\s+BACKEND\s+CERT SERIAL\s+CERT EXPIRES$/)
    expect(lines[1]).toMatch(/^mcq\.example\.com\s+svc\s+mcq\s+rift\s+mcq\.svc\.mcp\.example\.com:8443\s+4f:1a:09\s+2026-04-10 \(90 days left\)$/)
    expect(lines[2]).toMatch(/^a\.example\.com\s+svc\s+mcq\s+rift\s+mcq\.svc\.mcp\.example\.com:8443\s+-\s+-$/)
    expect(formatEdgeRoutes([], NOW)).toContain("no edge routes")
  })

  it("formatDnsCheck: OK lines, WRONG blocks with problem and fix", () => {
    expect(formatDnsCheck([ok, wrong]).split("\n")).toEqual([
      "OK     mcq.example.com   edge svc  -> svc.example.com -> 198.51.100.5",
      "WRONG  docs.example.com  edge svc  does not resolve",
      `       problem: ${wrong.problem}`,
      `       fix:     ${wrong.fix}`
    ])
    expect(formatDnsCheck([])).toContain("no public hostnames to check")
  })

  it("summarizeDnsCheck: counts what is wrong", () => {
    expect(summarizeDnsCheck([ok])).toEqual({ failed: false, line: "1 public hostname points at its edge node" })
    expect(summarizeDnsCheck([ok, ok])).toEqual({ failed: false, line: "2 public hostnames point at their edge node" })
    const summary = summarizeDnsCheck([ok, wrong, wrong])
    expect(summary.failed).toBe(true)
    expect(summary.line).toMatch(/^2 of 3 public hostnames do not point at their edge node; create the records shown after "fix:"/)
  })
})

// ---------------------------------------------------------------------------------------------
// The CLI process against a stub master.

const bin = fileURLToPath(new URL("../bin/mcp.js", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "mcp-cli-edge-"))
const cliConfig = join(dir, "mcp.toml")
let scope: Scope.CloseableScope | undefined
let edgeRoutes: ReadonlyArray<Routes.EdgeRoute> = []
let dnsResults: ReadonlyArray<DnsCheckResult> = []
/** Three levels, as the master answers: itself, its node supervisors, a node's managed proxy. */
const masterTree: Operations.SupervisionNode = {
  name: "mcp-master",
  state: "serving, up 5m",
  restarts: 0,
  children: [{
    name: "NodeSupervisors",
    state: "1 node fiber supervised",
    restarts: 0,
    children: [{
      name: "w1",
      state: "running, node healthy",
      restarts: 0,
      children: [{ name: "proxy haproxy", state: "running, pid 1234, up 5m", restarts: 1, lastError: "exited with code 1", children: [] }]
    }]
  }]
}

const notServed = (rpc: string) => `the stub master in Edge.test.ts does not serve ${rpc}`
const die = (rpc: string) => () => Effect.die(notServed(rpc))

const StubMaster = MasterRpcs.toLayer({
  EdgeRoutesList: () => Effect.sync(() => edgeRoutes),
  DnsCheck: () => Effect.sync(() => dnsResults),
  Deploy: () => Stream.die(notServed("Deploy")),
  Logs: () => Stream.die(notServed("Logs")),
  Events: () => Stream.die(notServed("Events")),
  Undeploy: die("Undeploy"),
  Stop: die("Stop"),
  Start: die("Start"),
  Restart: die("Restart"),
  Ps: die("Ps"),
  Status: die("Status"),
  Sync: die("Sync"),
  NodesList: die("NodesList"),
  NodesAdd: die("NodesAdd"),
  NodesRemove: die("NodesRemove"),
  AgentRecover: die("AgentRecover"),
  AgentStatus: die("AgentStatus"),
  ZoneList: die("ZoneList"),
  Tree: () => Effect.succeed(masterTree)
})

beforeAll(async () => {
  const caDir = join(dir, "ca")
  const tokenFile = join(dir, "tokens.toml")
  const operatorTokenFile = join(dir, "operator.token")
  const token = await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(caDir)
      yield* Pki.issueCertificate(caDir, "master", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "server" })
      return yield* TokenFile.createToken(tokenFile, { name: "operator", kind: "human", role: "admin" })
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  writeFileSync(operatorTokenFile, Redacted.value(token), { mode: 0o600 })
  const server = Transport.layerServer(
    {
      host: "127.0.0.1",
      port: 0,
      tls: {
        cert: readFileSync(join(caDir, "master.crt"), "utf8"),
        key: Redacted.make(readFileSync(join(caDir, "master.key"), "utf8")),
        ca: readFileSync(join(caDir, "ca.crt"), "utf8"),
        clientAuth: false
      }
    },
    [Transport.route("/master", MasterRpcs)]
  ).pipe(
    Layer.provide(StubMaster),
    Layer.provide(AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(TokenFileAuthenticator.layer(tokenFile).pipe(Layer.provide(NodeFileSystem.layer)))))
  )
  scope = Effect.runSync(Scope.make())
  const context = await Effect.runPromise(Layer.buildWithScope(server, scope))
  const address = (await Effect.runPromise(Effect.provide(HttpServer.HttpServer, context))).address
  const port = address._tag === "TcpAddress" ? address.port : 0
  writeFileSync(
    cliConfig,
    [`master = ["127.0.0.1:${port}"]`, `ca = ${JSON.stringify(join(caDir, "ca.crt"))}`, `token_file = ${JSON.stringify(operatorTokenFile)}`, ""].join("\n")
  )
}, 60_000)

afterAll(async () => {
  if (scope !== undefined) await Effect.runPromise(Scope.close(scope, Exit.void))
  rmSync(dir, { recursive: true, force: true })
})

const mcp = (args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args, "--config", cliConfig], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    )
  )

describe("mcp edge list / mcp dns check against a master", () => {
  it("edge list prints the table, --json the routes", async () => {
    edgeRoutes = [route()]
    const table = await mcp(["edge", "list"])
    expect(table.code).toBe(0)
    expect(table.stdout).toMatch(/^HOSTNAME\s+EDGE NODE/)
    expect(table.stdout).toContain("mcq.svc.mcp.example.com:8443")
    expect(table.stdout).toMatch(/2026-04-10 \((\d+ days left|expired \d+ days? ago)\)/)
    const json = await mcp(["edge", "list", "--json"])
    expect(json.code).toBe(0)
    expect(JSON.parse(json.stdout)).toEqual([route()])
  }, 30_000)

  it("dns check exits 0 when every hostname points at its edge", async () => {
    dnsResults = [ok]
    const { code, stdout, stderr } = await mcp(["dns", "check"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout).toContain("OK     mcq.example.com")
    expect(stdout).toContain("1 public hostname points at its edge node")
  }, 30_000)

  it("dns check prints WRONG with problem and fix and exits 1 saying how many", async () => {
    dnsResults = [ok, wrong]
    const { code, stdout, stderr } = await mcp(["dns", "check"])
    expect(code).toBe(1)
    expect(stdout).toContain("WRONG  docs.example.com")
    expect(stdout).toContain(`fix:     ${wrong.fix}`)
    expect(stderr.trim()).toMatch(/^mcp: 1 of 2 public hostnames does not point at their edge node/)
  }, 30_000)

  it("dns check --json keeps stdout JSON and still exits 1 when something is wrong", async () => {
    dnsResults = [wrong]
    const { code, stdout, stderr } = await mcp(["dns", "check", "--json"])
    expect(code).toBe(1)
    expect(JSON.parse(stdout)).toEqual([wrong])
    expect(stderr).toContain("mcp: 1 of 1 public hostname does not point at its edge node")
  }, 30_000)

  it("with no public hostnames, dns check says so and exits 0", async () => {
    dnsResults = []
    const { code, stdout } = await mcp(["dns", "check"])
    expect(code).toBe(0)
    expect(stdout).toContain("no public hostnames to check")
  }, 30_000)
})

describe("mcp tree against a master", () => {
  it("prints a node's agent's children under the node", async () => {
    const { code, stdout } = await mcp(["tree"])
    expect(code).toBe(0)
    expect(stdout.trimEnd().split("\n")).toEqual([
      "mcp-master  [serving, up 5m]",
      "└── NodeSupervisors  [1 node fiber supervised]",
      "    └── w1  [running, node healthy]",
      "        └── proxy haproxy  [running, pid 1234, up 5m, 1 restarts, last error: exited with code 1]"
    ])
  }, 30_000)
})

describe("mcp dns list", () => {
  it("shows the zone, its serial, where it is served, and each record with the node that set it", () => {
    const records = [{ name: "hello.svc.mcp.internal", address: "10.0.0.5", node: "w1", updatedAt: "2026-12-01T04:00:00.000Z" }]
    const served = formatZone({ zone: "svc.mcp.internal", serial: 4, records, listen: "10.0.0.1:5353" }).split("\n")
    expect(served[0]).toBe("zone svc.mcp.internal, serial 4, served on 10.0.0.1:5353 (UDP and TCP)")
    expect(served.slice(1).map((l) => l.trim().split(/\s+/))).toEqual([
      ["NAME", "ADDRESS", "NODE", "UPDATED"],
      ["hello.svc.mcp.internal", "10.0.0.5", "w1", "2026-12-01T04:00:00.000Z"]
    ])
    expect(formatZone({ zone: "svc.mcp.internal", serial: 1, records: [] })).toBe(
      "zone svc.mcp.internal, serial 1, not served over DNS (no [dns] listen in the master's config)\nno records yet: a node's agent registers the names it serves"
    )
  })
})
