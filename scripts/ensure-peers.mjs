#!/usr/bin/env node
// Runs before `npm test` (package.json "pretest"): are the real peers the integration tests start
// on this machine? Binaries are looked up on PATH (and the sbin/bin directories), the images with
// one `podman images`; about 0.1 s when everything is there.
//
// When something is missing: as root with apt-get, it runs the repository's idempotent setup
// scripts once (scripts/setup-podman.sh, setup-peers.sh, setup-debian-node.sh: each only for
// what it provides, printing what it does) and checks again. Otherwise it fails before the
// typecheck and before any test, listing what is missing and the one command that installs it.
// Tests themselves never install or download anything.
//
//   MCP_PEERS_INSTALL=never   only check and report, even as root
//   MCP_PEERS_PATH=dir:dir    where to look for binaries instead (for the tests of this script)
import { spawnSync } from "node:child_process"
import { accessSync, constants, existsSync, statSync } from "node:fs"
import * as path from "node:path"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("..", import.meta.url))
const conf = process.env["MCP_CONTAINERS_CONF"] ?? path.join(repo, ".mcp-local", "containers.conf")
const started = Date.now()

/** What each setup script provides: binaries (with their Debian package), files, Podman images. */
const setups = [
  {
    script: "scripts/setup-podman.sh",
    binaries: [["podman", "podman"], ["runc", "runc"]],
    files: [[conf, "the project's containers.conf"]],
    images: ["localhost/mcp-busybox:v1"]
  },
  {
    script: "scripts/setup-peers.sh",
    binaries: [
      ["haproxy", "haproxy"], ["caddy", "caddy"], ["socat", "socat"], ["openssl", "openssl"], ["pebble", "pebble"],
      ["pdns_server", "pdns-server"], ["sqlite3", "sqlite3"], ["dig", "dnsutils"], ["knotd", "knot"], ["curl", "curl"], ["ip", "iproute2"],
      ["sshd", "openssh-server"], ["nft", "nftables"], ["prometheus", "prometheus"], ["chromium", "chromium"]
    ],
    files: [["/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql", "package pdns-backend-sqlite3"]],
    images: []
  },
  // The systemd unit tests' node image; only once the repository has the script that makes it.
  ...(existsSync(path.join(repo, "scripts", "setup-debian-node.sh"))
    ? [{ script: "scripts/setup-debian-node.sh", binaries: [], files: [], images: [process.env["MCP_DEBIAN_NODE_IMAGE"] ?? "localhost/debian-node:bookworm-sshd"] }]
    : [])
]

const searchDirs = () =>
  (process.env["MCP_PEERS_PATH"] ?? `${process.env["PATH"] ?? ""}:/usr/local/sbin:/usr/sbin:/sbin:/usr/local/bin:/usr/bin:/bin`)
    .split(":")
    .filter((d) => d !== "")

const which = (binary) => {
  for (const dir of searchDirs()) {
    const candidate = path.join(dir, binary)
    try {
      accessSync(candidate, constants.X_OK)
      if (statSync(candidate).isFile()) return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

/** The images Podman has (repository:tag), or undefined when Podman is missing or fails. */
const podmanImages = () => {
  const podman = which("podman")
  if (podman === undefined) return undefined
  const env = existsSync(conf) ? { ...process.env, CONTAINERS_CONF: conf } : process.env
  const r = spawnSync(podman, ["images", "--noheading", "--format", "{{.Repository}}:{{.Tag}}"], { encoding: "utf8", env, timeout: 30_000 })
  return r.status === 0 ? new Set(r.stdout.split("\n").map((l) => l.trim()).filter((l) => l !== "")) : undefined
}

/** Per setup script, what it would provide that is missing now. */
const missing = () => {
  const images = setups.some((s) => s.images.length > 0) ? podmanImages() : new Set()
  return setups
    .map((s) => ({
      script: s.script,
      what: [
        ...s.binaries.filter(([bin]) => which(bin) === undefined).map(([bin, pkg]) => (bin === pkg ? bin : `${bin} (${pkg})`)),
        ...s.files.filter(([file]) => !existsSync(file)).map(([file, why]) => `${file} (${why})`),
        ...s.images.filter((image) => images === undefined || !images.has(image)).map((image) => `image ${image}`)
      ]
    }))
    .filter((m) => m.what.length > 0)
}

const report = (gaps) => gaps.map((g) => `  ${g.what.join(", ")}\n    (from ${g.script})`).join("\n")
const command = (gaps) => gaps.map((g) => `sudo bash ${g.script}`).join(" && ")

let gaps = missing()
if (gaps.length === 0) {
  if (process.env["MCP_PEERS_VERBOSE"] !== undefined) console.log(`==> test peers present (checked in ${Date.now() - started} ms)`)
  process.exit(0)
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0
const mayInstall = process.env["MCP_PEERS_INSTALL"] !== "never" && isRoot && which("apt-get") !== undefined
if (!mayInstall) {
  // Only the project's containers.conf missing needs neither root nor a download: write it.
  const onlyConf = gaps.length === 1 && gaps[0].script === "scripts/setup-podman.sh" && gaps[0].what.length === 1 && !existsSync(conf)
  if (onlyConf && process.env["MCP_PEERS_INSTALL"] !== "never") {
    console.log("==> npm test: writing the project's containers.conf: bash scripts/setup-podman.sh --conf-only")
    spawnSync("bash", [path.join(repo, "scripts", "setup-podman.sh"), "--conf-only"], { stdio: "inherit", cwd: repo })
    gaps = missing()
    if (gaps.length === 0) process.exit(0)
  }
  console.error(
    `npm test: the integration tests need peers this machine does not have:\n${report(gaps)}\n` +
      `Install them (Debian; root and apt), then run npm test again:\n  ${command(gaps)}` +
      (isRoot ? "" : "\n(Run as root, npm test runs these scripts itself.)")
  )
  process.exit(1)
}

// Root with apt: each script once, in order (the node image needs Podman), then check again.
for (const gap of gaps) {
  console.log(`==> npm test: missing ${gap.what.join(", ")}; running: bash ${gap.script}`)
  const r = spawnSync("bash", [path.join(repo, gap.script)], { stdio: "inherit", cwd: repo })
  if (r.status !== 0) {
    console.error(`npm test: bash ${gap.script} failed (exit ${r.status ?? r.signal}); fix that, or run it yourself, then npm test again.`)
    process.exit(1)
  }
}
gaps = missing()
if (gaps.length > 0) {
  console.error(`npm test: still missing after the setup scripts ran:\n${report(gaps)}`)
  process.exit(1)
}
console.log("==> npm test: test peers installed")
