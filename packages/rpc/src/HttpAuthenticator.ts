/**
 * An Authenticator backed by an external MCIAS-style identity service: POSTs the bearer token to
 * it and caches each verdict (yes or no) by token digest; an unreachable service is never cached.
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { Errors } from "@mcp/domain"
import { Cache, Duration, Effect, Either, Equal, Exit, Hash, Layer, Redacted, Schema } from "effect"
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

const unavailable = (why: string) => new Errors.Unauthorized({ reason: `identity service unavailable: ${why}` })

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
      return yield* Effect.fail(unavailable(`HTTP ${response.status} from ${url}`))
    }
    const body = yield* response.json
    const decoded = Schema.decodeUnknownEither(ValidationResponse)(body)
    if (Either.isLeft(decoded)) {
      return yield* Effect.fail(unavailable(`unexpected response from ${url}: expected {"valid": boolean, "username": string, "roles": string[]}`))
    }
    const answer = decoded.right
    if (!answer.valid) return Either.left(new Errors.Unauthorized({ reason: "token rejected by the identity service" }))
    if (answer.username === undefined || answer.username === "") {
      return yield* Effect.fail(unavailable(`unexpected response from ${url}: "valid": true without a username`))
    }
    return Either.right(new Principal({ name: answer.username, kind: answer.kind ?? "human", role: roleOf(answer.roles ?? []) }))
  }).pipe(
    Effect.timeoutFail({ duration: timeout, onTimeout: () => unavailable(`no answer from ${url} within ${Duration.format(timeout)}`) }),
    Effect.mapError((e) => {
      const reason = e._tag === "Unauthorized" ? e.reason : unavailable(describe(e)).reason
      return new Errors.Unauthorized({ reason: scrub(reason, token) })
    })
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
