/**
 * The release artifact (scripts/release.mjs), built for a test into its own directory: the
 * archive, its checksum and manifest files, and the archive unpacked with the system's tar, as an
 * operator would.
 */
import { spawnSync } from "node:child_process"
import { createHash } from "node:crypto"
import { mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

const repo = fileURLToPath(new URL("../..", import.meta.url))

export interface ManifestFile {
  readonly path: string
  readonly size?: number
  readonly mode?: string
  readonly sha256?: string
  readonly link?: string
}

export interface Manifest {
  readonly name: string
  readonly version: string
  readonly commit: string
  readonly protocol: number
  readonly platform: string
  readonly arch: string
  readonly node: string
  readonly programs: ReadonlyArray<string>
  readonly files: ReadonlyArray<ManifestFile>
}

export interface Release {
  /** mcp-<version>-linux-<arch> */
  readonly name: string
  readonly archive: string
  readonly checksumFile: string
  readonly manifestFile: string
  readonly manifest: Manifest
  /** The archive unpacked: `<unpacked>/<name>/mcp` is the executable. */
  readonly unpacked: string
  /** What scripts/release.mjs printed. */
  readonly log: string
}

/** Builds the release into `out` (minutes at most: dist/ is reused when fresh) and unpacks it. */
export const buildRelease = (out: string): Release => {
  const r = spawnSync(process.execPath, [join(repo, "scripts", "release.mjs"), "--out", out], { encoding: "utf8", timeout: 300_000 })
  if (r.status !== 0) throw new Error(`node scripts/release.mjs exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`)
  const build = JSON.parse(readFileSync(join(repo, "dist", "BUILD"), "utf8")) as { version: string }
  const name = `mcp-${build.version}-linux-${process.arch}`
  const unpacked = join(out, "unpacked")
  mkdirSync(unpacked)
  const tar = spawnSync("tar", ["-C", unpacked, "-xzf", join(out, `${name}.tar.gz`)], { encoding: "utf8" })
  if (tar.status !== 0) throw new Error(`tar -xzf ${name}.tar.gz: ${tar.stderr}`)
  const manifestFile = join(out, `${name}.manifest.json`)
  return {
    name,
    archive: join(out, `${name}.tar.gz`),
    checksumFile: join(out, `${name}.tar.gz.sha256`),
    manifestFile,
    manifest: JSON.parse(readFileSync(manifestFile, "utf8")) as Manifest,
    unpacked,
    log: `${r.stdout}${r.stderr}`
  }
}

/**
 * A release labelled with another version (MCP_BUILD_VERSION), built into `out` from a build of
 * its own (`out`/dist): the repository's dist/, which other tests run from, is left alone.
 * Returns the archive's path (its .sha256 beside it).
 */
export const buildReleaseOfVersion = (out: string, version: string): string => {
  const env = { ...process.env, MCP_BUILD_VERSION: version }
  const dist = join(out, "dist")
  const built = spawnSync(process.execPath, [join(repo, "scripts", "build.mjs"), "--outdir", dist], { encoding: "utf8", env, timeout: 300_000 })
  if (built.status !== 0) throw new Error(`MCP_BUILD_VERSION=${version} node scripts/build.mjs --outdir ${dist} exited ${built.status ?? built.signal}:\n${built.stdout}${built.stderr}`)
  const r = spawnSync(process.execPath, [join(repo, "scripts", "release.mjs"), "--dist", dist, "--out", out], { encoding: "utf8", env, timeout: 300_000 })
  if (r.status !== 0) throw new Error(`node scripts/release.mjs --dist ${dist} exited ${r.status ?? r.signal}:\n${r.stdout}${r.stderr}`)
  return join(out, `mcp-${version}-linux-${process.arch}.tar.gz`)
}

/**
 * A copy of the release archive `archive` relabelled as `version` (its directory renamed), with
 * `patch` applied to the unpacked tree first (e.g. an agent that exits at start), and a fresh
 * checksum beside it. Returns the new archive's path, in `out`.
 */
export const relabelRelease = (archive: string, out: string, version: string, patch: (releaseDir: string) => void = () => {}): string => {
  const work = join(out, `relabel-${version}`)
  mkdirSync(work, { recursive: true })
  const tar = (args: ReadonlyArray<string>) => {
    const r = spawnSync("tar", args, { encoding: "utf8" })
    if (r.status !== 0) throw new Error(`tar ${args.join(" ")}: ${r.stderr}`)
  }
  tar(["-C", work, "-xzf", archive])
  const [original] = readdirSync(work)
  const name = `mcp-${version}-linux-${process.arch}`
  renameSync(join(work, original!), join(work, name))
  patch(join(work, name))
  const target = join(out, `${name}.tar.gz`)
  tar(["-C", work, "-czf", target, name])
  const sum = createHash("sha256").update(readFileSync(target)).digest("hex")
  writeFileSync(`${target}.sha256`, `${sum}  ${name}.tar.gz\n`)
  return target
}
