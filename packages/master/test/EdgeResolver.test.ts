// The edge rule over fixed DNS answers (layerMemory): every way DNS can point at, past or away
// from an edge node, what chooseEdge picks and what dnsCheck reports and tells the operator to do.
import { describe, expect, it } from "@effect/vitest"
import { Errors, Node, Routes } from "@mcp/domain"
import { Effect, Either, Layer, Schema } from "effect"
import {
  chooseEdge,
  DnsLookup,
  DnsLookupError,
  dnsCheck,
  edgeCandidates,
  edgeIps,
  type EdgeCandidate,
  InvalidDnsServer,
  layerMemory,
  layerResolver,
  parseDnsServer,
  recordToCreate
} from "../src/edge/EdgeResolver.js"

const svc: EdgeCandidate = { name: "svc", addresses: ["203.0.113.5:9444"], nodeAddress: "198.51.100.5" }
const svc2: EdgeCandidate = { name: "svc2", addresses: ["[2001:db8::7]:9444", "svc2.mgmt.example.net:9444"] }
const edges = [svc, svc2]

const zone = layerMemory({
  cname: {
    "mcq.example.com": "svc.example.com", // first label names the edge
    "exact.example.com": "svc2", // target is the node name itself
    "mgmt.example.com": "svc2.mgmt.example.net.", // target is a host of the edge's agent address
    "alias.example.com": "lb.example.net", // a name that resolves to an edge IP
    "chain.example.com": "step.example.net",
    "step.example.net": "lb.example.net",
    "away.example.com": "web.hoster.example", // points somewhere else
    "dangling.example.com": "gone.example.org", // a CNAME whose target has no records
    "broken.example.com": "dead.example.org" // a CNAME whose target's server fails
  },
  a: {
    "svc.example.com": ["198.51.100.5"],
    "lb.example.net": ["198.51.100.5"],
    "direct.example.com": ["198.51.100.5"], // an A record straight at svc's proxy
    "agent-ip.example.com": ["203.0.113.5"], // svc's agent address host
    "v6.example.com": ["2001:db8::7"], // svc2 by its IPv6 agent host
    "web.hoster.example": ["192.0.2.80"],
    "elsewhere.example.com": ["192.0.2.81", "192.0.2.82"]
  },
  failing: ["down.example.com", "dead.example.org"]
})

const choose = (hostname: string, defaultNode?: string, candidates: ReadonlyArray<EdgeCandidate> = edges) =>
  chooseEdge("mcq", hostname, candidates, defaultNode).pipe(Effect.provide(zone))

const placementReason = (hostname: string, defaultNode?: string, candidates?: ReadonlyArray<EdgeCandidate>) =>
  Effect.gen(function* () {
    const error = yield* Effect.flip(choose(hostname, defaultNode, candidates))
    expect(error).toBeInstanceOf(Errors.PlacementFailed)
    expect(error.service).toBe("mcq")
    return error.reason
  })

describe("chooseEdge", () => {
  it.effect("a CNAME whose target's first label is an edge node picks it, without a warning", () =>
    Effect.gen(function* () {
      expect(yield* choose("mcq.example.com", "svc2")).toEqual({ node: "svc", via: "cname" })
      expect(yield* choose("MCQ.Example.COM.")).toEqual({ node: "svc", via: "cname" })
    }))

  it.effect("a CNAME target equal to the node name, or to a host of the edge's agent addresses, picks it", () =>
    Effect.gen(function* () {
      expect(yield* choose("exact.example.com")).toEqual({ node: "svc2", via: "cname" })
      expect(yield* choose("mgmt.example.com")).toEqual({ node: "svc2", via: "cname" })
    }))

  it.effect("a CNAME to a name that resolves to an edge's proxy IP picks it by address, also through a chain", () =>
    Effect.gen(function* () {
      expect(yield* choose("alias.example.com")).toEqual({ node: "svc", via: "address" })
      expect(yield* choose("chain.example.com")).toEqual({ node: "svc", via: "address" })
    }))

  it.effect("without a CNAME, the hostname's own addresses are matched: proxy IP, agent IPv4 and IPv6 hosts", () =>
    Effect.gen(function* () {
      expect(yield* choose("direct.example.com")).toEqual({ node: "svc", via: "address" })
      expect(yield* choose("agent-ip.example.com")).toEqual({ node: "svc", via: "address" })
      expect(yield* choose("v6.example.com")).toEqual({ node: "svc2", via: "address" })
    }))

  it.effect("no DNS at all falls back to the default with a warning naming the record to create", () =>
    Effect.gen(function* () {
      const choice = yield* choose("new.example.com", "svc")
      expect(choice.node).toBe("svc")
      expect(choice.via).toBe("default")
      expect(choice.warning).toContain("new.example.com has no CNAME and no A/AAAA records")
      expect(choice.warning).toContain(`default edge node "svc"`)
      expect(choice.warning).toContain("CNAME new.example.com -> svc.example.com (or A new.example.com -> 198.51.100.5)")
    }))

  it.effect("DNS pointing elsewhere falls back to the default and says where it points", () =>
    Effect.gen(function* () {
      const away = yield* choose("away.example.com", "svc2")
      expect(away).toMatchObject({ node: "svc2", via: "default" })
      expect(away.warning).toContain("away.example.com is a CNAME to web.hoster.example, which resolves to 192.0.2.80")
      expect(away.warning).toContain("CNAME away.example.com -> svc2.example.com")
      const elsewhere = yield* choose("elsewhere.example.com", "svc")
      expect(elsewhere.warning).toContain("elsewhere.example.com has no CNAME and resolves to 192.0.2.81, 192.0.2.82")
      const dangling = yield* choose("dangling.example.com", "svc")
      expect(dangling.warning).toContain("dangling.example.com is a CNAME to gone.example.org, which has no A/AAAA records")
    }))

  it.effect("a DNS server failure is only a warning when a default exists", () =>
    Effect.gen(function* () {
      const down = yield* choose("down.example.com", "svc")
      expect(down).toMatchObject({ node: "svc", via: "default" })
      expect(down.warning).toContain("DNS lookup of down.example.com at memory DNS failed: SERVFAIL")
      // The CNAME answered but its target's lookup failed: still a failure, still a warning.
      const broken = yield* choose("broken.example.com", "svc")
      expect(broken.warning).toContain("DNS lookup of dead.example.org at memory DNS failed")
    }))

  it.effect("a DNS server failure without a default fails placement, saying what failed and both fixes", () =>
    Effect.gen(function* () {
      const reason = yield* placementReason("down.example.com")
      expect(reason).toContain("public hostname down.example.com: DNS lookup of down.example.com at memory DNS failed: SERVFAIL")
      expect(reason).toContain(`set default_node = "<edge node>" under [edge] in mcp-master.toml`)
      expect(reason).toContain("CNAME down.example.com -> svc.example.com")
    }))

  it.effect("no match and no default fails placement with what DNS returned, the edge nodes and the fix", () =>
    Effect.gen(function* () {
      const reason = yield* placementReason("away.example.com")
      expect(reason).toContain("away.example.com is a CNAME to web.hoster.example, which resolves to 192.0.2.80, which is no edge node")
      expect(reason).toContain("edge nodes: svc 198.51.100.5/203.0.113.5, svc2 2001:db8::7")
      expect(reason).toContain("point DNS at an edge node, e.g. CNAME away.example.com -> svc.example.com (or A away.example.com -> 198.51.100.5)")
      expect(reason).toContain("[edge] in mcp-master.toml")
    }))

  it.effect("a default that is not a registered edge node fails and names the known ones", () =>
    Effect.gen(function* () {
      const reason = yield* placementReason("new.example.com", "rift")
      expect(reason).toContain(`[edge] default_node = "rift" in mcp-master.toml is not a registered edge node (edge nodes: svc, svc2)`)
    }))

  it.effect("a default that would not be needed is not checked", () =>
    Effect.gen(function* () {
      expect(yield* choose("mcq.example.com", "rift")).toEqual({ node: "svc", via: "cname" })
    }))

  it.effect("no edge nodes at all fails before any lookup, saying how to add one", () =>
    Effect.gen(function* () {
      const reason = yield* placementReason("down.example.com", "svc", [])
      expect(reason).toContain("no edge node is registered")
      expect(reason).toContain("--role edge")
    }))
})

describe("dnsCheck", () => {
  const check = (entries: ReadonlyArray<{ hostname: string; edgeNode: string }>) => dnsCheck(entries, edges).pipe(Effect.provide(zone))

  it.effect("ok through a CNAME naming the edge and through an address of it, with what the name resolves to", () =>
    Effect.gen(function* () {
      const results = yield* check([
        { hostname: "mcq.example.com", edgeNode: "svc" },
        { hostname: "alias.example.com", edgeNode: "svc" },
        { hostname: "direct.example.com", edgeNode: "svc" },
        { hostname: "v6.example.com", edgeNode: "svc2" }
      ])
      expect(results).toEqual([
        { hostname: "mcq.example.com", edgeNode: "svc", ok: true, resolvesTo: ["svc.example.com", "198.51.100.5"] },
        { hostname: "alias.example.com", edgeNode: "svc", ok: true, resolvesTo: ["lb.example.net", "198.51.100.5"] },
        { hostname: "direct.example.com", edgeNode: "svc", ok: true, resolvesTo: ["198.51.100.5"] },
        { hostname: "v6.example.com", edgeNode: "svc2", ok: true, resolvesTo: ["2001:db8::7"] }
      ])
    }))

  it.effect("a name that does not resolve: the problem says so and the fix is the record", () =>
    Effect.gen(function* () {
      const [result] = yield* check([{ hostname: "new.example.com", edgeNode: "svc" }])
      expect(result).toEqual({
        hostname: "new.example.com",
        edgeNode: "svc",
        ok: false,
        resolvesTo: [],
        problem: "new.example.com does not resolve (no CNAME, no A/AAAA records)",
        fix: "create CNAME new.example.com -> svc.example.com (or A new.example.com -> 198.51.100.5)"
      })
    }))

  it.effect("a name resolving elsewhere: the problem names the addresses and the edge's own", () =>
    Effect.gen(function* () {
      const [away, dangling] = yield* check([
        { hostname: "away.example.com", edgeNode: "svc" },
        { hostname: "dangling.example.com", edgeNode: "svc" }
      ])
      expect(away).toMatchObject({
        ok: false,
        resolvesTo: ["web.hoster.example", "192.0.2.80"],
        problem: `away.example.com is a CNAME to web.hoster.example, which resolves to 192.0.2.80, not edge node "svc" (198.51.100.5, 203.0.113.5)`,
        fix: "create CNAME away.example.com -> svc.example.com (or A away.example.com -> 198.51.100.5)"
      })
      expect(dangling).toMatchObject({ ok: false, resolvesTo: ["gone.example.org"], problem: expect.stringContaining("which has no A/AAAA records") })
    }))

  it.effect("a name pointing at another edge node: by CNAME and by address", () =>
    Effect.gen(function* () {
      const [byCname, byAddress] = yield* check([
        { hostname: "exact.example.com", edgeNode: "svc" },
        { hostname: "direct.example.com", edgeNode: "svc2" }
      ])
      expect(byCname).toMatchObject({
        ok: false,
        problem: `exact.example.com is a CNAME to svc2, which is edge node "svc2", but the route is on "svc"`,
        fix: "replace it: create CNAME exact.example.com -> svc.example.com (or A exact.example.com -> 198.51.100.5)"
      })
      expect(byAddress).toMatchObject({
        ok: false,
        problem: `direct.example.com has no CNAME and resolves to 198.51.100.5, an address of edge node "svc", but the route is on "svc2"`,
        fix: "replace it: create CNAME direct.example.com -> svc2.example.com (or AAAA direct.example.com -> 2001:db8::7)"
      })
    }))

  it.effect("a lookup failure is one hostname's problem, not the check's", () =>
    Effect.gen(function* () {
      const results = yield* check([
        { hostname: "down.example.com", edgeNode: "svc" },
        { hostname: "mcq.example.com", edgeNode: "svc" }
      ])
      expect(results[0]).toMatchObject({
        ok: false,
        resolvesTo: [],
        problem: "DNS lookup of down.example.com at memory DNS failed: SERVFAIL",
        fix: expect.stringContaining("[edge] dns_servers in mcp-master.toml")
      })
      expect(results[1]!.ok).toBe(true)
    }))

  it.effect("a route on an edge node the master no longer knows", () =>
    Effect.gen(function* () {
      const [result] = yield* check([{ hostname: "mcq.example.com", edgeNode: "gone" }])
      expect(result).toMatchObject({ ok: false, resolvesTo: ["svc.example.com", "198.51.100.5"] })
      expect(result!.problem).toContain(`the edge node "gone" holding this route is not registered with the master`)
      expect(result!.fix).toContain("mcp node add gone <host:port> --role edge")
    }))

  it.effect("the results decode as the wire schema", () =>
    Effect.gen(function* () {
      const results = yield* check([{ hostname: "mcq.example.com", edgeNode: "svc" }, { hostname: "new.example.com", edgeNode: "svc" }])
      yield* Schema.decodeUnknown(Schema.Array(Routes.DnsCheckResult))(results)
    }))
})

describe("helpers", () => {
  it("recordToCreate: a zone apex gets only the address record; an edge without IPs only the CNAME", () => {
    expect(recordToCreate("example.com", svc)).toBe("A example.com -> 198.51.100.5")
    expect(recordToCreate("app.example.com", { name: "svc3", addresses: ["svc3.lan:9444"] })).toBe("CNAME app.example.com -> svc3.example.com")
    expect(recordToCreate("example.com", { name: "svc3", addresses: ["svc3.lan:9444"] })).toBe(`CNAME example.com -> a name whose first label is "svc3"`)
  })

  it("edgeIps: the proxy address first, then the IP hosts of the agent addresses, once each", () => {
    expect(edgeIps({ name: "e", addresses: ["10.0.0.9:9444", "[FD00::9]:9444", "e.lan:9444", "10.0.0.9:9445"], nodeAddress: "10.0.0.9" })).toEqual(["10.0.0.9", "fd00::9"])
  })

  it("edgeCandidates keeps the edge nodes with their proxy addresses", () => {
    const info = (name: string, role: "edge" | "worker", nodeAddress?: string) =>
      Schema.decodeUnknownSync(Node.NodeInfo)({ name, role, addresses: [`${name}.lan:9444`], arch: "amd64", version: "1", ...(nodeAddress === undefined ? {} : { nodeAddress }) })
    expect(edgeCandidates([info("svc", "edge", "10.0.0.9"), info("rift", "worker", "10.0.0.5"), info("svc2", "edge")])).toEqual([
      { name: "svc", addresses: ["svc.lan:9444"], nodeAddress: "10.0.0.9" },
      { name: "svc2", addresses: ["svc2.lan:9444"] }
    ])
  })

  it("parseDnsServer: the forms node's resolver takes, and a named error for the rest", () => {
    expect(parseDnsServer("127.0.0.1:5353")).toEqual(Either.right("127.0.0.1:5353"))
    expect(parseDnsServer("10.0.0.53")).toEqual(Either.right("10.0.0.53"))
    expect(parseDnsServer("[fd00::53]:53")).toEqual(Either.right("[fd00::53]:53"))
    expect(parseDnsServer("[fd00::53]")).toEqual(Either.right("fd00::53"))
    expect(parseDnsServer("fd00::53")).toEqual(Either.right("fd00::53"))
    const named = parseDnsServer("ns1.example.com:53")
    expect(Either.isLeft(named) && named.left).toBeInstanceOf(InvalidDnsServer)
    expect(Either.isLeft(named) && named.left.message).toContain(`[edge] dns_servers entry "ns1.example.com:53" in mcp-master.toml is unusable: "ns1.example.com" is not an IP address`)
    const port = parseDnsServer("10.0.0.53:99999")
    expect(Either.isLeft(port) && port.left.reason).toBe(`the port "99999" is not a number from 1 to 65535`)
  })
})

describe("layerResolver", () => {
  it.effect("refuses a server it cannot use when the layer is built", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Layer.build(layerResolver(["127.0.0.1:53", "dns.example.net:53"])).pipe(Effect.scoped))
      expect(error).toBeInstanceOf(InvalidDnsServer)
      expect(error.server).toBe("dns.example.net:53")
    }))

  it.effect("describes the servers it asks", () =>
    Effect.gen(function* () {
      const lookup = yield* DnsLookup
      expect(lookup.describe).toBe("DNS servers 127.0.0.1:5353, [fd00::53]:53")
    }).pipe(Effect.provide(layerResolver(["127.0.0.1:5353", "[fd00::53]:53"]))))

  it.live("a server that does not answer is a DnsLookupError naming the name and server, not an empty answer", () =>
    Effect.gen(function* () {
      // A UDP port with nothing behind it: the resolver times out or is refused; either is a failure.
      const lookup = yield* DnsLookup
      const error = yield* Effect.flip(lookup.cname("app.example.test"))
      expect(error).toBeInstanceOf(DnsLookupError)
      expect(error.name).toBe("app.example.test")
      expect(error.server).toBe("DNS servers 127.0.0.1:9")
    }).pipe(Effect.provide(layerResolver(["127.0.0.1:9"]))), 15_000)
})
