// The real ContainerRuntime against Podman 4.3's Docker-compatible API (started by the harness):
// the shared contract, plus what only a real engine can show (published ports, socket discovery).
import { afterAll, assert, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Schedule } from "effect"
import Docker from "dockerode"
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import { tmpdir } from "node:os"
import * as path from "node:path"
import {
  ContainerRuntime,
  DEFAULT_HARDENING,
  type Hardening,
  MAPPED_USERNS
} from "../packages/agent/src/engine/ContainerRuntime.js"
import * as DockerRuntime from "../packages/agent/src/engine/DockerRuntime.js"
import {
  freePort,
  runtimeContract,
  scopedContainer,
  testSpec
} from "../packages/agent/test/ContainerRuntimeContract.js"
import { BUSYBOX_IMAGE, type PodmanService, startPodmanService } from "./support/Podman.js"

let podman: PodmanService | undefined

beforeAll(async () => {
  podman = await startPodmanService()
}, 120_000)

afterAll(async () => {
  await podman?.stop()
})

const socketPath = (): string => {
  if (podman === undefined) throw new Error("podman service not started")
  return podman.socketPath
}

// Built lazily: the socket exists only once beforeAll has run.
const podmanLayer = Layer.unwrapEffect(Effect.sync(() => DockerRuntime.layerSocket(socketPath())))

// `.invalid` never resolves, so the pull fails at once (see the measurements below).
runtimeContract("Podman via dockerode", podmanLayer, {
  image: BUSYBOX_IMAGE,
  missingImage: "registry.invalid/mcp/missing:v0"
})

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const mid = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2
}

const httpGet = (url: string): Effect.Effect<{ status: number; body: string }, Error> =>
  Effect.async((resume) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      let body = ""
      res.on("data", (b: Buffer) => (body += b.toString()))
      res.on("end", () => resume(Effect.succeed({ status: res.statusCode ?? 0, body })))
    })
    req.on("timeout", () => req.destroy(new Error("timeout")))
    req.on("error", (e) => resume(Effect.fail(e)))
  })

describe("DockerRuntime on Podman", () => {
  it.scopedLive("a busybox httpd container serves HTTP on its published 127.0.0.1 host port", () =>
    Effect.gen(function*() {
      const rt = yield* ContainerRuntime
      const hostPort = yield* freePort
      const spec = testSpec(BUSYBOX_IMAGE, {
        cmd: ["httpd", "-f", "-p", "8080", "-h", "/www"],
        ports: [{ hostIp: "127.0.0.1", hostPort, containerPort: 8080, protocol: "tcp" }],
        restart: "unless-stopped",
        labels: { "mcp.test": "httpd" }
      })
      const id = yield* scopedContainer(spec)
      yield* rt.start(id)
      const res = yield* httpGet(`http://127.0.0.1:${hostPort}/index.html`).pipe(
        Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(50)))
      )
      expect(res.status).toBe(200)
      expect(res.body).toContain("mcp-busybox")
      const info = yield* rt.inspect(id)
      expect(info.ports).toEqual(spec.ports)
    }).pipe(Effect.provide(podmanLayer)))

  it.live("findSocket with nothing listening reports every path it tried and why", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(path.join(tmpdir(), "mcp-find-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const stale = path.join(dir, "stale.sock")
      writeFileSync(stale, "") // a plain file where a socket should be
      const error = yield* Effect.flip(DockerRuntime.findSocket({
        configured: path.join(dir, "configured.sock"),
        env: { DOCKER_HOST: "tcp://127.0.0.1:2375", XDG_RUNTIME_DIR: dir },
        wellKnown: [stale, path.join(dir, "docker.sock")]
      }))
      expect(error._tag).toBe("RuntimeError")
      expect(error.retryable).toBe(true)
      expect(error.reason).toContain(`${path.join(dir, "configured.sock")} (configured): no such socket`)
      expect(error.reason).toContain("DOCKER_HOST: skipped, tcp://127.0.0.1:2375 is not a unix:// socket")
      expect(error.reason).toContain(`${path.join(dir, "podman", "podman.sock")} (XDG_RUNTIME_DIR): no such socket`)
      expect(error.reason).toContain(`${stale} (well-known): socket exists but nothing is listening`)
      expect(error.reason).toContain(`${path.join(dir, "docker.sock")} (well-known): no such socket`)
      expect(error.reason).toContain("podman system service --time=0 unix:///run/podman/podman.sock")
    }).pipe(Effect.scoped))

  it.live("the layer waits for an engine that starts after it, and gives up after startWait naming what it tried", () =>
    Effect.gen(function*() {
      const dir = mkdtempSync(path.join(tmpdir(), "mcp-wait-"))
      yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
      const sock = path.join(dir, "podman.sock")
      // Nothing there for good: the start fails after the wait, with the paths and the fix.
      const started = Date.now()
      const error = yield* Effect.flip(Effect.provide(ContainerRuntime, DockerRuntime.layer({ configured: sock, env: {}, wellKnown: [], startWait: "1500 millis" })))
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400)
      expect(error.reason).toContain(`${sock} (configured): no such socket`)
      // An engine that comes up a second after the agent started looking: the layer takes it.
      const late = Effect.promise(() => startPodmanService({ dir }))
      const service = yield* Effect.acquireRelease(Effect.delay(late, "1 second"), (p) => Effect.promise(() => p.stop())).pipe(Effect.fork)
      const rt = yield* Effect.provide(ContainerRuntime, DockerRuntime.layer({ configured: sock, env: {}, wellKnown: [] }))
      expect(rt.describe).toContain(`at unix://${sock}, found via configured`)
      yield* service.await
    }).pipe(Effect.scoped))

  it.live("findSocket skips dead candidates and describes the engine that answers", () =>
    Effect.gen(function*() {
      const found = yield* DockerRuntime.findSocket({
        configured: "/nonexistent/mcp/engine.sock",
        env: { DOCKER_HOST: `unix://${socketPath()}` },
        wellKnown: []
      })
      expect(found).toMatchObject({ socketPath: socketPath(), source: "DOCKER_HOST", engine: "Podman", apiVersion: "1.41" })
      expect(found.describe).toContain(`Podman ${found.version} (Docker API 1.41) at unix://${socketPath()}`)

      // The layer does the same and describes itself.
      const rt = yield* Effect.provide(
        ContainerRuntime,
        DockerRuntime.layer({ env: { DOCKER_HOST: `unix://${socketPath()}` }, wellKnown: [] })
      )
      expect(rt.describe).toBe(found.describe)
    }))

  it.scopedLive("measure: create + start of a busybox container, and pulls of missing images", () =>
    Effect.gen(function*() {
      const rt = yield* ContainerRuntime
      const times: Array<number> = []
      for (let i = 0; i < 10; i++) {
        const spec = testSpec(BUSYBOX_IMAGE, { labels: { "mcp.test": "measure" } })
        const t0 = performance.now()
        const id = yield* scopedContainer(spec)
        yield* rt.start(id)
        times.push(performance.now() - t0)
      }
      const pulls: Array<string> = []
      for (const image of ["registry.invalid/mcp/missing:v0", "nosuchimage-mcp:latest", "localhost/mcp-missing:v0"]) {
        const t0 = performance.now()
        const error = yield* Effect.flip(rt.ensureImage(image))
        const ms = Math.round(performance.now() - t0)
        expect(error._tag).toBe("ImageNotFound")
        pulls.push(`  ${image}: ${error._tag} after ${ms} ms: ${error.message}`)
      }
      console.info(
        [
          `create+start (ms): median ${median(times).toFixed(0)}, min ${Math.min(...times).toFixed(0)}, max ${Math.max(...times).toFixed(0)}`,
          `  all: ${times.map((t) => t.toFixed(0)).join(", ")}`,
          "ensureImage of missing images:",
          ...pulls
        ].join("\n")
      )
    }).pipe(Effect.provide(podmanLayer)))

  it.effect("containerCreateOptions builds the engine request from a spec", () =>
    Effect.sync(() => {
      const options = DockerRuntime.containerCreateOptions(testSpec(BUSYBOX_IMAGE, {
        name: "mcp-test-spec",
        cmd: ["httpd", "-f"],
        env: ["A=1"],
        volumes: ["/srv/data:/data:ro"],
        ports: [
          { hostIp: "127.0.0.1", hostPort: 18080, containerPort: 8080, protocol: "tcp" },
          { hostIp: "::1", hostPort: 18080, containerPort: 8080, protocol: "tcp" },
          { hostIp: "127.0.0.1", hostPort: 5353, containerPort: 53, protocol: "udp" }
        ],
        user: "1000:1000",
        restart: "always",
        labels: { "mcp.service": "web" }
      }))
      expect(options).toEqual({
        name: "mcp-test-spec",
        Image: BUSYBOX_IMAGE,
        Cmd: ["httpd", "-f"],
        Env: ["A=1"],
        Labels: { "mcp.service": "web" },
        ExposedPorts: { "8080/tcp": {}, "53/udp": {} },
        User: "1000:1000",
        HostConfig: {
          PortBindings: {
            "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: "18080" }, { HostIp: "::1", HostPort: "18080" }],
            "53/udp": [{ HostIp: "127.0.0.1", HostPort: "5353" }]
          },
          Binds: ["/srv/data:/data:ro"],
          NetworkMode: "bridge",
          RestartPolicy: { Name: "always" },
          SecurityOpt: ["no-new-privileges"],
          CapDrop: ["ALL"],
          CapAdd: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "KILL"],
          UsernsMode: "auto:uidmapping=0:1879048192:65536,gidmapping=0:1879048192:65536,size=65536"
        }
      })
      // No ports, no network: the engine's default network; only the hardening is sent.
      const bare = DockerRuntime.containerCreateOptions(testSpec(BUSYBOX_IMAGE, { cmd: undefined }), {
        capabilities: ["NET_BIND_SERVICE"],
        userns: "host"
      })
      expect(bare.HostConfig).toEqual({ SecurityOpt: ["no-new-privileges"], CapDrop: ["ALL"], CapAdd: ["NET_BIND_SERVICE"] })
      expect("Cmd" in bare || "User" in bare || "ExposedPorts" in bare).toBe(false)
    }))
})

/** The container's main process as the node sees it: /proc/<host pid>/status and uid_map. */
const hostView = (id: string) =>
  Effect.gen(function*() {
    const docker = new Docker({ socketPath: socketPath() })
    const info = yield* Effect.promise(() => docker.getContainer(id).inspect())
    const pid = info.State.Pid
    const status = readFileSync(`/proc/${pid}/status`, "utf8")
    const line = (key: string) => status.split("\n").find((l) => l.startsWith(`${key}:`))?.split(/\s+/).slice(1) ?? []
    return {
      uids: line("Uid").map(Number),
      noNewPrivs: line("NoNewPrivs")[0],
      capEff: BigInt(`0x${line("CapEff")[0] ?? "0"}`),
      uidMap: readFileSync(`/proc/${pid}/uid_map`, "utf8").trim().split(/\s+/).map(Number)
    }
  })

/** Capability bit numbers (linux/capability.h) of DEFAULT_CAPABILITIES. */
const CAP_BITS: Readonly<Record<string, number>> = { CHOWN: 0, DAC_OVERRIDE: 1, FOWNER: 3, KILL: 5, SETGID: 6, SETUID: 7, NET_BIND_SERVICE: 10 }

describe("hardening on Podman", () => {
  it.scopedLive("root in a hardened container is an unprivileged uid on the node, with no-new-privileges and 7 capabilities", () =>
    Effect.gen(function*() {
      const rt = yield* ContainerRuntime
      const id = yield* scopedContainer(testSpec(BUSYBOX_IMAGE, { labels: { "mcp.test": "hardening" } }))
      yield* rt.start(id)
      const info = yield* rt.inspect(id)
      expect(info.security).toMatchObject({ noNewPrivileges: true, userns: "private" })
      expect(info.security?.capDrop).toContain("NET_RAW")

      // Inside, the process is uid 0 ...
      const inside = yield* rt.exec(id, ["cat", "/proc/self/status"])
      expect(inside.output).toMatch(/^Uid:\s+0\s+0\s+0\s+0$/m)
      // ... and on the node it is the mapped range's first uid, not root.
      const host = yield* hostView(id)
      expect(host.uids).toEqual([MAPPED_USERNS.hostId, MAPPED_USERNS.hostId, MAPPED_USERNS.hostId, MAPPED_USERNS.hostId])
      expect(host.uidMap).toEqual([0, MAPPED_USERNS.hostId, MAPPED_USERNS.size])
      expect(host.noNewPrivs).toBe("1")
      const expected = DEFAULT_HARDENING.capabilities.reduce((bits, cap) => bits | (1n << BigInt(CAP_BITS[cap] ?? 63)), 0n)
      expect(host.capEff.toString(16)).toBe(expected.toString(16))
    }).pipe(Effect.provide(podmanLayer)))

  it.scopedLive("userns = host keeps the hardening but runs as root on the node (the opt-out the config allows)", () =>
    Effect.gen(function*() {
      const hostLayer = DockerRuntime.layerSocket(socketPath(), undefined, { ...DEFAULT_HARDENING, userns: "host" })
      const rt = yield* Effect.provide(ContainerRuntime, hostLayer)
      const id = yield* Effect.provide(scopedContainer(testSpec(BUSYBOX_IMAGE)), hostLayer)
      yield* rt.start(id)
      expect((yield* rt.inspect(id)).security).toMatchObject({ noNewPrivileges: true, userns: "host" })
      const host = yield* hostView(id)
      expect(host.uids).toEqual([0, 0, 0, 0])
      expect(host.noNewPrivs).toBe("1")
    }))

  // userns=auto needs "containers" ranges in /etc/subuid and /etc/subgid. This test reads the
  // node's files and checks whichever outcome they imply: a refusal naming the fix, or a container.
  it.scopedLive("userns = auto: refused with the fix when /etc/subuid has no containers range, else a private namespace", () =>
    Effect.gen(function*() {
      const hasRange = (file: string) =>
        existsSync(file) && readFileSync(file, "utf8").split("\n").some((l) => l.startsWith("containers:"))
      const configured = hasRange("/etc/subuid") && hasRange("/etc/subgid")
      const auto: Hardening = { ...DEFAULT_HARDENING, userns: "auto" }
      const autoLayer = DockerRuntime.layerSocket(socketPath(), undefined, auto)
      const rt = yield* Effect.provide(ContainerRuntime, autoLayer)
      const spec = testSpec(BUSYBOX_IMAGE)
      if (!configured) {
        const error = yield* Effect.flip(rt.create(spec))
        assert(error._tag === "RuntimeError", `create under userns=auto: ${error._tag}`)
        expect(error.retryable).toBe(false)
        expect(error.reason).toContain('user namespace mode "auto"')
        expect(error.reason).toContain("containers:2147483647:2147483648")
        expect((yield* Effect.flip(rt.inspect(spec.name)))._tag).toBe("ContainerNotFound")
        console.info(`userns=auto refused here (no containers range in /etc/subuid): ${error.message}`)
      } else {
        const id = yield* Effect.provide(scopedContainer(spec), autoLayer)
        yield* rt.start(id)
        const host = yield* hostView(id)
        expect(host.uids[0]).not.toBe(0)
      }
    }))

  it.scopedLive("a published port still serves under the mapped user namespace; remove of a running one succeeds", () =>
    Effect.gen(function*() {
      const rt = yield* ContainerRuntime
      for (let i = 0; i < 5; i++) {
        const hostPort = yield* freePort
        const spec = testSpec(BUSYBOX_IMAGE, {
          cmd: ["httpd", "-f", "-p", "80", "-h", "/www"], // below 1024: needs NET_BIND_SERVICE
          ports: [{ hostIp: "127.0.0.1", hostPort, containerPort: 80, protocol: "tcp" }]
        })
        const id = yield* scopedContainer(spec) // removed by the finalizer too if an assertion fails
        yield* rt.start(id)
        const res = yield* httpGet(`http://127.0.0.1:${hostPort}/index.html`).pipe(
          Effect.retry(Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(50)))
        )
        expect(res.status).toBe(200)
        // Podman 4.3 may answer EBUSY on the shm mount here yet remove the container.
        yield* rt.remove(id)
        expect((yield* Effect.flip(rt.inspect(id)))._tag).toBe("ContainerNotFound")
      }
    }).pipe(Effect.provide(podmanLayer)))
})
