/**
 * The embedded Authenticator: checks bearer tokens against the digests in a token file, reloading
 * the file when it changes (looked at no more than once a second) so create/revoke need no restart.
 * It fails closed: while the file is missing, unreadable, too open or owned by another user,
 * every token is refused, since the file is what says which tokens were revoked and who may have
 * changed it. A file that reads but does not decode (a slip in a hand edit) keeps the last good
 * tokens instead of locking every operator and agent out; it refuses them only when there are none
 * to keep because the file was unusable before.
 */
import { FileSystem } from "@effect/platform"
import { Errors } from "@mcp/domain"
import { Clock, type DateTime, Effect, Layer, Metric, Option, type Redacted } from "effect"
import { Authenticator, tokenDigest } from "./Authenticator.js"
import { Principal } from "./Principal.js"
import * as SecretFile from "./SecretFile.js"
import * as TokenFile from "./TokenFile.js"

interface Entry {
  /** The token's SHA-256 digest, hex. */
  readonly digest: string
  readonly principal: Principal
  readonly expires: Option.Option<DateTime.Utc>
}

/** Why every token is refused until the file is fixed. */
interface Refusal {
  readonly condition: "missing" | "unreadable" | "insecure" | "invalid"
  /** For the daemon's log: the whole problem (an invalid file's problems too). */
  readonly log: string
  /** For callers: the file and the fix, no content of the file. */
  readonly reason: string
}

interface State {
  readonly entries: ReadonlyMap<string, Entry>
  /** The file as last read, or last found invalid: unchanged, it is not read again. */
  readonly stamp: TokenFile.FileStamp
  /** Clock time of the last stat, to look at the file at most once per CHECK_INTERVAL_MS. */
  readonly checkedAt: number
  readonly refused: Refusal | undefined
}

const CHECK_INTERVAL_MS = 1_000

/** How many times the token file became unusable, by condition; each also refuses every token until fixed. */
export const unusable = Metric.counter("mcp_token_file_unusable", {
  incremental: true,
  description: "times the token file became missing, unreadable, invalid or too open, refusing every token until fixed"
})

const toEntries = (file: TokenFile.TokenFile): ReadonlyArray<Entry> =>
  file.tokens.map((t) => ({
    digest: t.sha256,
    principal: new Principal({ name: t.name, kind: t.kind, role: t.role }),
    expires: Option.fromNullable(t.expires)
  }))

/**
 * The entries by digest (hex). A lookup costs the same whether the file holds 3 tokens or
 * 10,000 (one per node of a large fleet), where comparing against every entry cost a
 * millisecond per call at 10,000. What the lookup's timing could reveal is about the SHA-256
 * digest of the token presented, which a caller cannot steer toward a stored one; the token and
 * the stored digests stay out of reach.
 */
const byDigest = (entries: ReadonlyArray<Entry>): ReadonlyMap<string, Entry> => {
  const map = new Map<string, Entry>()
  // A digest listed twice is refused when the file is decoded; the first would win here.
  for (const entry of entries) if (!map.has(entry.digest)) map.set(entry.digest, entry)
  return map
}

const refusal = (path: string, error: TokenFile.TokenFileError): Refusal => {
  const until = "; every token is refused until it is fixed"
  switch (error._tag) {
    case "TokenFileInsecure":
      return { condition: "insecure", log: error.message + until, reason: error.message + until }
    case "TokenFileInvalid":
      // The problems quote the file, so callers get only where to look.
      return { condition: "invalid", log: error.message + `\nevery token is refused until it is fixed`, reason: `token file ${path} is invalid (the daemon's log lists the problems)${until}` }
    case "TokenFileUnavailable":
      return error.reason.startsWith("does not exist")
        ? { condition: "missing", log: error.message + until, reason: `token file ${path} does not exist; restore it, or create it with mcp token create --file ${path}${until}` }
        : { condition: "unreadable", log: error.message + until, reason: `token file ${path} cannot be read; make it owned by the daemon's user with mode 0600 (chmod 600 ${path})${until}` }
  }
}

/** Refuses every token from now; says so and counts it only when the condition is new, not every second. */
const refuse = (state: State, refused: Refusal, now: number, stamp: TokenFile.FileStamp = state.stamp): Effect.Effect<State> =>
  Effect.gen(function* () {
    if (state.refused?.log !== refused.log) {
      yield* Effect.logWarning(refused.log)
      yield* Metric.increment(Metric.tagged(unusable, "condition", refused.condition))
    }
    return { entries: new Map(), stamp, checkedAt: now, refused }
  })

/** Stats the file; when it is unusable, refuses every token; when it changed or was unusable, reloads it. */
const refresh = (path: string, state: State, now: number): Effect.Effect<State, never, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const stat = yield* Effect.either(TokenFile.statTokenFile(path))
    if (stat._tag === "Left") return yield* refuse(state, refusal(path, stat.left), now)
    const { mode, uid, ...stamp } = stat.right
    // Looked at on every stat, not only when the stamp changed: a chmod may not move ctime within one clock tick.
    const problem = SecretFile.exposure(path, { mode, uid })
    if (problem !== undefined) return yield* refuse(state, refusal(path, new TokenFile.TokenFileInsecure({ path, mode, problem })), now)
    // After a missing, unreadable or too open file the stamp proves nothing (chmod back may keep it), so read again.
    const settled = state.refused === undefined || state.refused.condition === "invalid"
    if (settled && TokenFile.sameStamp(stamp, state.stamp)) return { ...state, checkedAt: now }
    const loaded = yield* Effect.either(TokenFile.loadTokenFile(path, { requireOwner: true }))
    if (loaded._tag === "Left") {
      if (loaded.left._tag !== "TokenFileInvalid" || state.refused !== undefined) return yield* refuse(state, refusal(path, loaded.left), now, stamp)
      yield* Effect.logWarning(`${loaded.left.message}\nkeeping the ${state.entries.size} tokens loaded before`)
      // Remember the stamp so the same broken file is not reported every second.
      return { ...state, stamp, checkedAt: now }
    }
    yield* state.refused === undefined
      ? Effect.logInfo(`reloaded token file ${path}: ${loaded.right.tokens.length} tokens`)
      : Effect.logInfo(`token file ${path} is usable again: ${loaded.right.tokens.length} tokens`)
    return { entries: byDigest(toEntries(loaded.right)), stamp: loaded.right.stamp, checkedAt: now, refused: undefined }
  })

/** Builds the authenticator for the token file at `path`; fails when the file is missing, invalid, too open or another user's. */
export const make = (path: string): Effect.Effect<Authenticator, TokenFile.TokenFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const initial = yield* TokenFile.loadTokenFile(path, { requireOwner: true })
    // Read by any call at once; replaced only by a look at the file, one at a time (the guard).
    let state: State = {
      entries: byDigest(toEntries(initial)),
      stamp: initial.stamp,
      checkedAt: yield* Clock.currentTimeMillis,
      refused: undefined
    }
    const guard = yield* Effect.makeSemaphore(1)
    // authenticateNow reads the time from the clock this was built with, as `authenticate` does.
    const clock = yield* Effect.clock
    yield* Effect.logDebug(`loaded token file ${path}: ${initial.tokens.length} tokens`)

    // Reloads run inside authenticate, in the caller's context: they use the FileSystem this was built with.
    const refreshed = (now: number) =>
      guard.withPermits(1)(Effect.suspend(() =>
        now - state.checkedAt >= CHECK_INTERVAL_MS ? Effect.map(refresh(path, state, now), (s) => (state = s)) : Effect.succeed(state)
      )).pipe(Effect.provideService(FileSystem.FileSystem, fs))
    // Within a second of the last look the state is read without taking the guard: taking it
    // suspends the call's fiber and resumes it from the scheduler, which was a large share of
    // a heartbeat's cost (bench/heartbeats.ts). Once a second a caller takes it and looks at the file.
    const current = Effect.flatMap(Clock.currentTimeMillis, (now) => (now - state.checkedAt >= CHECK_INTERVAL_MS ? refreshed(now) : Effect.succeed(state)))

    /** The entry of a token that is known and unexpired at `now` (millis), from `entries`. */
    const valid = (entries: State["entries"], token: Redacted.Redacted<string>, now: number): Entry | "unknown" | "expired" => {
      const entry = entries.get(tokenDigest(token))
      if (entry === undefined) return "unknown"
      return Option.isSome(entry.expires) && now >= entry.expires.value.epochMillis ? "expired" : entry
    }

    return Authenticator.of({
      authenticate: (token) =>
        Effect.gen(function* () {
          const { entries, refused } = yield* current
          if (refused !== undefined) return yield* new Errors.Unauthorized({ reason: refused.reason })
          const entry = valid(entries, token, yield* Clock.currentTimeMillis)
          if (entry === "unknown") return yield* new Errors.Unauthorized({ reason: "unknown token" })
          if (entry === "expired") return yield* new Errors.Unauthorized({ reason: "token expired" })
          return entry.principal
        }),
      // Known at once only while the file's last look is under a second old and found it usable.
      authenticateNow: (token) => {
        const now = clock.unsafeCurrentTimeMillis()
        if (now - state.checkedAt >= CHECK_INTERVAL_MS || state.refused !== undefined) return undefined
        const entry = valid(state.entries, token, now)
        return typeof entry === "string" ? undefined : entry.principal
      }
    })
  })

export const layer = (path: string): Layer.Layer<Authenticator, TokenFile.TokenFileError, FileSystem.FileSystem> =>
  Layer.effect(Authenticator, make(path))
