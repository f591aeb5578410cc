/**
 * The public routes of a service definition: routes marked `public = true`, whose hostname lies
 * outside the internal zone and is served to the world through an edge node. The master checks
 * them against the domains its config allows before anything changes on any node.
 */
import { classifyHostname } from "./Hostname.js"
import type { ServiceDefinition } from "./ServiceDefinition.js"
import { formatPath, type Problem } from "./Validation.js"

export interface PublicRoute {
  readonly hostname: string
  /** The worker proxy's listener for the route (the route's `port`): the edge forwards there. */
  readonly listener: number
  readonly component: string
  /** Where the route is in the definition, for error messages: `components[0].routes[1]`. */
  readonly path: string
}

/** Every public route of the definition, in file order. Validation guarantees each has a hostname. */
export const publicRoutes = (def: ServiceDefinition): ReadonlyArray<PublicRoute> =>
  def.components.flatMap((c, ci) =>
    (c.routes ?? []).flatMap((r, ri) =>
      r.public && r.hostname !== undefined
        ? [{ hostname: r.hostname, listener: r.port, component: c.name, path: formatPath(["components", ci, "routes", ri]) }]
        : []
    )
  )

/**
 * One problem per public hostname outside every allowed domain, naming the field and the fix.
 * An empty allowed list means this fleet publishes nothing, and says so.
 */
export const disallowedProblems = (
  routes: ReadonlyArray<PublicRoute>,
  internalZone: string,
  allowedDomains: ReadonlyArray<string>
): ReadonlyArray<Problem> =>
  routes.flatMap((r) => {
    const cls = classifyHostname(r.hostname, internalZone, allowedDomains)
    if (cls._tag !== "PublicNotAllowed") return []
    const fix = allowedDomains.length === 0
      ? `this master allows no public domains: add the domain to [edge] allowed_domains in mcp-master.toml`
      : `allowed domains are ${allowedDomains.map((d) => `"${d}"`).join(", ")}: use a name under one of them, or add the domain to [edge] allowed_domains in mcp-master.toml`
    return [{ path: `${r.path}.hostname`, message: `public hostname "${r.hostname}" is not under an allowed domain; ${fix}` }]
  })
