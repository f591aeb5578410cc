/**
 * bench/deploy-overhead: how much the control plane adds to starting a container.
 *
 * A: Deploy of one cached-image component with one route through the agent RPC (HTTPS, auth,
 *    actor, journaled saga, registry commit), with memory proxy/CA/DNS adapters and real Podman.
 * B: the same container created and started directly through the engine API.
 * Prints the median of N runs of each and the ratio A/B, measured in one run.
 *
 *   node --import tsx bench/deploy-overhead.ts [N=15]
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime } from "../packages/agent/src/engine/ContainerRuntime.js"
import { BUSYBOX_IMAGE, startPodmanService } from "../test/support/Podman.js"
import * as InProcessAgent from "./support/InProcessAgent.js"

const N = Number(process.argv[2] ?? 15)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]

const main = (socketPath: string, dir: string) =>
  InProcessAgent.run({ socketPath, dir, node: "bench" }, (client) =>
    Effect.gen(function* () {
      const runtime = yield* ContainerRuntime
      const viaAgent: Array<number> = []
      const direct: Array<number> = []
      // One untimed round of each first: connections, JIT and engine caches warm up.
      for (let i = -1; i < N; i++) {
        const name = `bench-${i + 1}`
        const definition = { name, components: [{ name: "web", image: BUSYBOX_IMAGE, cmd, routes: [{ port: 8443, mode: "l7" }] }] }
        const t0 = performance.now()
        yield* Stream.runDrain(client.Deploy({ definition, dryRun: false }))
        if (i >= 0) viaAgent.push(performance.now() - t0)
        yield* client.Undeploy({ service: name as never })

        const hostPort = 30000 + i + 1
        const t1 = performance.now()
        const id = yield* runtime.create({
          name: `bench-direct-${i + 1}-${Date.now()}`, image: BUSYBOX_IMAGE, cmd, env: [`PORT=${hostPort}`], volumes: [],
          ports: [{ hostIp: "127.0.0.1", hostPort, containerPort: hostPort, protocol: "tcp" }],
          network: undefined, user: undefined, restart: undefined, labels: { "mcp.bench": "direct" }
        })
        yield* runtime.start(id)
        if (i >= 0) direct.push(performance.now() - t1)
        yield* runtime.remove(id)
      }
      const a = median(viaAgent)
      const b = median(direct)
      console.log(`deploy-overhead (N=${N}, real Podman, memory proxy/CA/DNS adapters)`)
      console.log(`  agent RPC deploy   median ${a.toFixed(1)} ms   (min ${Math.min(...viaAgent).toFixed(1)}, max ${Math.max(...viaAgent).toFixed(1)})`)
      console.log(`  engine create+start median ${b.toFixed(1)} ms   (min ${Math.min(...direct).toFixed(1)}, max ${Math.max(...direct).toFixed(1)})`)
      console.log(`  ratio agent/engine  ${(a / b).toFixed(2)}   (goal <= 1.5)`)
    })
  ).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const podman = await startPodmanService()
try {
  await Effect.runPromise(main(podman.socketPath, mkdtempSync(join(tmpdir(), "mcp-bench-"))))
} finally {
  await podman.stop()
}
