/**
 * The Authenticator port: turns a bearer token into a Principal or a typed Unauthorized.
 * Real layers: TokenFileAuthenticator (embedded default) and HttpAuthenticator (an external
 * identity service). Tokens are Redacted so they never reach logs or error messages.
 */
import * as Errors from "@mcp/domain/Errors"
import { Context, Effect, Layer, Redacted } from "effect"
import * as crypto from "node:crypto"
import type { Principal } from "./Principal.js"

export interface Authenticator {
  readonly authenticate: (token: Redacted.Redacted<string>) => Effect.Effect<Principal, Errors.Unauthorized>
  /**
   * The token's principal when this authenticator knows it at once, without I/O and without
   * anything to log or count; undefined otherwise (unknown, expired, or not known without a
   * look), and `authenticate` decides. For calls answered without a fiber (AuthMiddleware's
   * Admission); an authenticator without it sends every call through `authenticate`.
   */
  readonly authenticateNow?: (token: Redacted.Redacted<string>) => Principal | undefined
}

export const Authenticator = Context.GenericTag<Authenticator>("@mcp/rpc/Authenticator")

/**
 * crypto.hash digests a short input in one call, in about a third of createHash's time (every
 * heartbeat's token is digested); it came with Node 20.12, and package.json allows any Node 20.
 */
const oneShotHash: typeof crypto.hash | undefined = typeof crypto.hash === "function" ? crypto.hash : undefined

/** Tokens are stored and cached by this digest, never in the clear. */
export const tokenDigest = (token: Redacted.Redacted<string>): string =>
  oneShotHash !== undefined ? oneShotHash("sha256", Redacted.value(token), "hex") : crypto.createHash("sha256").update(Redacted.value(token)).digest("hex")

/** For tests of our own logic: a fixed table of tokens. */
export const layerMemory = (tokens: ReadonlyMap<string, Principal>): Layer.Layer<Authenticator> =>
  Layer.succeed(Authenticator, {
    authenticate: (token) => {
      const principal = tokens.get(Redacted.value(token))
      return principal === undefined
        ? Effect.fail(new Errors.Unauthorized({ reason: "unknown token" }))
        : Effect.succeed(principal)
    },
    authenticateNow: (token) => tokens.get(Redacted.value(token))
  })
