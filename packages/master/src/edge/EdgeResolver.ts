/**
 * Which edge node publishes a public hostname, decided by DNS, and `mcp dns check`.
 *
 * The operator points a public hostname at an edge node in DNS they manage by hand (at their
 * registrar), usually `mcq.example.com CNAME svc.example.com` where `svc` is the edge node. The
 * master reads that back: a CNAME whose target names an edge node picks it; otherwise the
 * addresses the name resolves to are matched against the edges' addresses; otherwise the
 * configured default edge is used, with a warning that names the record to create. DNS is read
 * through the `DnsLookup` port so the rule is tested without a server, and against a real one
 * (PowerDNS) in test/EdgeDns.test.ts.
 */
import { Errors, type Node, type Routes } from "@mcp/domain"
import { Context, Data, Effect, Either, Layer } from "effect"
import * as dns from "node:dns"
import * as net from "node:net"

/** A DNS server failed or did not answer (NXDOMAIN and NODATA are answers, not failures). */
export class DnsLookupError extends Data.TaggedError("DnsLookupError")<{
  readonly name: string
  readonly server: string
  readonly reason: string
}> {
  override get message() {
    return `DNS lookup of ${this.name} at ${this.server} failed: ${this.reason}`
  }
}

/** An `[edge] dns_servers` entry node's resolver cannot use. */
export class InvalidDnsServer extends Data.TaggedError("InvalidDnsServer")<{
  readonly server: string
  readonly reason: string
}> {
  override get message() {
    return `[edge] dns_servers entry "${this.server}" in mcp-master.toml is unusable: ${this.reason}; write an IP address with an optional port, e.g. "10.0.0.53:53" or "[fd00::53]:53"`
  }
}

/** Read-only DNS queries: the two the edge rule needs. */
export interface DnsLookup {
  /** Which servers answer, for messages ("DNS servers 10.0.0.53:53"). */
  readonly describe: string
  /** The CNAME targets of `name` (lowercase, no trailing dot); [] when it has no CNAME or does not exist. */
  readonly cname: (name: string) => Effect.Effect<ReadonlyArray<string>, DnsLookupError>
  /** The A and AAAA addresses of `name`, following CNAMEs; [] when there are none or it does not exist. */
  readonly addresses: (name: string) => Effect.Effect<ReadonlyArray<string>, DnsLookupError>
}

export const DnsLookup = Context.GenericTag<DnsLookup>("@mcp/master/DnsLookup")

/** DNS names compare case-insensitively and with or without the root's trailing dot. */
export const normalizeName = (name: string): string => name.trim().toLowerCase().replace(/\.$/, "")

// ---------------------------------------------------------------------------------------------
// The real layer: node's c-ares resolver.

/**
 * A `dns_servers` entry in the form `Resolver.setServers` takes: `ip:port` for IPv4, `[ip]:port`
 * for IPv6, a bare IP for port 53. The config's `host:port` shape admits hostnames, but the
 * resolver only takes IPs (resolving the resolver's own name would need a resolver).
 */
export const parseDnsServer = (server: string): Either.Either<string, InvalidDnsServer> => {
  const text = server.trim()
  const invalid = (reason: string) => Either.left(new InvalidDnsServer({ server, reason }))
  const bracketed = /^\[([^\]]+)\](?::([0-9]{1,5}))?$/.exec(text)
  const [host, port] = bracketed !== null
    ? [bracketed[1]!, bracketed[2]]
    : net.isIPv6(text)
      ? [text, undefined]
      : (() => {
          const colon = text.lastIndexOf(":")
          return colon < 0 ? [text, undefined] : [text.slice(0, colon), text.slice(colon + 1)]
        })()
  if (port !== undefined && !(/^[0-9]{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    return invalid(`the port "${port}" is not a number from 1 to 65535`)
  }
  const suffix = port === undefined ? "" : `:${Number(port)}`
  if (net.isIPv4(host)) return Either.right(`${host}${suffix}`)
  if (net.isIPv6(host)) return Either.right(port === undefined ? host : `[${host}]${suffix}`)
  return invalid(`"${host}" is not an IP address`)
}

/** Codes under which c-ares reports an answer without the records asked for. */
const NO_RECORDS: ReadonlySet<string> = new Set([dns.NODATA, dns.NOTFOUND])

/** Per-try timeout and tries: a lookup gives up after about 4 s, so a deploy never hangs on DNS. */
const RESOLVER_OPTIONS = { timeout: 2000, tries: 2 } as const

/**
 * DnsLookup on `node:dns` against `servers` ("host:port", IPs only), or the system's resolvers
 * when `servers` is absent or empty. Each lookup gets its own Resolver so that interrupting one
 * (`cancel()`) cannot cut off another.
 */
export const layerResolver = (servers?: ReadonlyArray<string>): Layer.Layer<DnsLookup, InvalidDnsServer> =>
  Layer.effect(
    DnsLookup,
    Effect.gen(function* () {
      const parsed = servers === undefined ? [] : yield* Effect.forEach(servers, (s) => parseDnsServer(s))
      const makeResolver = () => {
        const resolver = new dns.promises.Resolver(RESOLVER_OPTIONS)
        if (parsed.length > 0) resolver.setServers(parsed)
        return resolver
      }
      const describe = parsed.length > 0
        ? `DNS servers ${parsed.join(", ")}`
        : `the system's DNS servers (${makeResolver().getServers().join(", ") || "none configured"})`
      const query = <A>(name: string, run: (r: dns.promises.Resolver, n: string) => Promise<ReadonlyArray<A>>) =>
        Effect.tryPromise({
          try: async (signal) => {
            const resolver = makeResolver()
            signal.addEventListener("abort", () => resolver.cancel(), { once: true })
            try {
              return await run(resolver, normalizeName(name))
            } catch (e) {
              const code = (e as { code?: unknown }).code
              if (typeof code === "string" && NO_RECORDS.has(code)) return []
              throw e
            }
          },
          catch: (e) => {
            const code = (e as { code?: unknown }).code
            const reason = typeof code === "string" ? `${code}${code === dns.TIMEOUT ? " (no answer within 2 s, tried twice)" : ""}` : String(e)
            return new DnsLookupError({ name: normalizeName(name), server: describe, reason })
          }
        })
      return DnsLookup.of({
        describe,
        cname: (name) => Effect.map(query(name, (r, n) => r.resolveCname(n)), (targets) => targets.map(normalizeName)),
        addresses: (name) =>
          Effect.map(
            Effect.all([query(name, (r, n) => r.resolve4(n)), query(name, (r, n) => r.resolve6(n))], { concurrency: 2 }),
            ([v4, v6]) => [...v4, ...v6].map((a) => a.toLowerCase())
          )
      })
    })
  )

// ---------------------------------------------------------------------------------------------
// The memory layer, for tests of the rule.

export interface MemoryZone {
  /** name -> CNAME target */
  readonly cname: Record<string, string>
  /** name -> its A/AAAA addresses */
  readonly a: Record<string, ReadonlyArray<string>>
  /** Names whose lookups fail like a server that does not answer. */
  readonly failing?: ReadonlyArray<string>
}

/** DnsLookup over fixed records; `addresses` follows CNAMEs as a resolver does. */
export const layerMemory = (zone: MemoryZone): Layer.Layer<DnsLookup> => {
  const describe = "memory DNS"
  const cnames = new Map(Object.entries(zone.cname).map(([k, v]) => [normalizeName(k), normalizeName(v)]))
  const as = new Map(Object.entries(zone.a).map(([k, v]) => [normalizeName(k), v]))
  const failing = new Set((zone.failing ?? []).map(normalizeName))
  const guard = (name: string) =>
    failing.has(normalizeName(name))
      ? Effect.fail(new DnsLookupError({ name: normalizeName(name), server: describe, reason: "SERVFAIL" }))
      : Effect.void
  return Layer.succeed(
    DnsLookup,
    DnsLookup.of({
      describe,
      cname: (name) => Effect.as(guard(name), cnames.has(normalizeName(name)) ? [cnames.get(normalizeName(name))!] : []),
      addresses: (name) =>
        Effect.gen(function* () {
          let current = normalizeName(name)
          // A resolver gives up on long chains and loops; so does this.
          for (let hop = 0; hop < 8; hop++) {
            yield* guard(current)
            const next = cnames.get(current)
            if (next === undefined) return as.get(current) ?? []
            current = next
          }
          return []
        })
    })
  )
}

// ---------------------------------------------------------------------------------------------
// The rule.

/** An edge node as the rule sees it. */
export interface EdgeCandidate {
  readonly name: string
  /** The agent's RPC addresses, "host:port". */
  readonly addresses: ReadonlyArray<string>
  /** The IP of the node's proxy (the agent's `node_address`), where public DNS should point. */
  readonly nodeAddress?: string
}

export interface EdgeChoice {
  readonly node: string
  /** What picked it: the hostname's CNAME, its addresses, or `[edge] default_node`. */
  readonly via: "cname" | "address" | "default"
  /** Set when DNS did not point at the chosen edge: what DNS returned and the record to create. */
  readonly warning?: string
}

/** The edge candidates among the master's nodes (role "edge"). */
export const edgeCandidates = (nodes: ReadonlyArray<Node.NodeInfo>): ReadonlyArray<EdgeCandidate> =>
  nodes
    .filter((n) => n.role === "edge")
    .map((n) => ({ name: n.name, addresses: n.addresses, ...(n.nodeAddress === undefined ? {} : { nodeAddress: n.nodeAddress }) }))

/** "10.0.0.5:9444" -> "10.0.0.5", "[fd00::5]:9444" -> "fd00::5" */
const hostOf = (address: string): string => {
  const bracketed = /^\[([^\]]+)\](?::[0-9]+)?$/.exec(address)
  if (bracketed !== null) return bracketed[1]!.toLowerCase()
  if (net.isIPv6(address)) return address.toLowerCase()
  const colon = address.lastIndexOf(":")
  return normalizeName(colon < 0 ? address : address.slice(0, colon))
}

/** The IPs DNS may point at to reach `edge`: its proxy address, then the IP hosts of its agent addresses. */
export const edgeIps = (edge: EdgeCandidate): ReadonlyArray<string> => {
  const ips = [...(edge.nodeAddress === undefined ? [] : [edge.nodeAddress.toLowerCase()]), ...edge.addresses.map(hostOf).filter((h) => net.isIP(h) !== 0)]
  return [...new Set(ips)]
}

/** A CNAME target names `edge` when it equals the node name, its first label is the node name, or it is one of the edge's address hosts. */
const targetNames = (target: string, edge: EdgeCandidate): boolean => {
  const t = normalizeName(target)
  const name = normalizeName(edge.name)
  return t === name || t.split(".")[0] === name || edge.addresses.some((a) => hostOf(a) === t)
}

const edgeByTarget = (target: string, edges: ReadonlyArray<EdgeCandidate>) => edges.find((e) => targetNames(target, e))

const edgeByAddress = (addresses: ReadonlyArray<string>, edges: ReadonlyArray<EdgeCandidate>) =>
  edges.find((e) => edgeIps(e).some((ip) => addresses.includes(ip)))

/**
 * The record that sends `hostname` to `edge`: a CNAME to `<edge>.<hostname's parent domain>`
 * (the convention the rule recognises by first label), and/or an A/AAAA record to the edge's
 * proxy address. A zone apex cannot carry a CNAME, so it only gets the address record.
 */
export const recordToCreate = (hostname: string, edge: EdgeCandidate): string => {
  const host = normalizeName(hostname)
  const labels = host.split(".")
  const cname = labels.length >= 3 ? `CNAME ${host} -> ${normalizeName(edge.name)}.${labels.slice(1).join(".")}` : undefined
  const ip = edgeIps(edge)[0]
  const address = ip === undefined ? undefined : `${net.isIPv6(ip) ? "AAAA" : "A"} ${host} -> ${ip}`
  if (cname !== undefined && address !== undefined) return `${cname} (or ${address})`
  return cname ?? address ?? `CNAME ${host} -> a name whose first label is "${edge.name}"`
}

/** What DNS said about a hostname, before any edge is matched. */
interface DnsAnswer {
  readonly hostname: string
  readonly target: string | undefined
  readonly addresses: ReadonlyArray<string>
}

const lookUp = (hostname: string): Effect.Effect<DnsAnswer, DnsLookupError, DnsLookup> =>
  Effect.gen(function* () {
    const lookup = yield* DnsLookup
    const host = normalizeName(hostname)
    const target = (yield* lookup.cname(host))[0]
    const addresses = yield* lookup.addresses(target ?? host)
    return { hostname: host, target, addresses }
  })

/** "a.example.com is a CNAME to x.example.net, which resolves to 192.0.2.7" and the like. */
const describeAnswer = (answer: DnsAnswer): string => {
  const resolved = answer.addresses.length === 0 ? "has no A/AAAA records" : `resolves to ${answer.addresses.join(", ")}`
  return answer.target === undefined
    ? answer.addresses.length === 0
      ? `${answer.hostname} has no CNAME and no A/AAAA records`
      : `${answer.hostname} has no CNAME and ${resolved}`
    : `${answer.hostname} is a CNAME to ${answer.target}, which ${resolved}`
}

/** The edge DNS points at, or why none matched. */
const matchAnswer = (answer: DnsAnswer, edges: ReadonlyArray<EdgeCandidate>): { edge: EdgeCandidate; via: "cname" | "address" } | undefined => {
  const byTarget = answer.target === undefined ? undefined : edgeByTarget(answer.target, edges)
  if (byTarget !== undefined) return { edge: byTarget, via: "cname" }
  const byAddress = edgeByAddress(answer.addresses, edges)
  return byAddress === undefined ? undefined : { edge: byAddress, via: "address" }
}

/**
 * The edge node that publishes `hostname` for `service`. DNS decides when it points at an edge
 * (CNAME target naming it, else an address of it); otherwise `defaultNode` is used with a
 * warning naming the record to create. A DNS failure falls back to the default too: the operator
 * may not have set DNS up yet, and publishing must not wait for it. Without a default, both
 * cases fail with what DNS returned and the two ways to fix it.
 */
export const chooseEdge = (
  service: string,
  hostname: string,
  edges: ReadonlyArray<EdgeCandidate>,
  defaultNode: string | undefined
): Effect.Effect<EdgeChoice, Errors.PlacementFailed, DnsLookup> =>
  Effect.gen(function* () {
    const host = normalizeName(hostname)
    const fail = (reason: string) => Effect.fail(new Errors.PlacementFailed({ service, reason: `public hostname ${host}: ${reason}` }))
    if (edges.length === 0) {
      return yield* fail(`no edge node is registered to publish it; add one with mcp node add <name> <host:port> --role edge (its agent needs role = "edge")`)
    }
    const answer = yield* Effect.either(lookUp(host))
    if (Either.isRight(answer)) {
      const matched = matchAnswer(answer.right, edges)
      if (matched !== undefined) return { node: matched.edge.name, via: matched.via }
    }
    const said = Either.isRight(answer)
      ? `${describeAnswer(answer.right)}, which is no edge node (edge nodes: ${edges.map((e) => `${e.name}${edgeIps(e).length > 0 ? ` ${edgeIps(e).join("/")}` : ""}`).join(", ")})`
      : answer.left.message
    if (defaultNode === undefined) {
      return yield* fail(
        `${said}. Fix: point DNS at an edge node, e.g. ${recordToCreate(host, edges[0]!)}, or set default_node = "<edge node>" under [edge] in mcp-master.toml`
      )
    }
    const fallback = edges.find((e) => e.name === defaultNode)
    if (fallback === undefined) {
      return yield* fail(
        `${said}, and [edge] default_node = "${defaultNode}" in mcp-master.toml is not a registered edge node (edge nodes: ${edges.map((e) => e.name).join(", ")}); set it to one of them`
      )
    }
    return {
      node: fallback.name,
      via: "default",
      warning: `${said}; publishing through the default edge node "${fallback.name}" ([edge] default_node). Create ${recordToCreate(host, fallback)} so visitors reach it`
    }
  })

export type DnsCheckResult = typeof Routes.DnsCheckResult.Type

/** A public hostname and the edge node the master recorded for it. */
export interface DnsCheckEntry {
  readonly hostname: string
  readonly edgeNode: string
}

const checkOne = (entry: DnsCheckEntry, edges: ReadonlyArray<EdgeCandidate>): Effect.Effect<DnsCheckResult, never, DnsLookup> =>
  Effect.gen(function* () {
    const host = normalizeName(entry.hostname)
    const base = { hostname: host, edgeNode: entry.edgeNode }
    const edge = edges.find((e) => e.name === entry.edgeNode)
    const answer = yield* Effect.either(lookUp(host))
    if (Either.isLeft(answer)) {
      return {
        ...base,
        ok: false,
        resolvesTo: [],
        problem: answer.left.message,
        fix: `make sure the DNS servers answer (${answer.left.server}; [edge] dns_servers in mcp-master.toml), then run mcp dns check again`
      }
    }
    const said = answer.right
    const resolvesTo = [...(said.target === undefined ? [] : [said.target]), ...said.addresses]
    if (edge === undefined) {
      return {
        ...base,
        ok: false,
        resolvesTo,
        problem: `the edge node "${entry.edgeNode}" holding this route is not registered with the master (${describeAnswer(said)})`,
        fix: `register it again (mcp node add ${entry.edgeNode} <host:port> --role edge) or redeploy the service so it moves to a registered edge node`
      }
    }
    if (said.target !== undefined && targetNames(said.target, edge)) return { ...base, ok: true, resolvesTo }
    if (edgeIps(edge).some((ip) => said.addresses.includes(ip))) return { ...base, ok: true, resolvesTo }
    const fix = `create ${recordToCreate(host, edge)}`
    const other = said.target === undefined ? undefined : edgeByTarget(said.target, edges)
    if (other !== undefined) {
      return { ...base, ok: false, resolvesTo, problem: `${host} is a CNAME to ${said.target}, which is edge node "${other.name}", but the route is on "${edge.name}"`, fix: `replace it: ${fix}` }
    }
    const otherByAddress = edgeByAddress(said.addresses, edges)
    if (otherByAddress !== undefined) {
      return {
        ...base,
        ok: false,
        resolvesTo,
        problem: `${describeAnswer(said)}, an address of edge node "${otherByAddress.name}", but the route is on "${edge.name}"`,
        fix: `replace it: ${fix}`
      }
    }
    const known = edgeIps(edge)
    return {
      ...base,
      ok: false,
      resolvesTo,
      problem: said.target === undefined && said.addresses.length === 0
        ? `${host} does not resolve (no CNAME, no A/AAAA records)`
        : `${describeAnswer(said)}, not edge node "${edge.name}"${known.length > 0 ? ` (${known.join(", ")})` : ""}`,
      fix
    }
  })

/**
 * For each public hostname, whether DNS sends visitors to the edge node that holds its route:
 * ok when the CNAME names that edge or the name resolves to one of its IPs; otherwise what DNS
 * says instead and the record to create. `resolvesTo` is the CNAME target (if any) followed by
 * the addresses. Lookup failures are reported per hostname, never as a failure of the whole check.
 */
export const dnsCheck = (
  entries: ReadonlyArray<DnsCheckEntry>,
  edges: ReadonlyArray<EdgeCandidate>
): Effect.Effect<ReadonlyArray<DnsCheckResult>, never, DnsLookup> =>
  Effect.forEach(entries, (entry) => checkOne(entry, edges), { concurrency: 8 })
