/**
 * A real OpenSSH server for tests: sshd on 127.0.0.1 and a free port, as a child process stopped
 * by pid, with its own host key (ed25519, made here with ssh-keygen) and one authorized client
 * key. Root logs in with that key only (no passwords, no PAM).
 */
import { execFileSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { freePort } from "./LocalFleet.js"
import { requireBinary, startManagedProcess, type ManagedProcess } from "./ManagedProcess.js"

export interface Sshd {
  readonly port: number
  /** The private key sshd accepts for root, and its public key beside it (`.pub`). */
  readonly clientKey: string
  /** The host's public key line (`ssh-ed25519 AAAA...`). */
  readonly hostPublicKey: () => string
  /** The host key's fingerprint as `ssh-keygen -lf` prints it (`SHA256:...`). */
  readonly hostFingerprint: () => string
  /** Restarts sshd with a new host key (a reinstalled node, or someone else at its address). */
  readonly replaceHostKey: () => Promise<void>
  readonly stop: () => Promise<void>
}

/** Makes an ed25519 key pair without a passphrase: `file` and `file.pub`. */
export const makeKey = (file: string) => execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", file])

export const startSshd = async (): Promise<Sshd> => {
  const sshd = requireBinary("sshd", "the SSH tests (a real OpenSSH server on loopback)", "Fix: run: bash scripts/setup-peers.sh (as root), or apt-get install openssh-server")
  requireBinary("ssh-keygen", "the SSH tests", "Fix: apt-get install openssh-client")
  const dir = mkdtempSync(join(tmpdir(), "mcp-sshd-"))
  const port = await freePort()
  const hostKey = join(dir, "host_ed25519")
  const clientKey = join(dir, "client_ed25519")
  makeKey(hostKey)
  makeKey(clientKey)
  writeFileSync(join(dir, "authorized_keys"), readFileSync(`${clientKey}.pub`), { mode: 0o600 })
  const config = join(dir, "sshd_config")
  writeFileSync(config, [
    `Port ${port}`,
    "ListenAddress 127.0.0.1",
    `HostKey ${hostKey}`,
    `PidFile ${join(dir, "sshd.pid")}`,
    `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
    "PubkeyAuthentication yes",
    "PasswordAuthentication no",
    "KbdInteractiveAuthentication no",
    "PermitRootLogin prohibit-password",
    "UsePAM no",
    "StrictModes no",
    "Subsystem sftp internal-sftp",
    ""
  ].join("\n"))
  // sshd's privilege separation directory; it refuses to start without it.
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 })

  const start = () =>
    startManagedProcess({
      name: `sshd (127.0.0.1:${port})`,
      command: sshd,
      args: ["-D", "-e", "-f", config],
      ready: { awaiting: "sshd to listen", output: /Server listening on 127\.0\.0\.1 port/ },
      timeoutMs: 15_000
    })
  let process: ManagedProcess = await start()
  const hostPublicKey = () => readFileSync(`${hostKey}.pub`, "utf8").trim()
  return {
    port,
    clientKey,
    hostPublicKey,
    hostFingerprint: () => execFileSync("ssh-keygen", ["-l", "-E", "sha256", "-f", `${hostKey}.pub`], { encoding: "utf8" }).split(" ")[1]!,
    replaceHostKey: async () => {
      await process.stop()
      rmSync(hostKey)
      rmSync(`${hostKey}.pub`)
      makeKey(hostKey)
      process = await start()
    },
    stop: async () => {
      await process.stop()
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
