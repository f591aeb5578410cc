/**
 * Certificate renewal: which certificates are due (pure), and the fiber that renews them on a
 * schedule, logging and counting every failure and retrying it on the next round.
 */
import { Cause, Clock, Duration, Effect, Either, Option, Ref } from "effect"
import { REUSE_MARGIN_MS } from "./CertIssuer.js"

export interface RenewableCertificate {
  readonly hostname: string
  /** ISO 8601, as `IssuedCertificate.notAfter`. */
  readonly notAfter: string
}

/** Renew this long before expiry unless told otherwise: the margin within which a cert is not reused. */
export const DEFAULT_MARGIN: Duration.Duration = Duration.millis(REUSE_MARGIN_MS)

/**
 * The certificates to renew at `now`: those expiring within `margin`, already expired, or with an
 * unreadable expiry (renewing is the safe guess). Soonest expiry first, unreadable ones before all.
 */
export const renewDue = <C extends RenewableCertificate>(
  certs: ReadonlyArray<C>,
  now: number | Date,
  margin: Duration.DurationInput = DEFAULT_MARGIN
): ReadonlyArray<C> => {
  const limit = (typeof now === "number" ? now : now.getTime()) + Duration.toMillis(Duration.decode(margin))
  const expiry = (cert: C): number => {
    const at = Date.parse(cert.notAfter)
    return Number.isNaN(at) ? Number.NEGATIVE_INFINITY : at
  }
  return certs
    .map((cert) => ({ cert, at: expiry(cert) }))
    .filter(({ at }) => at <= limit)
    .sort((a, b) => a.at - b.at)
    .map(({ cert }) => cert)
}

export interface RenewalFailure {
  readonly hostname: string
  readonly error: string
}

export interface RenewalRound {
  /** Certificates listed; 0 when listing failed. */
  readonly checked: number
  readonly renewed: ReadonlyArray<string>
  readonly failed: ReadonlyArray<RenewalFailure>
  /** Set when the certificates could not be listed at all. */
  readonly listError: string | undefined
}

export interface RenewerStats {
  readonly rounds: number
  readonly renewed: number
  /** Failed renewals plus failed listings, since the start. */
  readonly failures: number
  readonly lastRound: RenewalRound | undefined
}

export interface RenewerOptions<C extends RenewableCertificate, E1, E2, R1, R2> {
  /** Time between rounds; the first round runs at once (certificates may be due at start). */
  readonly every: Duration.DurationInput
  readonly list: Effect.Effect<ReadonlyArray<C>, E1, R1>
  /** Issue the replacement and switch to it; a failure is retried on the next round. */
  readonly renew: (cert: C) => Effect.Effect<void, E2, R2>
  readonly margin?: Duration.DurationInput
}

export interface Renewer<R> {
  /** One round: list, select, renew each due certificate in turn. Never fails. */
  readonly runOnce: Effect.Effect<RenewalRound, never, R>
  /** Rounds forever, `every` apart; fork it. */
  readonly run: Effect.Effect<never, never, R>
  readonly stats: Effect.Effect<RenewerStats>
}

const describe = (error: unknown): string =>
  typeof error === "string" ? error : error instanceof Error ? error.message : String(error)

/** Runs `effect`, turning failures and defects into a reason; interruption still interrupts. */
const attempt = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<Either.Either<A, string>, never, R> =>
  Effect.matchCauseEffect(effect, {
    onFailure: (cause) =>
      Cause.isInterruptedOnly(cause)
        ? Effect.interrupt
        : Effect.succeed(Either.left(Option.match(Cause.failureOption(cause), {
          onSome: describe,
          onNone: () => `defect: ${describe(Cause.squash(cause))}`
        }))),
    onSuccess: (a) => Effect.succeed(Either.right(a))
  })

export const makeRenewer = <C extends RenewableCertificate, E1, E2, R1, R2>(
  options: RenewerOptions<C, E1, E2, R1, R2>
): Effect.Effect<Renewer<R1 | R2>> =>
  Effect.gen(function*() {
    const stats = yield* Ref.make<RenewerStats>({ rounds: 0, renewed: 0, failures: 0, lastRound: undefined })
    const every = Duration.decode(options.every)
    const margin = options.margin ?? DEFAULT_MARGIN

    const runOnce: Effect.Effect<RenewalRound, never, R1 | R2> = Effect.gen(function*() {
      const listed = yield* attempt(options.list)
      if (Either.isLeft(listed)) {
        const error = listed.left
        yield* Effect.logError(`cannot list certificates to renew; trying again in ${Duration.format(every)}`).pipe(
          Effect.annotateLogs({ error })
        )
        return { checked: 0, renewed: [], failed: [], listError: error }
      }
      const now = yield* Clock.currentTimeMillis
      const due = renewDue(listed.right, now, margin)
      const renewed: Array<string> = []
      const failed: Array<RenewalFailure> = []
      // One at a time: a CA's rate limits and the proxy's reloads both prefer a queue.
      for (const cert of due) {
        const result = yield* attempt(options.renew(cert))
        if (Either.isRight(result)) {
          renewed.push(cert.hostname)
          yield* Effect.logInfo("certificate renewed").pipe(Effect.annotateLogs({ hostname: cert.hostname, previousNotAfter: cert.notAfter }))
        } else {
          const error = result.left
          failed.push({ hostname: cert.hostname, error })
          yield* Effect.logWarning(`renewing the certificate for ${cert.hostname} failed; trying again in ${Duration.format(every)}`).pipe(
            Effect.annotateLogs({ hostname: cert.hostname, notAfter: cert.notAfter, error })
          )
        }
      }
      return { checked: listed.right.length, renewed, failed, listError: undefined }
    }).pipe(
      Effect.tap((round) =>
        Ref.update(stats, (s) => ({
          rounds: s.rounds + 1,
          renewed: s.renewed + round.renewed.length,
          failures: s.failures + round.failed.length + (round.listError !== undefined ? 1 : 0),
          lastRound: round
        }))
      )
    )

    return {
      runOnce,
      run: Effect.forever(Effect.zipRight(runOnce, Effect.sleep(every))),
      stats: Ref.get(stats)
    }
  })

/** Renews due certificates every `every` until interrupted; fork it into the agent's scope. */
export const runRenewer = <C extends RenewableCertificate, E1, E2, R1, R2>(
  options: RenewerOptions<C, E1, E2, R1, R2>
): Effect.Effect<never, never, R1 | R2> => Effect.flatMap(makeRenewer(options), (renewer) => renewer.run)
