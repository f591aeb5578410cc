/**
 * What the agent and master daemons share at their edge: the [tls] and [auth] config sections,
 * decoding a config file into `path: message` problems, the authenticator the [auth] section
 * names, and the `--config` command line that runs a server until SIGINT/SIGTERM.
 */
import { HttpServer } from "@effect/platform"
import { NodeHttpClient, NodeRuntime } from "@effect/platform-node"
import { Validation } from "@mcp/domain"
import { Effect, Either, Layer, ParseResult, Schema } from "effect"
import { readFileSync } from "node:fs"
import { isIPv4, isIPv6 } from "node:net"
import { buildInfo } from "./BuildInfo.js"
import * as DaemonLog from "./DaemonLog.js"
import * as HttpAuthenticator from "./HttpAuthenticator.js"
import * as Tracing from "./Tracing.js"
import * as TokenFileAuthenticator from "./TokenFileAuthenticator.js"

export const TlsSection = Schema.Struct({
  cert: Schema.String,
  key: Schema.String,
  ca: Schema.String,
  /** Require client certificates signed by the CA (mTLS). */
  client_auth: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false })
})

/** 127.0.0.0/8, ::1 or localhost: a URL's hostname (IPv6 in brackets, as URL gives it) that never leaves the host. */
export const isLoopbackHost = (hostname: string): boolean => {
  const host = hostname.toLowerCase().replace(/^\[|\]$/g, "").replace(/\.$/, "")
  if (host === "localhost" || host === "::1") return true
  if (isIPv4(host)) return host.startsWith("127.")
  // An IPv4-mapped IPv6 loopback, as URL normalizes it (::ffff:7f00:1).
  return isIPv6(host) && /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host)
}

/**
 * Why `identity_url` may not be used, or undefined when it may: bearer tokens travel to it, so it
 * must be https; plain http only to a loopback host, and only with identity_allow_http_loopback.
 */
export const identityUrlProblem = (url: string, allowHttpLoopback: boolean): string | undefined => {
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    return "is not a URL; give the identity service's https:// token-validation endpoint"
  }
  if (parsed.protocol === "https:") return undefined
  if (parsed.protocol !== "http:") {
    return `must be an https:// URL, not ${parsed.protocol}//; give the identity service's https:// token-validation endpoint`
  }
  if (!isLoopbackHost(parsed.hostname)) {
    return "must be https: bearer tokens are sent to it, so change http:// to https://"
      + " (plain http is allowed only to a loopback host, 127.0.0.0/8, ::1 or localhost, with identity_allow_http_loopback = true)"
  }
  return allowHttpLoopback ? undefined
    : "uses plain http: change http:// to https://, or, for an identity service on this host only, set identity_allow_http_loopback = true in [auth]"
}

export const AuthSection = Schema.Struct({
  token_file: Schema.optionalWith(Schema.String, { exact: true }),
  identity_url: Schema.optionalWith(Schema.String, { exact: true }),
  /** Allow an http:// identity_url when its host is loopback (127.0.0.0/8, ::1, localhost); https otherwise. */
  identity_allow_http_loopback: Schema.optionalWith(Schema.Boolean, { exact: true }),
  /**
   * The CA (PEM file) the identity service's certificate must chain to, and the only one trusted
   * for it: tokens are sent there, so a public CA mis-issuing for its name must not receive them.
   * Without it, the system's trust store.
   */
  identity_ca: Schema.optionalWith(Schema.String, { exact: true })
}).pipe(
  Schema.filter((a) => (a.token_file === undefined) === (a.identity_url === undefined)
    ? { path: [], message: "set exactly one of token_file (a local token file) or identity_url (an identity service)" }
    : true),
  Schema.filter((a) => {
    const problem = a.identity_url === undefined ? undefined : identityUrlProblem(a.identity_url, a.identity_allow_http_loopback === true)
    return problem === undefined ? true : { path: ["identity_url"], message: problem }
  }),
  Schema.filter((a) =>
    a.identity_ca !== undefined && (a.identity_url === undefined || !a.identity_url.startsWith("https:"))
      ? { path: ["identity_ca"], message: "pins the CA of an https:// identity_url; set identity_url to the service's https:// endpoint, or remove identity_ca" }
      : true
  )
)

/**
 * `[metrics]`: /metrics is always served on the daemon's HTTPS listener to a valid token; with
 * `listen`, also without a token on a plain listener, which must be a loopback address (the
 * metrics name nodes and services) for a scraper on the same host.
 */
export const MetricsSection = Schema.Struct({
  listen: Schema.String.pipe(Schema.filter((address) => {
    const i = address.lastIndexOf(":")
    const port = Number(address.slice(i + 1))
    if (i <= 0 || !Number.isInteger(port) || port < 1 || port > 65535) {
      return `must be a loopback address and port such as "127.0.0.1:9464"; got ${JSON.stringify(address)}`
    }
    return isLoopbackHost(address.slice(0, i))
      ? true
      : `must be a loopback address (127.0.0.0/8 or [::1]): metrics are served there without a token; scrape other hosts over the daemon's HTTPS listener at /metrics with a token`
  }))
})

/** `host:port` (or `[v6]:port`) of a listen setting. */
export const splitHostPort = (address: string): [string, number] => {
  const i = address.lastIndexOf(":")
  return [address.slice(0, i).replace(/^\[|\]$/g, ""), Number(address.slice(i + 1))]
}

/**
 * The HTTP client for the identity service: with `identity_ca`, one whose TLS trusts that CA
 * alone (read at start: a missing file is a config problem, reported before anything serves).
 */
export const identityClientLayer = (auth: Pick<typeof AuthSection.Type, "identity_ca">) => {
  if (auth.identity_ca === undefined) return NodeHttpClient.layerUndici
  let ca: string
  try {
    ca = readFileSync(auth.identity_ca, "utf8")
  } catch (e) {
    throw new Error(`[auth] identity_ca: cannot read ${auth.identity_ca}: ${(e as Error).message}; give the PEM file of the identity service's CA`)
  }
  return NodeHttpClient.layerWithoutAgent.pipe(Layer.provide(NodeHttpClient.makeAgentLayer({ ca })))
}

/** The authenticator the [auth] section names: a token file, or an identity service URL. */
export const layerAuthenticator = (auth: typeof AuthSection.Type) =>
  auth.token_file !== undefined
    ? TokenFileAuthenticator.layer(auth.token_file)
    : HttpAuthenticator.layer({ url: auth.identity_url! }).pipe(Layer.provide(identityClientLayer(auth)))

/** Decodes a daemon config file's text; unknown keys are errors, like in service definitions. */
export const decodeConfig = <A, I>(schema: Schema.Schema<A, I>, kind: string) =>
  (text: string): Either.Either<A, ReadonlyArray<Validation.Problem>> =>
    Either.flatMap(Validation.parseToml(text), (raw) =>
      Either.mapLeft(
        Schema.decodeUnknownEither(schema, { errors: "all", onExcessProperty: "error" })(raw),
        (e) => ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => ({
          path: Validation.formatPath(i.path),
          message: i._tag === "Unexpected" ? `unknown setting; check the spelling against the ${kind} config reference in README.md`
            : i._tag === "Missing" ? "is missing; this setting is required" : i.message
        }))
      )
    )

/**
 * `<name> --config <file>`: reads and decodes the config (every problem printed, exit 1),
 * assembles the daemon (a missing or too open secret file printed, exit 1), then serves until SIGINT/SIGTERM, logging where it listens.
 */
export const main = <C extends { readonly log: typeof DaemonLog.LogSection.Type; readonly tracing?: Tracing.TracingSection }, E>(options: {
  readonly name: string
  readonly version: string
  readonly path: string
  readonly decode: (text: string) => Either.Either<C, ReadonlyArray<Validation.Problem>>
  readonly layer: (config: C) => Layer.Layer<HttpServer.HttpServer, E>
}) => {
  const args = process.argv.slice(2)
  if (args.includes("--version")) {
    console.log(`${options.name} ${options.version}`)
    process.exit(0)
  }
  const at = args.indexOf("--config")
  const path = at >= 0 ? args[at + 1] : undefined
  if (path === undefined || args.includes("--help")) {
    console.error(`usage: ${options.name} --config <${options.name}.toml>`)
    process.exit(path === undefined && !args.includes("--help") ? 2 : 0)
  }
  let text: string
  try {
    text = readFileSync(path, "utf8")
  } catch (e) {
    console.error(`${options.name}: cannot read config ${path}: ${(e as Error).message}`)
    process.exit(1)
  }
  const decoded = options.decode(text)
  if (Either.isLeft(decoded)) {
    for (const p of decoded.left) console.error(`${path}: ${p.path}: ${p.message}`)
    process.exit(1)
  }
  // Assembling the layer reads the secret files (SecretFile.readSync), which throws when one is
  // missing or too open: that is a config problem to print, like the ones above, not a crash.
  let layer: Layer.Layer<HttpServer.HttpServer, E>
  try {
    layer = options.layer(decoded.right)
  } catch (e) {
    console.error(`${options.name}: ${e instanceof Error ? e.message : String(e)}`)
    process.exit(1)
  }
  Effect.gen(function* () {
    const address = (yield* HttpServer.HttpServer).address
    const where = address._tag === "TcpAddress" ? `${address.hostname}:${address.port}` : "its socket"
    yield* Effect.logInfo(`${options.name} listening on https://${where}${options.path}`)
    return yield* Effect.never
  }).pipe(
    Effect.provide(layer),
    Effect.tapErrorCause((cause) => Effect.logError(`${options.name} stopped`, cause)),
    // One logger, logfmt or JSON ([log] format), for every line (the last one too). runMain's
    // pretty logger is off: it would print each line a second time, and its local-time clock
    // loads the time zone tables (some 2.5 MiB of the executable kept resident) for nothing but that.
    Effect.provide(DaemonLog.layer(decoded.right.log.format)),
    // Outermost, so every span of the daemon (its start too) goes to the collector, if one is set.
    Effect.provide(Tracing.layer({ name: options.name, version: buildInfo().version }, decoded.right.tracing)),
    NodeRuntime.runMain({ disableErrorReporting: true, disablePrettyLogger: true })
  )
}
