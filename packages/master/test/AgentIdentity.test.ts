/**
 * The master talks to node N only where the certificate names N: AgentClients against a real
 * HTTPS server whose certificate the platform CA signed for another node gets NodeUnreachable
 * saying so, and the server never sees a request (so never the master's system token); with a
 * certificate naming the node, the same call reaches the server, token and all.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Pki } from "@mcp/rpc"
import { Effect, Layer, Redacted } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { AgentClients, AgentClientSettings } from "../src/fleet/AgentClients.js"

const dir = mkdtempSync(join(tmpdir(), "mcp-agent-identity-"))
const caDir = join(dir, "ca")
const servers: Array<https.Server> = []
/** Request bodies each server received, by the certificate it presents (the RPC's headers, token included, travel in them). */
const seen: Record<string, Array<string>> = {}
const ports: Record<string, number> = {}

const serve = (certName: string) =>
  new Promise<number>((resolve) => {
    seen[certName] = []
    const server = https.createServer(
      { cert: readFileSync(join(caDir, `${certName}.crt`)), key: readFileSync(join(caDir, `${certName}.key`)), minVersion: "TLSv1.3" },
      (req, res) => {
        let body = ""
        req.on("data", (d: Buffer) => (body += d.toString()))
        req.on("end", () => {
          seen[certName]!.push(body)
          res.writeHead(503).end("not an agent")
        })
      }
    )
    servers.push(server)
    server.listen(0, "127.0.0.1", () => resolve((server.address() as AddressInfo).port))
  })

beforeAll(async () => {
  await Effect.runPromise(
    Effect.gen(function* () {
      yield* Pki.initCa(caDir)
      // Both valid for 127.0.0.1 and signed by the same CA: only the node name differs.
      yield* Pki.issueCertificate(caDir, "w1", { ips: ["127.0.0.1"], dns: ["localhost"], usage: "both" })
      yield* Pki.issueCertificate(caDir, "w2", { ips: ["127.0.0.1"], dns: ["localhost", "w2.fleet.test"], usage: "both" })
    }).pipe(Effect.provide(NodeFileSystem.layer))
  )
  ports.w1 = await serve("w1")
  ports.w2 = await serve("w2")
})

afterAll(() => {
  for (const s of servers) s.close()
  rmSync(dir, { recursive: true, force: true })
})

const agents = () =>
  AgentClients.Default.pipe(
    Layer.provide(Layer.succeed(AgentClientSettings, { ca: readFileSync(join(caDir, "ca.crt"), "utf8"), token: Redacted.make("master-secret"), clientCert: undefined }))
  )

describe("AgentClients: the agent's certificate must name the node", () => {
  it.live("a certificate for another node: NodeUnreachable naming both, and nothing is sent", () =>
    Effect.gen(function* () {
      const clients = yield* AgentClients
      const address = `127.0.0.1:${ports.w2}`
      const error = yield* Effect.flip(clients.call("w1", [address], (agent) => agent.Health()))
      expect(error).toBeInstanceOf(Errors.NodeUnreachable)
      const unreachable = error as Errors.NodeUnreachable
      expect(unreachable.node).toBe("w1")
      expect(unreachable.reason).toContain(`${address}: the certificate at 127.0.0.1 names w2, localhost, w2.fleet.test, not node w1`)
      expect(unreachable.reason).toContain("mcp ca issue w1")
      expect(seen.w2).toEqual([])
    }).pipe(Effect.provide(agents())))

  it.live("the next address whose certificate names the node is the one called", () =>
    Effect.gen(function* () {
      const clients = yield* AgentClients
      // The fake agent's 503 is no RPC answer: the client may retry, so look only at what arrived.
      yield* Effect.exit(Effect.timeout(clients.call("w1", [`127.0.0.1:${ports.w2}`, `127.0.0.1:${ports.w1}`], (agent) => agent.Health()), "1 second"))
      expect(seen.w1?.length).toBeGreaterThan(0)
      expect(seen.w1!.every((body) => body.includes("Bearer master-secret"))).toBe(true)
      expect(seen.w2).toEqual([])
    }).pipe(Effect.provide(agents())))

  it.live("the same address asked for as the node its certificate names is reached", () =>
    Effect.gen(function* () {
      const clients = yield* AgentClients
      yield* Effect.exit(Effect.timeout(Effect.flatMap(clients.client("w2", `127.0.0.1:${ports.w2}`), (agent) => agent.Health()), "1 second"))
      expect(seen.w2?.length).toBeGreaterThan(0)
      expect(seen.w2!.every((body) => body.includes("Bearer master-secret"))).toBe(true)
    }).pipe(Effect.provide(agents())))
})
