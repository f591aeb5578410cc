// A full disk under the agent's data directory (a small tmpfs the test mounts): a deploy that
// cannot write its registry fails with a typed error naming the directory and its free space,
// leaves nothing behind, and touches nothing already running; once space is freed, the open work
// is finished and the same deploy succeeds. The engine, proxy, CA and DNS are the memory layers
// of packages/agent/test/Harness.ts: only the registry is on the full disk.
import { describe, expect, it } from "@effect/vitest"
import { NodeFileSystem } from "@effect/platform-node"
import { Errors } from "@mcp/domain"
import { Pki } from "@mcp/rpc"
import { Cause, Effect, Exit, Option } from "effect"
import { spawnSync } from "node:child_process"
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from "node:fs"
import { join } from "node:path"
import { Lifecycle } from "../packages/agent/src/lifecycle/Lifecycle.js"
import { MemoryRuntimeControl } from "../packages/agent/src/engine/MemoryRuntime.js"
import { Registry } from "../packages/agent/src/registry/Registry.js"
import { layerAgent, makePeers, webService } from "../packages/agent/test/Harness.js"
import { privateDir, removeDir } from "./support/ManagedProcess.js"

/** A tmpfs of `size` at a private directory for the scope; unmounted and removed at its end. */
const scopedTmpfs = (size: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = privateDir("disk-full")
      const mount = spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", dir], { encoding: "utf8" })
      if (mount.status !== 0) {
        removeDir(dir)
        throw new Error(`cannot mount a tmpfs at ${dir} (${mount.stderr.trim() || mount.error?.message}); this test needs root. Fix: run the tests as root`)
      }
      return dir
    }),
    (dir) => Effect.sync(() => {
      spawnSync("umount", ["-l", dir])
      removeDir(dir)
    })
  )

/** Writes zeros to `file` until the disk says ENOSPC: the file system is then full. */
const fill = (file: string) => {
  const fd = openSync(file, "w")
  try {
    for (const size of [1 << 16, 1 << 12, 1 << 9, 1]) {
      const chunk = Buffer.alloc(size)
      for (;;) {
        try {
          writeSync(fd, chunk)
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOSPC") break
          throw e
        }
      }
    }
  } finally {
    closeSync(fd)
  }
}

describe("a full disk under the agent's data directory", () => {
  it.live("a deploy that cannot write its registry fails typed, naming the directory and its free space, and touches nothing running", () =>
    Effect.gen(function* () {
      const disk = yield* scopedTmpfs("4m")
      const dataDir = join(disk, "data")
      mkdirSync(dataDir)
      const peers = yield* makePeers({ switchesTraffic: true })
      yield* Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        const registry = yield* Registry
        const control = yield* MemoryRuntimeControl
        yield* lifecycle.deploy(webService("alpha"), { dryRun: false }, () => Effect.void)
        const running = yield* control.containers
        const alphaBefore = yield* registry.service("alpha")
        expect(running.map((c) => c.info.state)).toEqual(["running"])

        fill(join(disk, "filler"))
        // A new service: refused, typed, naming where space is missing and how much is left.
        const exit = yield* Effect.exit(lifecycle.deploy(webService("beta"), { dryRun: false }, () => Effect.void))
        // A defect would reach the user as an internal error: show it whole if that is what came.
        const failure = Exit.isFailure(exit) ? Option.getOrUndefined(Cause.failureOption(exit.cause)) : undefined
        expect(failure, Exit.isFailure(exit) ? Cause.pretty(exit.cause) : "the deploy succeeded").toBeDefined()
        expect(failure).toBeInstanceOf(Errors.DeployFailed)
        const reason = (failure as Errors.DeployFailed).reason
        expect(reason).toContain(dataDir)
        expect(reason).toMatch(/disk .*full/i)
        expect(reason).toMatch(/\d+(\.\d+)? ?(B|KiB|MiB) free/)
        // A redeploy of the running service: refused the same way, the old version untouched.
        const redeploy = yield* Effect.flip(lifecycle.deploy(webService("alpha", `env = ["V=2"]`), { dryRun: false }, () => Effect.void))
        expect(redeploy).toBeInstanceOf(Errors.DeployFailed)
        expect((redeploy as Errors.DeployFailed).reason).toContain(dataDir)
        expect(yield* control.containers).toEqual(running)
        expect(yield* registry.service("alpha")).toEqual(alphaBefore)

        // Space freed: the open work is finished, and the deploy goes through.
        rmSync(join(disk, "filler"))
        yield* lifecycle.resumeOpenWork
        expect(yield* registry.sagasIn("running")).toEqual([])
        yield* lifecycle.deploy(webService("beta"), { dryRun: false }, () => Effect.void)
        const after = yield* control.containers
        expect(after.filter((c) => c.info.state === "running")).toHaveLength(2)
        // Nothing of the refused deploys was left: one container per service.
        expect(after).toHaveLength(2)
      }).pipe(Effect.provide(layerAgent(peers, join(dataDir, "registry.db"))), Effect.scoped)
    }).pipe(Effect.scoped), { timeout: 60_000 })

  it.live("a certificate that cannot be written fails naming the disk and its free space, and leaves no half-written file", () =>
    Effect.gen(function* () {
      const caDir = privateDir("disk-full-ca")
      yield* Effect.addFinalizer(() => Effect.sync(() => removeDir(caDir)))
      yield* Pki.initCa(caDir, { commonName: "disk-full test CA" })
      const disk = yield* scopedTmpfs("64k")
      fill(join(disk, "filler"))
      const error = yield* Effect.flip(Pki.issueCertificate(caDir, "app.test", { ips: [], dns: ["app.test"], usage: "server", outDir: disk }))
      expect(error).toBeInstanceOf(Pki.PkiError)
      expect(error.message).toContain(disk)
      expect(error.message).toMatch(/disk .*full \(\d+(\.\d+)? ?(B|KiB|MiB) free of/i)
      expect(readdirSync(disk)).toEqual(["filler"])
    }).pipe(Effect.provide(NodeFileSystem.layer), Effect.scoped), { timeout: 60_000 })
})
