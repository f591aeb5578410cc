// The edge rule against a real DNS server: PowerDNS (started by the harness) serves a zone with
// CNAMEs and A records, and chooseEdge / dnsCheck read it through layerResolver, i.e. node's
// c-ares resolver with a "127.0.0.1:<port>" server. What only a real server shows: CNAME answers,
// A lookups that follow an in-zone CNAME, NXDOMAIN and NODATA as empty answers, REFUSED for
// names outside its zones and a dead server as lookup failures.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { Errors } from "../packages/domain/src/index.js"
import { chooseEdge, DnsLookup, DnsLookupError, dnsCheck, type EdgeCandidate, layerResolver } from "../packages/master/src/edge/EdgeResolver.js"
import { createZone, type PowerDnsServer, startPowerDns } from "./support/PowerDns.js"

const ZONE = "example.test"

let pdns: PowerDnsServer | undefined

beforeAll(async () => {
  // Throws "pdns_server is not installed ... Fix: run: bash scripts/setup-peers.sh" when it is missing.
  pdns = await startPowerDns()
  await createZone(pdns, ZONE, [
    { name: "app.example.test", type: "CNAME", content: "edge1.example.test" },
    { name: "edge1.example.test", type: "A", content: "10.77.0.1" },
    { name: "alias.example.test", type: "CNAME", content: "lb.example.test" },
    { name: "lb.example.test", type: "A", content: "10.77.0.1" },
    { name: "direct.example.test", type: "A", content: "10.77.0.2" },
    { name: "other.example.test", type: "CNAME", content: "elsewhere.example.test" },
    { name: "elsewhere.example.test", type: "A", content: "192.0.2.99" },
    { name: "v6only.example.test", type: "AAAA", content: "fd00::99" }
  ])
}, 60_000)

afterAll(async () => {
  await pdns?.close()
})

const server = (): PowerDnsServer => {
  if (pdns === undefined) throw new Error("PowerDNS was not started")
  return pdns
}

// Built lazily: the server's port exists only once beforeAll has run.
const resolver = Layer.unwrapEffect(Effect.sync(() => layerResolver([`127.0.0.1:${server().dnsPort}`])))

const edge1: EdgeCandidate = { name: "edge1", addresses: ["127.0.0.1:9444"], nodeAddress: "10.77.0.1" }
// No proxy address known yet: matched by the IP host of its agent address.
const edge2: EdgeCandidate = { name: "edge2", addresses: ["10.77.0.2:9444"] }
const edges = [edge1, edge2]

const choose = (hostname: string, defaultNode?: string) => chooseEdge("app", hostname, edges, defaultNode).pipe(Effect.provide(resolver))

describe("DnsLookup on PowerDNS", () => {
  it.live("answers CNAMEs and addresses; NXDOMAIN and NODATA are empty; A lookups follow an in-zone CNAME", () =>
    Effect.gen(function* () {
      const lookup = yield* DnsLookup
      expect(lookup.describe).toBe(`DNS servers 127.0.0.1:${server().dnsPort}`)
      expect(yield* lookup.cname("app.example.test")).toEqual(["edge1.example.test"])
      expect(yield* lookup.cname("APP.example.test.")).toEqual(["edge1.example.test"])
      expect(yield* lookup.cname("edge1.example.test")).toEqual([]) // NODATA: an A record, no CNAME
      expect(yield* lookup.cname("missing.example.test")).toEqual([]) // NXDOMAIN
      expect(yield* lookup.addresses("edge1.example.test")).toEqual(["10.77.0.1"])
      expect(yield* lookup.addresses("alias.example.test")).toEqual(["10.77.0.1"])
      expect(yield* lookup.addresses("v6only.example.test")).toEqual(["fd00::99"])
      expect(yield* lookup.addresses("missing.example.test")).toEqual([])
    }).pipe(Effect.provide(resolver)))

  it.live("a name outside the server's zones is refused: a DnsLookupError, not an empty answer", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip((yield* DnsLookup).cname("app.elsewhere.invalid"))
      expect(error).toBeInstanceOf(DnsLookupError)
      expect(error.message).toBe(`DNS lookup of app.elsewhere.invalid at DNS servers 127.0.0.1:${server().dnsPort} failed: EREFUSED`)
    }).pipe(Effect.provide(resolver)))
})

describe("chooseEdge on PowerDNS", () => {
  it.live("a CNAME to edge1.example.test picks edge1", () =>
    Effect.gen(function* () {
      expect(yield* choose("app.example.test", "edge2")).toEqual({ node: "edge1", via: "cname" })
    }))

  it.live("a CNAME to a name with edge1's IP, and an A record straight at edge2's agent IP, pick by address", () =>
    Effect.gen(function* () {
      expect(yield* choose("alias.example.test")).toEqual({ node: "edge1", via: "address" })
      expect(yield* choose("direct.example.test")).toEqual({ node: "edge2", via: "address" })
    }))

  it.live("a name pointing elsewhere uses the default with a warning naming what DNS returned and the record", () =>
    Effect.gen(function* () {
      const choice = yield* choose("other.example.test", "edge1")
      expect(choice).toMatchObject({ node: "edge1", via: "default" })
      expect(choice.warning).toContain("other.example.test is a CNAME to elsewhere.example.test, which resolves to 192.0.2.99")
      expect(choice.warning).toContain("CNAME other.example.test -> edge1.example.test (or A other.example.test -> 10.77.0.1)")
    }))

  it.live("a missing name without a default fails placement with what DNS returned and how to fix it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(choose("missing.example.test"))
      expect(error).toBeInstanceOf(Errors.PlacementFailed)
      expect(error.message).toContain(`cannot place service "app": public hostname missing.example.test: missing.example.test has no CNAME and no A/AAAA records`)
      expect(error.message).toContain("[edge] in mcp-master.toml")
    }))
})

describe("dnsCheck on PowerDNS", () => {
  it.live("reports each public hostname ok or wrong with the record to create", () =>
    Effect.gen(function* () {
      const results = yield* dnsCheck(
        [
          { hostname: "app.example.test", edgeNode: "edge1" },
          { hostname: "direct.example.test", edgeNode: "edge2" },
          { hostname: "other.example.test", edgeNode: "edge1" },
          { hostname: "direct.example.test", edgeNode: "edge1" },
          { hostname: "missing.example.test", edgeNode: "edge2" }
        ],
        edges
      ).pipe(Effect.provide(resolver))
      expect(results[0]).toEqual({ hostname: "app.example.test", edgeNode: "edge1", ok: true, resolvesTo: ["edge1.example.test", "10.77.0.1"] })
      expect(results[1]).toEqual({ hostname: "direct.example.test", edgeNode: "edge2", ok: true, resolvesTo: ["10.77.0.2"] })
      expect(results[2]).toMatchObject({
        ok: false,
        resolvesTo: ["elsewhere.example.test", "192.0.2.99"],
        problem: `other.example.test is a CNAME to elsewhere.example.test, which resolves to 192.0.2.99, not edge node "edge1" (10.77.0.1, 127.0.0.1)`,
        fix: "create CNAME other.example.test -> edge1.example.test (or A other.example.test -> 10.77.0.1)"
      })
      expect(results[3]).toMatchObject({ ok: false, problem: expect.stringContaining(`an address of edge node "edge2", but the route is on "edge1"`) })
      expect(results[4]).toMatchObject({
        ok: false,
        resolvesTo: [],
        problem: "missing.example.test does not resolve (no CNAME, no A/AAAA records)",
        fix: "create CNAME missing.example.test -> edge2.example.test (or A missing.example.test -> 10.77.0.2)"
      })
    }))

  // Last: it stops the server.
  it.live("with the server down, each hostname reports the failed lookup; chooseEdge falls back to the default", () =>
    Effect.gen(function* () {
      yield* Effect.promise(() => server().stop())
      const [result] = yield* dnsCheck([{ hostname: "app.example.test", edgeNode: "edge1" }], edges).pipe(Effect.provide(resolver))
      expect(result).toMatchObject({ ok: false, resolvesTo: [], problem: expect.stringContaining("DNS lookup of app.example.test at DNS servers 127.0.0.1:") })
      const choice = yield* choose("app.example.test", "edge2")
      expect(choice).toMatchObject({ node: "edge2", via: "default", warning: expect.stringContaining("failed") })
    }), 30_000)
})
