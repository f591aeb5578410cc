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

/** MCP_CRASH_TRIALS overrides the number of trials (default 20); fewer than one proves nothing. */
const TRIALS = Number(process.env["MCP_CRASH_TRIALS"] ?? 20)
if (!Number.isInteger(TRIALS) || TRIALS < 1) {
  throw new Error(`MCP_CRASH_TRIALS=${process.env["MCP_CRASH_TRIALS"]}: the crash test needs at least 1 trial (a whole number); with none it would check nothing`)
}
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
      routes: db.prepare("SELECT listener, hostname, service, host_port AS hostPort FROM routes").all() as Array<{ listener: number; hostname: string; service: string; hostPort: number }>,
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

type Outcome = "committed" | "rolled back"

describe("agent killed with SIGKILL during deploys", () => {
  it(`leaves the service fully deployed or fully rolled back (${TRIALS} trials)`, async () => {
    const outcomes: Array<{ trial: number; delay: number | "after done"; outcome: Outcome }> = []
    /** The version serving before each trial: undefined when the trial starts from nothing. */
    let before: number | undefined
    /** How long a whole deploy took (measured in the trials killed after it): random kills span all of it. */
    let deployMs = 600
    for (let trial = 0; trial < TRIALS; trial++) {
      const agent = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, configPath)
      // Every fifth trial (the first included) is killed only once the deploy has answered: it must
      // have committed, and it times a whole deploy.
      const afterDone = trial % 5 === 0
      const delay = Math.floor(Math.random() * deployMs * 1.2)
      // Start a deploy and kill the agent `delay` ms later, wherever the saga is.
      const started = Date.now()
      const deploy = Effect.runFork(Effect.scoped(Effect.flatMap(client, (c) => Stream.runDrain(c.Deploy({ definition: definition(trial), dryRun: false })))))
      if (afterDone) {
        await Effect.runPromise(Fiber.await(deploy))
        deployMs = Math.max(600, Date.now() - started)
      } else await new Promise((r) => setTimeout(r, delay))
      await agent.kill9()
      const answered = await Effect.runPromise(Fiber.await(deploy))

      const restarted = await LocalFleet.spawnDaemon(LocalFleet.bins.agent, configPath)
      try {
        const r = registry()
        const containers = engine()
        const context = `trial ${trial} (${afterDone ? "killed after the deploy answered" : `kill after ${delay} ms`}, serving v${before ?? "-"} before, deploy ${answered._tag === "Success" ? "succeeded" : "did not succeed"}): ${JSON.stringify({ r, engine: containers })}`
        expect(r.openSagas, `${context}: open sagas`).toBe(0)
        const services = new Map(r.services.map((s) => [s.name, s]))
        for (const p of r.ports) {
          expect(p.sagaId, `${context}: port ${p.port} held by a saga`).toBeNull()
          expect(services.has(p.service), `${context}: port ${p.port} of unknown service ${p.service}`).toBe(true)
        }
        for (const route of r.routes) expect(services.has(route.service), `${context}: route ${route.hostname} of unknown service ${route.service}`).toBe(true)
        const crashy = services.get("crashy")
        for (const c of containers) expect(c.deploy, `${context}: container ${c.name} from another deploy`).toBe(crashy?.deployId)
        let serving: number | undefined
        if (crashy === undefined) {
          expect(containers, `${context}: containers without a service`).toEqual([])
          expect(r.ports, `${context}: ports without a service`).toEqual([])
          expect(r.routes, `${context}: routes without a service`).toEqual([])
          expect(r.components, `${context}: components without a service`).toEqual([])
        } else {
          // Container, registry and (record-only) proxy agree on one running copy and its port.
          expect(containers.map((c) => c.state), `${context}: containers`).toEqual(["running"])
          expect(r.components.map((c) => c.service), `${context}: components`).toEqual(["crashy"])
          const hostPort = JSON.parse(r.components[0]!.spec).ports[0].hostPort as number
          expect(r.ports.map((p) => p.port), `${context}: ports`).toEqual([hostPort])
          expect(r.routes.map((route) => [route.service, route.hostPort]), `${context}: proxy routes`).toEqual([["crashy", hostPort]])
          const body = await fetch(`http://127.0.0.1:${hostPort}/`).then((res) => res.text())
          expect(body.trim(), `${context}: answer`).toMatch(/^v\d+$/)
          serving = Number(body.trim().slice(1))
        }
        // All of the new version, or exactly what served before (nothing, or the previous version).
        const outcome: Outcome | "half" = serving === trial ? "committed" : serving === before ? "rolled back" : "half"
        expect(outcome, `${context}: serving v${serving ?? "-"}`).not.toBe("half")
        // A deploy the agent acknowledged survives the kill.
        if (answered._tag === "Success") expect(outcome, `${context}: an acknowledged deploy was lost`).toBe("committed")
        outcomes.push({ trial, delay: afterDone ? "after done" : delay, outcome: outcome as Outcome })
        before = serving
        // Every other trial starts from nothing; the rest redeploy over the previous version.
        if (trial % 2 === 1 && crashy !== undefined) {
          await Effect.runPromise(Effect.scoped(Effect.flatMap(client, (c) => c.Undeploy({ service: "crashy" as never }))))
          before = undefined
        }
      } finally {
        await restarted.stop()
      }
    }
    console.log(`crash trials: ${JSON.stringify(outcomes)}`)
    expect(outcomes.map((o) => o.trial), "every configured trial ran and was checked").toEqual(Array.from({ length: TRIALS }, (_, i) => i))
    // Trials killed after the deploy answered must commit; the rest are mostly cut off mid-saga.
    if (TRIALS >= 5) expect(new Set(outcomes.map((o) => o.outcome)), "both outcomes were exercised").toEqual(new Set(["committed", "rolled back"]))
  }, 600_000)
})
