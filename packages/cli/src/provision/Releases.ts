/**
 * Releases on a node: side by side under /opt/mcp, `current` pointing at the one that runs.
 * A release is unpacked into a hidden staging directory and moved into place only once its
 * archive matched its checksum and unpacked whole; `current` is repointed with a rename, so it
 * always names a complete release, the old or the new (what provisioning and upgrades rely on
 * when a connection drops half-way).
 */
import { Effect } from "effect"
import * as Layout from "./Layout.js"
import { type NodeCommandFailed, quote, type RootShell } from "./RootShell.js"
import type { SshFailed } from "./Ssh.js"

/** The release archive to install (npm run release), with its checksum. */
export interface Artifact {
  readonly archive: string
  readonly sha256: string
  /** mcp-<version>-linux-<arch>: the directory the archive holds. */
  readonly release: string
  readonly version: string
  readonly arch: string
  readonly bytes: number
}

export interface ReleaseState {
  /** The release `current` names ("" when there is none). */
  readonly current: string
  /** Whether the artifact's release is unpacked there, from this very archive. */
  readonly present: boolean
  /** Whether `current` names it and the CLI link points through `current`. */
  readonly linked: boolean
}

/** What the node has of `artifact`'s release. Reads only. */
export const releaseState = (shell: RootShell, artifact: Artifact): Effect.Effect<ReleaseState, SshFailed> =>
  Effect.map(
    shell.test([
      `printf 'current=%s\\n' "$(readlink ${Layout.CURRENT} 2>/dev/null)"`,
      `printf 'sum=%s\\n' "$(cat ${quote(Layout.releaseChecksumPath(artifact.release))} 2>/dev/null)"`,
      `printf 'dir=%s\\n' "$([ -x ${quote(`${Layout.OPT}/${artifact.release}/mcp`)} ] && echo yes)"`,
      `printf 'cli=%s\\n' "$(readlink ${Layout.CLI_LINK} 2>/dev/null)"`
    ].join("\n")),
    ({ stdout }) => {
      const field = (key: string) => new RegExp(`^${key}=(.*)$`, "m").exec(stdout)?.[1] ?? ""
      return {
        current: field("current"),
        present: field("dir") === "yes" && field("sum") === artifact.sha256,
        linked: field("current") === artifact.release && field("cli") === `${Layout.CURRENT}/mcp`
      }
    }
  )

/**
 * Uploads the archive, checks it against its checksum on the node and unpacks it beside the
 * other releases (`current` is left alone). A directory of the same name from another archive
 * (a rebuild of the version) is replaced, unless `current` names it: that one is never touched
 * while it runs.
 */
export const unpackRelease = (
  shell: RootShell,
  artifact: Artifact,
  onUpload: (what: string, bytes: number) => Effect.Effect<void>
): Effect.Effect<void, NodeCommandFailed | SshFailed> =>
  Effect.gen(function* () {
    const dir = `${Layout.OPT}/${artifact.release}`
    const staging = `${Layout.OPT}/.${artifact.release}.partial`
    yield* onUpload(`${artifact.release}.tar.gz`, artifact.bytes)
    const uploaded = yield* shell.upload(artifact.archive)
    yield* shell.run(`checking and unpacking ${artifact.release}`, [
      `echo ${quote(`${artifact.sha256}  ${uploaded}`)} | sha256sum -c --quiet - || { echo "the uploaded archive does not match its checksum ${artifact.sha256}" >&2; exit 1; }`,
      `mkdir -p ${Layout.OPT} && chmod 0755 ${Layout.OPT}`,
      `rm -rf ${quote(staging)} && mkdir -m 0755 ${quote(staging)}`,
      `tar -C ${quote(staging)} -xzf ${quote(uploaded)} --no-same-owner`,
      `[ -x ${quote(`${staging}/${artifact.release}/mcp`)} ] || { echo "the archive holds no ${artifact.release}/mcp" >&2; exit 1; }`,
      `chmod -R go-w ${quote(`${staging}/${artifact.release}`)}`,
      `if [ -e ${quote(dir)} ]; then`,
      `  if [ "$(readlink ${Layout.CURRENT})" = ${quote(artifact.release)} ]; then echo "${dir} runs now and came from another archive; give the new build another version" >&2; exit 1; fi`,
      `  rm -rf ${quote(`${dir}.replaced`)} && mv ${quote(dir)} ${quote(`${dir}.replaced`)}`,
      `fi`,
      `mv ${quote(`${staging}/${artifact.release}`)} ${quote(dir)} && rmdir ${quote(staging)}`,
      `rm -rf ${quote(`${dir}.replaced`)} ${quote(uploaded)}`,
      `echo ${artifact.sha256} > ${quote(Layout.releaseChecksumPath(artifact.release))}`
    ].join("\n"))
  })

/** Points `current` (and the CLI link through it) at `release`, each with one rename. */
export const switchCurrent = (shell: RootShell, release: string): Effect.Effect<void, NodeCommandFailed | SshFailed> =>
  Effect.asVoid(shell.run(`making ${release} current`, [
    `[ -x ${quote(`${Layout.OPT}/${release}/mcp`)} ]`,
    `ln -sfn ${quote(release)} ${Layout.CURRENT}.new && mv -T ${Layout.CURRENT}.new ${Layout.CURRENT}`,
    `ln -sfn ${Layout.CURRENT}/mcp ${Layout.CLI_LINK}.new && mv -T ${Layout.CLI_LINK}.new ${Layout.CLI_LINK}`,
    `${Layout.CURRENT}/mcp --version`
  ].join("\n")))
