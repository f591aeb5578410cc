/**
 * How often each node heartbeats, chosen by the master so that the fleet's total heartbeat load
 * stays under a rate whatever its size (as Nomad sizes its heartbeat TTL from the number of
 * clients and a target rate). With N nodes and a rate R per second, every node is given at least
 * N / R seconds between heartbeats, never less than the configured interval; so a 20-node fleet
 * keeps the configured cadence and a 10,000-node one slows down instead of loading the master.
 *
 * The interval is stretched by a random fraction (up to `jitter`), never shortened: the total
 * stays at or under R. A node's first interval is drawn from the whole range instead, so that
 * nodes that registered together do not heartbeat in step. The price is detection time: a silent node is noticed after `missThreshold` of its own
 * intervals (detectionBoundMs says how long at most).
 */

export interface CadencePolicy {
  /** The configured interval ([heartbeat] interval): the shortest any node is given. */
  readonly minIntervalMs: number
  /** Heartbeats per second the whole fleet may send ([heartbeat] max_rate). */
  readonly maxRate: number
  /** How far an interval is stretched at most, as a fraction of it (0.1: up to 10% longer). */
  readonly jitter: number
}

/** The interval every node gets before jitter: the configured one, or N / maxRate if longer. */
export const baseIntervalMs = (policy: CadencePolicy, nodes: number): number =>
  Math.max(policy.minIntervalMs, Math.ceil((Math.max(0, nodes) * 1000) / policy.maxRate))

/**
 * One node's next interval, given `random` in [0, 1): the base stretched by up to `jitter`.
 * Every node's interval is at least the base, so N nodes send at most N / base <= maxRate
 * heartbeats per second.
 */
export const nextIntervalMs = (policy: CadencePolicy, nodes: number, random: number): number =>
  Math.floor(baseIntervalMs(policy, nodes) * (1 + policy.jitter * Math.min(Math.max(random, 0), 1)))

/**
 * The interval a node is given with its first heartbeat (its registration): uniformly anywhere
 * over one whole base interval, from `jitter` of it to the longest. Nodes that register together
 * (a fleet booting, a master that lost its database) are thereby spread over the interval at
 * once; jitter alone would take many rounds to pull a crowd apart, and until then the crowd would
 * arrive within a tenth of an interval, far above the rate. Never shorter than `jitter` of the
 * base, so the first deadline does not pass before the agent can answer.
 */
export const firstIntervalMs = (policy: CadencePolicy, nodes: number, random: number): number =>
  Math.max(1, Math.floor(baseIntervalMs(policy, nodes) * (policy.jitter + Math.min(Math.max(random, 0), 1))))

/**
 * The longest a node that falls silent right after a heartbeat goes without a probe, plus the
 * probe's time: `missThreshold` of its (longest) intervals, the last of them seen passed up to
 * `deadlineLatenessMs` late (the master's deadline timer works in rounds; each next deadline is
 * counted from the one before, so the lateness does not add up), then one probe timeout per address.
 */
export const detectionBoundMs = (
  policy: CadencePolicy,
  nodes: number,
  health: { readonly missThreshold: number; readonly probeTimeoutMs: number; readonly addresses: number; readonly deadlineLatenessMs?: number }
): number =>
  Math.floor(baseIntervalMs(policy, nodes) * (1 + policy.jitter)) * health.missThreshold + (health.deadlineLatenessMs ?? 0) +
  health.probeTimeoutMs * Math.max(1, health.addresses)
