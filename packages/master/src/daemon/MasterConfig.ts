/**
 * The master's configuration file (`mcp-master.toml`), decoded with Schema: every problem as
 * `path: message` before anything starts.
 */
import { Names, Node, Policy, ServiceDefinition } from "@mcp/domain"
import * as Daemon from "@mcp/rpc/Daemon"
import * as DaemonLog from "@mcp/rpc/DaemonLog"
import * as Tracing from "@mcp/rpc/Tracing"
import { Duration, Schema } from "effect"
import { isIP } from "node:net"

const DurationText = Schema.String.pipe(Schema.pattern(/^[1-9][0-9]*(ms|s|m)$/, { message: () => `must be a duration such as "500ms", "30s" or "1m"` }))

/**
 * Decoded once, so the code that waits gets a `Duration` and never parses text. The master keeps
 * its own text form (no hours, any number of digits), not the service definitions'. It encodes in
 * milliseconds, the one unit every decoded value is a whole number of.
 */
const DurationFromText = Schema.transform(DurationText, Schema.DurationFromSelf, {
  strict: true,
  decode: (text) => Duration.millis(ServiceDefinition.durationMillis(text)),
  encode: (duration) => `${Duration.toMillis(duration)}ms`
})

/** [heartbeat] max_rate when the file sets none. */
export const DEFAULT_MAX_HEARTBEAT_RATE = 50

const optionalDuration = (fallback: Duration.Duration) => Schema.optionalWith(DurationFromText, { exact: true, default: () => fallback })

export const MasterConfig = Schema.Struct({
  listen: Node.NodeAddress,
  data_dir: Schema.String,
  internal_zone: Schema.optionalWith(Schema.String, { exact: true, default: () => "svc.mcp.internal" }),
  tls: Daemon.TlsSection,
  auth: Daemon.AuthSection,
  /** The system token the master presents to agents. */
  agent_token_file: Schema.String,
  /** Client certificate for agents that require mTLS. */
  client_cert: Schema.optionalWith(Schema.Struct({ cert: Schema.String, key: Schema.String }), { exact: true }),
  heartbeat: Schema.optionalWith(
    Schema.Struct({
      /** How often a node heartbeats; with max_rate, the shortest interval a node is given. */
      interval: optionalDuration(Duration.seconds(30)),
      miss_threshold: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { exact: true, default: () => 3 }),
      probe_timeout: optionalDuration(Duration.seconds(5)),
      /**
       * Heartbeats per second the whole fleet may send (Nomad's default is 50): past
       * max_rate x interval nodes, each node is given a longer interval so the total stays under
       * it, and a silent node takes that much longer to notice.
       */
      max_rate: Schema.optionalWith(Schema.Number.pipe(Schema.greaterThanOrEqualTo(1), Schema.lessThanOrEqualTo(100_000)), { exact: true, default: () => DEFAULT_MAX_HEARTBEAT_RATE }),
      /**
       * "fixed": a node is probed after miss_threshold missed intervals. "phi": after each
       * heartbeat, when the phi-accrual detector's suspicion of its silence reaches phi_threshold
       * (judged against the node's own recent arrivals: sooner for a regular node, later for one
       * on a jittery link); then every miss_threshold intervals as with "fixed".
       */
      detector: Schema.optionalWith(Schema.Literal("fixed", "phi"), { exact: true, default: () => "fixed" as const }),
      /** phi at which a silent node is suspected: 8 is a one-in-10^8 chance it is only late. */
      phi_threshold: Schema.optionalWith(Schema.Number.pipe(Schema.between(1, 16)), { exact: true, default: () => 8 })
    }),
    {
      exact: true,
      default: () => ({
        interval: Duration.seconds(30),
        miss_threshold: 3,
        probe_timeout: Duration.seconds(5),
        max_rate: DEFAULT_MAX_HEARTBEAT_RATE,
        detector: "fixed" as const,
        phi_threshold: 8
      })
    }
  ),
  /** Per-node timeout of fleet-wide views (`mcp ps`). */
  fanout_timeout: optionalDuration(Duration.seconds(3)),
  /** Public routes: which domains may be published, and through which edge node by default. */
  edge: Schema.optionalWith(
    Schema.Struct({
      /** A public hostname must fall under one of these, e.g. ["example.com"]. */
      allowed_domains: Schema.optionalWith(Schema.Array(Schema.String), { exact: true, default: () => [] }),
      /** The edge node used when a public hostname's DNS does not point at a known edge node. */
      default_node: Schema.optionalWith(Names.NodeName, { exact: true }),
      /** DNS servers ("host:port") for the CNAME lookups that pick an edge node; default: the system's. */
      dns_servers: Schema.optionalWith(Schema.Array(Node.NodeAddress), { exact: true }),
      /** How often edge nodes are compared with the master's record of edge routes and repaired. */
      reconcile_interval: optionalDuration(Duration.seconds(30))
    }),
    { exact: true, default: () => ({ allowed_domains: [], reconcile_interval: Duration.seconds(30) }) }
  ),
  /**
   * What a deployed definition may ask of its node (host paths, host network, root, ports, the
   * core tier), enforced here and pushed to agents at registration. Absent: the strict defaults.
   */
  policy: Schema.optionalWith(Policy.DeployPolicy, { exact: true, default: () => Policy.defaults }),
  /**
   * The internal zone's DNS server: the master answers for internal_zone (UDP and TCP) on
   * `listen`, an IP address and port (not 53 by default: a shared machine may run a resolver
   * there). Its name server is ns.<internal_zone> at that IP. Without [dns] the records are kept
   * and listed (`mcp dns list`) but not served.
   */
  dns: Schema.optionalWith(
    Schema.Struct({
      listen: Node.NodeAddress.pipe(Schema.filter((a) => {
        const host = a.slice(0, a.lastIndexOf(":"))
        return isIP(host) === 4 && host !== "0.0.0.0"
          ? true
          : `dns.listen must be a specific IPv4 address and port, e.g. "10.0.0.1:5353" (the zone's NS record points at that IP); got ${JSON.stringify(a)}`
      }))
    }),
    { exact: true }
  ),
  /** How the daemon logs: `format = "logfmt"` (default) or `"json"`, one object per line with trace ids. */
  log: DaemonLog.logSection,
  /** Spans sent over OTLP/HTTP to `otlp_url` (Tracing.ts); absent: none leave the process. */
  tracing: Schema.optionalWith(Tracing.TracingSection, { exact: true }),
  /** /metrics without a token on a loopback listener (Daemon.MetricsSection); /metrics on `listen` needs a token. */
  metrics: Schema.optionalWith(Daemon.MetricsSection, { exact: true }),
  /**
   * The web dashboard at https://<listen>/ui (sign-in with any accepted token). `enabled = false`
   * serves none; `sample_interval` is how often the heartbeat chart samples each node's heartbeat
   * age; `session_ttl` how long a sign-in lasts.
   */
  dashboard: Schema.optionalWith(
    Schema.Struct({
      enabled: Schema.optionalWith(Schema.Boolean, { exact: true, default: () => true }),
      sample_interval: Schema.optionalWith(
        DurationFromText.pipe(Schema.filter((d) => Duration.greaterThanOrEqualTo(d, Duration.seconds(1)) || `dashboard.sample_interval must be at least 1s (an hour of samples is kept per node); got ${Duration.format(d)}`)),
        { exact: true, default: () => Duration.seconds(10) }
      ),
      session_ttl: optionalDuration(Duration.hours(12))
    }),
    { exact: true, default: () => ({ enabled: true, sample_interval: Duration.seconds(10), session_ttl: Duration.hours(12) }) }
  ),
  nodes: Schema.optionalWith(
    Schema.Array(Schema.Struct({ name: Names.NodeName, role: Node.NodeRole, addresses: Schema.Array(Node.NodeAddress).pipe(Schema.minItems(1)) })),
    { exact: true, default: () => [] }
  )
})
export type MasterConfig = typeof MasterConfig.Type

export const decode = Daemon.decodeConfig(MasterConfig, "master")
