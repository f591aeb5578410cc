/**
 * The start-time check of the private keys the cert issuers keep on disk (`[certs] ca_dir/ca.key`,
 * the ACME account key): the same rule as every other secret a daemon reads (SecretFile.exposure,
 * mode 0600 and owned by the daemon's user), applied through FileSystem so it runs inside the
 * issuers' layers and fails their start with the chmod/chown fix.
 */
import { FileSystem } from "@effect/platform"
import { SecretFile } from "@mcp/rpc"
import { Effect, Option } from "effect"

/**
 * Succeeds when `path` is missing (the issuer creates it, 0600) or safe; fails with the
 * SecretFileInsecure whose message names the file, its mode or owner, and the command that fixes it.
 * Another error on looking at the file (EACCES) fails as SecretFileUnavailable.
 */
export const check = (path: string, what: string): Effect.Effect<void, SecretFile.SecretFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(path).pipe(
      Effect.map(Option.some),
      Effect.catchAll((e) =>
        e._tag === "SystemError" && e.reason === "NotFound"
          ? Effect.succeed(Option.none())
          : Effect.fail(new SecretFile.SecretFileUnavailable({ what, path, reason: `cannot inspect it (${e.message}); the daemon's user must own it (mode 0600)` }))
      )
    )
    if (Option.isNone(info)) return
    const daemonUid = SecretFile.daemonUid()
    // A platform without uids (Windows) reports none: only the mode is checked there.
    const uid = Option.getOrElse(info.value.uid, () => daemonUid ?? 0)
    const problem = SecretFile.exposure(path, { mode: info.value.mode, uid }, daemonUid)
    if (problem !== undefined) return yield* new SecretFile.SecretFileInsecure({ what, path, problem })
  })
