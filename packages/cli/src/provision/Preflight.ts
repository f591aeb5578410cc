/**
 * What a node must have before provisioning changes anything on it, read over SSH in one
 * command: the C library the release's Node needs, the architecture the release is built for,
 * systemd as the init system, free disk where the release and the agent's data go, and root
 * (directly or through sudo without a password). Each problem names what was found and the fix.
 */
import { Data, Effect } from "effect"
import type { SshFailed, SshSession } from "./Ssh.js"

/** The release's Node needs glibc 2.28 or newer (docs/INSTALL.md). */
export const MIN_GLIBC = [2, 28] as const
/** Room for a release (about 105 MiB unpacked), the previous one kept for rollback, and the agent's first data. */
export const MIN_FREE_BYTES = 512 * 1024 * 1024

export interface NodeFacts {
  readonly os: string
  /** `uname -m`: x86_64, aarch64, ... */
  readonly machine: string
  /** glibc's version, or undefined when the node has another C library (musl) or none found. */
  readonly glibc: string | undefined
  readonly systemd: boolean
  /** Free bytes on the filesystems of /opt and /var/lib: the smaller. */
  readonly freeBytes: number
  readonly root: boolean
  /** Whether `sudo -n true` works (only asked when not root). */
  readonly sudo: boolean
}

/**
 * One POSIX sh script, `key=value` lines. Read-only: it looks, it changes nothing. Its commands
 * are in every Debian (coreutils, getconf from libc-bin), so a missing one is itself a finding.
 */
export const PROBE = [
  `. /etc/os-release 2>/dev/null; echo "os=\${PRETTY_NAME:-unknown}"`,
  `echo "machine=$(uname -m)"`,
  `echo "glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | sed -n 's/^glibc //p')"`,
  `if [ -d /run/systemd/system ]; then echo systemd=yes; else echo systemd=no; fi`,
  `echo "free=$(df -Pk /opt /var/lib 2>/dev/null | awk 'NR > 1 { if (min == "" || $4 < min) min = $4 } END { print min * 1024 }')"`,
  `if [ "$(id -u)" = 0 ]; then echo root=yes; echo sudo=no; else echo root=no; if sudo -n true 2>/dev/null; then echo sudo=yes; else echo sudo=no; fi; fi`
].join("\n")

export class PreflightUnreadable extends Data.TaggedError("PreflightUnreadable")<{ readonly host: string; readonly output: string }> {
  override get message() {
    return `${this.host}: the preflight check's answer cannot be read (is /bin/sh a POSIX shell there?); it said: ${this.output.slice(0, 400)}`
  }
}

/** The facts in the probe's output, or what made it unreadable. */
export const parseFacts = (output: string): NodeFacts | undefined => {
  const values = new Map<string, string>()
  for (const line of output.split("\n")) {
    const at = line.indexOf("=")
    if (at > 0) values.set(line.slice(0, at), line.slice(at + 1).trim())
  }
  const flag = (key: string) => (values.get(key) === "yes" ? true : values.get(key) === "no" ? false : undefined)
  const free = Number(values.get("free"))
  const [systemd, root, sudo] = [flag("systemd"), flag("root"), flag("sudo")]
  const machine = values.get("machine")
  if (machine === undefined || machine === "" || systemd === undefined || root === undefined || sudo === undefined || !Number.isFinite(free) || values.get("free") === "") return undefined
  const glibc = values.get("glibc")
  return { os: values.get("os") ?? "unknown", machine, glibc: glibc === undefined || glibc === "" ? undefined : glibc, systemd, freeBytes: free, root, sudo }
}

/** Node's name for an architecture `uname -m` reports, as the release archive is named. */
export const releaseArch = (machine: string): string | undefined =>
  ({ x86_64: "x64", amd64: "x64", aarch64: "arm64", arm64: "arm64", armv7l: "arm", ppc64le: "ppc64", s390x: "s390x" } as Record<string, string>)[machine]

export interface Problem {
  readonly check: "C library" | "architecture" | "init system" | "disk" | "privileges"
  readonly found: string
  readonly fix: string
}

const olderThan = (version: string, minimum: readonly [number, number]): boolean => {
  const [major = 0, minor = 0] = version.split(".").map(Number)
  return major < minimum[0] || (major === minimum[0] && minor < minimum[1])
}

/** What stops provisioning `facts` with a release built for `arch`; empty when nothing does. */
export const problems = (facts: NodeFacts, arch: string): ReadonlyArray<Problem> => {
  const found: Array<Problem> = []
  if (facts.glibc === undefined) {
    found.push({ check: "C library", found: `no glibc on ${facts.os}`, fix: "use a Debian (10 or newer) or another glibc-based distribution; the release's Node needs glibc 2.28+" })
  } else if (olderThan(facts.glibc, MIN_GLIBC)) {
    found.push({ check: "C library", found: `glibc ${facts.glibc} on ${facts.os}`, fix: `upgrade the node's OS: the release's Node needs glibc ${MIN_GLIBC.join(".")} or newer (Debian 10+)` })
  }
  const nodeArch = releaseArch(facts.machine)
  if (nodeArch !== arch) {
    found.push({
      check: "architecture",
      found: `${facts.machine}${nodeArch === undefined ? "" : ` (${nodeArch})`}`,
      fix: `this release is built for ${arch}; build one on an ${facts.machine} machine (npm run release) and provision with it`
    })
  }
  if (!facts.systemd) found.push({ check: "init system", found: "not systemd", fix: "the agent runs as a systemd unit: provision a node that boots with systemd" })
  if (facts.freeBytes < MIN_FREE_BYTES) {
    found.push({
      check: "disk",
      found: `${Math.floor(facts.freeBytes / 1024 / 1024)} MiB free under /opt or /var/lib`,
      fix: `free at least ${MIN_FREE_BYTES / 1024 / 1024} MiB there (the release, the previous one kept for rollback, and the agent's data)`
    })
  }
  if (!facts.root && !facts.sudo) {
    found.push({ check: "privileges", found: "not root, and sudo asks for a password", fix: "log in as root, or allow this user sudo without a password (NOPASSWD) for provisioning" })
  }
  return found
}

/** Runs the probe on the node and reads its facts. */
export const probe = (session: SshSession): Effect.Effect<NodeFacts, SshFailed | PreflightUnreadable> =>
  Effect.flatMap(session.exec(PROBE), (result) => {
    const facts = result.code === 0 ? parseFacts(result.stdout) : undefined
    const host = session.name
    return facts === undefined ? Effect.fail(new PreflightUnreadable({ host, output: `${result.stdout}${result.stderr}` })) : Effect.succeed(facts)
  })
