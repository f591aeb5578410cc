/**
 * The agent's clients of the master's /control endpoint (one per master address, with the
 * node's own system token and certificate), and the rule both the link and the zone records
 * follow: try the addresses in order and take the first answer. A refusal the caller names
 * (`final`, e.g. a typed InvalidRequest) is an answer too: asking the next master would not change it.
 */
import { ControlRpcs, Transport } from "@mcp/rpc"
import { Cause, Data, Duration, Effect, Either } from "effect"

export interface MasterControlOptions {
  readonly masters: ReadonlyArray<string>
  readonly ca: string
  readonly token: Transport.ClientOptions["token"]
  readonly clientCert?: Transport.ClientOptions["clientCert"]
}

/** No master answered: each address with why. */
export class NoMasterAnswered extends Data.TaggedError("NoMasterAnswered")<{ readonly what: string; readonly reasons: ReadonlyArray<string> }> {
  override get message() {
    return `${this.what} failed at every master address (${this.reasons.join("; ")})`
  }
}

const reasonOf = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** How long one master address gets to answer, unless the caller says otherwise. */
export const ANSWER_TIMEOUT = Duration.seconds(10)

export const makeControl = (options: MasterControlOptions) =>
  Effect.map(
    Effect.forEach(options.masters, (address) =>
      Effect.map(
        Transport.makeClient(ControlRpcs, {
          url: `https://${address}/control`,
          ca: options.ca,
          token: options.token,
          ...(options.clientCert === undefined ? {} : { clientCert: options.clientCert })
        }),
        (client) => ({ address, client })
      )),
    (clients) => {
      type Client = (typeof clients)[number]["client"]
      /**
       * The first master address that answers `f` within `timeout`, in order; a `final` failure
       * is returned at once. The timeout is not the server's: a request whose master was killed
       * behind a partition never sees its connection reset, and would wait for good.
       */
      const firstAnswer = <A, E>(
        what: string,
        f: (client: Client) => Effect.Effect<A, E>,
        final: (e: E) => boolean = () => false,
        timeout: Duration.DurationInput = ANSWER_TIMEOUT
      ) =>
        Effect.gen(function* () {
          const reasons: Array<string> = []
          for (const { address, client } of clients) {
            const result = yield* Effect.either(f(client).pipe(Effect.timeout(timeout)))
            if (Either.isRight(result)) return result.right
            if (Cause.isTimeoutException(result.left)) {
              reasons.push(`${address}: no answer within ${Duration.format(timeout)}`)
              continue
            }
            if (final(result.left)) return yield* Effect.fail(result.left)
            reasons.push(`${address}: ${reasonOf(result.left)}`)
          }
          return yield* new NoMasterAnswered({ what, reasons })
        })
      return { firstAnswer }
    }
  )
