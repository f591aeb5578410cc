/**
 * The token-file authenticator's reloading: how often it looks at the file, what it does with a
 * file that is unchanged, deleted or broken, and what it tells the operator each time.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Redacted, TestClock } from "effect"
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

  it.scoped("a deleted file keeps the tokens loaded before, and says so", () =>
    logged((lines) => Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      yield* Effect.promise(() => fs.rm(path))
      yield* TestClock.adjust("1 second")
      expect(yield* knows(auth, token)).toBe(true)
      const warnings = lines.filter((l) => l.startsWith("WARN"))
      expect(warnings).toHaveLength(1)
      expect(warnings[0]).toContain(path)
      expect(warnings[0]).toMatch(/; keeping the 1 tokens loaded before$/)
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
})
