/**
 * One service may not take another's route hostname. Taking it would point the other's clients
 * at the newcomer: its proxy route replaces the other's on a shared listener, its DNS record
 * the other's A record, its edge route the other's public one. So a deploy or sync is refused,
 * before anything is stored, placed or sent, when a route hostname it claims is owned by another
 * service: one deployed (placed) whose stored definition routes it, one earlier in the same sync,
 * or one publishing it on an edge (the master's edge routes table).
 */
import { HostnameClaims, type ServiceDefinition, Validation } from "@mcp/domain"
import { Effect, Either } from "effect"
import { MasterDb } from "../db/MasterDb.js"
import { viaDb } from "./crossnode/Model.js"

const { claims } = HostnameClaims

/** A public hostname another service publishes on an edge (the deploy saga says the same). */
export const publishedBy = (hostname: string, owner: string) =>
  `public hostname "${hostname}" is already published by service ${owner}; undeploy ${owner} first, or use another name`

const routedBy = (hostname: string, owner: string, node: string) =>
  `hostname "${hostname}" is routed by service ${owner} (deployed on ${node}); one service may not take another's hostname: ` +
  `use another name, or undeploy ${owner} (or drop the route from its definition and redeploy it) first`

const claimedInBatch = (hostname: string, owner: string) =>
  `hostname "${hostname}" is also claimed by service ${owner} in this sync; one service may not take another's hostname: give each its own`

export interface Refusal {
  readonly service: string
  readonly problems: ReadonlyArray<Validation.Problem>
}

/**
 * Each definition of `defs` (one for a deploy, a sync's batch in order) with the hostnames it
 * claims that another service owns, named with their owner and the fix; those with none are left
 * out. Reads only, and a batch without routes reads nothing.
 */
export const taken = (defs: ReadonlyArray<ServiceDefinition.ServiceDefinition>, internalZone: string): Effect.Effect<ReadonlyArray<Refusal>, never, MasterDb> =>
  Effect.gen(function* () {
    const wanted = defs.map((def) => ({ def, claims: claims(def, internalZone) }))
    if (wanted.every((w) => w.claims.length === 0)) return []
    const db = yield* MasterDb
    const batch = new Set<string>(defs.map((d) => d.name))
    const placedOn = new Map((yield* viaDb(db.placements)).map((p) => [p.service, p.node] as const))
    // Deployed services own what their stored definitions route. A service in the batch is
    // judged by its new definition instead (the one being stored or deployed).
    const deployed = new Map<string, { readonly service: string; readonly node: string }>()
    for (const row of yield* viaDb(db.definitions)) {
      const node = placedOn.get(row.service)
      if (node === undefined || batch.has(row.service)) continue
      const stored = Validation.decodeStoredDefinition(row.definition)
      if (Either.isLeft(stored)) {
        // An older master stored it; what it routes cannot be read, so it claims nothing here.
        yield* Effect.logWarning(`hostname check: the stored definition of ${row.service} does not decode (${stored.left.map((p) => `${p.path}: ${p.message}`).join("; ")}); its hostnames are not checked`)
        continue
      }
      for (const c of claims(stored.right, internalZone)) if (!deployed.has(c.hostname)) deployed.set(c.hostname, { service: row.service, node })
    }
    // Rows being removed count too: the edge serves them until it confirms.
    const published = new Map((yield* viaDb(db.edgeRoutes)).map((r) => [r.route.hostname as string, r.route.service] as const))
    const earlier = new Map<string, string>()
    const refusals: Array<Refusal> = []
    for (const { claims: own, def } of wanted) {
      const problems: Array<Validation.Problem> = []
      const reported = new Set<string>()
      for (const c of own) {
        if (reported.has(c.hostname)) continue
        const onEdge = published.get(c.hostname)
        const routed = deployed.get(c.hostname)
        const inBatch = earlier.get(c.hostname)
        const message = onEdge !== undefined && onEdge !== def.name
          ? publishedBy(c.hostname, onEdge)
          : routed !== undefined
          ? routedBy(c.hostname, routed.service, routed.node)
          : inBatch !== undefined && inBatch !== def.name
          ? claimedInBatch(c.hostname, inBatch)
          : undefined
        if (message === undefined) continue
        reported.add(c.hostname)
        problems.push({ path: c.path, message })
      }
      for (const c of own) if (!earlier.has(c.hostname)) earlier.set(c.hostname, def.name)
      if (problems.length > 0) refusals.push({ service: def.name, problems })
    }
    return refusals
  })
