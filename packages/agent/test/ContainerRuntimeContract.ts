/**
 * The ContainerRuntime contract: one suite every adapter must pass (memory layer here, the real
 * engine in the top-level integration tests). Containers are `mcp-test-<random>`, removed in finalizers.
 */
import { assert, expect, layer } from "@effect/vitest"
import { Effect, Either, type Layer, Schedule, type Scope, Stream } from "effect"
import { randomBytes } from "node:crypto"
import * as net from "node:net"
import {
  ContainerRuntime,
  type ContainerSpec,
  DEFAULT_CAPABILITIES,
  type ExecResult,
  keepsCapability,
  type LogLine
} from "../src/engine/ContainerRuntime.js"

export interface ContractFixture {
  /** An image present on the engine with busybox's sh, echo, sleep. */
  readonly image: string
  /** An image the engine does not have and cannot pull. */
  readonly missingImage: string
}

/** The contract container's command: prints one line per stream, then waits; exits on TERM. */
export const CONTRACT_CMD: ReadonlyArray<string> = [
  "sh",
  "-c",
  "trap 'exit 0' TERM; echo contract-out; echo contract-err >&2; sleep 300 & wait"
]
export const CONTRACT_LOG: ReadonlyArray<LogLine> = [
  { stream: "stdout", line: "contract-out" },
  { stream: "stderr", line: "contract-err" }
]
export const CONTRACT_EXEC: ReadonlyArray<string> = ["sh", "-c", "echo exec-out; echo exec-err >&2; exit 3"]
export const CONTRACT_EXEC_RESULT: ExecResult = { exitCode: 3, output: "exec-out\nexec-err\n" }

export const testName = (): string => `mcp-test-${randomBytes(5).toString("hex")}`

export const testSpec = (image: string, overrides: Partial<ContainerSpec> = {}): ContainerSpec => ({
  name: testName(),
  image,
  cmd: CONTRACT_CMD,
  env: [],
  volumes: [],
  ports: [],
  network: undefined,
  user: undefined,
  restart: undefined,
  labels: {},
  ...overrides
})

/** A free TCP port on 127.0.0.1 (closed again before it is returned). */
export const freePort: Effect.Effect<number> = Effect.async<number>((resume) => {
  const server = net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const address = server.address()
    const port = typeof address === "object" && address !== null ? address.port : 0
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Creates a container that is removed (forcibly) when the scope closes; a failed removal fails the test. */
export const scopedContainer = (
  spec: ContainerSpec
): Effect.Effect<string, unknown, ContainerRuntime | Scope.Scope> =>
  Effect.flatMap(ContainerRuntime, (rt) => Effect.acquireRelease(rt.create(spec), () => Effect.orDie(rt.remove(spec.name))))

/** Retries an effect until it succeeds (engines start processes asynchronously). */
const eventually = <A, E, R>(self: Effect.Effect<A, E, R>) =>
  Effect.retry(self, Schedule.intersect(Schedule.spaced("100 millis"), Schedule.recurs(50)))

const collectLogs = (id: string, options: { readonly follow: boolean; readonly tail: number }) =>
  Effect.flatMap(ContainerRuntime, (rt) =>
    Stream.runCollect(rt.logs(id, options)).pipe(Effect.map((chunk) => Array.from(chunk))))

export const runtimeContract = (
  name: string,
  runtimeLayer: Layer.Layer<ContainerRuntime, unknown>,
  fixture: ContractFixture
): void =>
  layer(runtimeLayer, { excludeTestServices: true, timeout: "60 seconds" })(`ContainerRuntime contract: ${name}`, (it) => {
    it.scoped("create + start: inspect shows it running with its name, image, labels and ports", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const hostPort = yield* freePort
        const run = testName()
        const spec = testSpec(fixture.image, {
          labels: { "mcp.test": run, "mcp.service": "contract" },
          ports: [{ hostIp: "127.0.0.1", hostPort, containerPort: 8080, protocol: "tcp" }],
          env: ["CONTRACT=1"]
        })
        const id = yield* scopedContainer(spec)
        expect(id).toMatch(/^[0-9a-f]{12,}$/)

        const created = yield* rt.inspect(spec.name)
        expect(created.state).toBe("created")
        expect(created.startedAt).toBeUndefined()

        yield* rt.start(id)
        yield* rt.start(id) // already running: still fine
        const info = yield* rt.inspect(id)
        expect(info.id).toBe(id)
        expect(info.name).toBe(spec.name)
        expect(info.image).toBe(fixture.image)
        expect(info.state).toBe("running")
        expect(info.labels).toMatchObject(spec.labels)
        expect(info.ports).toEqual(spec.ports)
        expect(info.restartCount).toBe(0)
        assert(info.startedAt !== undefined && !Number.isNaN(Date.parse(info.startedAt)), `startedAt: ${info.startedAt}`)
        // The same container by name.
        expect((yield* rt.inspect(spec.name)).id).toBe(id)
      }))

    it.scoped("hardening: created containers carry no-new-privileges, only the default capabilities, a user namespace", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        // Even a spec asking for root gets the same hardening: services cannot opt out.
        const id = yield* scopedContainer(testSpec(fixture.image, { user: "0:0" }))
        // Started: Podman 4.3 reports UsernsMode "" for a container that has only been created.
        yield* rt.start(id)
        const security = (yield* rt.inspect(id)).security
        assert(security !== undefined, "inspect reports no security settings")
        expect(security.noNewPrivileges).toBe(true)
        for (const cap of DEFAULT_CAPABILITIES) expect(keepsCapability(security, cap), `keeps ${cap}`).toBe(true)
        // In both engines' default sets, and dropped by the hardening.
        for (const cap of ["NET_RAW", "MKNOD", "SYS_CHROOT", "SETFCAP", "SETPCAP", "AUDIT_WRITE"]) {
          expect(keepsCapability(security, cap), `keeps ${cap}`).toBe(false)
        }
        expect(security.userns).toBe("private")
      }))

    it.scoped("list by labels finds exactly the containers carrying all of them", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const run = testName()
        const a = yield* scopedContainer(testSpec(fixture.image, { labels: { "mcp.test": run, "mcp.role": "a" } }))
        const b = yield* scopedContainer(testSpec(fixture.image, { labels: { "mcp.test": run, "mcp.role": "b" } }))
        yield* rt.start(a) // one running, one only created: list shows both

        const both = yield* rt.list({ "mcp.test": run })
        expect(both.map((c) => c.id).sort()).toEqual([a, b].sort())
        const onlyA = yield* rt.list({ "mcp.test": run, "mcp.role": "a" })
        expect(onlyA.map((c) => c.id)).toEqual([a])
        expect(onlyA[0]?.state).toBe("running")
        expect(yield* rt.list({ "mcp.test": `${run}-other` })).toEqual([])
      }))

    it.scoped("exec returns the command's output and exit code", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const spec = testSpec(fixture.image)
        const id = yield* scopedContainer(spec)
        yield* rt.start(id)

        const result = yield* rt.exec(id, CONTRACT_EXEC)
        expect(result.exitCode).toBe(CONTRACT_EXEC_RESULT.exitCode)
        // stdout and stderr interleave in arrival order: compare as sets of lines.
        expect(result.output.split("\n").sort()).toEqual(CONTRACT_EXEC_RESULT.output.split("\n").sort())

        const missing = yield* Effect.either(rt.exec(testName(), ["true"]))
        assert(Either.isLeft(missing) && missing.left._tag === "ContainerNotFound", `exec in a missing container: ${String(missing)}`)
        yield* rt.stop(id, 5)
        const stopped = yield* Effect.either(rt.exec(id, ["true"]))
        assert(Either.isLeft(stopped) && stopped.left._tag === "RuntimeError", `exec in a stopped container: ${String(stopped)}`)
      }))

    it.scoped("logs return the container's lines per stream, honour tail, and follow", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const id = yield* scopedContainer(testSpec(fixture.image))
        yield* rt.start(id)

        const all = yield* eventually(
          collectLogs(id, { follow: false, tail: -1 }).pipe(
            Effect.filterOrFail((lines) => lines.length >= CONTRACT_LOG.length, (lines) => `only ${lines.length} lines yet`)
          )
        )
        expect([...all].sort((x, y) => x.line.localeCompare(y.line))).toEqual(
          [...CONTRACT_LOG].sort((x, y) => x.line.localeCompare(y.line))
        )
        expect(yield* collectLogs(id, { follow: false, tail: 1 })).toHaveLength(1)
        expect(yield* collectLogs(id, { follow: false, tail: 0 })).toEqual([])

        // Following a running container: take what is there and hang up early.
        const followed = yield* rt.logs(id, { follow: true, tail: -1 }).pipe(
          Stream.take(2),
          Stream.runCollect,
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "follow did not deliver 2 lines" })
        )
        expect(followed.length).toBe(2)

        // Following a container that then stops ends the stream.
        const fiber = yield* Effect.fork(collectLogs(id, { follow: true, tail: -1 }))
        yield* Effect.sleep("200 millis")
        yield* rt.stop(id, 5)
        const untilStop = yield* fiber.await.pipe(
          Effect.timeoutFail({ duration: "10 seconds", onTimeout: () => "follow did not end when the container stopped" }),
          Effect.flatten
        )
        expect(untilStop.length).toBeGreaterThanOrEqual(2)
      }))

    it.scoped("stop: inspect shows it exited; stopping again succeeds", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const id = yield* scopedContainer(testSpec(fixture.image))
        yield* rt.start(id)
        yield* rt.stop(id, 5)
        expect((yield* rt.inspect(id)).state).toBe("exited")
        yield* rt.stop(id, 5)
        expect((yield* rt.inspect(id)).state).toBe("exited")
      }))

    it.scoped("remove: inspect then fails with ContainerNotFound; removing again succeeds", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const spec = testSpec(fixture.image)
        const id = yield* scopedContainer(spec)
        yield* rt.start(id)
        yield* rt.remove(id) // running: removal forces it
        const gone = yield* Effect.flip(rt.inspect(id))
        expect(gone._tag).toBe("ContainerNotFound")
        yield* rt.remove(id)
        yield* rt.remove(spec.name)

        expect((yield* Effect.flip(rt.start(spec.name)))._tag).toBe("ContainerNotFound")
        expect((yield* Effect.flip(rt.stop(spec.name, 1)))._tag).toBe("ContainerNotFound")
        const logs = yield* Effect.flip(Stream.runCollect(rt.logs(spec.name, { follow: false, tail: -1 })))
        expect(logs._tag).toBe("ContainerNotFound")
      }))

    it.effect("images: ensureImage keeps a present image; a missing image fails with ImageNotFound", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        yield* rt.ensureImage(fixture.image)

        const pull = yield* Effect.flip(rt.ensureImage(fixture.missingImage))
        assert(pull._tag === "ImageNotFound", `ensureImage(missing): ${pull._tag}: ${pull.message}`)
        expect(pull.image).toBe(fixture.missingImage)
        expect(pull.reason).not.toBe("")

        const spec = testSpec(fixture.missingImage)
        const create = yield* Effect.flip(rt.create(spec))
        assert(create._tag === "ImageNotFound", `create(missing image): ${create._tag}: ${create.message}`)
        expect(create.image).toBe(fixture.missingImage)
        expect((yield* Effect.flip(rt.inspect(spec.name)))._tag).toBe("ContainerNotFound")
      }))

    it.scoped("a duplicate name fails with a RuntimeError that names the conflict", () =>
      Effect.gen(function*() {
        const rt = yield* ContainerRuntime
        const spec = testSpec(fixture.image)
        const id = yield* scopedContainer(spec)
        const dup = yield* Effect.flip(rt.create({ ...spec, labels: { other: "1" } }))
        assert(dup._tag === "RuntimeError", `duplicate create: ${dup._tag}: ${dup.message}`)
        expect(dup.reason).toContain(spec.name)
        expect(dup.reason).toContain("already in use")
        expect(dup.retryable).toBe(false)
        // The original is untouched.
        expect((yield* rt.inspect(spec.name)).id).toBe(id)
      }))
  })
