/**
 * The operator's SSH connection to a node, for provisioning and upgrades (ssh2): the node's host
 * key is pinned before anything is sent, commands run with their output and exit code, files
 * are uploaded over SFTP.
 *
 * Host keys are checked against a known_hosts file in OpenSSH's format (MCP's own, and the
 * operator's ~/.ssh/known_hosts when it names the host; plain and hashed entries). A host that is
 * in neither is refused with its key's SHA256 fingerprint, the same one `ssh-keygen -lf` prints,
 * so the operator can compare it with the node's console and accept exactly that key; an accepted
 * key is written to MCP's file. A host whose key differs from the one recorded is refused, always:
 * the fix is to find out why, then remove the old entry by hand.
 */
import { Data, Effect, type Scope } from "effect"
import { createHash, createHmac } from "node:crypto"
import { constants } from "node:os"
import { appendFileSync, mkdirSync, readFileSync } from "node:fs"
import { dirname } from "node:path"
import ssh2 from "ssh2"

/** `user@host[:port]`, as given on the command line. */
export interface SshTarget {
  readonly user: string
  readonly host: string
  readonly port: number
}

export class SshTargetInvalid extends Data.TaggedError("SshTargetInvalid")<{ readonly input: string; readonly reason: string }> {
  override get message() {
    return `--ssh ${JSON.stringify(this.input)}: ${this.reason}; give it as user@host or user@host:port (for example root@10.0.0.7:22)`
  }
}

const USER = /^[a-z_][a-z0-9_.-]{0,31}$/i
const HOST = /^(\[[0-9a-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)$/

/** Parses `user@host[:port]`; an IPv6 host goes in brackets (`root@[fd00::7]:22`). */
export const parseTarget = (input: string): Effect.Effect<SshTarget, SshTargetInvalid> => {
  const m = /^([^@]+)@(\[[^\]]+\]|[^:]+)(?::(\d+))?$/.exec(input)
  if (m === null) return Effect.fail(new SshTargetInvalid({ input, reason: "it is not of the form user@host[:port]" }))
  const [, user, host, port] = m as unknown as [string, string, string, string | undefined]
  if (!USER.test(user)) return Effect.fail(new SshTargetInvalid({ input, reason: `user ${JSON.stringify(user)} is not a valid login name` }))
  if (!HOST.test(host)) return Effect.fail(new SshTargetInvalid({ input, reason: `host ${JSON.stringify(host)} is not a host name or address` }))
  const portNumber = port === undefined ? 22 : Number(port)
  if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    return Effect.fail(new SshTargetInvalid({ input, reason: `port ${port} is not between 1 and 65535` }))
  }
  return Effect.succeed({ user, host: host.replace(/^\[|\]$/g, ""), port: portNumber })
}

/** How known_hosts names a host: bare on port 22, else `[host]:port`. */
export const knownHostsName = (host: string, port: number): string => (port === 22 ? host : `[${host}]:${port}`)

/** The key's SHA256 fingerprint as OpenSSH prints it: `SHA256:` and unpadded base64. */
export const fingerprint = (keyBlob: Buffer): string => `SHA256:${createHash("sha256").update(keyBlob).digest("base64").replace(/=+$/, "")}`

/** The key type a public key blob starts with (`ssh-ed25519`, `ecdsa-sha2-nistp256`, ...). */
export const keyType = (keyBlob: Buffer): string => {
  const length = keyBlob.length >= 4 ? keyBlob.readUInt32BE(0) : 0
  return keyBlob.subarray(4, 4 + length).toString("latin1")
}

interface KnownKey {
  readonly type: string
  readonly blob: Buffer
}

/** Whether a known_hosts host pattern list (plain or hashed `|1|salt|hash`) names `name`. */
const namesHost = (patterns: string, name: string): boolean => {
  if (patterns.startsWith("|1|")) {
    const [, , salt, hash] = patterns.split("|")
    if (salt === undefined || hash === undefined) return false
    return createHmac("sha1", Buffer.from(salt, "base64")).update(name).digest("base64") === hash
  }
  return patterns.split(",").includes(name)
}

/** The keys `file` records for `name`; none when the file does not exist. Marker lines (@cert-authority, @revoked) are not host keys and are skipped. */
export const knownKeys = (file: string, name: string): ReadonlyArray<KnownKey> => {
  let text: string
  try {
    text = readFileSync(file, "utf8")
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return []
    throw e
  }
  const keys: Array<KnownKey> = []
  for (const raw of text.split("\n")) {
    const line = raw.trim()
    if (line === "" || line.startsWith("#") || line.startsWith("@")) continue
    const [patterns, type, base64] = line.split(/\s+/)
    if (patterns === undefined || type === undefined || base64 === undefined) continue
    if (namesHost(patterns, name)) keys.push({ type, blob: Buffer.from(base64, "base64") })
  }
  return keys
}

export class HostKeyUnknown extends Data.TaggedError("HostKeyUnknown")<{ readonly host: string; readonly type: string; readonly fingerprint: string }> {
  override get message() {
    return `the host key of ${this.host} is not known yet: ${this.type} ${this.fingerprint}. ` +
      `Compare it with the node's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on its console), then run again with --accept-host-key ${this.fingerprint}`
  }
}

export class HostKeyChanged extends Data.TaggedError("HostKeyChanged")<{
  readonly host: string
  readonly file: string
  readonly offered: string
  readonly recorded: ReadonlyArray<string>
}> {
  override get message() {
    return `the host key of ${this.host} has changed: it offers ${this.offered}, but ${this.file} records ${this.recorded.join(", ")}; nothing was sent. ` +
      `If the node was reinstalled, remove its line from ${this.file} and accept the new key; otherwise something else answers at that address`
  }
}

export class SshUnreachable extends Data.TaggedError("SshUnreachable")<{ readonly host: string; readonly reason: string }> {
  override get message() {
    return `cannot reach ${this.host} over SSH: ${this.reason}; check the address and port and that sshd runs there`
  }
}

export class SshAuthFailed extends Data.TaggedError("SshAuthFailed")<{ readonly host: string; readonly user: string; readonly identity: string }> {
  override get message() {
    return `${this.host} refused ${this.user}'s key ${this.identity}; add its public key (${this.identity}.pub) to ~${this.user}/.ssh/authorized_keys on the node`
  }
}

export class SshFailed extends Data.TaggedError("SshFailed")<{ readonly host: string; readonly step: string; readonly reason: string }> {
  override get message() {
    return `${this.host}: ${this.step} failed: ${this.reason}`
  }
}

export type SshError = HostKeyUnknown | HostKeyChanged | SshUnreachable | SshAuthFailed | SshFailed

export interface HostKeyPolicy {
  /** MCP's known_hosts: read, and where an accepted key is written. */
  readonly knownHostsFile: string
  /** Other known_hosts files, read only (the operator's ~/.ssh/known_hosts). */
  readonly alsoTrusted?: ReadonlyArray<string>
  /** The fingerprint the operator accepts for a host not known yet (`--accept-host-key`). */
  readonly accept?: string
}

export interface ConnectOptions extends HostKeyPolicy {
  /** The private key file to log in with. */
  readonly identity: string
  /** Connection and handshake timeout; default 10 s. */
  readonly timeoutMs?: number
}

export interface CommandResult {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

export interface SshSession {
  readonly target: SshTarget
  /** How messages name the node: its known_hosts name (`host`, or `[host]:port`). */
  readonly name: string
  /** Runs `command` through the login shell; its output and exit code (a signal counts as 128 + its number, as in a shell). */
  readonly exec: (command: string) => Effect.Effect<CommandResult, SshFailed>
  /** Copies `local` to `remote` over SFTP and sets its mode. */
  readonly upload: (local: string, remote: string, mode: number) => Effect.Effect<void, SshFailed>
}

type Verdict = { readonly _tag: "ok"; readonly pin?: string } | { readonly _tag: "refused"; readonly error: HostKeyUnknown | HostKeyChanged }

/** The decision on an offered host key, from the known_hosts files and the accepted fingerprint. */
export const judgeHostKey = (target: SshTarget, offered: Buffer, policy: HostKeyPolicy): Verdict => {
  const name = knownHostsName(target.host, target.port)
  const files = [policy.knownHostsFile, ...(policy.alsoTrusted ?? [])]
  const recorded = files.flatMap((file) => knownKeys(file, name).map((key) => ({ file, key })))
  const print = fingerprint(offered)
  if (recorded.some(({ key }) => key.blob.equals(offered))) return { _tag: "ok" }
  if (recorded.length > 0) {
    return {
      _tag: "refused",
      error: new HostKeyChanged({
        host: name,
        file: recorded[0]!.file,
        offered: `${keyType(offered)} ${print}`,
        recorded: recorded.map(({ key }) => `${key.type} ${fingerprint(key.blob)}`)
      })
    }
  }
  if (policy.accept === print) return { _tag: "ok", pin: `${name} ${keyType(offered)} ${offered.toString("base64")}\n` }
  return { _tag: "refused", error: new HostKeyUnknown({ host: name, type: keyType(offered), fingerprint: print }) }
}

const UNREACHABLE = new Set(["ECONNREFUSED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH", "ENOTFOUND", "EAI_AGAIN", "ECONNRESET"])

/**
 * A session on `target`, closed with the scope. The host key is judged before authentication;
 * an accepted new key is recorded only once the login has succeeded.
 */
export const connect = (target: SshTarget, options: ConnectOptions): Effect.Effect<SshSession, SshError, Scope.Scope> => {
  const host = knownHostsName(target.host, target.port)
  const acquire = Effect.async<ssh2.Client, SshError>((resume) => {
    let privateKey: Buffer
    try {
      privateKey = readFileSync(options.identity)
    } catch (e) {
      resume(Effect.fail(new SshFailed({ host, step: "reading the identity", reason: `${options.identity}: ${(e as Error).message}` })))
      return
    }
    const client = new ssh2.Client()
    let verdict: Verdict | undefined
    let settled = false
    const settle = (effect: Effect.Effect<ssh2.Client, SshError>) => {
      if (settled) return
      settled = true
      resume(effect)
    }
    client.on("ready", () => {
      if (verdict?._tag === "ok" && verdict.pin !== undefined) {
        try {
          mkdirSync(dirname(options.knownHostsFile), { recursive: true, mode: 0o700 })
          appendFileSync(options.knownHostsFile, verdict.pin, { mode: 0o600 })
        } catch (e) {
          client.end()
          settle(Effect.fail(new SshFailed({ host, step: "recording the accepted host key", reason: `${options.knownHostsFile}: ${(e as Error).message}` })))
          return
        }
      }
      settle(Effect.succeed(client))
    })
    client.on("error", (e: Error & { level?: string; code?: string }) => {
      client.end()
      if (verdict?._tag === "refused") settle(Effect.fail(verdict.error))
      else if (e.level === "client-authentication") settle(Effect.fail(new SshAuthFailed({ host, user: target.user, identity: options.identity })))
      else if (e.level === "client-timeout") settle(Effect.fail(new SshUnreachable({ host, reason: `no SSH handshake within ${options.timeoutMs ?? 10_000} ms` })))
      else if (e.code !== undefined && UNREACHABLE.has(e.code)) settle(Effect.fail(new SshUnreachable({ host, reason: e.message })))
      else settle(Effect.fail(new SshFailed({ host, step: "connecting", reason: e.message })))
    })
    client.on("close", () => settle(Effect.fail(verdict?._tag === "refused" ? verdict.error : new SshUnreachable({ host, reason: "the connection closed during the handshake" }))))
    client.connect({
      host: target.host,
      port: target.port,
      username: target.user,
      privateKey,
      readyTimeout: options.timeoutMs ?? 10_000,
      hostVerifier: (key: Buffer) => {
        verdict = judgeHostKey(target, key, options)
        return verdict._tag === "ok"
      }
    })
  })
  return Effect.map(
    Effect.acquireRelease(acquire, (client) => Effect.sync(() => client.end())),
    (client): SshSession => {
      // A lost connection may leave a command or a transfer without its own callback (an SFTP
      // write in flight never hears back): whatever is pending fails when the connection ends.
      const pending = new Set<(reason: string) => void>()
      let lost: string | undefined
      const lose = (reason: string) => {
        lost ??= reason
        for (const fail of [...pending]) fail(lost)
        pending.clear()
      }
      client.on("error", (e: Error) => lose(`the connection failed: ${e.message}`))
      client.on("close", () => lose("the connection closed"))
      /** Runs `start` unless the connection is gone; `onLost` ends the operation if it goes meanwhile. */
      const guarded = <A>(step: string, start: (resume: (effect: Effect.Effect<A, SshFailed>) => void) => void) =>
        Effect.async<A, SshFailed>((resume) => {
          if (lost !== undefined) {
            resume(Effect.fail(new SshFailed({ host, step, reason: lost })))
            return
          }
          let done = false
          const finish = (effect: Effect.Effect<A, SshFailed>) => {
            if (done) return
            done = true
            pending.delete(onLost)
            resume(effect)
          }
          const onLost = (reason: string) => finish(Effect.fail(new SshFailed({ host, step, reason })))
          pending.add(onLost)
          start(finish)
        })
      return {
        target,
        name: host,
        exec: (command) =>
          guarded<CommandResult>(`running ${command}`, (resume) => {
            client.exec(command, (error, stream) => {
              if (error) {
                resume(Effect.fail(new SshFailed({ host, step: `running ${command}`, reason: error.message })))
                return
              }
              const stdout: Array<Buffer> = []
              const stderr: Array<Buffer> = []
              let code: number | undefined
              stream.on("data", (d: Buffer) => stdout.push(d))
              stream.stderr.on("data", (d: Buffer) => stderr.push(d))
              stream.on("exit", (exitCode: number | null, signal?: string) => {
                code = exitCode ?? 128 + (signal === undefined ? 0 : (constants.signals as Record<string, number>)[`SIG${signal}`] ?? 0)
              })
              stream.on("close", () =>
                resume(
                  code === undefined
                    // The channel closed without an exit status: the connection was lost, and
                    // whether the command ran, and how far, is unknown.
                    ? Effect.fail(new SshFailed({ host, step: `running ${command}`, reason: "the connection closed before the command reported its exit status" }))
                    : Effect.succeed({ code, stdout: Buffer.concat(stdout).toString("utf8"), stderr: Buffer.concat(stderr).toString("utf8") })
                ))
            })
          }),
        upload: (local, remote, mode) =>
          guarded<void>(`uploading ${local} to ${remote}`, (resume) => {
            client.sftp((error, sftp) => {
              if (error) {
                resume(Effect.fail(new SshFailed({ host, step: "opening SFTP", reason: error.message })))
                return
              }
              sftp.fastPut(local, remote, { mode }, (putError) => {
                sftp.end()
                if (putError) resume(Effect.fail(new SshFailed({ host, step: `uploading ${local} to ${remote}`, reason: putError.message })))
                else resume(Effect.void)
              })
            })
          })
      }
    }
  )
}
