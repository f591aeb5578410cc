/**
 * Test harness for the real container engine: starts Podman's Docker-compatible API service on a
 * private socket (foreground child, killed by pid) after making sure Podman and the image exist.
 */
import { spawnSync } from "node:child_process"
import { existsSync, readFileSync, rmSync } from "node:fs"
import * as http from "node:http"
import * as path from "node:path"
import { fileURLToPath } from "node:url"
import type * as EngineLeftovers from "./EngineLeftovers.js"
import { privateDir, requireBinary, startManagedProcess } from "./ManagedProcess.js"

/** The busybox image scripts/setup-podman.sh imports (no registry is reachable in tests). */
export const BUSYBOX_IMAGE = "localhost/mcp-busybox:v1"

const repoRoot = fileURLToPath(new URL("../..", import.meta.url))

/** The project-local containers.conf (runc, cgroupfs, ulimits this sandbox allows). */
export const containersConfPath = (): string =>
  process.env["MCP_CONTAINERS_CONF"] ?? path.join(repoRoot, ".mcp-local", "containers.conf")

export interface PrivateStorage {
  readonly root: string
  readonly runroot: string
  /**
   * Podman's own state (its `alive` lock among it), private too: engines sharing the machine's
   * /run/libpod were seen to wait on each other for good when started together or when one was
   * SIGKILLed mid-operation.
   */
  readonly tmpdir: string
}

/** The global flags that point podman at a private storage. */
export const storageFlags = (storage: PrivateStorage): ReadonlyArray<string> => ["--root", storage.root, "--runroot", storage.runroot, "--tmpdir", storage.tmpdir]

/** A private Podman storage holding only the busybox image (copied from the machine's). */
export const makePrivateStorage = (): PrivateStorage => {
  ensurePodman()
  ensureImage()
  const base = privateDir("podman-storage")
  const storage = { root: path.join(base, "root"), runroot: path.join(base, "run"), tmpdir: path.join(base, "libpod") }
  const archive = path.join(base, "image.tar")
  for (const args of [["save", "-o", archive, BUSYBOX_IMAGE], [...storageFlags(storage), "load", "-i", archive]]) {
    const r = spawnSync("podman", args, { encoding: "utf8", env: podmanEnv() })
    if (r.status !== 0) throw new Error(`podman ${args.join(" ")} failed: ${r.stderr}`)
  }
  return storage
}

/**
 * Resets the engine's record of containers, as a reboot with lost state does: stops them, then
 * deletes Podman's container database and container storage. Images stay. Only for a private
 * storage, with its API service stopped.
 */
export const resetContainerState = (storage: PrivateStorage): void => {
  spawnSync("podman", [...storageFlags(storage), "stop", "-a", "-t", "0"], { env: podmanEnv() })
  // A reboot also drops the mounts a stopped container may keep (its /dev/shm: Podman does not
  // always unmount it for a container in a user namespace); deepest first, only under this storage.
  const mounts = readFileSync("/proc/self/mountinfo", "utf8").split("\n").map((l) => l.split(" ")[4] ?? "")
    .filter((m) => m.startsWith(`${storage.root}/`) || m.startsWith(`${storage.runroot}/`))
    .sort((a, b) => b.length - a.length)
  for (const m of mounts) spawnSync("umount", ["-l", m])
  for (const p of [path.join(storage.root, "libpod", "bolt_state.db"), path.join(storage.root, "overlay-containers"), storage.runroot, storage.tmpdir]) {
    rmSync(p, { recursive: true, force: true })
  }
}

/** Where a private storage's containers show: the paths its conmons name, and its runc bundles. */
export const storagePlace = (storage: PrivateStorage): EngineLeftovers.Place => ({ paths: [storage.root, storage.runroot, storage.tmpdir], bundles: storage.root })

/** The full ids of every container the engine of `storage` lists (podman ps -a), read synchronously. */
export const listedIds = (storage: PrivateStorage): ReadonlySet<string> => {
  const r = spawnSync("podman", [...storageFlags(storage), "ps", "-a", "--no-trunc", "--format", "{{.ID}}"], { encoding: "utf8", env: podmanEnv(), timeout: 60_000 })
  if (r.error !== undefined || r.status !== 0) throw new Error(`podman ps -a on ${storage.root}: ${r.error?.message ?? r.stderr.trim()}`)
  const ids = r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "")
  for (const id of ids) if (!/^[0-9a-f]{64}$/.test(id)) throw new Error(`podman ps -a on ${storage.root} listed "${id}", not a full container id`)
  return new Set(ids)
}

export interface PodmanService {
  readonly socketPath: string
  readonly pid: number
  readonly stop: () => Promise<void>
}

const podmanEnv = (): NodeJS.ProcessEnv => ({ ...process.env, CONTAINERS_CONF: containersConfPath() })

const ensurePodman = (): string =>
  requireBinary(
    "podman",
    "the container engine tests",
    "Fix: run: bash scripts/setup-podman.sh (as root), or apt-get install podman runc busybox-static"
  )

const ensureImage = (): void => {
  const exists = () =>
    existsSync(containersConfPath()) &&
    spawnSync("podman", ["image", "exists", BUSYBOX_IMAGE], { env: podmanEnv() }).status === 0
  if (exists()) return
  // --image-only: the conf and an import of the machine's busybox, never an apt-get from a test.
  const setup = spawnSync("bash", [path.join(repoRoot, "scripts", "setup-podman.sh"), "--image-only"], {
    encoding: "utf8",
    env: { ...process.env, MCP_CONTAINERS_CONF: containersConfPath() }
  })
  if (setup.status !== 0 || !exists()) {
    throw new Error(
      `scripts/setup-podman.sh could not provide ${BUSYBOX_IMAGE} (exit ${setup.status}):\n${setup.stdout}${setup.stderr}`
    )
  }
}

/**
 * Pings the service over the unix socket; resolves true on HTTP 200. Not /version: after a SIGKILL
 * mid-operation a new service took 7 s to answer it (it gathers the engine's details), longer
 * than a readiness poll waits, while it answered a ping at once.
 */
const answers = (socketPath: string): Promise<boolean> =>
  new Promise((resolve) => {
    const req = http.get({ socketPath, path: "/_ping", timeout: 2000 }, (res) => {
      res.resume()
      resolve(res.statusCode === 200)
    })
    req.on("timeout", () => req.destroy())
    req.on("error", () => resolve(false))
  })

/**
 * Starts `podman system service --time=0 unix://<tmp>/podman.sock` and waits until it answers.
 * Containers the tests create live in the machine's default (root) storage: remove them in the
 * tests' own finalizers.
 */
export const startPodmanService = async (
  options: {
    readonly timeoutMs?: number
    /** A private storage (root, runroot) instead of the machine's: for tests that reset it. */
    readonly storage?: PrivateStorage
    /**
     * The directory of the socket, to start a service again where a killed one listened (its
     * clients keep the path); it is the caller's to remove. Default: a private directory, removed by `stop`.
     */
    readonly dir?: string
  } = {}
): Promise<PodmanService> => {
  const podman = ensurePodman()
  ensureImage()
  const dir = options.dir ?? privateDir("podman")
  const socketPath = path.join(dir, "podman.sock")
  // A killed service leaves its socket file; the next one binds the path again.
  if (options.dir !== undefined) rmSync(socketPath, { force: true })
  const flags = options.storage === undefined ? [] : storageFlags(options.storage)
  const service = await startManagedProcess({
    name: "podman system service",
    command: podman,
    args: [...flags, "system", "service", "--time=0", `unix://${socketPath}`],
    env: podmanEnv(),
    ...(options.dir === undefined ? { dir } : {}),
    ready: { awaiting: `GET /_ping on ${socketPath} to answer 200`, check: async () => existsSync(socketPath) && (await answers(socketPath)) },
    timeoutMs: options.timeoutMs ?? 30_000
  })
  return { socketPath, pid: service.pid, stop: service.dispose }
}
