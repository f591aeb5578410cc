/**
 * DNS hostnames and how MCP classifies them: inside the internal zone (served by a node's own
 * proxy and DNS) or public (served through an edge node, and only under an allowed domain).
 */
import { FastCheck, Schema } from "effect"

const LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/

/** Why `name` is not a valid DNS hostname, or undefined when it is one. */
export const hostnameProblem = (name: string): string | undefined => {
  if (name.length === 0) return "hostname is empty"
  if (name.length > 253) return `hostname is ${name.length} characters long; DNS allows at most 253`
  if (name.endsWith(".")) return `hostname "${name}" ends with "."; write it without the trailing dot`
  if (name !== name.toLowerCase()) return `hostname "${name}" has upper-case letters; write it in lower case`
  const labels = name.split(".")
  if (labels.length < 2) return `hostname "${name}" has a single label; use a fully qualified name such as "${name}.example.com"`
  const bad = labels.find((l) => !LABEL.test(l))
  if (bad !== undefined) {
    return `hostname "${name}" has an invalid label "${bad}": labels hold a-z, 0-9 and "-", 1 to 63 characters, not starting or ending with "-"`
  }
  return undefined
}

export const Hostname = Schema.String.pipe(
  Schema.filter((s) => hostnameProblem(s) ?? true),
  Schema.annotations({
    arbitrary: () => (fc: typeof FastCheck) =>
      fc
        .array(fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/), { minLength: 2, maxLength: 4 })
        .map((labels) => labels.join("."))
  }),
  Schema.brand("Hostname"),
  Schema.annotations({ identifier: "Hostname" })
)
export type Hostname = typeof Hostname.Type

/** True when `name` is the zone itself or a name below it. */
export const isUnder = (name: string, domain: string): boolean => name === domain || name.endsWith(`.${domain}`)

/** The hostname a route gets when its definition names none: `<service>.<internal zone>`. */
export const defaultHostname = (service: string, internalZone: string): string => `${service}.${internalZone}`

export type HostnameClass =
  | { readonly _tag: "Internal" }
  | { readonly _tag: "Public"; readonly allowedDomain: string }
  | { readonly _tag: "PublicNotAllowed"; readonly allowedDomains: ReadonlyArray<string> }

/**
 * Internal names are served by the worker's proxy; public ones need an edge route, and only
 * domains the master's config allows may be published (the most specific match wins).
 */
export const classifyHostname = (
  name: string,
  internalZone: string,
  allowedDomains: ReadonlyArray<string>
): HostnameClass => {
  if (isUnder(name, internalZone)) return { _tag: "Internal" }
  const matches = allowedDomains.filter((d) => isUnder(name, d)).sort((a, b) => b.length - a.length)
  return matches.length > 0
    ? { _tag: "Public", allowedDomain: matches[0]! }
    : { _tag: "PublicNotAllowed", allowedDomains }
}
