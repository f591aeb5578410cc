/**
 * The operator's SSH connection (packages/cli/src/provision/Ssh.ts) against a real OpenSSH
 * server on loopback: host keys pinned as OpenSSH would (fingerprints compared with ssh-keygen's,
 * hashed known_hosts entries made by ssh-keygen -H), commands with their output and exit code,
 * SFTP uploads checked on the far side, and the errors an operator meets.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Exit } from "effect"
import { execFileSync } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import { existsSync, mkdtempSync, readFileSync, statfsSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as Preflight from "../packages/cli/src/provision/Preflight.js"
import * as Ssh from "../packages/cli/src/provision/Ssh.js"
import { freePort } from "./support/LocalFleet.js"
import { makeKey, type Sshd, startSshd } from "./support/Sshd.js"

let sshd: Sshd
const work = mkdtempSync(join(tmpdir(), "mcp-ssh-it-"))
let files = 0
/** A known_hosts path of its own for each test: what one test pins does not help another. */
const freshKnownHosts = () => join(work, `known_hosts.${++files}`)

beforeAll(async () => {
  sshd = await startSshd()
}, 60_000)

afterAll(async () => {
  await sshd?.stop()
})

const target = (): Ssh.SshTarget => ({ user: "root", host: "127.0.0.1", port: sshd.port })

/** Connects and runs `use` on the session, in a scope of its own. */
const withSession = <A, E>(options: Partial<Ssh.ConnectOptions> & { knownHostsFile: string }, use: (s: Ssh.SshSession) => Effect.Effect<A, E>, to = target()) =>
  Effect.scoped(Effect.flatMap(Ssh.connect(to, { identity: sshd.clientKey, ...options }), use))

describe("SSH to a node with its host key pinned (real OpenSSH)", () => {
  it.live("a host never seen is refused with the fingerprint ssh-keygen prints, and nothing is recorded", () =>
    Effect.gen(function* () {
      const knownHostsFile = freshKnownHosts()
      const error = yield* Effect.flip(withSession({ knownHostsFile }, () => Effect.void))
      expect(error._tag).toBe("HostKeyUnknown")
      expect((error as Ssh.HostKeyUnknown).fingerprint).toBe(sshd.hostFingerprint())
      expect(error.message).toContain(`--accept-host-key ${sshd.hostFingerprint()}`)
      // Another fingerprint is not an acceptance of this key.
      const wrong = yield* Effect.flip(withSession({ knownHostsFile, accept: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" }, () => Effect.void))
      expect(wrong._tag).toBe("HostKeyUnknown")
      expect(existsSync(knownHostsFile)).toBe(false)
    }))

  it.live("the accepted key is pinned: commands run with their output and exit code, and the next connection needs no flag", () =>
    Effect.gen(function* () {
      const knownHostsFile = freshKnownHosts()
      const result = yield* withSession({ knownHostsFile, accept: sshd.hostFingerprint() }, (s) => s.exec("uname -m; echo to-stderr >&2; exit 3"))
      expect(result).toEqual({ code: 3, stdout: `${execFileSync("uname", ["-m"], { encoding: "utf8" })}`, stderr: "to-stderr\n" })
      expect(readFileSync(knownHostsFile, "utf8")).toBe(`[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey()}\n`)
      const again = yield* withSession({ knownHostsFile }, (s) => s.exec("echo pinned"))
      expect(again).toEqual({ code: 0, stdout: "pinned\n", stderr: "" })
    }))

  it.live("an upload arrives whole, with its mode", () =>
    Effect.gen(function* () {
      const knownHostsFile = freshKnownHosts()
      const local = join(work, "artifact.bin")
      const bytes = randomBytes(2 * 1024 * 1024)
      writeFileSync(local, bytes)
      const remote = join(work, "uploaded.bin")
      const check = yield* withSession({ knownHostsFile, accept: sshd.hostFingerprint() }, (s) =>
        Effect.zipRight(s.upload(local, remote, 0o640), s.exec(`sha256sum ${remote} | cut -d' ' -f1; stat -c %a ${remote}`)))
      expect(check.stdout.trim().split("\n")).toEqual([createHash("sha256").update(bytes).digest("hex"), "640"])
    }))

  it.live("a key recorded (hashed) in the operator's own known_hosts is trusted without a flag", () =>
    Effect.gen(function* () {
      const operators = join(work, `operator_known_hosts.${++files}`)
      writeFileSync(operators, `[127.0.0.1]:${sshd.port} ${sshd.hostPublicKey()}\n`)
      execFileSync("ssh-keygen", ["-H", "-f", operators], { stdio: "ignore" })
      expect(readFileSync(operators, "utf8")).toMatch(/^\|1\|/)
      const result = yield* withSession({ knownHostsFile: freshKnownHosts(), alsoTrusted: [operators] }, (s) => s.exec("echo trusted"))
      expect(result.stdout).toBe("trusted\n")
    }))

  it.live("a changed host key is refused, naming both fingerprints, even with an accept flag; the old pin stays", () =>
    Effect.gen(function* () {
      const knownHostsFile = freshKnownHosts()
      yield* withSession({ knownHostsFile, accept: sshd.hostFingerprint() }, (s) => s.exec("true"))
      const before = readFileSync(knownHostsFile, "utf8")
      const old = sshd.hostFingerprint()
      yield* Effect.promise(() => sshd.replaceHostKey())
      const error = yield* Effect.flip(withSession({ knownHostsFile, accept: sshd.hostFingerprint() }, (s) => s.exec("true")))
      expect(error._tag).toBe("HostKeyChanged")
      expect(error.message).toContain(sshd.hostFingerprint())
      expect(error.message).toContain(old)
      expect(readFileSync(knownHostsFile, "utf8")).toBe(before)
    }), 60_000)

  it.live("a key the node does not authorize, and a port where nothing listens, fail with their own errors", () =>
    Effect.gen(function* () {
      const stranger = join(work, "stranger_ed25519")
      makeKey(stranger)
      const refused = yield* Effect.flip(withSession({ knownHostsFile: freshKnownHosts(), accept: sshd.hostFingerprint(), identity: stranger }, () => Effect.void))
      expect(refused._tag).toBe("SshAuthFailed")
      expect(refused.message).toContain(`${stranger}.pub`)
      const closed = { user: "root", host: "127.0.0.1", port: yield* Effect.promise(() => freePort()) }
      const unreachable = yield* Effect.exit(withSession({ knownHostsFile: freshKnownHosts() }, () => Effect.void, closed))
      expect(Exit.isFailure(unreachable) && unreachable.cause._tag === "Fail" ? unreachable.cause.error._tag : unreachable).toBe("SshUnreachable")
    }))
})

describe("the provisioning preflight over SSH (this machine as the node)", () => {
  it.live("reads the node's facts as the machine itself states them, and changes nothing", () =>
    Effect.gen(function* () {
      const facts = yield* withSession({ knownHostsFile: freshKnownHosts(), accept: sshd.hostFingerprint() }, Preflight.probe)
      const osRelease = readFileSync("/etc/os-release", "utf8")
      const free = Math.min(...["/opt", "/var/lib"].filter((p) => existsSync(p)).map((p) => { const s = statfsSync(p); return s.bavail * s.bsize }))
      expect({ ...facts, freeBytes: 0 }).toEqual({
        os: /^PRETTY_NAME="?([^"\n]*)"?$/m.exec(osRelease)![1],
        machine: execFileSync("uname", ["-m"], { encoding: "utf8" }).trim(),
        glibc: execFileSync("getconf", ["GNU_LIBC_VERSION"], { encoding: "utf8" }).trim().replace(/^glibc /, ""),
        systemd: existsSync("/run/systemd/system"),
        freeBytes: 0,
        root: process.getuid!() === 0,
        sudo: false
      })
      // df counts in KiB and the disk moves while tests run: within 64 MiB.
      expect(Math.abs(facts.freeBytes - free)).toBeLessThan(64 * 1024 * 1024)
      // What it finds here: this machine's architecture is the release's own.
      expect(Preflight.problems(facts, process.arch).filter((p) => p.check === "architecture")).toEqual([])
    }))
})

describe("the --ssh target", () => {
  it.effect("user@host[:port] parses; anything else is refused naming the form", () =>
    Effect.gen(function* () {
      expect(yield* Ssh.parseTarget("root@10.0.0.7")).toEqual({ user: "root", host: "10.0.0.7", port: 22 })
      expect(yield* Ssh.parseTarget("deploy@node-1.example.net:2222")).toEqual({ user: "deploy", host: "node-1.example.net", port: 2222 })
      expect(yield* Ssh.parseTarget("root@[fd00::7]:22")).toEqual({ user: "root", host: "fd00::7", port: 22 })
      for (const bad of ["10.0.0.7", "root@", "root@host:0", "root@host:70000", "ro ot@host", "root@-host", "root@host:22:22"]) {
        const error = yield* Effect.flip(Ssh.parseTarget(bad))
        expect(error.message, bad).toMatch(/give it as user@host or user@host:port/)
      }
    }))
})
