#!/usr/bin/env node
/**
 * `npm run release`: the self-contained artifact a node installs, for this machine's
 * architecture. It needs nothing on the target but glibc, libstdc++ and /bin/sh (no Node, npm or
 * compiler): the Node binary it runs on is inside.
 *
 *   release/mcp-<version>-linux-<arch>.tar.gz            the artifact
 *   release/mcp-<version>-linux-<arch>.tar.gz.sha256     its checksum (`sha256sum -c` reads it)
 *   release/mcp-<version>-linux-<arch>.manifest.json     its manifest, also inside as MANIFEST.json
 *
 * Inside, one directory mcp-<version>-linux-<arch>/:
 *
 *   mcp                   the launcher (packaging/release/launcher.sh): runs lib/node on the
 *                         program's bundle; why not a Node single executable: see there
 *   mcp-agent, mcp-master symlinks to mcp: the name started under picks the program
 *   lib/node              this machine's Node binary, unmodified
 *   lib/                  the bundles of `npm run build` (dist/), and
 *   lib/node_modules/     the native packages the bundles require (better-sqlite3, ...) with
 *                         their run-time dependencies, compiled for this Node
 *   systemd/              the units (packaging/systemd), which start /opt/mcp/current/mcp-*
 *   MANIFEST.json         name, version, commit, protocol, platform, arch, Node version, and
 *                         every file with its size, mode and SHA-256 (symlinks with their target)
 *
 * Only this machine's architecture can be built: the Node inside is this one, and the native
 * modules are the ones npm compiled here for it.
 *
 * Uses dist/ as it is when it is newer than every source, else runs `npm run build` first.
 *
 *   node scripts/release.mjs [--out <dir>]     (default: release/ in the repository)
 */
import { execFileSync } from "node:child_process"
import { createHash } from "node:crypto"
import { chmodSync, copyFileSync, cpSync, existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, relative, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { bundleIsFresh } from "./launch.mjs"

const repo = fileURLToPath(new URL("..", import.meta.url))
const require = createRequire(import.meta.url)
const programs = ["mcp", "mcp-agent", "mcp-master"]
/**
 * Dependencies of the native packages that only their install uses (downloading prebuilt
 * binaries, compiling): never loaded at run time, so not shipped.
 */
const INSTALL_ONLY = new Set(["prebuild-install", "node-gyp", "nan", "buildcheck", "node-addon-api"])

const args = process.argv.slice(2)
const outIndex = args.indexOf("--out")
const out = resolve(outIndex >= 0 && args[outIndex + 1] !== undefined ? args[outIndex + 1] : join(repo, "release"))
const fail = (message) => {
  console.error(`release: ${message}`)
  process.exit(1)
}
if (process.platform !== "linux") fail(`nodes run Linux; this machine is ${process.platform}`)

// --dist: package a build made with build.mjs --outdir instead of dist/ (taken as it is).
const distIndex = args.indexOf("--dist")
const dist = distIndex >= 0 && args[distIndex + 1] !== undefined ? resolve(args[distIndex + 1]) : join(repo, "dist")
if (distIndex < 0 && !programs.every(bundleIsFresh)) {
  console.log("release: dist/ is missing or older than the sources; running npm run build")
  execFileSync(process.execPath, [join(repo, "scripts", "build.mjs")], { stdio: "inherit" })
}
const build = JSON.parse(readFileSync(join(dist, "BUILD"), "utf8"))
if (!Array.isArray(build.externals)) fail("dist/BUILD does not list the native packages; run npm run build")

const arch = process.arch
const name = `mcp-${build.version}-linux-${arch}`
const stage = join(out, name)
const started = performance.now()
rmSync(stage, { recursive: true, force: true })
for (const suffix of [".tar.gz", ".tar.gz.sha256", ".manifest.json"]) rmSync(join(out, name + suffix), { force: true })
mkdirSync(join(stage, "lib"), { recursive: true })

// 1. The bundles.
for (const entry of readdirSync(dist)) {
  // dist/test is tsc's output for the test suite; meta.json is a size report.
  if (entry === "test" || entry === "meta.json") continue
  cpSync(join(dist, entry), join(stage, "lib", entry), { recursive: true })
}

// 2. The native packages with their run-time dependencies, found as Node would resolve them.
const packageDir = (pkg, from) => {
  try {
    return dirname(realpathSync(require.resolve(`${pkg}/package.json`, { paths: [from] })))
  } catch {
    return undefined
  }
}
/** What of a package a running program can load: not its C sources, build intermediates or tests. */
const NOT_SHIPPED_DIRS = new Set(["deps", "src", "test", "tests", "docs", "benchmark", "examples", ".github", "node_modules"])
const BUILD_LEFTOVER = /\.(c|cc|cpp|h|hpp|gyp|gypi|o|d|mk|a|pdb|Makefile)$|^Makefile$/
const shipped = (source) => {
  const rel = relative(source.root, source.path)
  if (rel === "") return true
  const parts = rel.split("/")
  if (NOT_SHIPPED_DIRS.has(parts[0]) || parts.includes("obj.target") || parts.includes(".deps")) return false
  return !BUILD_LEFTOVER.test(parts[parts.length - 1])
}
const copied = new Map()
const ship = (pkg, from, optional) => {
  if (INSTALL_ONLY.has(pkg) || copied.has(pkg)) return
  const dir = packageDir(pkg, from)
  if (dir === undefined) {
    if (optional) return // an optional dependency npm did not install here (another platform's)
    fail(`${pkg} (needed by ${relative(repo, from) || "the bundles"}) is not installed; run npm ci`)
  }
  copied.set(pkg, dir)
  cpSync(dir, join(stage, "lib", "node_modules", pkg), { recursive: true, filter: (path) => shipped({ root: dir, path }) })
  const manifest = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"))
  for (const dep of Object.keys(manifest.dependencies ?? {})) ship(dep, dir, false)
  for (const dep of Object.keys(manifest.optionalDependencies ?? {})) ship(dep, dir, true)
}
for (const pkg of build.externals) ship(pkg, repo, false)

// 3. Node, the launcher and the programs' names.
copyFileSync(process.execPath, join(stage, "lib", "node"))
chmodSync(join(stage, "lib", "node"), 0o755)
const launcher = join(stage, "mcp")
copyFileSync(join(repo, "packaging", "release", "launcher.sh"), launcher)
chmodSync(launcher, 0o755)
for (const program of programs.slice(1)) symlinkSync("mcp", join(stage, program))
const reported = execFileSync(join(stage, "mcp-agent"), ["--version"], { encoding: "utf8" }).trim()
if (!reported.includes(build.version)) fail(`mcp-agent --version answered "${reported}", not ${build.version}`)

// 4. The units, as shipped in packaging/systemd.
mkdirSync(join(stage, "systemd"))
for (const unit of readdirSync(join(repo, "packaging", "systemd"))) copyFileSync(join(repo, "packaging", "systemd", unit), join(stage, "systemd", unit))

// 5. The manifest: every file with its checksum, then the archive and its checksum.
const sha256 = (data) => createHash("sha256").update(data).digest("hex")
const files = []
const walk = (dir) => {
  for (const entry of readdirSync(dir).sort()) {
    const path = join(dir, entry)
    const stat = lstatSync(path)
    const rel = relative(stage, path)
    if (stat.isDirectory()) walk(path)
    else if (stat.isSymbolicLink()) files.push({ path: rel, link: readlinkSync(path) })
    else files.push({ path: rel, size: stat.size, mode: (stat.mode & 0o777).toString(8).padStart(4, "0"), sha256: sha256(readFileSync(path)) })
  }
}
walk(stage)
const manifest = {
  name: "mcp",
  version: build.version,
  commit: build.commit,
  protocol: build.protocol,
  platform: "linux",
  arch,
  node: process.versions.node,
  programs,
  files
}
const manifestText = JSON.stringify(manifest, null, 2) + "\n"
writeFileSync(join(stage, "MANIFEST.json"), manifestText)
writeFileSync(join(out, `${name}.manifest.json`), manifestText)

const archive = `${name}.tar.gz`
// Owner root and fixed modes whoever builds it; sorted names so the same tree gives the same list.
execFileSync("tar", ["--sort=name", "--owner=0", "--group=0", "--numeric-owner", "-C", out, "-czf", join(out, archive), name])
writeFileSync(join(out, `${archive}.sha256`), `${sha256(readFileSync(join(out, archive)))}  ${archive}\n`)

const mib = (bytes) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`
const total = files.reduce((sum, f) => sum + (f.size ?? 0), 0)
console.log(`released ${name} in ${((performance.now() - started) / 1000).toFixed(1)} s (${reported})`)
console.log(`  ${relative(process.cwd(), join(out, archive)) || archive}  ${mib(lstatSync(join(out, archive)).size)} (${files.length} files, ${mib(total)} unpacked)`)
console.log(`  native packages: ${[...copied.keys()].join(", ")}`)
if (!existsSync(join(stage, "lib", "node_modules"))) fail("no native package was shipped; the agent's registry needs better-sqlite3")
