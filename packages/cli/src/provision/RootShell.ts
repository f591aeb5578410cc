/**
 * Root on a node over an SSH session: scripts run as root (directly, or through `sudo -n` when
 * the login user is not root), and files are written whole: uploaded into a private temporary
 * directory, then installed beside their destination with owner and mode set and renamed over
 * it, so a reader (or a dropped connection) never sees half a file.
 */
import { Data, Effect, type Scope } from "effect"
import { createHash } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import type { SshFailed, SshSession } from "./Ssh.js"

/** A step of provisioning failed on the node: what it was doing and what the node said. */
export class NodeCommandFailed extends Data.TaggedError("NodeCommandFailed")<{
  readonly host: string
  readonly step: string
  readonly output: string
}> {
  override get message() {
    const said = this.output.trim()
    return `${this.host}: ${this.step} failed${said === "" ? "" : `:\n${said.split("\n").slice(-20).join("\n")}`}`
  }
}

/** A word for a POSIX shell: single-quoted, with its own single quotes escaped. */
export const quote = (word: string): string => `'${word.replaceAll("'", `'\\''`)}'`

export interface FileSpec {
  readonly path: string
  readonly mode: number
  readonly owner: string
  readonly group: string
}

export interface RootShell {
  readonly host: string
  /** Runs `script` as root with `sh -e`; its stdout, or NodeCommandFailed naming `step`. */
  readonly run: (step: string, script: string) => Effect.Effect<string, NodeCommandFailed | SshFailed>
  /** Runs `script` as root and returns its exit code and output, whatever the code. */
  readonly test: (script: string) => Effect.Effect<{ readonly code: number; readonly stdout: string }, SshFailed>
  /** The SHA-256 (hex) of a file on the node, or undefined when it does not exist. */
  readonly digest: (path: string) => Effect.Effect<string | undefined, SshFailed>
  /** Writes `content` to the node whole (temporary file, then rename), with owner and mode. */
  readonly write: (step: string, file: FileSpec, content: string) => Effect.Effect<void, NodeCommandFailed | SshFailed>
  /** Copies a local file into the node's private temporary directory; its path there. */
  readonly upload: (local: string) => Effect.Effect<string, SshFailed>
}

export const sha256 = (content: string | Buffer): string => createHash("sha256").update(content).digest("hex")

const octal = (mode: number) => mode.toString(8).padStart(4, "0")

/**
 * A root shell on the session's node. `root` says whether the login user is root already (from
 * the preflight); otherwise every script goes through `sudo -n` (never a password prompt). The
 * node's temporary directory (mode 0700, the login user's) and the local one are removed with
 * the scope.
 */
export const rootShell = (session: SshSession, root: boolean): Effect.Effect<RootShell, SshFailed | NodeCommandFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const host = session.name
    const asRoot = (script: string) => (root ? `sh -ec ${quote(script)}` : `sudo -n sh -ec ${quote(script)}`)
    const test = (script: string) => Effect.map(session.exec(asRoot(script)), (r) => ({ code: r.code, stdout: r.stdout, output: `${r.stdout}${r.stderr}` }))
    const run = (step: string, script: string) =>
      Effect.flatMap(test(script), (r) => (r.code === 0 ? Effect.succeed(r.stdout) : Effect.fail(new NodeCommandFailed({ host, step, output: r.output }))))

    // The login user's own temporary directory on the node: SFTP writes as that user.
    const made = yield* session.exec("umask 077 && mktemp -d /tmp/mcp-provision.XXXXXXXX")
    const remoteTmp = made.stdout.trim()
    if (made.code !== 0 || !/^\/tmp\/mcp-provision\.[A-Za-z0-9]+$/.test(remoteTmp)) {
      return yield* new NodeCommandFailed({ host, step: "making a temporary directory (mktemp -d)", output: `${made.stdout}${made.stderr}` })
    }
    yield* Effect.addFinalizer(() =>
      session.exec(`rm -rf ${quote(remoteTmp)}`).pipe(
        Effect.catchAll((e) => Effect.logWarning(`could not remove ${remoteTmp} on ${host}: ${e.message}`))
      ))
    const localTmp = mkdtempSync(join(tmpdir(), "mcp-provision-"))
    yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(localTmp, { recursive: true, force: true })))

    let count = 0
    const upload = (local: string) => {
      const remote = `${remoteTmp}/${++count}-${basename(local).replace(/[^A-Za-z0-9._-]/g, "_")}`
      return Effect.as(session.upload(local, remote, 0o600), remote)
    }
    return {
      host,
      run,
      test: (script) => Effect.map(test(script), ({ code, stdout }) => ({ code, stdout })),
      digest: (path) =>
        Effect.map(test(`if [ -f ${quote(path)} ]; then sha256sum < ${quote(path)}; fi`), (r) => /^([0-9a-f]{64})\s/.exec(r.stdout)?.[1]),
      write: (step, file, content) =>
        Effect.gen(function* () {
          const local = join(localTmp, `${++count}`)
          writeFileSync(local, content, { mode: 0o600 })
          const remote = yield* upload(local)
          const next = `${file.path}.mcp-new`
          yield* run(step, [
            `install -m ${octal(file.mode)} -o ${quote(file.owner)} -g ${quote(file.group)} ${quote(remote)} ${quote(next)}`,
            `mv -f ${quote(next)} ${quote(file.path)}`,
            `rm -f ${quote(remote)}`
          ].join("\n"))
        }),
      upload
    }
  })
