/**
 * The agent's configuration file (`mcp-agent.toml`), decoded with Schema: every problem is
 * reported as `path: message` before anything starts.
 */
import { Names, Node, Validation } from "@mcp/domain"
import { Either, ParseResult, Schema } from "effect"

const PortNumber = Schema.Int.pipe(Schema.between(1, 65535))

export const AgentConfig = Schema.Struct({
  node: Names.NodeName,
  role: Schema.optionalWith(Node.NodeRole, { exact: true, default: () => "worker" as const }),
  /** `host:port` the RPC server listens on. */
  listen: Node.NodeAddress,
  /** Addresses the master should use for this agent, in order; default: listen. */
  addresses: Schema.optionalWith(Schema.Array(Node.NodeAddress), { exact: true }),
  /** The IP other hosts reach this node at (proxy backends, DNS A records). An IP, not a name. */
  node_address: Schema.String.pipe(Schema.pattern(/^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]+)$/, {
    message: () => `node_address must be an IP address (DNS records need one; a name here broke the original system), e.g. "10.0.0.5"`
  })),
  data_dir: Schema.String,
  internal_zone: Schema.optionalWith(Schema.String, { exact: true, default: () => "svc.mcp.internal" }),
  image_registry: Schema.optionalWith(Schema.String, { exact: true, default: () => "localhost" }),
  stop_timeout_seconds: Schema.optionalWith(Schema.Int.pipe(Schema.between(0, 600)), { exact: true, default: () => 10 }),
  tls: Schema.Struct({
    cert: Schema.String,
    key: Schema.String,
    ca: Schema.String,
    client_auth: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false })
  }),
  auth: Schema.Struct({
    token_file: Schema.optionalWith(Schema.String, { exact: true }),
    identity_url: Schema.optionalWith(Schema.String, { exact: true })
  }).pipe(Schema.filter((a) => (a.token_file === undefined) === (a.identity_url === undefined)
    ? { path: [], message: "set exactly one of token_file (a local token file) or identity_url (an identity service)" }
    : true)),
  runtime: Schema.optionalWith(Schema.Struct({ socket: Schema.optionalWith(Schema.String, { exact: true }) }), { exact: true, default: () => ({}) }),
  ports: Schema.optionalWith(
    Schema.Struct({
      min: Schema.optionalWith(PortNumber, { exact: true, default: () => 10000 }),
      max: Schema.optionalWith(PortNumber, { exact: true, default: () => 60000 }),
      bind: Schema.optionalWith(Schema.String, { exact: true, default: () => "127.0.0.1" })
    }).pipe(Schema.filter((p) => (p.min < p.max ? true : { path: ["max"], message: `max (${p.max}) must be above min (${p.min})` }))),
    { exact: true, default: () => ({ min: 10000, max: 60000, bind: "127.0.0.1" }) }
  ),
  /** The node's TLS proxy. Without one, routes are only recorded. */
  proxy: Schema.optionalWith(
    Schema.Union(
      Schema.Struct({ kind: Schema.Literal("none") }),
      Schema.Struct({
        kind: Schema.Literal("haproxy"),
        /** Agent-owned: haproxy.cfg, maps, crt-lists, certificates. */
        dir: Schema.String,
        master_socket: Schema.String,
        stats_socket: Schema.String,
        bind: Schema.optionalWith(Schema.String, { exact: true }),
        /** CA that re-encrypted (backend_tls) backends are verified against. */
        backend_ca: Schema.optionalWith(Schema.String, { exact: true })
      }),
      Schema.Struct({
        kind: Schema.Literal("caddy"),
        admin_url: Schema.String,
        bind: Schema.optionalWith(Schema.String, { exact: true }),
        backend_ca: Schema.optionalWith(Schema.String, { exact: true })
      })
    ),
    { exact: true, default: () => ({ kind: "none" as const }) }
  ),
  /** Where route certificates come from. The embedded default is a local CA in data_dir. */
  certs: Schema.optionalWith(
    Schema.Union(
      Schema.Struct({ kind: Schema.Literal("local-ca") }),
      Schema.Struct({
        kind: Schema.Literal("acme"),
        directory_url: Schema.String,
        email: Schema.optionalWith(Schema.String, { exact: true }),
        /** http-01: the port the challenge server listens on (80 behind a public name). */
        http_port: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 65535)), { exact: true, default: () => 80 }),
        http_host: Schema.optionalWith(Schema.String, { exact: true }),
        /** PEM file trusted for the ACME server's own TLS (an internal CA, pebble in tests). */
        ca_bundle: Schema.optionalWith(Schema.String, { exact: true })
      })
    ),
    { exact: true, default: () => ({ kind: "local-ca" as const }) }
  ),
  /** The DNS server that gets `<service>.<internal zone>` A records. */
  dns: Schema.optionalWith(
    Schema.Union(
      Schema.Struct({ kind: Schema.Literal("none") }),
      Schema.Struct({
        kind: Schema.Literal("powerdns"),
        api_url: Schema.String,
        /** A file holding the API key (kept out of the config and the logs). */
        api_key_file: Schema.String,
        server: Schema.optionalWith(Schema.String, { exact: true }),
        ttl: Schema.optionalWith(Schema.Int, { exact: true })
      }),
      Schema.Struct({
        kind: Schema.Literal("rfc2136"),
        server: Schema.String,
        key_name: Schema.String,
        /** A file holding the base64 TSIG secret (hmac-sha256). */
        key_secret_file: Schema.String,
        ttl: Schema.optionalWith(Schema.Int, { exact: true })
      })
    ),
    { exact: true, default: () => ({ kind: "none" as const }) }
  ),
  master: Schema.optionalWith(
    Schema.Struct({ addresses: Schema.Array(Node.NodeAddress), token_file: Schema.String }),
    { exact: true }
  )
})
export type AgentConfig = typeof AgentConfig.Type

/** Decodes the config file's text; unknown keys are errors, like in service definitions. */
export const decode = (text: string): Either.Either<AgentConfig, ReadonlyArray<Validation.Problem>> =>
  Either.flatMap(Validation.parseToml(text), (raw) =>
    Either.mapLeft(
      Schema.decodeUnknownEither(AgentConfig, { errors: "all", onExcessProperty: "error" })(raw),
      (e) => ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => ({
        path: Validation.formatPath(i.path),
        message: i._tag === "Unexpected" ? "unknown setting; check the spelling against the agent config reference in README.md" : i._tag === "Missing" ? "is missing; this setting is required" : i.message
      }))
    )
  )
