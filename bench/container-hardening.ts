/**
 * bench/container-hardening: what the default hardening (no-new-privileges, 7 capabilities, the
 * "mapped" user namespace) costs when a container is created and started.
 *
 * Floor: the same busybox container created and started through the engine API with no security
 * settings at all (dockerode, the request the agent sent before the hardening).
 * A: through the agent's DockerRuntime with userns = "host" (no-new-privileges and capabilities only).
 * B: through the agent's DockerRuntime with the defaults (userns = "mapped").
 * Rounds are interleaved so that drift on a noisy machine hits all three alike; prints the median
 * of N of each and the ratios to the floor, measured in one run. Every container is removed.
 *
 *   node --import tsx bench/container-hardening.ts [N=15]
 */
import Docker from "dockerode"
import { Effect } from "effect"
import { ContainerRuntime, DEFAULT_HARDENING, type Hardening } from "../packages/agent/src/engine/ContainerRuntime.js"
import * as DockerRuntime from "../packages/agent/src/engine/DockerRuntime.js"
import { BUSYBOX_IMAGE, startPodmanService } from "../test/support/Podman.js"

const N = Number(process.argv[2] ?? 15)
const median = (xs: ReadonlyArray<number>) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!
const cmd = ["sh", "-c", "exec httpd -f -p 8080 -h /"]

const viaRuntime = (socketPath: string, hardening: Hardening, name: string) =>
  Effect.gen(function* () {
    const runtime = yield* ContainerRuntime
    const t0 = performance.now()
    const id = yield* runtime.create({
      name, image: BUSYBOX_IMAGE, cmd, env: [], volumes: [], ports: [],
      network: undefined, user: undefined, restart: undefined, labels: { "mcp.bench": "hardening" }
    })
    yield* runtime.start(id)
    const elapsed = performance.now() - t0
    yield* runtime.remove(id)
    return elapsed
  }).pipe(Effect.provide(DockerRuntime.layerSocket(socketPath, "bench", hardening)), Effect.orDie)

const floor = async (docker: Docker, name: string) => {
  const t0 = performance.now()
  const container = await docker.createContainer({ name, Image: BUSYBOX_IMAGE, Cmd: cmd, Labels: { "mcp.bench": "hardening" } })
  await container.start()
  const elapsed = performance.now() - t0
  await container.remove({ force: true })
  return elapsed
}

const podman = await startPodmanService()
try {
  const docker = new Docker({ socketPath: podman.socketPath })
  const samples = { floor: [] as Array<number>, capsOnly: [] as Array<number>, mapped: [] as Array<number> }
  // One untimed round first: connections, JIT and engine caches warm up.
  for (let i = -1; i < N; i++) {
    const f = await floor(docker, `bench-floor-${i + 1}`)
    const a = await Effect.runPromise(viaRuntime(podman.socketPath, { ...DEFAULT_HARDENING, userns: "host" }, `bench-caps-${i + 1}`))
    const b = await Effect.runPromise(viaRuntime(podman.socketPath, DEFAULT_HARDENING, `bench-mapped-${i + 1}`))
    if (i >= 0) {
      samples.floor.push(f)
      samples.capsOnly.push(a)
      samples.mapped.push(b)
    }
  }
  const base = median(samples.floor)
  const line = (label: string, xs: ReadonlyArray<number>) =>
    console.log(`  ${label.padEnd(46)} median ${median(xs).toFixed(1)} ms   ratio ${(median(xs) / base).toFixed(2)}`)
  console.log(`container-hardening (N=${N}, real Podman, create+start of one busybox container)`)
  line("floor: engine API, no security settings", samples.floor)
  line("no-new-privileges + 7 capabilities, no userns", samples.capsOnly)
  line("defaults: + userns = \"mapped\"", samples.mapped)
} finally {
  await podman.stop()
}
