/**
 * The embedded Authenticator: checks bearer tokens against the digests in a token file, reloading
 * the file when it changes (looked at no more than once a second) so create/revoke need no restart.
 */
import { FileSystem } from "@effect/platform"
import { Errors } from "@mcp/domain"
import { Clock, DateTime, Effect, Layer, Option, SynchronizedRef } from "effect"
import { timingSafeEqual } from "node:crypto"
import { Authenticator, tokenDigest } from "./Authenticator.js"
import { Principal } from "./Principal.js"
import * as TokenFile from "./TokenFile.js"

interface Entry {
  readonly digest: Buffer
  readonly principal: Principal
  readonly expires: Option.Option<DateTime.Utc>
}

interface State {
  readonly entries: ReadonlyArray<Entry>
  readonly stamp: TokenFile.FileStamp
  /** Clock time of the last stat, to look at the file at most once per CHECK_INTERVAL_MS. */
  readonly checkedAt: number
}

const CHECK_INTERVAL_MS = 1_000

const toEntries = (file: TokenFile.TokenFile): ReadonlyArray<Entry> =>
  file.tokens.map((t) => ({
    digest: Buffer.from(t.sha256, "hex"),
    principal: new Principal({ name: t.name, kind: t.kind, role: t.role }),
    expires: Option.fromNullable(t.expires)
  }))

/** Compares against every entry, without stopping at a match, so timing says nothing about the table. */
const find = (entries: ReadonlyArray<Entry>, digest: Buffer): Entry | undefined => {
  let found: Entry | undefined
  for (const entry of entries) {
    if (timingSafeEqual(entry.digest, digest) && found === undefined) found = entry
  }
  return found
}

/** Stats the file; when it changed, reloads it. A bad reload keeps the last good table and logs why. */
const refresh = (path: string, state: State, now: number): Effect.Effect<State, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const stat = yield* Effect.either(TokenFile.statTokenFile(path))
    if (stat._tag === "Left") {
      yield* Effect.logWarning(`${stat.left.message}; keeping the ${state.entries.length} tokens loaded before`)
      return { ...state, checkedAt: now }
    }
    if (TokenFile.sameStamp(stat.right, state.stamp)) return { ...state, checkedAt: now }
    const loaded = yield* Effect.either(TokenFile.loadTokenFile(path))
    if (loaded._tag === "Left") {
      yield* Effect.logWarning(`${loaded.left.message}\nkeeping the ${state.entries.length} tokens loaded before`)
      // Remember the stamp so the same broken file is not reported every second.
      const { mode: _mode, ...stamp } = stat.right
      return { ...state, stamp, checkedAt: now }
    }
    yield* Effect.logInfo(`reloaded token file ${path}: ${loaded.right.tokens.length} tokens`)
    return { entries: toEntries(loaded.right), stamp: loaded.right.stamp, checkedAt: now }
  })

/** Builds the authenticator for the token file at `path`; fails when the file is missing, invalid or too open. */
export const make = (path: string): Effect.Effect<Authenticator, TokenFile.TokenFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const initial = yield* TokenFile.loadTokenFile(path)
    const state = yield* SynchronizedRef.make<State>({
      entries: toEntries(initial),
      stamp: initial.stamp,
      checkedAt: yield* Clock.currentTimeMillis
    })
    yield* Effect.logDebug(`loaded token file ${path}: ${initial.tokens.length} tokens`)

    // Reloads run inside authenticate, in the caller's context: they use the FileSystem this was built with.
    const current = Effect.flatMap(Clock.currentTimeMillis, (now) =>
      SynchronizedRef.updateAndGetEffect(state, (s) =>
        now - s.checkedAt >= CHECK_INTERVAL_MS ? refresh(path, s, now) : Effect.succeed(s)
      )
    ).pipe(Effect.provideService(FileSystem.FileSystem, fs))

    return Authenticator.of({
      authenticate: (token) =>
        Effect.gen(function* () {
          const { entries } = yield* current
          const entry = find(entries, Buffer.from(tokenDigest(token), "hex"))
          if (entry === undefined) return yield* new Errors.Unauthorized({ reason: "unknown token" })
          if (Option.isSome(entry.expires)) {
            const now = yield* DateTime.now
            if (!DateTime.lessThan(now, entry.expires.value)) {
              return yield* new Errors.Unauthorized({ reason: "token expired" })
            }
          }
          return entry.principal
        })
    })
  })

export const layer = (path: string): Layer.Layer<Authenticator, TokenFile.TokenFileError, FileSystem.FileSystem> =>
  Layer.effect(Authenticator, make(path))
