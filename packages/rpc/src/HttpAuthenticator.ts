/**
 * An Authenticator backed by an external MCIAS-style identity service: POSTs the bearer token to
 * it and caches each verdict (yes or no) by token digest; an unreachable service is never cached.
 * When the service gives no verdict, the caller gets a generic Unauthorized; the URL, status and
 * error are logged and counted (mcp_identity_service_unavailable).
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Errors } from "@mcp/domain"
import { Cache, Duration, Effect, Either, Equal, Exit, Hash, Layer, Metric, Redacted, Schema } from "effect"
import { Authenticator, tokenDigest } from "./Authenticator.js"
import { Principal, type Role, TokenKind } from "./Principal.js"

export interface Options {
  /** The identity service's token-validation endpoint, e.g. `https://mcias.example/v1/token/validate`. */
  readonly url: string
  /** How long one validation request may take; default 5 seconds. */
  readonly timeout?: Duration.DurationInput | undefined
  /** How long a verdict is reused; default 30 seconds. A revoked token keeps working this long. */
  readonly cacheTtl?: Duration.DurationInput | undefined
  /** How many verdicts to keep; default 10 000. */
  readonly cacheCapacity?: number | undefined
}

/** The service's answer to a validation request. */
export const ValidationResponse = Schema.Struct({
  valid: Schema.Boolean,
  username: Schema.optional(Schema.String),
  roles: Schema.optional(Schema.Array(Schema.String)),
  kind: Schema.optional(TokenKind)
})
export type ValidationResponse = typeof ValidationResponse.Type

/** The highest of admin > user > guest among the service's roles; guest when none applies. */
export const roleOf = (roles: ReadonlyArray<string>): Role =>
  roles.includes("admin") ? "admin" : roles.includes("user") ? "user" : "guest"

/**
 * The cache key: the token's digest decides equality, and the token rides along for the lookup.
 * Holding the Redacted (not the string) keeps it out of anything that prints the key.
 */
class TokenKey implements Equal.Equal {
  constructor(readonly digest: string, readonly token: Redacted.Redacted<string>) {}
  [Equal.symbol](that: Equal.Equal): boolean {
    return that instanceof TokenKey && that.digest === this.digest
  }
  [Hash.symbol](): number {
    return Hash.string(this.digest)
  }
}

/**
 * What a caller is told when the service could not give a verdict. The URL, the status and the
 * transport's error go to the daemon's log only: they say where the identity service is and how
 * it fails, which is nothing a caller holding a (perhaps stolen) token should learn.
 */
export const UNAVAILABLE_REASON = "the identity service could not validate the token; the daemon's log says why"

/** How many times the identity service could not give a verdict, by condition; each is logged with the details. */
export const unavailableCount = Metric.counter("mcp_identity_service_unavailable", {
  incremental: true,
  description: "token validations the identity service could not answer (unreachable, timed out, bad status or bad response)"
})

type Condition = "unreachable" | "timeout" | "status" | "response"

/** The service gave no verdict: why, for the log only. */
class Unavailable {
  readonly _tag = "Unavailable"
  constructor(readonly condition: Condition, readonly detail: string) {}
}

/** Never let the token through into a reason, whatever an HTTP library put in its message. */
const scrub = (text: string, token: Redacted.Redacted<string>): string => {
  const value = Redacted.value(token)
  return value.length === 0 ? text : text.split(value).join("<redacted>")
}

/** The HTTP error's message plus what the transport said (connection refused, reset, …). */
const describe = (e: { readonly message: string; readonly cause?: unknown }): string => {
  const cause = e.cause instanceof Error ? e.cause : undefined
  const code = cause !== undefined && "code" in cause && typeof cause.code === "string" ? cause.code : undefined
  return cause === undefined ? e.message : `${e.message}: ${cause.message}${code !== undefined && !cause.message.includes(code) ? ` (${code})` : ""}`
}

/**
 * Asks the service once. Succeeds with the verdict (a Principal, or the Unauthorized to answer
 * with); fails only when the service could not give one, which is not cached.
 */
const validate = (client: HttpClient.HttpClient, url: string, timeout: Duration.DurationInput, token: Redacted.Redacted<string>) =>
  Effect.gen(function* () {
    const request = HttpClientRequest.post(url).pipe(
      HttpClientRequest.bearerToken(token),
      HttpClientRequest.acceptJson,
      HttpClientRequest.bodyUnsafeJson({})
    )
    const response = yield* client.execute(request)
    if (response.status === 401 || response.status === 403) {
      return Either.left(new Errors.Unauthorized({ reason: "token rejected by the identity service" }))
    }
    if (response.status !== 200) {
      return yield* Effect.fail(new Unavailable("status", `HTTP ${response.status} from ${url}`))
    }
    const body = yield* Effect.mapError(response.json, (e) => new Unavailable("response", `unreadable response from ${url}: ${describe(e)}`))
    const decoded = Schema.decodeUnknownEither(ValidationResponse)(body)
    if (Either.isLeft(decoded)) {
      return yield* Effect.fail(new Unavailable("response", `unexpected response from ${url}: expected {"valid": boolean, "username": string, "roles": string[]}`))
    }
    const answer = decoded.right
    if (!answer.valid) return Either.left(new Errors.Unauthorized({ reason: "token rejected by the identity service" }))
    if (answer.username === undefined || answer.username === "") {
      return yield* Effect.fail(new Unavailable("response", `unexpected response from ${url}: "valid": true without a username`))
    }
    return Either.right(new Principal({ name: answer.username, kind: answer.kind ?? "human", role: roleOf(answer.roles ?? []) }))
  }).pipe(
    Effect.mapError((e) => (e instanceof Unavailable ? e : new Unavailable("unreachable", `cannot reach ${url}: ${describe(e)}`))),
    Effect.timeoutFail({ duration: timeout, onTimeout: () => new Unavailable("timeout", `no answer from ${url} within ${Duration.format(timeout)}`) }),
    // The details are logged and counted here; the caller gets only the generic reason.
    Effect.catchAll((e) =>
      Effect.zipRight(
        Effect.zipRight(
          Effect.logWarning(`identity service could not validate a token (refused): ${scrub(e.detail, token)}`),
          Metric.increment(Metric.tagged(unavailableCount, "condition", e.condition))
        ),
        Effect.fail(new Errors.Unauthorized({ reason: UNAVAILABLE_REASON }))
      )
    )
  )

export const make = (options: Options): Effect.Effect<Authenticator, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const client = yield* HttpClient.HttpClient
    const timeout = options.timeout ?? Duration.seconds(5)
    const ttl = options.cacheTtl ?? Duration.seconds(30)
    const cache = yield* Cache.makeWith({
      capacity: options.cacheCapacity ?? 10_000,
      lookup: (key: TokenKey) => validate(client, options.url, timeout, key.token),
      // Only verdicts are kept; the failed lookup is also invalidated below, since a zero TTL
      // still answers from the cache within the same millisecond.
      timeToLive: (exit) => (Exit.isSuccess(exit) ? ttl : Duration.zero)
    })
    return Authenticator.of({
      authenticate: (token) => {
        const key = new TokenKey(tokenDigest(token), token)
        return cache.get(key).pipe(
          Effect.tapError(() => cache.invalidate(key)),
          Effect.flatMap((verdict) => verdict)
        )
      }
    })
  })

export const layer = (options: Options): Layer.Layer<Authenticator, never, HttpClient.HttpClient> =>
  Layer.effect(Authenticator, make(options))
