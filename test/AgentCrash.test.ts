/**
 * kill -9 the agent at random moments during real deploys, restart it, and check that nothing
 * is half-done: no orphan containers, no leaked ports, no open saga, and the service either
 * fully deployed (and answering) or fully rolled back.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { AgentRpcs, Transport } from "@mcp/rpc"
import Database from "better-sqlite3"
import { Effect, Fiber, Redacted, Stream } from "effect"
import { spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as LocalFleet from "./support/LocalFleet.js"
import { BUSYBOX_IMAGE, containersConfPath, type PodmanService, startPodmanService } from "./support/Podman.js"

const TRIALS = Number(process.env["MCP_CRASH_TRIALS"] ?? 20)
const dir = mkdtempSync(join(tmpdir(), "mcp-crash-"))
let podman: PodmanService
let fleet: LocalFleet.Fleet
let port = 0
let configPath = ""

const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

const engine = () =>
  spawnSync("podman", ["ps", "-a", "--filter", "label=mcp.node=crash", "--format", "{{.Names}} {{.State}} {{.Labels}}"], { encoding: "utf8", env: podmanEnv() })
    .stdout.trim().split("\n").filter((l) => l.length > 0)
    .map((l) => {
      const [name, state] = l.split(" ")
      const deploy = /mcp\.deploy:([0-9a-f-]+)/.exec(l)?.[1]
      // Podman 4.3 prints "Up" where newer engines print "running".
      return { name: name!, state: state === "Up" ? "running" : state!, deploy }
    })

const registry = () => {
  const db = new Database(join(fleet.dir, "crash", "registry.db"), { readonly: true })
  try {
    return {
      services: db.prepare("SELECT name, deploy_id AS deployId, active FROM services").all() as Array<{ name: string; deployId: string; active: number }>,
      components: db.prepare("SELECT service, name, spec FROM components").all() as Array<{ service: string; name: string; spec: string }>,
      ports: db.prepare("SELECT port, service, saga_id AS sagaId FROM ports").all() as Array<{ port: number; service: string; sagaId: string | null }>,
      openSagas: (db.prepare("SELECT COUNT(*) AS n FROM sagas WHERE state = 'running'").get() as { n: number }).n
    }
  } finally {
    db.close()
  }
}

const client = Effect.flatMap(
  Effect.sync(() => readFileSync(join(fleet.caDir, "ca.crt"), "utf8")),
  (ca) => Transport.makeClient(AgentRpcs, { url: `https://127.0.0.1:${port}/agent`, ca, token: Redacted.make(fleet.operatorToken) })
)

const definition = (version: number) => ({
  name: "crashy",
  components: [{
    name: "web",
    image: BUSYBOX_IMAGE,
    env: [`VERSION=${version}`],
    cmd: ["sh", "-c", "mkdir -p /www && echo v$VERSION > /www/index.html && exec httpd -f -p $PORT -h /www"],
    routes: [{ port: 8443, mode: "l7" }],
    health: { kind: "http", path: "/", interval: "500ms" }
  }]
})

beforeAll(async () => {
  podman = await startPodmanService()
  fleet = await LocalFleet.prepare(join(dir, "fleet"))
  port = await LocalFleet.freePort()
  configPath = LocalFleet.writeAgentConfig(fleet, { node: "crash", port, socket: podman.socketPath })
}, 120_000)

afterAll(async () => {
  for (const c of engine()) spawnSync("podman", ["rm", "-f", c.name], { env: podmanEnv() })
  await podman?.stop()
})

describe("agent killed with SIGKILL during deploys", () => {
  it(`leaves the service fully deployed or fully rolled back (${TRIALS} trials)`, async () => {
    const outcomes = { deployed: 0, rolledBack: 0 }
    for (let trial = 0; trial < TRIALS; trial++) {
      const agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, configPath)
      const delay = Math.floor(Math.random() * 600)
      // Start a deploy and kill the agent `delay` ms later, wherever the saga is.
      const deploy = Effect.runFork(Effect.scoped(Effect.flatMap(client, (c) => Stream.runDrain(c.Deploy({ definition: definition(trial), dryRun: false })))))
      await new Promise((r) => setTimeout(r, delay))
      await agent.kill9()
      await Effect.runPromise(Fiber.await(deploy))

      const restarted = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, configPath)
      try {
        const r = registry()
        const context = `trial ${trial} (kill after ${delay} ms): ${JSON.stringify({ r, engine: engine() })}`
        expect(r.openSagas, context).toBe(0)
        const services = new Map(r.services.map((s) => [s.name, s]))
        for (const p of r.ports) {
          expect(p.sagaId, context).toBeNull()
          expect(services.has(p.service), context).toBe(true)
        }
        const containers = engine()
        for (const c of containers) expect(c.deploy, context).toBe(services.get("crashy")?.deployId)
        const crashy = services.get("crashy")
        if (crashy === undefined) {
          expect(containers, context).toEqual([])
          expect(r.ports, context).toEqual([])
          outcomes.rolledBack++
        } else {
          expect(containers.map((c) => c.state), context).toEqual(["running"])
          const hostPort = JSON.parse(r.components[0]!.spec).ports[0].hostPort as number
          const body = await fetch(`http://127.0.0.1:${hostPort}/`).then((res) => res.text())
          expect(body.trim(), context).toMatch(/^v\d+$/)
          outcomes.deployed++
        }
        // Every other trial starts from nothing; the rest redeploy over the previous version.
        if (trial % 2 === 1 && crashy !== undefined) {
          await Effect.runPromise(Effect.scoped(Effect.flatMap(client, (c) => c.Undeploy({ service: "crashy" as never }))))
        }
      } finally {
        await restarted.stop()
      }
    }
    console.log(`crash trials: ${JSON.stringify(outcomes)}`)
    expect(outcomes.deployed + outcomes.rolledBack).toBe(TRIALS)
  }, 600_000)
})
