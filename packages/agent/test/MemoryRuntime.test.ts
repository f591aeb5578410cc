import { describe, expect, it } from "@effect/vitest"
import { Effect, Equal, Stream } from "effect"
import { ContainerRuntime, DEFAULT_HARDENING, RuntimeError } from "../src/engine/ContainerRuntime.js"
import { layerMemory, makeMemory, MemoryRuntimeControl } from "../src/engine/MemoryRuntime.js"
import { CONTRACT_CMD, CONTRACT_EXEC, CONTRACT_EXEC_RESULT, CONTRACT_LOG, runtimeContract, testSpec } from "./ContainerRuntimeContract.js"

const IMAGE = "localhost/mcp-busybox:v1"

// The memory runtime runs no processes: it answers the contract's command and exec as scripted.
const contractLayer = layerMemory({
  images: [IMAGE],
  onStart: (spec) => (spec.cmd !== undefined && Equal.equals(spec.cmd, CONTRACT_CMD) ? CONTRACT_LOG : []),
  onExec: (_spec, cmd) => (cmd.join("\u0000") === CONTRACT_EXEC.join("\u0000") ? CONTRACT_EXEC_RESULT : { exitCode: 127, output: "" })
})

runtimeContract("memory", contractLayer, { image: IMAGE, missingImage: "registry.invalid/mcp/missing:v0" })

describe("MemoryRuntime control", () => {
  it.effect("failNext fails exactly the next call of that operation", () =>
    Effect.gen(function*() {
      const { control, runtime } = yield* makeMemory({ images: [IMAGE] })
      yield* control.failNext("create")
      const first = yield* Effect.flip(runtime.create(testSpec(IMAGE)))
      expect(first).toBeInstanceOf(RuntimeError)
      expect(first._tag === "RuntimeError" && first.retryable).toBe(true)
      const id = yield* runtime.create(testSpec(IMAGE))

      yield* control.failNext("inspect", new RuntimeError({ operation: "inspect", reason: "engine busy", retryable: true }))
      expect((yield* Effect.flip(runtime.inspect(id))).message).toContain("engine busy")
      expect((yield* runtime.inspect(id)).id).toBe(id)
      expect((yield* control.calls).create).toBe(2)
    }))

  it.effect("hardening from the config is recorded; userns auto without subordinate ids fails with the fix", () =>
    Effect.gen(function*() {
      const custom = yield* makeMemory({ images: [IMAGE], hardening: { capabilities: ["NET_BIND_SERVICE"], userns: "host" } })
      const id = yield* custom.runtime.create(testSpec(IMAGE))
      expect((yield* custom.runtime.inspect(id)).security).toEqual({
        noNewPrivileges: true,
        capDrop: ["ALL"],
        capAdd: ["NET_BIND_SERVICE"],
        userns: "host"
      })

      const refused = yield* makeMemory({ images: [IMAGE], hardening: { ...DEFAULT_HARDENING, userns: "auto" }, subordinateIds: false })
      const spec = testSpec(IMAGE)
      const error = yield* Effect.flip(refused.runtime.create(spec))
      expect(error._tag).toBe("RuntimeError")
      expect(error._tag === "RuntimeError" && error.retryable).toBe(false)
      expect(error.message).toContain('user namespace mode "auto"')
      expect(error.message).toContain("containers:2147483647:2147483648")
      expect(error.message).toContain('userns = "mapped"')
      // Refused means not created: nothing runs without the namespace it asked for.
      expect(yield* refused.control.containers).toEqual([])

      const granted = yield* makeMemory({ images: [IMAGE], hardening: { ...DEFAULT_HARDENING, userns: "auto" } })
      expect((yield* granted.runtime.inspect(yield* granted.runtime.create(testSpec(IMAGE)))).security?.userns).toBe("private")
    }))

  it.effect("ensureImage pulls only pullable images", () =>
    Effect.gen(function*() {
      const { runtime } = yield* makeMemory({ pullable: ["registry.test/app:1"] })
      yield* runtime.ensureImage("registry.test/app:1")
      yield* runtime.create(testSpec("registry.test/app:1"))
      const missing = yield* Effect.flip(runtime.ensureImage("registry.test/app:2"))
      expect(missing._tag).toBe("ImageNotFound")
    }))

  it.effect("exit: restart policies bring containers back and count restarts", () =>
    Effect.gen(function*() {
      const { control, runtime } = yield* makeMemory({ images: [IMAGE] })
      const always = yield* runtime.create(testSpec(IMAGE, { restart: "always" }))
      const onFailure = yield* runtime.create(testSpec(IMAGE, { restart: "on-failure" }))
      const never = yield* runtime.create(testSpec(IMAGE, { restart: "no" }))
      for (const id of [always, onFailure, never]) yield* runtime.start(id)

      yield* control.exit(always, 0)
      yield* control.exit(onFailure, 0)
      yield* control.exit(never, 1)
      expect(yield* runtime.inspect(always)).toMatchObject({ state: "running", restartCount: 1 })
      expect(yield* runtime.inspect(onFailure)).toMatchObject({ state: "exited", restartCount: 0 })
      expect(yield* runtime.inspect(never)).toMatchObject({ state: "exited", restartCount: 0 })
    }))

  it.effect("a second container on a published host port fails to start", () =>
    Effect.gen(function*() {
      const { runtime } = yield* makeMemory({ images: [IMAGE] })
      const ports = [{ hostIp: "127.0.0.1", hostPort: 18080, containerPort: 80, protocol: "tcp" as const }]
      const a = yield* runtime.create(testSpec(IMAGE, { ports }))
      const b = yield* runtime.create(testSpec(IMAGE, { ports }))
      yield* runtime.start(a)
      const clash = yield* Effect.flip(runtime.start(b))
      expect(clash.message).toContain("127.0.0.1:18080/tcp is already published")
      yield* runtime.stop(a, 1)
      yield* runtime.start(b)
    }))

  it.effect("scriptExec replaces the exec answer until reset", () =>
    Effect.gen(function*() {
      const { control, runtime } = yield* makeMemory({ images: [IMAGE], onExec: () => ({ exitCode: 3, output: "from option" }) })
      const id = yield* runtime.create(testSpec(IMAGE))
      yield* runtime.start(id)
      expect(yield* runtime.exec(id, ["check"])).toEqual({ exitCode: 3, output: "from option" })
      let attempts = 0
      yield* control.scriptExec((spec, cmd) => ({ exitCode: ++attempts < 3 ? 1 : 0, output: `${spec.name} ${cmd.join(" ")}` }))
      const answers = [yield* runtime.exec(id, ["check"]), yield* runtime.exec(id, ["check"]), yield* runtime.exec(id, ["check"])]
      expect(answers.map((a) => a.exitCode)).toEqual([1, 1, 0])
      expect(answers[0]!.output).toMatch(/ check$/)
      yield* control.scriptExec(undefined)
      expect((yield* runtime.exec(id, ["check"])).exitCode).toBe(3)
    }))

  it.scoped("emitLog reaches followers; the layer provides the control", () =>
    Effect.gen(function*() {
      const runtime = yield* ContainerRuntime
      const control = yield* MemoryRuntimeControl
      const id = yield* runtime.create(testSpec(IMAGE))
      yield* runtime.start(id)
      // tail -1: whether the follower subscribes before or after the line, it sees it once.
      const fiber = yield* Effect.fork(Stream.runCollect(runtime.logs(id, { follow: true, tail: -1 })))
      yield* Effect.yieldNow()
      yield* control.emitLog(id, { stream: "stdout", line: "hello" })
      yield* control.exit(id, 0)
      expect(Array.from(yield* fiber.await.pipe(Effect.flatten))).toEqual([{ stream: "stdout", line: "hello" }])
    }).pipe(Effect.provide(layerMemory({ images: [IMAGE] }))))
})
