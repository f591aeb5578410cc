/**
 * Release archives on the operator's machine: `npm run release` writes each with its checksum
 * beside it; one is picked by version and architecture, and checked before it is uploaded.
 */
import { Effect, Option } from "effect"
import { createHash } from "node:crypto"
import { createReadStream, readFileSync, statSync } from "node:fs"
import { basename, join } from "node:path"
import { buildInfo } from "../commands/Version.js"
import { CommandFailed } from "../Report.js"
import type { Artifact } from "./Releases.js"

export const RELEASE_NAME = /^mcp-([0-9A-Za-z.+-]+)-linux-([a-z0-9_]+)\.tar\.gz$/

const fileSha256 = (path: string) =>
  Effect.async<string, CommandFailed>((resume) => {
    const hash = createHash("sha256")
    createReadStream(path)
      .on("data", (chunk) => hash.update(chunk))
      .on("end", () => resume(Effect.succeed(hash.digest("hex"))))
      .on("error", (e) => resume(Effect.fail(new CommandFailed({ message: `cannot read the release archive ${path}: ${e.message}` }))))
  })

/**
 * The archive at `path`, checked against the `.sha256` file beside it (as `npm run release`
 * writes it): a corrupt or unchecked archive is never uploaded.
 */
export const readArtifact = (path: string): Effect.Effect<Artifact, CommandFailed> =>
  Effect.gen(function* () {
    const name = RELEASE_NAME.exec(basename(path))
    if (name === null) return yield* new CommandFailed({ message: `${path} is not a release archive (mcp-<version>-linux-<arch>.tar.gz, from npm run release)` })
    let expected: string | undefined
    try {
      expected = /^([0-9a-f]{64})\b/.exec(readFileSync(`${path}.sha256`, "utf8"))?.[1]
    } catch (e) {
      return yield* new CommandFailed({ message: `cannot read ${path}.sha256 (${(e as Error).message}): the checksum npm run release writes beside the archive` })
    }
    if (expected === undefined) return yield* new CommandFailed({ message: `${path}.sha256 holds no SHA-256 digest` })
    const actual = yield* fileSha256(path)
    if (actual !== expected) return yield* new CommandFailed({ message: `${path} does not match ${path}.sha256 (${actual} against ${expected}): copy the release again` })
    return { archive: path, sha256: actual, release: basename(path).slice(0, -".tar.gz".length), version: name[1]!, arch: name[2]!, bytes: statSync(path).size }
  })


/**
 * The archive to install on a node of `arch`: the one given (`--artifact`), else the one of this
 * CLI's version for that architecture in `releasesDir`.
 */
export const artifactFor = (given: Option.Option<string>, releasesDir: string, arch: string): Effect.Effect<Artifact, CommandFailed> =>
  Option.match(given, {
    onSome: readArtifact,
    onNone: () =>
      Effect.mapError(
        readArtifact(join(releasesDir, `mcp-${buildInfo().version}-linux-${arch}.tar.gz`)),
        (e) => new CommandFailed({ message: `${e.message} (build it with npm run release on a ${arch} machine into ${releasesDir}, or pass --artifact)` })
      )
  })
