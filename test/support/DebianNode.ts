/**
 * Debian nodes for tests: the image scripts/setup-debian-node.sh makes (Debian bookworm with
 * systemd, and no Node, npm or compiler), run as Podman containers under the tests' own Podman
 * configuration (containers.conf from scripts/setup-podman.sh). A node is either a one-shot
 * container for a command, or a long-lived one with systemd as PID 1 (startSystemdNode).
 */
import { spawnSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { requireBinary } from "./ManagedProcess.js"
import { containersConfPath } from "./Podman.js"

export const NODE_IMAGE = process.env["MCP_DEBIAN_NODE_IMAGE"] ?? "localhost/debian-node:bookworm-sshd"

/** The environment podman runs with: the tests' containers.conf, never the machine's. */
export const podmanEnv = () => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

export interface PodmanResult {
  readonly status: number | null
  readonly stdout: string
  readonly stderr: string
  /** stdout then stderr, for failure messages. */
  readonly output: string
}

/**
 * Files that make a node's sshd (started by systemd at boot) listen on 127.0.0.1:`port` only and
 * let root in with `publicKey`, as volumes for startSystemdNode: [host path, node path] pairs,
 * written into `dir`. Debian's sshd_config reads sshd_config.d/*.conf first, so its Port wins.
 */
export const sshdOnLoopback = (dir: string, port: number, publicKey: string): ReadonlyArray<readonly [string, string]> => {
  const config = join(dir, "sshd-loopback.conf")
  writeFileSync(config, `Port ${port}\nListenAddress 127.0.0.1\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n`, { mode: 0o644 })
  const keys = join(dir, "authorized_keys")
  writeFileSync(keys, publicKey, { mode: 0o600 })
  return [[config, "/etc/ssh/sshd_config.d/mcp-test.conf:ro"], [keys, "/root/.ssh/authorized_keys:ro"]]
}

/** Runs podman with `args` to completion (killed after `timeoutMs`, 60 s by default). */
export const podman = (args: ReadonlyArray<string>, options: { readonly input?: string; readonly timeoutMs?: number } = {}): PodmanResult => {
  const r = spawnSync("podman", args, { encoding: "utf8", env: podmanEnv(), input: options.input, timeout: options.timeoutMs ?? 60_000 })
  return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? "", output: `${r.stdout ?? ""}${r.stderr ?? ""}` }
}

/** Fails, naming the command that fixes it, when Podman or the node image is missing. */
export const requireNodeImage = (purpose: string): void => {
  requireBinary("podman", purpose, "Fix: run: bash scripts/setup-podman.sh (as root)")
  if (podman(["image", "exists", NODE_IMAGE]).status !== 0) {
    throw new Error(
      `the Debian node image ${NODE_IMAGE} is missing (${purpose}). Fix: run, as root: bash scripts/setup-debian-node.sh ` +
        `(about a minute; or set MCP_DEBIAN_NODE_IMAGE to another image of Debian with systemd)`
    )
  }
}

export interface SystemdNode {
  /** The container's name. */
  readonly name: string
  /** Runs a bash script in the node as root (errexit, pipefail); its stdout, or a failure with its output. */
  readonly run: (script: string, timeoutMs?: number) => string
  /** The last lines of a unit's journal, for failure messages. */
  readonly journal: (unit: string) => string
  /** Removes the container at once. Safe to call again. */
  readonly remove: () => void
}

/**
 * Starts a node with systemd as PID 1 and waits until systemd has finished booting (running, or
 * degraded: a container lacks some of a machine's units). `volumes` are [host path, node path].
 */
export const startSystemdNode = (
  name: string,
  options: {
    readonly volumes?: ReadonlyArray<readonly [string, string]>
    /**
     * The host's network instead of the container's own: what the node serves is on the host's
     * addresses, so the node must be told to listen on loopback only (sshdOnLoopback).
     */
    readonly hostNetwork?: boolean
  } = {}
): SystemdNode => {
  const started = podman([
    "run", "-d", "--name", name, "--systemd=always",
    ...(options.hostNetwork === true ? ["--network", "host"] : []),
    ...(options.volumes ?? []).flatMap(([host, node]) => ["-v", `${host}:${node}`]),
    NODE_IMAGE, "/sbin/init"
  ])
  if (started.status !== 0) throw new Error(`podman run ${NODE_IMAGE} failed:\n${started.output}`)
  let removed = false
  const remove = () => {
    if (!removed) podman(["rm", "-f", "-t", "0", name])
    removed = true
  }
  try {
    // systemd's bus comes up a moment after the container starts; then wait for boot to finish.
    let state = podman(["exec", name, "systemctl", "is-system-running", "--wait"], { timeoutMs: 60_000 })
    for (const until = Date.now() + 30_000; /Failed to connect to bus/.test(state.output) && Date.now() < until;) {
      spawnSync("sleep", ["0.5"])
      state = podman(["exec", name, "systemctl", "is-system-running", "--wait"], { timeoutMs: 60_000 })
    }
    if (!/^(running|degraded)$/.test(state.stdout.trim())) throw new Error(`systemd in the node ${name} did not finish booting: ${state.output}`)
  } catch (e) {
    remove()
    throw e
  }
  return {
    name,
    run: (script, timeoutMs = 90_000) => {
      const r = podman(["exec", "-i", name, "bash", "-euo", "pipefail", "-s"], { input: script, timeoutMs })
      if (r.status !== 0) throw new Error(`on the node ${name}, exit ${r.status}:\n${script}\n---\n${r.output}`)
      return r.stdout
    },
    journal: (unit) => podman(["exec", name, "journalctl", "--no-pager", "-n", "40", "-u", unit]).output,
    remove
  }
}
