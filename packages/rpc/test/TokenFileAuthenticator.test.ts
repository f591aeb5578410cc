/**
 * The token-file authenticator's reloading: how often it looks at the file, what it does with a
 * file that is unchanged, deleted, broken, unreadable or too open (refuses every token until it is
 * fixed), and what it tells the operator each time.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Metric, Redacted, TestClock } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Authenticator } from "../src/Authenticator.js"
import * as TokenFile from "../src/TokenFile.js"
import * as TokenFileAuthenticator from "../src/TokenFileAuthenticator.js"

/** A fresh directory per test, removed when the test's scope closes. */
const tempFile = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(nodePath.join(os.tmpdir(), "mcp-tokens-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => nodePath.join(dir, "tokens.toml")))

/**
 * Log lines written while `body` runs, collected: the authenticator logs from the fiber that
 * authenticates (that is where it looks at the file), so the logger goes on the whole test.
 */
const logged = <A, E, R>(body: (lines: ReadonlyArray<string>) => Effect.Effect<A, E, R>) => {
  const lines: Array<string> = []
  const logger = Logger.make(({ logLevel, message }) => {
    lines.push(`${logLevel.label} ${(Array.isArray(message) ? message : [message]).map(String).join(" ")}`)
  })
  return body(lines).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, logger)), Logger.withMinimumLogLevel(LogLevel.Debug))
}

const authenticator = (path: string) => Effect.provide(Authenticator, TokenFileAuthenticator.layer(path))

const unusableCount = (condition: string) =>
  Effect.map(Metric.value(Metric.tagged(TokenFileAuthenticator.unusable, "condition", condition)), (state) => state.count)

const knows = (auth: Authenticator, token: Redacted.Redacted<string>) =>
  Effect.match(auth.authenticate(token), { onFailure: () => false, onSuccess: () => true })

describe("TokenFileAuthenticator", () => {
  it.scoped("looks at the file at most once a second, counted from its last look", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      yield* TestClock.adjust("1 second")
      const first = yield* TokenFile.createToken(path, { name: "agent-1", kind: "system", role: "user" })
      expect(yield* knows(auth, first)).toBe(true) // looked at t = 1 s

      const second = yield* TokenFile.createToken(path, { name: "agent-2", kind: "system", role: "user" })
      yield* TestClock.adjust("500 millis")
      expect(yield* knows(auth, second)).toBe(false) // half a second after the last look: not yet
      yield* TestClock.adjust("499 millis")
      expect(yield* knows(auth, second)).toBe(false)
      yield* TestClock.adjust("1 millis")
      expect(yield* knows(auth, second)).toBe(true)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("an unchanged file is not read again; a changed one is, and the reload is logged", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        expect(yield* knows(auth, token)).toBe(true)
      }
      expect(lines).toEqual([`DEBUG loaded token file ${path}: 1 tokens`])

      yield* TokenFile.createToken(path, { name: "bob", kind: "human", role: "user" })
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)
      expect(lines.filter((l) => l.includes("reloaded"))).toEqual([`INFO reloaded token file ${path}: 2 tokens`])
    })).pipe(Effect.provide(NodeFileSystem.layer)))

  // Fail closed (issue 14): this replaces a test that asserted a deleted file kept the tokens
  // loaded before; the file says which tokens are revoked, so without it none is trusted.
  it.scoped("a deleted file refuses every token, says so once, and a restored file works again", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      const before = yield* unusableCount("missing")
      const saved = yield* Effect.promise(() => fs.readFile(path))
      yield* Effect.promise(() => fs.rm(path))
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        const error = yield* Effect.flip(auth.authenticate(token))
        expect(error._tag).toBe("Unauthorized")
        expect(error.reason).toContain(`token file ${path} does not exist`)
        expect(error.reason).not.toContain(Redacted.value(token))
      }
      const warnings = lines.filter((l) => l.startsWith("WARN"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(path)
      expect(warnings[0]).toMatch(/every token is refused until it is fixed$/)
      expect((yield* unusableCount("missing")) - before).toBe(1)

      yield* Effect.promise(() => fs.writeFile(path, saved, { mode: 0o600 }))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)
      expect(lines.filter((l) => l.startsWith("INFO"))).toEqual([`INFO token file ${path} is usable again: 1 tokens`])
    })).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a broken file is reported once, not every second, and its tokens are not taken", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      yield* Effect.promise(async () => {
        await fs.writeFile(path, "[[tokens]]\nname = ", { mode: 0o600 })
        await fs.chmod(path, 0o600)
      })
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        expect(yield* knows(auth, token)).toBe(true)
      }
      const warnings = lines.filter((l) => l.startsWith("WARN"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(path)
      expect(warnings[0]).toMatch(/\nkeeping the 1 tokens loaded before$/)
    })).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a broken file written after a deleted one still refuses every token; a good one works", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      const saved = yield* Effect.promise(() => fs.readFile(path))
      yield* Effect.promise(() => fs.rm(path))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(false)
      yield* Effect.promise(() => fs.writeFile(path, "[[tokens]]\nname = ", { mode: 0o600 }))
      for (let i = 0; i < 3; i++) {
        yield* TestClock.adjust("1 second")
        const error = yield* Effect.flip(auth.authenticate(token))
        expect(error.reason).toContain(`token file ${path} is invalid`)
        // The problems quote the file: they go to the log, not to callers.
        expect(error.reason).not.toContain("name =")
      }
      const warnings = lines.filter((l) => l.startsWith("WARN"))
      expect(warnings).toHaveLength(2) // deleted, then broken: two conditions
      expect(warnings[1]).toMatch(/\nevery token is refused until it is fixed$/)

      yield* Effect.promise(() => fs.writeFile(path, saved, { mode: 0o600 }))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)
    })).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a file made readable by group or others refuses every token, naming the fix; chmod 600 restores them", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      const before = yield* unusableCount("insecure")
      yield* Effect.promise(() => fs.chmod(path, 0o644))
      // Within the second since the last look the file is not looked at: the change shows at the next look.
      yield* TestClock.adjust("1 second")
      for (let i = 0; i < 3; i++) {
        const error = yield* Effect.flip(auth.authenticate(token))
        expect(error.reason).toContain(`token file ${path} has mode 0644`)
        expect(error.reason).toContain(`chmod 600 ${path}`)
        expect(error.reason).not.toContain(Redacted.value(token))
        yield* TestClock.adjust("1 second")
      }
      expect(lines.filter((l) => l.startsWith("WARN"))).toHaveLength(1)
      expect((yield* unusableCount("insecure")) - before).toBe(1)

      yield* Effect.promise(() => fs.chmod(path, 0o600))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)

      // A second time is a new condition: logged and counted again.
      yield* Effect.promise(() => fs.chmod(path, 0o640))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(false)
      expect(lines.filter((l) => l.startsWith("WARN"))).toHaveLength(2)
      expect((yield* unusableCount("insecure")) - before).toBe(2)
    })).pipe(Effect.provide(NodeFileSystem.layer)))

  // A directory where the file should be: unreadable even to root, which these tests run as
  // (a chmod 000 file would still be readable to root).
  it.scoped("a file the daemon cannot read refuses every token until it can", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      const content = yield* Effect.promise(() => fs.readFile(path))
      yield* Effect.promise(() => fs.rm(path))
      yield* Effect.promise(() => fs.mkdir(path, { mode: 0o700 }))
      yield* TestClock.adjust("1 second")
      const error = yield* Effect.flip(auth.authenticate(token))
      expect(error.reason).toContain(`token file ${path} cannot be read`)
      yield* Effect.promise(() => fs.rmdir(path))
      yield* Effect.promise(() => fs.writeFile(path, content, { mode: 0o600 }))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("TokenFileAuthenticator, answering at once (authenticateNow)", () => {
  it.scoped("knows a token at once only within a second of its last look at a usable file; otherwise leaves it to authenticate", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const alice = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const soon = yield* TokenFile.createToken(path, { name: "soon", kind: "human", role: "user", expiresInDays: 1 })
      const auth = yield* authenticator(path)
      expect(auth.authenticateNow?.(alice)?.name).toBe("alice")
      expect(auth.authenticateNow?.(soon)?.name).toBe("soon")
      expect(auth.authenticateNow?.(Redacted.make("mcp_not-a-real-token"))).toBeUndefined()

      // A second after the last look, the file is due for another: nothing is known at once.
      yield* TestClock.adjust("1 second")
      expect(auth.authenticateNow?.(alice)).toBeUndefined()
      expect(yield* knows(auth, alice)).toBe(true) // authenticate looked
      expect(auth.authenticateNow?.(alice)?.name).toBe("alice")
      yield* TestClock.adjust("1 day")
      expect(yield* knows(auth, soon)).toBe(false) // expired, and the file was looked at
      expect(auth.authenticateNow?.(soon)).toBeUndefined()
      expect(auth.authenticateNow?.(alice)?.name).toBe("alice")

      // A file made too open refuses every token: after the look that finds it, none is known at once.
      yield* Effect.promise(() => fs.chmod(path, 0o644))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, alice)).toBe(false)
      expect(auth.authenticateNow?.(alice)).toBeUndefined()
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
