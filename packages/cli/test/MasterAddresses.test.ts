// The CLI tries each configured master address in order: the real CLI process against two stub
// masters ("a" and "b", HTTPS with the platform CA and a token) and closed ports on 127.0.0.1. It
// moves on only when an address cannot be reached; an answer, an error included, is final.
import { HttpServer } from "@effect/platform"
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors, type Events } from "@mcp/domain"
import { AuthMiddleware, MasterRpcs, Pki, TokenFile, TokenFileAuthenticator, Transport } from "@mcp/rpc"
import { Effect, Exit, Layer, Redacted, Scope, Stream } from "effect"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const bin = fileURLToPath(new URL("../bin/mcp.js", import.meta.url))
const dir = mkdtempSync(join(tmpdir(), "mcp-cli-masters-"))
const caDir = join(dir, "ca")
const tokenFile = join(dir, "tokens.toml")
const operatorTokenFile = join(dir, "operator.token")
const scopes: Array<Scope.CloseableScope> = []
/** Every call a stub answered, as "<stub>:<rpc>". */
const calls: Array<string> = []
const ports: Record<"a" | "b", number> = { a: 0, b: 0 }

const event: Events.FleetEvent = { at: "2026-01-10T12:00:00Z", node: "rift", kind: "deploy", service: "web", message: "deployed web" }

/** Stub "a" answers NodesRemove with NodeNotFound; stub "b" removes anything. */
const stubMaster = (name: "a" | "b") => {
  const record = (rpc: string) => Effect.sync(() => void calls.push(`${name}:${rpc}`))
  const die = (rpc: string) => () => Effect.zipRight(record(rpc), Effect.die(`stub ${name} does not serve ${rpc}`))
  return MasterRpcs.toLayer({
    NodesRemove: ({ node }) => Effect.zipRight(record("NodesRemove"), name === "a" ? Effect.fail(new Errors.NodeNotFound({ node })) : Effect.void),
    Events: () => Stream.fromEffect(Effect.as(record("Events"), event)),
    Deploy: () => Stream.die("not served"),
    Logs: () => Stream.die("not served"),
    EdgeRoutesList: die("EdgeRoutesList"),
    DnsCheck: die("DnsCheck"),
    Undeploy: die("Undeploy"),
    Stop: die("Stop"),
    Start: die("Start"),
    Restart: die("Restart"),
    Ps: die("Ps"),
    Status: die("Status"),
    Sync: die("Sync"),
    NodesList: die("NodesList"),
    NodesAdd: die("NodesAdd"),
    AgentRecover: die("AgentRecover"),
    AgentStatus: die("AgentStatus"),
    ZoneList: die("ZoneList"),
    Tree: die("Tree")
  })
}

const serve = async (name: "a" | "b") => {
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
    Layer.provide(stubMaster(name)),
    Layer.provide(AuthMiddleware.layerServer({ guestMayRead: true }).pipe(Layer.provide(TokenFileAuthenticator.layer(tokenFile).pipe(Layer.provide(NodeFileSystem.layer)))))
  )
  const scope = Effect.runSync(Scope.make())
  scopes.push(scope)
  const context = await Effect.runPromise(Layer.buildWithScope(server, scope))
  const address = (await Effect.runPromise(Effect.provide(HttpServer.HttpServer, context))).address
  ports[name] = address._tag === "TcpAddress" ? address.port : 0
}

/** A port on 127.0.0.1 that nothing listens on: bound by the OS, then released. */
const closedPort = () =>
  new Promise<number>((resolve, reject) => {
    const server = createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

beforeAll(async () => {
  const token = await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(caDir)
      yield* Pki.issueCertificate(caDir, "master", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "server" })
      return yield* TokenFile.createToken(tokenFile, { name: "operator", kind: "human", role: "admin" })
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  writeFileSync(operatorTokenFile, Redacted.value(token), { mode: 0o600 })
  await serve("a")
  await serve("b")
}, 60_000)

afterAll(async () => {
  for (const scope of scopes) await Effect.runPromise(Scope.close(scope, Exit.void))
  rmSync(dir, { recursive: true, force: true })
})

let configs = 0

/** Runs mcp with a config listing `masters` in that order. */
const mcp = (masters: ReadonlyArray<string>, args: ReadonlyArray<string>) => {
  const config = join(dir, `mcp-${++configs}.toml`)
  writeFileSync(
    config,
    [`master = ${JSON.stringify(masters)}`, `ca = ${JSON.stringify(join(caDir, "ca.crt"))}`, `token_file = ${JSON.stringify(operatorTokenFile)}`, ""].join("\n")
  )
  calls.length = 0
  return new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
    execFile(process.execPath, [bin, ...args, "--config", config], (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code), stdout, stderr })
    )
  )
}

describe("master addresses, tried in order", () => {
  it("uses the second address when the first refuses connections", async () => {
    const closed = await closedPort()
    const { code, stdout, stderr } = await mcp([`127.0.0.1:${closed}`, `127.0.0.1:${ports.b}`], ["node", "remove", "rift"])
    expect(stderr).toBe("")
    expect(code).toBe(0)
    expect(stdout.trim()).toBe("removed node rift")
    expect(calls).toEqual(["b:NodesRemove"])
  }, 30_000)

  it("a stream moves on too when the first address refuses", async () => {
    const closed = await closedPort()
    const { code, stdout } = await mcp([`127.0.0.1:${closed}`, `127.0.0.1:${ports.b}`], ["events", "--json"])
    expect(code).toBe(0)
    expect(JSON.parse(stdout)).toEqual(event)
    expect(calls).toEqual(["b:Events"])
  }, 30_000)

  it("an error the first master answered is final: the next address is not tried", async () => {
    const { code, stdout, stderr } = await mcp([`127.0.0.1:${ports.a}`, `127.0.0.1:${ports.b}`], ["node", "remove", "rift"])
    expect(code).toBe(1)
    expect(stdout).toBe("")
    expect(stderr.trim()).toBe(`mcp: ${new Errors.NodeNotFound({ node: "rift" }).message}`)
    expect(calls).toEqual(["a:NodesRemove"])
  }, 30_000)

  it("when no address answers, names each one and why, and exits 1", async () => {
    const [first, second] = [await closedPort(), await closedPort()]
    const { code, stderr } = await mcp([`127.0.0.1:${first}`, `127.0.0.1:${second}`], ["node", "remove", "rift"])
    expect(code).toBe(1)
    expect(stderr).toContain(`mcp: cannot reach the master at 127.0.0.1:${first} (connect ECONNREFUSED 127.0.0.1:${first}), 127.0.0.1:${second} (connect ECONNREFUSED 127.0.0.1:${second})`)
    expect(calls).toEqual([])
  }, 30_000)
})
