/**
 * The master's configuration file (`mcp-master.toml`), decoded with Schema: every problem as
 * `path: message` before anything starts.
 */
import { Names, Node } from "@mcp/domain"
import { Daemon } from "@mcp/rpc"
import { Schema } from "effect"

const Duration = Schema.String.pipe(Schema.pattern(/^[1-9][0-9]*(ms|s|m)$/, { message: () => `must be a duration such as "500ms", "30s" or "1m"` }))

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
      interval: Schema.optionalWith(Duration, { exact: true, default: () => "30s" }),
      miss_threshold: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 100)), { exact: true, default: () => 3 }),
      probe_timeout: Schema.optionalWith(Duration, { exact: true, default: () => "5s" })
    }),
    { exact: true, default: () => ({ interval: "30s", miss_threshold: 3, probe_timeout: "5s" }) }
  ),
  /** Per-node timeout of fleet-wide views (`mcp ps`). */
  fanout_timeout: Schema.optionalWith(Duration, { exact: true, default: () => "3s" }),
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
      reconcile_interval: Schema.optionalWith(Duration, { exact: true, default: () => "30s" })
    }),
    { exact: true, default: () => ({ allowed_domains: [], reconcile_interval: "30s" }) }
  ),
  nodes: Schema.optionalWith(
    Schema.Array(Schema.Struct({ name: Names.NodeName, role: Node.NodeRole, addresses: Schema.Array(Node.NodeAddress).pipe(Schema.minItems(1)) })),
    { exact: true, default: () => [] }
  )
})
export type MasterConfig = typeof MasterConfig.Type

export const decode = Daemon.decodeConfig(MasterConfig, "master")

/** "30s" -> milliseconds. */
export const millis = (d: string): number => {
  const m = /^(\d+)(ms|s|m)$/.exec(d)!
  return Number(m[1]) * (m[2] === "ms" ? 1 : m[2] === "s" ? 1000 : 60_000)
}
