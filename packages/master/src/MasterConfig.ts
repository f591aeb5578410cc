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
