/**
 * bench/edge-deploy: what publishing a service through an edge node adds to a deploy.
 *
 * On the edge fleet of the end-to-end test (master, worker with HAProxy and real Podman, edge
 * agent with HAProxy in its own network namespace, PowerDNS for the CNAME lookup), through the
 * master's RPC API:
 *   A: deploy + undeploy of a service with one internal route;
 *   B: the same service with the route public (`hello.example.com`): the cross-node saga adds
 *      the DNS lookup, the worker's address, the edge's certificate and route, and removal.
 * Prints the median of N runs of each and the ratios B/A, measured in one run.
 *
 *   node --import tsx bench/edge-deploy.ts [N=10]
 */
import { Effect, Redacted, Stream } from "effect"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { MasterRpcs, Transport } from "../packages/rpc/src/index.js"
import { startEdgeFleet } from "../test/support/EdgeFleet.js"
import { BUSYBOX_IMAGE } from "../test/support/Podman.js"

const N = Number(process.argv[2] ?? 10)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

const definition = (isPublic: boolean) => ({
  name: "hello",
  node: "w1",
  components: [{
    name: "web",
    image: BUSYBOX_IMAGE,
    cmd: ["sh", "-c", "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p $PORT -h /www"],
    routes: [isPublic ? { port: 8443, mode: "l7", hostname: "hello.example.com", public: true } : { port: 8443, mode: "l7" }]
  }]
})

const dir = mkdtempSync(join(tmpdir(), "mcp-bench-edge-"))
const edgeFleet = await startEdgeFleet(dir, { reconcileInterval: "1m" })
try {
  const timings = await Effect.runPromise(Effect.scoped(Effect.gen(function* () {
    const master = yield* Transport.makeClient(MasterRpcs, {
      url: `https://${edgeFleet.masterAddress}/master`,
      ca: readFileSync(join(edgeFleet.fleet.caDir, "ca.crt"), "utf8"),
      token: Redacted.make(edgeFleet.fleet.operatorToken)
    })
    const rounds = { internal: { deploy: [] as Array<number>, undeploy: [] as Array<number> }, public: { deploy: [] as Array<number>, undeploy: [] as Array<number> } }
    // One untimed round of each first: connections, JIT, the edge's listener and caches warm up.
    for (let i = -1; i < N; i++) {
      for (const kind of ["internal", "public"] as const) {
        const t0 = performance.now()
        yield* Stream.runDrain(master.Deploy({ definition: definition(kind === "public"), dryRun: false }))
        const t1 = performance.now()
        yield* master.Undeploy({ service: "hello" as never })
        const t2 = performance.now()
        if (i >= 0) {
          rounds[kind].deploy.push(t1 - t0)
          rounds[kind].undeploy.push(t2 - t1)
        }
      }
      process.stderr.write(".")
    }
    return rounds
  })))
  process.stderr.write("\n")
  const line = (what: string, a: ReadonlyArray<number>, b: ReadonlyArray<number>) =>
    console.log(`${what.padEnd(9)} internal median ${median(a).toFixed(1)} ms, public median ${median(b).toFixed(1)} ms, ratio ${(median(b) / median(a)).toFixed(2)}, edge adds ${(median(b) - median(a)).toFixed(1)} ms`)
  console.log(`edge-deploy: N=${N}, master + worker + edge agent in its own network namespace, real HAProxy on both, real Podman`)
  line("deploy", timings.internal.deploy, timings.public.deploy)
  line("undeploy", timings.internal.undeploy, timings.public.undeploy)
} finally {
  await edgeFleet.dispose(["hello"])
  rmSync(dir, { recursive: true, force: true })
}
