/**
 * Which service on this node owns each hostname, from what the registry recorded at each
 * committed deploy: its proxy routes and its DNS names. A deploy may not take a hostname another
 * service here owns: its routes would replace the other's on the shared listener (or fail at the
 * commit, after the containers started) and its DNS name would point the other's clients at it.
 */
import { HostnameClaims, type ServiceDefinition, Validation } from "@mcp/domain"
import { Effect } from "effect"
import { Registry } from "./Registry.js"

const { claims } = HostnameClaims

/**
 * One problem per route hostname another service on this node already routes or has a DNS name
 * for, naming the hostname, its owner and the fix. Reads only; a definition without routes reads nothing.
 */
export const taken = (def: ServiceDefinition.ServiceDefinition, internalZone: string) =>
  Effect.gen(function* () {
    const wanted = claims(def, internalZone)
    if (wanted.length === 0) return []
    const registry = yield* Registry
    const owners = new Map<string, string>()
    for (const r of yield* registry.routes) if (r.service !== def.name) owners.set(r.hostname, r.service)
    for (const d of yield* registry.dnsRecords) if (d.service !== def.name && !owners.has(d.name)) owners.set(d.name, d.service)
    const reported = new Set<string>()
    return wanted.flatMap((c): Array<Validation.Problem> => {
      const owner = owners.get(c.hostname)
      if (owner === undefined || reported.has(c.hostname)) return []
      reported.add(c.hostname)
      return [{
        path: c.path,
        message: `hostname "${c.hostname}" belongs to service ${owner} on this node; one service may not take another's hostname: ` +
          `use another name, or undeploy ${owner} (or drop the route from its definition) first`
      }]
    })
  })
