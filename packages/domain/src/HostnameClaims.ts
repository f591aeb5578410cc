/**
 * The hostnames a definition's routes claim, each with where it is written: what the master and
 * the agent compare with the hostnames other services own before a deploy (one service may not
 * take another's hostname).
 */
import { defaultHostname } from "./Hostname.js"
import type { ServiceDefinition } from "./ServiceDefinition.js"
import { formatPath } from "./Validation.js"

export interface Claim {
  readonly hostname: string
  /** Where the route is in the definition: `components[0].routes[1].hostname`. */
  readonly path: string
}

/**
 * Each route's `hostname`, or `<service>.<zone>` for one that names none (another service may
 * have named that one explicitly).
 */
export const claims = (def: ServiceDefinition, internalZone: string): ReadonlyArray<Claim> =>
  def.components.flatMap((c, ci) =>
    (c.routes ?? []).map((r, ri) => ({
      hostname: r.hostname ?? defaultHostname(def.name, internalZone),
      path: formatPath(["components", ci, "routes", ri, "hostname"])
    }))
  )
