import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Effect, Either, Exit, Layer, Redacted, TestClock } from "effect"
import * as fs from "node:fs/promises"
import * as os from "node:os"
import * as nodePath from "node:path"
import { Authenticator, tokenDigest } from "../src/Authenticator.js"
import { Principal } from "../src/Principal.js"
import * as TokenFile from "../src/TokenFile.js"
import * as TokenFileAuthenticator from "../src/TokenFileAuthenticator.js"

/** A fresh directory per test, removed when the test's scope closes. */
const tempFile = Effect.acquireRelease(
  Effect.promise(() => fs.mkdtemp(nodePath.join(os.tmpdir(), "mcp-tokens-"))),
  (dir) => Effect.promise(() => fs.rm(dir, { recursive: true, force: true }))
).pipe(Effect.map((dir) => nodePath.join(dir, "tokens.toml")))

const writeRaw = (path: string, text: string, mode: number) =>
  Effect.promise(async () => {
    await fs.writeFile(path, text, { mode })
    await fs.chmod(path, mode)
  })

const authenticator = (path: string) => Effect.provide(Authenticator, TokenFileAuthenticator.layer(path))

/** Every way an error could be shown, so a test can assert the token is in none of them. */
const shown = (e: Error) => `${e.message} ${String(e)} ${JSON.stringify(e)}`

describe("TokenFile", () => {
  it("a token is stored by the hex SHA-256 of its text (FIPS 180-2's test vector)", () => {
    expect(tokenDigest(Redacted.make("abc"))).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  })

  it.scoped("a created token authenticates as the principal it was created for", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const value = Redacted.value(token)
      expect(value).toMatch(/^mcp_[A-Za-z0-9_-]{43}$/)

      const stat = yield* Effect.promise(() => fs.stat(path))
      expect(stat.mode & 0o777).toBe(0o600)
      const text = yield* Effect.promise(() => fs.readFile(path, "utf8"))
      expect(text).toContain("[[tokens]]")
      expect(text).not.toContain(value)

      const auth = yield* authenticator(path)
      const principal = yield* auth.authenticate(token)
      expect(principal).toEqual(new Principal({ name: "alice", kind: "human", role: "admin" }))
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a wrong token is Unauthorized: unknown token, and the token is not in the error", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "agent-1", kind: "system", role: "user" })
      const auth = yield* authenticator(path)
      const wrong = TokenFile.generateToken()
      const error = yield* Effect.flip(auth.authenticate(wrong))
      expect(error).toEqual(new Errors.Unauthorized({ reason: "unknown token" }))
      expect(shown(error)).not.toContain(Redacted.value(wrong))
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a token past its expiry is Unauthorized: token expired", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "temp", kind: "human", role: "user", expiresInDays: 1 })
      const auth = yield* authenticator(path)
      expect((yield* auth.authenticate(token)).name).toBe("temp")

      yield* TestClock.adjust("23 hours")
      expect((yield* auth.authenticate(token)).name).toBe("temp")

      yield* TestClock.adjust("1 hour")
      const error = yield* Effect.flip(auth.authenticate(token))
      expect(error).toEqual(new Errors.Unauthorized({ reason: "token expired" }))
      expect(shown(error)).not.toContain(Redacted.value(token))
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a hand-written entry with an expiry in the past is refused", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const token = Redacted.make("mcp_handwritten")
      yield* writeRaw(
        path,
        [
          "[[tokens]]",
          `name = "old"`,
          `kind = "human"`,
          `role = "guest"`,
          `sha256 = "${tokenDigest(token)}"`,
          // a TOML date-time literal, as someone editing by hand might write it
          `created = 2020-01-01T00:00:00Z`,
          `expires = "2020-02-01T00:00:00Z"`
        ].join("\n"),
        0o600
      )
      yield* TestClock.setTime(Date.parse("2024-01-01T00:00:00Z"))
      const auth = yield* authenticator(path)
      const error = yield* Effect.flip(auth.authenticate(token))
      expect(error.reason).toBe("token expired")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a file group or others may read is refused, naming the path and the fix", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      yield* Effect.promise(() => fs.chmod(path, 0o644))

      const loaded = yield* Effect.flip(TokenFile.loadTokenFile(path))
      expect(loaded._tag).toBe("TokenFileInsecure")
      expect(loaded.message).toContain(path)
      expect(loaded.message).toContain(`chmod 600 ${path}`)

      const built = yield* Effect.exit(Layer.build(TokenFileAuthenticator.layer(path)))
      expect(Exit.isFailure(built)).toBe(true)

      const created = yield* Effect.flip(TokenFile.createToken(path, { name: "bob", kind: "human", role: "user" }))
      expect(created._tag).toBe("TokenFileInsecure")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("the authenticator picks up tokens created after it started, and drops revoked ones", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)

      const later = yield* TokenFile.createToken(path, { name: "agent-7", kind: "system", role: "user" })
      // The file is looked at no more than once a second.
      expect((yield* Effect.flip(auth.authenticate(later))).reason).toBe("unknown token")
      yield* TestClock.adjust("1 second")
      expect(yield* auth.authenticate(later)).toEqual(new Principal({ name: "agent-7", kind: "system", role: "user" }))

      yield* TokenFile.revokeToken(path, "agent-7")
      yield* TestClock.adjust("1 second")
      expect((yield* Effect.flip(auth.authenticate(later))).reason).toBe("unknown token")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a broken edit keeps the last good tokens instead of locking everyone out", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const token = yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const auth = yield* authenticator(path)
      yield* writeRaw(path, "[[tokens]]\nname = ", 0o600)
      yield* TestClock.adjust("1 second")
      expect((yield* auth.authenticate(token)).name).toBe("alice")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("a duplicate name is refused and the file is unchanged", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const before = yield* Effect.promise(() => fs.readFile(path, "utf8"))
      const error = yield* Effect.flip(TokenFile.createToken(path, { name: "alice", kind: "human", role: "guest" }))
      expect(error._tag).toBe("TokenNameTaken")
      expect(yield* Effect.promise(() => fs.readFile(path, "utf8"))).toBe(before)
      const entries = yield* Effect.promise(() => fs.readdir(nodePath.dirname(path)))
      expect(entries).toEqual(["tokens.toml"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("revoking a name that is not there says so", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "alice", kind: "human", role: "admin" })
      const error = yield* Effect.flip(TokenFile.revokeToken(path, "bob"))
      expect(error._tag).toBe("TokenNameUnknown")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("unknown keys and bad values are reported by field", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      yield* writeRaw(
        path,
        [
          "[[tokens]]",
          `name = "alice"`,
          `kind = "robot"`,
          `role = "admin"`,
          `sha265 = "00"`,
          `created = "yesterday"`
        ].join("\n"),
        0o600
      )
      const error = yield* Effect.flip(TokenFile.loadTokenFile(path))
      expect(error._tag).toBe("TokenFileInvalid")
      const problems = error._tag === "TokenFileInvalid" ? error.problems.map((p) => p.path) : []
      expect(problems).toEqual(expect.arrayContaining(["tokens[0].kind", "tokens[0].sha256", "tokens[0].created", "tokens[0].sha265"]))
      expect(error.message).toContain("tokens[0].sha265: unknown field")
      expect(error.message).toContain(path)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("an edit keeps the file's owner: root adding a token must not take the master's file away from its user", () =>
    Effect.gen(function* () {
      if (process.getuid?.() !== 0) return yield* Effect.die(new Error("this test changes a file's owner: run it as root (the test suite runs as root)"))
      const path = yield* tempFile
      yield* TokenFile.createToken(path, { name: "operator", kind: "human", role: "admin" })
      yield* Effect.promise(() => fs.chown(path, 65534, 65534))
      yield* TokenFile.createToken(path, { name: "rift", kind: "system", role: "guest" })
      yield* TokenFile.revokeToken(path, "operator")
      const stat = yield* Effect.promise(() => fs.stat(path))
      expect([stat.uid, stat.gid, stat.mode & 0o777]).toEqual([65534, 65534, 0o600])
      expect((yield* TokenFile.loadTokenFile(path)).tokens.map((t) => t.name)).toEqual(["rift"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it("decodeTokenFile accepts an empty file and rejects duplicate names", () => {
    expect(TokenFile.decodeTokenFile("")).toEqual(Either.right({ tokens: [] }))
    const entry = (sha: string) =>
      `[[tokens]]\nname = "a"\nkind = "human"\nrole = "user"\nsha256 = "${sha.repeat(64)}"\ncreated = "2025-01-01T00:00:00Z"\n`
    const dup = TokenFile.decodeTokenFile(entry("a") + entry("b"))
    expect(Either.isLeft(dup) && dup.left[0]!.path).toBe("tokens[1].name")
  })

  it.scoped("a missing file fails layer construction with a hint", () =>
    Effect.gen(function* () {
      const path = yield* tempFile
      const error = yield* Effect.flip(TokenFile.loadTokenFile(path))
      expect(error.message).toContain("mcp token create")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
