/**
 * What an operator sees of the fleet without the CLI. The daemons' /metrics, scraped by a real
 * Prometheus over HTTPS with a guest token (the platform CA in tls_config, the token in
 * authorization.credentials_file), as the README tells operators to: a deploy shows up in the
 * master's and the agent's counters, and the master's node health gauge turns unhealthy when the
 * agent is killed; /metrics refuses a request without a valid token, and the loopback listener
 * serves it without one. Their JSON logs: one object per line, and a deploy's lines on the
 * master and on the agent carry one trace id. Real master, agent and Podman.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { NodeFileSystem } from "@effect/platform-node"
import { TokenFile } from "@mcp/rpc"
import { Effect, Redacted } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"
import { type Prometheus, startPrometheus } from "./support/Prometheus.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-metrics-"))
const NODE = "metrics-w1"
let podman: PodmanService
let fleet: LocalFleet.Fleet
let master: LocalFleet.Daemon
let agent: LocalFleet.Daemon
let prometheus: Prometheus | undefined
let masterPort = 0
let masterMetricsPort = 0
let guestToken = ""
let ca = ""
const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

const cli = async (args: ReadonlyArray<string>, env: Readonly<Record<string, string>> = {}) => {
  const r = await LocalFleet.mcp(fleet, args, env)
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}:\n${r.stdout}${r.stderr}`)
  return r.stdout
}

/** Polls a PromQL query until `check` holds for its samples; the last samples go into the error. */
const eventually = async (promql: string, check: (values: ReadonlyArray<number>) => boolean, timeoutMs = 30_000) => {
  const start = Date.now()
  let last: unknown = "no answer yet"
  while (Date.now() - start < timeoutMs) {
    const samples = await prometheus!.query(promql)
    last = samples
    if (check(samples.map((s) => s.value))) return samples
    await new Promise((r) => setTimeout(r, 500))
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting on ${promql}; last answer: ${JSON.stringify(last)}`)
}

/** A span as the OTLP/HTTP JSON export carries it, with the service that sent it. */
interface ReceivedSpan {
  readonly service: string
  readonly traceId: string
  readonly spanId: string
  readonly parentSpanId?: string
  readonly name: string
  readonly start: bigint
}

/** A collector's OTLP/HTTP traces endpoint: keeps every span posted to /v1/traces (JSON). */
const otlpReceiver = async () => {
  const spans: Array<ReceivedSpan> = []
  const server = http.createServer((req, res) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (c: string) => (body += c))
    req.on("end", () => {
      if (req.method === "POST" && req.url === "/v1/traces") {
        const data = JSON.parse(body) as { resourceSpans: Array<{ resource: { attributes: Array<{ key: string; value: { stringValue?: string } }> }; scopeSpans: Array<{ spans: Array<{ traceId: string; spanId: string; parentSpanId?: string; name: string; startTimeUnixNano: string }> }> }> }
        for (const rs of data.resourceSpans) {
          const service = rs.resource.attributes.find((a) => a.key === "service.name")?.value.stringValue ?? "?"
          for (const ss of rs.scopeSpans) {
            for (const s of ss.spans) spans.push({ service, traceId: s.traceId, spanId: s.spanId, ...(s.parentSpanId ? { parentSpanId: s.parentSpanId } : {}), name: s.name, start: BigInt(s.startTimeUnixNano) })
          }
        }
      }
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()))
  return {
    url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/traces`,
    spans,
    close: () => new Promise<void>((r) => {
      server.closeAllConnections()
      server.close(() => r())
    })
  }
}
let collector: Awaited<ReturnType<typeof otlpReceiver>>

const get = (url: string, headers: Record<string, string> = {}) =>
  new Promise<{ status: number; body: string; type: string }>((resolve, reject) => {
    const onAnswer = (res: http.IncomingMessage) => {
      let body = ""
      res.setEncoding("utf8")
      res.on("data", (c: string) => (body += c))
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body, type: String(res.headers["content-type"]) }))
    }
    const request = url.startsWith("https:") ? https.get(url, { ca, headers }, onAnswer) : http.get(url, { headers }, onAnswer)
    request.on("error", reject)
  })

beforeAll(async () => {
  podman = await startPodmanService()
  collector = await otlpReceiver()
  masterPort = await LocalFleet.freePort()
  masterMetricsPort = await LocalFleet.freePort()
  const agentPort = await LocalFleet.freePort()
  fleet = await LocalFleet.prepare(join(dir, "fleet"), { masters: [`127.0.0.1:${masterPort}`] })
  ca = readFileSync(join(fleet.caDir, "ca.crt"), "utf8")
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, {
    port: masterPort,
    interval: "1s",
    missThreshold: 3,
    probeTimeout: "1s",
    extra: `[metrics]\nlisten = "127.0.0.1:${masterMetricsPort}"\n[log]\nformat = "json"\n[tracing]\notlp_url = "${collector.url}"`
  }))
  agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, LocalFleet.writeAgentConfig(fleet, {
    node: NODE,
    port: agentPort,
    socket: podman.socketPath,
    masters: [`127.0.0.1:${masterPort}`],
    extra: `[log]\nformat = "json"\n[tracing]\notlp_url = "${collector.url}"`
  }))
  // The scraper's token: a guest, which reads and changes nothing (the daemons reread the token file).
  const token = await Effect.runPromise(
    TokenFile.createToken(fleet.tokenFile, { name: "prometheus", kind: "system", role: "guest" }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  guestToken = Redacted.value(token)
  const tokenFile = join(dir, "prometheus.token")
  writeFileSync(tokenFile, guestToken, { mode: 0o600 })
  const caFile = join(fleet.caDir, "ca.crt")
  prometheus = await startPrometheus([
    { job: "master", address: `127.0.0.1:${masterPort}`, caFile, tokenFile },
    { job: "agent", address: `127.0.0.1:${agentPort}`, caFile, tokenFile }
  ])
}, 120_000)

afterAll(async () => {
  await prometheus?.dispose()
  await agent?.stop()
  await master?.stop()
  // The agent is killed below: what it ran is removed here, by its node label.
  const left = spawnSync("podman", ["ps", "-aq", "--filter", `label=mcp.node=${NODE}`], { encoding: "utf8", env: podmanEnv() }).stdout.trim()
  for (const id of left.split("\n").filter((l) => l !== "")) spawnSync("podman", ["rm", "-f", "-t", "0", id], { env: podmanEnv() })
  await podman?.stop()
  await collector?.close()
  rmSync(dir, { recursive: true, force: true })
}, 120_000)

describe("observability", () => {
  it("are scraped by a real Prometheus from the master and the agent, and count a deploy", async () => {
    await eventually(`up{job=~"master|agent"}`, (v) => v.length === 2 && v.every((x) => x === 1))
    const file = join(dir, "metrics-web.toml")
    writeFileSync(file, `name = "metrics-web"\nnode = "${NODE}"\n[[components]]\nname = "web"\nimage = "${BUSYBOX_IMAGE}"\ncmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]\n[[components.routes]]\nport = 8443\nmode = "l7"\n`)
    await cli(["deploy", "metrics-web", "--file", file], { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: collector.url })

    // The master: the deploy by node and result, the RPC that carried it, the node's heartbeats.
    await eventually(`mcp_service_operations_total{job="master",operation="deploy",node="${NODE}",result="ok"}`, (v) => v[0] === 1)
    await eventually(`mcp_rpc_duration_seconds_count{job="master",rpc="Deploy",result="ok"}`, (v) => v[0] === 1)
    await eventually(`mcp_heartbeats_received_total{job="master",node="${NODE}"}`, (v) => (v[0] ?? 0) > 0)
    // The agent: its saga's steps, timed, and the certificate of the route it now serves.
    // Asked for by name: a scrape taken while the deploy ran holds its first steps only (CI saw pull, ports, certs).
    const steps = await eventually(`mcp_saga_step_duration_seconds_count{job="agent",result="ok",step=~"certs|containers|ports"}`, (v) => v.length === 3)
    expect(steps.map((s) => s.labels["step"]).sort()).toEqual(expect.arrayContaining(["certs", "containers", "ports"]))
    const expiry = await eventually(`mcp_certificate_expiry_days{job="agent",service="metrics-web"}`, (v) => v.length === 1)
    expect(expiry[0]!.value).toBeGreaterThan(1)
    expect(expiry[0]!.value).toBeLessThan(800)
    // Each process's own figures.
    await eventually(`mcp_process_resident_memory_bytes`, (v) => v.length === 2 && v.every((x) => x > 10_000_000))
    await eventually(`mcp_process_cpu_seconds_total`, (v) => v.length === 2 && v.every((x) => x > 0))
  }, 120_000)

  it("logs are JSON lines, and a deploy's lines on the master and on its agent share a trace id", () => {
    const entries = (output: string) => output.split("\n").filter((l) => l.trim() !== "").map((line) => {
      try {
        return JSON.parse(line) as Record<string, unknown>
      } catch {
        throw new Error(`a log line is not JSON: ${line}`)
      }
    })
    const masterEntries = entries(master.output)
    const agentEntries = entries(agent.output)
    const audit = masterEntries.find((e) => String(e["message"]).startsWith("audit: operator (human/admin) Deploy service=metrics-web"))
    expect(audit, "the master's audit line of the deploy").toBeDefined()
    expect(audit).toMatchObject({ level: "INFO", trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) })
    const onAgent = agentEntries.filter((e) => e["trace_id"] === audit!["trace_id"])
    expect(onAgent.map((e) => e["message"])).toContainEqual(expect.stringMatching(/^audit: master \(system\/admin\) Deploy service=metrics-web/))
  })

  it("a deploy is one trace, from the CLI through the master to the agent, with a span per saga step", async () => {
    const root = collector.spans.find((s) => s.service === "mcp" && s.name === "mcp deploy")
    expect(root, `the CLI's root span; received: ${collector.spans.map((s) => `${s.service}:${s.name}`).join(", ")}`).toBeDefined()
    const inTrace = () => collector.spans.filter((s) => s.traceId === root!.traceId).sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0))
    /** Spans whose parent has not arrived: a span is exported when it ends, so a parent comes after its children. */
    const orphans = (spans: ReadonlyArray<ReceivedSpan>) => {
      const ids = new Set(spans.map((s) => s.spanId))
      return spans.filter((s) => s !== root && (s.parentSpanId === undefined || !ids.has(s.parentSpanId))).map((s) => `${s.service}:${s.name}`)
    }
    // The daemons export every second: wait until the agent's last step and every parent are in.
    const start = Date.now()
    while (Date.now() - start < 10_000 && (!inTrace().some((s) => s.service === "mcp-agent" && s.name === "saga.step dns") || orphans(inTrace()).length > 0)) {
      await new Promise((r) => setTimeout(r, 250))
    }
    const spans = inTrace()
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(["mcp", "mcp-master", "mcp-agent"]))
    // Every span but the root has its parent in the trace: one tree, not pieces.
    expect(orphans(spans)).toEqual([])
    expect(spans.filter((s) => s.service === "mcp-master").map((s) => s.name)).toEqual(expect.arrayContaining(["RpcServer.Deploy", "saga.step worker"]))
    const agentSteps = spans.filter((s) => s.service === "mcp-agent" && s.name.startsWith("saga.step ")).map((s) => s.name.slice("saga.step ".length))
    expect(agentSteps).toEqual(["pull", "ports", "certs", "containers", "health", "routes", "dns"])
  })

  it("the audit trail answers who did what: mcp events --kind audit --who", async () => {
    const mine = (await cli(["events", "--kind", "audit", "--who", "operator", "--json"])).trim().split("\n").map((l) => JSON.parse(l) as { kind: string; message: string; who: { name: string } })
    expect(mine.map((e) => e.message)).toContainEqual(expect.stringMatching(/^Deploy service=metrics-web .*: ok$/))
    expect(mine.every((e) => e.kind === "audit" && e.who.name === "operator")).toBe(true)
    expect((await cli(["events", "--who", "nobody"])).trim()).toBe("")
  })

  it("need a valid token on the HTTPS listener and none on the loopback listener", async () => {
    const none = await get(`https://127.0.0.1:${masterPort}/metrics`)
    expect(none.status).toBe(401)
    expect(none.body).toContain("no bearer token")
    const wrong = await get(`https://127.0.0.1:${masterPort}/metrics`, { authorization: "Bearer not-a-token" })
    expect(wrong.status).toBe(401)
    expect(wrong.body).not.toContain("not-a-token")
    const guest = await get(`https://127.0.0.1:${masterPort}/metrics`, { authorization: `Bearer ${guestToken}` })
    expect(guest.status).toBe(200)
    expect(guest.type).toContain("text/plain; version=0.0.4")
    expect(guest.body).toMatch(new RegExp(`^mcp_heartbeats_received_total\\{node="${NODE}"\\} \\d+`, "m"))
    const loopback = await get(`http://127.0.0.1:${masterMetricsPort}/metrics`)
    expect(loopback.status).toBe(200)
    expect(loopback.body).toContain("# TYPE mcp_node_health gauge")
    expect((await get(`http://127.0.0.1:${masterMetricsPort}/master`)).status).toBe(404)
  }, 60_000)

  it("show the node unhealthy once its agent is killed", async () => {
    await eventually(`mcp_node_health{job="master",node="${NODE}",status="healthy"}`, (v) => v[0] === 1)
    await agent.kill9()
    // 1 s interval, 3 misses, a 1 s probe, and a 1 s scrape.
    await eventually(`mcp_node_health{job="master",node="${NODE}",status="unhealthy"}`, (v) => v[0] === 1)
    await eventually(`mcp_node_health{job="master",node="${NODE}",status="healthy"}`, (v) => v[0] === 0)
    await eventually(`mcp_node_probes_total{job="master",node="${NODE}",result="failed"}`, (v) => (v[0] ?? 0) >= 1)
    await eventually(`up{job="agent"}`, (v) => v[0] === 0)
  }, 60_000)
})
