/**
 * bench/recover: what the agent's Recover adds to recreating lost containers.
 *
 * For each K: K one-component services (cached local image, one route each) are deployed through
 * an in-process agent (HTTPS RPC, real Podman, record-only proxy, memory CA, no DNS), then all
 * their containers are removed through the engine API and `Recover` is timed over the RPC.
 * For comparison the same K recorded container specs are created and started directly through
 * the engine API, one after another, and the per-container times summed. Recover is sequential
 * too: services one after another (each in its actor), components one after another.
 *
 *   node --import tsx bench/recover.ts [K...]      (default: 10 50)
 */
import { NodeContext } from "@effect/platform-node"
import { Effect, Stream } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { ContainerRuntime, LABEL_NODE } from "../packages/agent/src/engine/ContainerRuntime.js"
import { Registry } from "../packages/agent/src/registry/Registry.js"
import { BUSYBOX_IMAGE, startPodmanService } from "../test/support/Podman.js"
import * as InProcessAgent from "./support/InProcessAgent.js"

const KS = process.argv.slice(2).map(Number).filter((k) => Number.isInteger(k) && k > 0)
const sizes = KS.length > 0 ? KS : [10, 50]
const NODE = `bench-recover-${process.pid}`
const cmd = ["sh", "-c", "exec httpd -f -p $PORT -h /"]

const main = (socketPath: string, dir: string) =>
  InProcessAgent.run({ socketPath, dir, node: NODE }, (client) =>
    Effect.gen(function* () {
      const runtime = yield* ContainerRuntime
      const registry = yield* Registry

      const removeAll = Effect.flatMap(runtime.list({ [LABEL_NODE]: NODE }), (cs) => Effect.forEach(cs, (c) => runtime.remove(c.id), { discard: true }))

      /** Deploys K services, removes their containers, times Recover, then times bare create+start of the same specs. */
      const round = (k: number, tag: string) =>
        Effect.gen(function* () {
          const names = Array.from({ length: k }, (_, i) => `rb-${tag}-${i}`)
          yield* Effect.forEach(names, (name) =>
            Stream.runDrain(client.Deploy({ definition: { name, components: [{ name: "web", image: BUSYBOX_IMAGE, cmd, routes: [{ port: 8443, mode: "l7" }] }] }, dryRun: false })),
            { concurrency: 4, discard: true })
          const specs = (yield* registry.allComponents).filter((c) => names.includes(c.service)).map((c) => c.spec)
          if (specs.length !== k) return yield* Effect.dieMessage(`expected ${k} recorded components, found ${specs.length}`)

          yield* removeAll
          const t0 = performance.now()
          const report = yield* client.Recover({ force: false })
          const recoverMs = performance.now() - t0
          const recreated = report.actions.filter((a) => a.action === "recreated").length
          if (recreated !== k) return yield* Effect.dieMessage(`recover recreated ${recreated} of ${k}: ${JSON.stringify(report.actions.filter((a) => a.action !== "recreated"))}`)

          // The same specs, straight to the engine (the recreated ones go first: same host ports).
          yield* removeAll
          let bareMs = 0
          for (const spec of specs) {
            const t1 = performance.now()
            const id = yield* runtime.create({ ...spec, name: `${spec.name}-bare` })
            yield* runtime.start(id)
            bareMs += performance.now() - t1
          }
          yield* removeAll
          yield* Effect.forEach(names, (name) => client.Undeploy({ service: name as never }), { discard: true })
          return { recoverMs, bareMs }
        })

      yield* round(2, "warm") // untimed: connections, JIT and engine caches
      const rows: Array<string> = []
      for (const k of sizes) {
        const { recoverMs, bareMs } = yield* round(k, String(k))
        rows.push(`${String(k).padStart(4)}  ${recoverMs.toFixed(0).padStart(10)}  ${bareMs.toFixed(0).padStart(18)}  ${(recoverMs / bareMs).toFixed(2).padStart(6)}`)
      }
      console.log(`   K  recover_ms  bare_create+start_ms   ratio`)
      for (const r of rows) console.log(r)
    }).pipe(
      Effect.ensuring(Effect.flatMap(ContainerRuntime, (runtime) =>
        Effect.flatMap(runtime.list({ [LABEL_NODE]: NODE }), (cs) => Effect.forEach(cs, (c) => runtime.remove(c.id), { discard: true }))
      ).pipe(Effect.catchAll((e) => Effect.logWarning(`bench cleanup: ${e.message}`))))
    )
  ).pipe(Effect.scoped, Effect.provide(NodeContext.layer))

const podman = await startPodmanService()
const dir = mkdtempSync(join(tmpdir(), "mcp-bench-recover-"))
try {
  await Effect.runPromise(main(podman.socketPath, dir))
} finally {
  await podman.stop()
  rmSync(dir, { recursive: true, force: true })
}
