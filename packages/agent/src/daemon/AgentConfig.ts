/**
 * The agent's configuration file (`mcp-agent.toml`), decoded with Schema: every problem is
 * reported as `path: message` before anything starts.
 */
import { Hostname, Names, Node, ServiceDefinition } from "@mcp/domain"
import { Daemon } from "@mcp/rpc"
import * as DaemonLog from "@mcp/rpc/DaemonLog"
import * as Tracing from "@mcp/rpc/Tracing"
import { Duration, Schema } from "effect"
import { Capability, DEFAULT_HARDENING, UsernsMode } from "../engine/ContainerRuntime.js"
import * as BackendAddress from "../proxy/BackendAddress.js"

const PortNumber = Schema.Int.pipe(Schema.between(1, 65535))

/** The `[monitor]` table's defaults: watch every 10 s, report only, no automatic restarts. */
export const MONITOR_DEFAULTS = {
  interval: Duration.seconds(10),
  reconcile: false,
  flap_restarts: 5,
  flap_window: Duration.minutes(10),
  backoff_initial: Duration.seconds(10),
  backoff_max: Duration.minutes(5),
  stable_after: Duration.minutes(10)
} as const

/** The `[edge]` table's defaults: public routes on the standard HTTPS port. */
export const EDGE_DEFAULTS = { listener: 443 } as const

/**
 * `[proxy] backend_networks`: the other hosts' networks manual routes and edge routes may
 * forward to (CIDR). Default none: a route reaches this node's own ports only, and link-local
 * addresses (cloud metadata) are refused whatever this says.
 */
const BackendNetworks = Schema.optionalWith(
  Schema.Array(Schema.String.pipe(Schema.filter((cidr) => BackendAddress.cidrProblem(cidr) ?? true))),
  { exact: true }
)

const optionalDuration = (fallback: Duration.Duration) => Schema.optionalWith(ServiceDefinition.Duration, { exact: true, default: () => fallback })

/** A decoded setting as the file can write it (largest whole unit: "60s" reads "1m"), for messages. */
const durationText = Schema.encodeSync(ServiceDefinition.Duration)

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
  tls: Daemon.TlsSection,
  auth: Daemon.AuthSection,
  /**
   * The container engine. `userns` and `capabilities` harden every container (see
   * docs/SECURITY-containers.md); only this file sets them, never a service definition.
   */
  runtime: Schema.optionalWith(
    Schema.Struct({
      socket: Schema.optionalWith(Schema.String, { exact: true }),
      userns: Schema.optionalWith(UsernsMode, { exact: true, default: () => DEFAULT_HARDENING.userns }),
      capabilities: Schema.optionalWith(Schema.Array(Capability), { exact: true, default: () => DEFAULT_HARDENING.capabilities })
    }),
    { exact: true, default: () => ({ ...DEFAULT_HARDENING }) }
  ),
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
      Schema.Struct({ kind: Schema.Literal("none"), backend_networks: BackendNetworks }),
      Schema.Struct({
        kind: Schema.Literal("haproxy"),
        backend_networks: BackendNetworks,
        /** Agent-owned: haproxy.cfg, maps, crt-lists, certificates. */
        dir: Schema.String,
        /**
         * The agent runs HAProxy itself, as a supervised child (restarted with backoff, stopped
         * with the agent). Default false: the operator runs it (mcp-proxy.service on a provisioned
         * node), so it keeps serving while the agent restarts or is upgraded.
         */
        managed: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => false }),
        master_socket: Schema.String,
        stats_socket: Schema.String,
        bind: Schema.optionalWith(Schema.String, { exact: true }),
        /** CA that re-encrypted (backend_tls) backends are verified against. */
        backend_ca: Schema.optionalWith(Schema.String, { exact: true })
      }),
      Schema.Struct({
        kind: Schema.Literal("caddy"),
        backend_networks: BackendNetworks,
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
      Schema.Struct({
        kind: Schema.Literal("local-ca"),
        /**
         * An existing routes CA directory (ca.key + ca.crt from `mcp ca init-routes`, never the
         * platform CA: the agent refuses that one at start) to issue from instead of a CA of the
         * agent's own in `<data_dir>/ca`: a worker's route certificates then verify against the CA
         * an edge's proxy trusts (its `[proxy] backend_ca`).
         */
        ca_dir: Schema.optionalWith(Schema.String, { exact: true }),
        /**
         * Public domains route certificates may name besides internal_zone; any other name is
         * refused. Default none. Replaced at run time when the master pushes its [edge] allowed_domains.
         */
        allowed_domains: Schema.optionalWith(Schema.Array(Hostname.Hostname), { exact: true })
      }),
      Schema.Struct({
        kind: Schema.Literal("acme"),
        directory_url: Schema.String,
        email: Schema.optionalWith(Schema.String, { exact: true }),
        /** http-01 serves the challenge itself; dns-01 writes TXT records through [dns] (PowerDNS). */
        challenge: Schema.optionalWith(Schema.Literal("http-01", "dns-01"), { exact: true, default: () => "http-01" as const }),
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
      /** The master's own zone ([dns] listen in its config), through [master]. */
      Schema.Struct({ kind: Schema.Literal("master") }),
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
  /** Health-gated start-up order, e.g. dns, then core, then management, then apps. */
  boot: Schema.optionalWith(
    Schema.Struct({
      check_interval: optionalDuration(Duration.seconds(5)),
      restart_after: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { exact: true, default: () => 3 }),
      sequence: Schema.optionalWith(
        Schema.Array(Schema.Struct({
          name: Schema.String,
          services: Schema.Array(Names.ServiceName),
          timeout: optionalDuration(Duration.seconds(60)),
          on_failure: Schema.optionalWith(Schema.Literal("wait", "continue"), { exact: true, default: () => "wait" as const }),
          checks: Schema.optionalWith(
            Schema.Array(Schema.Struct({
              service: Names.ServiceName,
              kind: Schema.Literal("http", "https", "tcp", "dns", "exec"),
              path: Schema.optionalWith(Schema.String, { exact: true }),
              route: Schema.optionalWith(Schema.String, { exact: true }),
              port: Schema.optionalWith(PortNumber, { exact: true }),
              server: Schema.optionalWith(Schema.String, { exact: true }),
              command: Schema.optionalWith(Schema.Array(Schema.String), { exact: true })
            })),
            { exact: true, default: () => [] }
          )
        })),
        { exact: true, default: () => [] }
      )
    }),
    { exact: true, default: () => ({ check_interval: Duration.seconds(5), restart_after: 3, sequence: [] }) }
  ),
  /** Edge nodes (role = "edge"): how public routes are served. */
  edge: Schema.optionalWith(
    Schema.Struct({
      /** The proxy listener (port) public routes are served on; where the public names' DNS points. */
      listener: Schema.optionalWith(PortNumber, { exact: true, default: () => EDGE_DEFAULTS.listener })
    }),
    { exact: true, default: () => ({ ...EDGE_DEFAULTS }) }
  ),
  master: Schema.optionalWith(
    Schema.Struct({ addresses: Schema.Array(Node.NodeAddress), token_file: Schema.String }),
    { exact: true }
  ),
  /** How the daemon logs: `format = "logfmt"` (default) or `"json"`, one object per line with trace ids. */
  log: DaemonLog.logSection,
  /** Spans sent over OTLP/HTTP to `otlp_url` (Tracing.ts); absent: none leave the process. */
  tracing: Schema.optionalWith(Tracing.TracingSection, { exact: true }),
  /** /metrics without a token on a loopback listener (Daemon.MetricsSection); /metrics on `listen` needs a token. */
  metrics: Schema.optionalWith(Daemon.MetricsSection, { exact: true }),
  /** The drift and flap monitor (Monitor.ts): how often it compares registry and engine, and whether it restarts. */
  monitor: Schema.optionalWith(
    Schema.Struct({
      interval: optionalDuration(MONITOR_DEFAULTS.interval),
      /** Restart missing or stopped containers of active services, with backoff. */
      reconcile: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => MONITOR_DEFAULTS.reconcile }),
      /** More restarts than this within flap_window is a flap. */
      flap_restarts: Schema.optionalWith(Schema.Int.pipe(Schema.positive()), { exact: true, default: () => MONITOR_DEFAULTS.flap_restarts }),
      flap_window: optionalDuration(MONITOR_DEFAULTS.flap_window),
      backoff_initial: optionalDuration(MONITOR_DEFAULTS.backoff_initial),
      backoff_max: optionalDuration(MONITOR_DEFAULTS.backoff_max),
      /** A component running this long since its last restart gets its backoff reset. */
      stable_after: optionalDuration(MONITOR_DEFAULTS.stable_after)
    }).pipe(Schema.filter((m) => Duration.lessThanOrEqualTo(m.backoff_initial, m.backoff_max)
      ? true
      : { path: ["backoff_max"], message: `backoff_max (${durationText(m.backoff_max)}) must not be below backoff_initial (${durationText(m.backoff_initial)})` })),
    { exact: true, default: () => ({ ...MONITOR_DEFAULTS }) }
  )
}).pipe(
  Schema.filter((c) =>
    c.certs.kind === "acme" && c.certs.challenge === "dns-01" && c.dns.kind !== "powerdns"
      ? { path: ["certs", "challenge"], message: `dns-01 writes its TXT records through PowerDNS: set [dns] kind = "powerdns", or use challenge = "http-01"` }
      : true
  )
)
export type AgentConfig = typeof AgentConfig.Type

/** Decodes the config file's text; unknown keys are errors, like in service definitions. */
export const decode = Daemon.decodeConfig(AgentConfig, "agent")
