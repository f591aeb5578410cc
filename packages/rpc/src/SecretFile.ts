/**
 * The one rule for files holding a secret a daemon reads (TLS private keys, the token file, system
 * tokens, DNS API keys and TSIG secrets): mode 0600 or tighter and owned by the daemon's user, or
 * the daemon refuses the file with the fix. Messages name the file, its mode and owner, never its
 * content.
 */
import { Data } from "effect"
import { closeSync, fstatSync, openSync, readFileSync } from "node:fs"

/** What decides whether a file may hold a secret: its permission bits and its owner. */
export interface Access {
  readonly mode: number
  readonly uid: number
}

/** The daemon's effective uid; undefined where the platform has none (Windows). */
export const daemonUid = (): number | undefined => process.geteuid?.()

const octal = (mode: number): string => `0${(mode & 0o777).toString(8)}`

/**
 * Why a file with this access must not hold a secret, ending with the command that fixes it, or
 * undefined when it may. Another owner is refused too (whoever owns the file can chmod it open),
 * unless `uid` is "any owner": the CLI editing a daemon's file, which that daemon checks itself.
 */
export const exposure = (path: string, access: Access, uid: number | "any owner" | undefined = daemonUid()): string | undefined => {
  if ((access.mode & 0o077) !== 0) {
    return `has mode ${octal(access.mode)}, which lets group or others read it; run: chmod 600 ${path}`
  }
  if (typeof uid === "number" && access.uid !== uid) {
    return `is owned by uid ${access.uid}, not by this daemon's user (uid ${uid}); run: chown ${uid} ${path} && chmod 600 ${path}`
  }
  return undefined
}

/** The file lets someone other than the daemon's user read or change it. */
export class SecretFileInsecure extends Data.TaggedError("SecretFileInsecure")<{
  /** What the file holds, for the message: "TLS private key", "PowerDNS API key file"... */
  readonly what: string
  readonly path: string
  /** From `exposure`: the mode or owner found and the fix. */
  readonly problem: string
}> {
  override get message() {
    return `${this.what} ${this.path} ${this.problem}`
  }
}

/** The file cannot be opened or read. */
export class SecretFileUnavailable extends Data.TaggedError("SecretFileUnavailable")<{
  readonly what: string
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `${this.what} ${this.path}: ${this.reason}`
  }
}

export type SecretFileError = SecretFileInsecure | SecretFileUnavailable

const reasonOf = (e: unknown): string => {
  const code = typeof e === "object" && e !== null && "code" in e ? (e as { code: unknown }).code : undefined
  if (code === "ENOENT") return "does not exist"
  if (code === "EACCES") return "permission denied; the daemon's user must own it (mode 0600)"
  return `cannot read: ${e instanceof Error ? e.message : String(e)}`
}

/**
 * Reads a secret file, throwing a SecretFileError when it cannot be read or is too open. The mode
 * is taken from the open descriptor, so a file swapped between the check and the read is not read.
 * Synchronous because the daemons assemble their layers from the config synchronously; `Daemon.main`
 * prints the error and exits.
 */
export const readSync = (path: string, what: string): string => {
  let fd: number
  try {
    fd = openSync(path, "r")
  } catch (e) {
    throw new SecretFileUnavailable({ what, path, reason: reasonOf(e) })
  }
  try {
    const problem = exposure(path, fstatSync(fd))
    if (problem !== undefined) throw new SecretFileInsecure({ what, path, problem })
    try {
      return readFileSync(fd, "utf8")
    } catch (e) {
      throw new SecretFileUnavailable({ what, path, reason: reasonOf(e) })
    }
  } finally {
    closeSync(fd)
  }
}
