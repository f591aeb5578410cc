// The master's DNS server for the internal zone, asked by real clients: dig (UDP, TCP, EDNS off)
// and Node's resolver. Exact answers: A records, NXDOMAIN and NODATA with the SOA, REFUSED outside
// the zone, SOA and NS at the apex, the serial as it changes, and a truncated UDP answer.
import { describe, expect, it } from "@effect/vitest"
import * as Packet from "dns-packet"
import { Effect, Ref } from "effect"
import { execFile } from "node:child_process"
import * as dgram from "node:dgram"
import { Resolver } from "node:dns/promises"
import type { ZoneState } from "../src/dns/Zone.js"
import { answer, CLASSIC_UDP_BYTES } from "../src/dns/Zone.js"
import { serve, type ZoneServer } from "../src/dns/ZoneServer.js"

const zone0: ZoneState = {
  origin: "svc.mcp.internal",
  serial: 7,
  records: new Map([["hello.svc.mcp.internal", "10.0.0.5"], ["api.svc.mcp.internal", "10.0.0.6"]]),
  nameserver: { name: "ns.svc.mcp.internal", address: "10.0.0.1" }
}

/** dig, run asynchronously: the server answers from this very process. */
const dig = (port: number, ...args: Array<string>): Effect.Effect<string> =>
  Effect.promise(() =>
    new Promise<string>((resolve, reject) =>
      execFile("dig", ["@127.0.0.1", "-p", String(port), "+time=2", "+tries=1", ...args], { encoding: "utf8" }, (error, stdout) => {
        if ((error as NodeJS.ErrnoException | null)?.code === "ENOENT") {
          reject(new Error("dig is missing (these tests ask the DNS server with it). Fix: run: bash scripts/setup-peers.sh (as root), or apt-get install dnsutils"))
        } else if (error !== null) reject(new Error(`dig ${args.join(" ")}: ${error.message}\n${stdout}`))
        else resolve(stdout)
      })))

const status = (output: string) => /status: ([A-Z]+)/.exec(output)?.[1]

const withServer = <A>(f: (port: number, zone: Ref.Ref<ZoneState>, server: ZoneServer) => Effect.Effect<A>) =>
  Effect.scoped(Effect.gen(function* () {
    const zone = yield* Ref.make(zone0)
    const server = yield* serve({ host: "127.0.0.1", port: 0, zone: Ref.get(zone) })
    return yield* f(server.port, zone, server)
  }))

describe("the internal zone's DNS server", () => {
  it.live("answers A records over UDP and TCP, authoritatively", () =>
    withServer((port) => Effect.gen(function* () {
      expect((yield* dig(port, "+short", "hello.svc.mcp.internal", "A")).trim()).toBe("10.0.0.5")
      expect((yield* dig(port, "+short", "+tcp", "API.svc.mcp.internal.", "A")).trim()).toBe("10.0.0.6")
      const full = yield* dig(port, "hello.svc.mcp.internal", "A")
      expect(status(full)).toBe("NOERROR")
      expect(full).toMatch(/flags: qr aa rd;/)
      expect(full).toMatch(/^hello\.svc\.mcp\.internal\.\s+30\s+IN\s+A\s+10\.0\.0\.5$/m)
    })))

  it.live("a name in the zone without a record is NXDOMAIN, another type of a known name NODATA, both with the SOA", () =>
    withServer((port) => Effect.gen(function* () {
      const missing = yield* dig(port, "nope.svc.mcp.internal", "A")
      expect(status(missing)).toBe("NXDOMAIN")
      expect(missing).toMatch(/AUTHORITY SECTION:\nsvc\.mcp\.internal\.\s+30\s+IN\s+SOA\s+ns\.svc\.mcp\.internal\. hostmaster\.svc\.mcp\.internal\. 7 3600 600 86400 30/)
      const nodata = yield* dig(port, "hello.svc.mcp.internal", "AAAA")
      expect(status(nodata)).toBe("NOERROR")
      expect(nodata).toMatch(/ANSWER: 0, AUTHORITY: 1/)
    })))

  it.live("a name outside the zone is REFUSED: the master is no resolver", () =>
    withServer((port) => Effect.gen(function* () {
      expect(status(yield* dig(port, "example.com", "A"))).toBe("REFUSED")
      expect(status(yield* dig(port, "mcp.internal", "A"))).toBe("REFUSED")
      expect(status(yield* dig(port, "evilsvc.mcp.internal", "A"))).toBe("REFUSED")
    })))

  it.live("the apex has the SOA (with the serial as the zone changes) and the NS with its address", () =>
    withServer((port, zone) => Effect.gen(function* () {
      expect((yield* dig(port, "+short", "svc.mcp.internal", "SOA")).trim()).toBe("ns.svc.mcp.internal. hostmaster.svc.mcp.internal. 7 3600 600 86400 30")
      const ns = yield* dig(port, "svc.mcp.internal", "NS")
      expect(ns).toMatch(/^svc\.mcp\.internal\.\s+30\s+IN\s+NS\s+ns\.svc\.mcp\.internal\.$/m)
      expect(ns).toMatch(/ADDITIONAL SECTION:[\s\S]*^ns\.svc\.mcp\.internal\.\s+30\s+IN\s+A\s+10\.0\.0\.1$/m)
      yield* Ref.update(zone, (z) => ({ ...z, serial: 8, records: new Map([...z.records, ["new.svc.mcp.internal", "10.0.0.9"]]) }))
      expect((yield* dig(port, "+short", "svc.mcp.internal", "SOA")).trim()).toMatch(/ 8 3600 /)
      expect((yield* dig(port, "+short", "new.svc.mcp.internal")).trim()).toBe("10.0.0.9")
    })))

  it.live("Node's resolver gets the same answers", () =>
    withServer((port) => Effect.promise(async () => {
      const resolver = new Resolver({ timeout: 2000, tries: 1 })
      resolver.setServers([`127.0.0.1:${port}`])
      expect(await resolver.resolve4("hello.svc.mcp.internal")).toEqual(["10.0.0.5"])
      await expect(resolver.resolve4("nope.svc.mcp.internal")).rejects.toMatchObject({ code: "ENOTFOUND" })
      await expect(resolver.resolve4("example.com")).rejects.toMatchObject({ code: "EREFUSED" })
    })))

  it.live("garbage and responses are not answered, and counted", () =>
    withServer((port, _zone, server) => Effect.gen(function* () {
      const socket = dgram.createSocket("udp4")
      const response = Packet.encode({ type: "response", id: 1, flags: 0, questions: [{ type: "A", name: "hello.svc.mcp.internal" }] })
      yield* Effect.promise(() => new Promise<void>((resolve) => socket.send(Buffer.from("xx"), port, "127.0.0.1", () => resolve())))
      yield* Effect.promise(() => new Promise<void>((resolve) => socket.send(response, port, "127.0.0.1", () => resolve())))
      // Then a real query on the same socket: its answer is the only datagram that comes back.
      const query = Packet.encode({ type: "query", id: 99, flags: Packet.RECURSION_DESIRED, questions: [{ type: "A", name: "hello.svc.mcp.internal" }] })
      const reply = yield* Effect.promise(() => new Promise<Buffer>((resolve) => {
        socket.once("message", (m) => resolve(m))
        socket.send(query, port, "127.0.0.1")
      }))
      socket.close()
      expect(Packet.decode(reply).id).toBe(99)
      expect(yield* server.counts).toEqual({ answered: 1, ignored: 2, errors: 0 })
    })))
})

describe("answers too long for classic UDP", () => {
  it("are sent empty with TC over UDP without EDNS, and whole over TCP", () => {
    const zone: ZoneState = { ...zone0, nameserver: { name: `${"n".repeat(50)}.${"s".repeat(50)}.${"x".repeat(50)}.${"y".repeat(50)}.svc.mcp.internal`, address: "10.0.0.1" } }
    const ask = (name: string, type: Packet.RecordType) => Packet.encode({ type: "query", id: 5, flags: 0, questions: [{ type, name }] })
    // NXDOMAIN for a long name carries the long question and an SOA with the long name server twice.
    const long = `${"a".repeat(63)}.${"b".repeat(63)}.${"c".repeat(63)}.${"d".repeat(30)}.svc.mcp.internal`
    const tcp = answer(zone, ask(long, "A"), "tcp")!
    expect(tcp.length).toBeGreaterThan(CLASSIC_UDP_BYTES)
    const udp = Packet.decode(answer(zone, ask(long, "A"), "udp")!) as Packet.DecodedPacket
    expect(udp.flag_tc).toBe(true)
    expect(udp.authorities).toEqual([])
    expect((Packet.decode(tcp) as Packet.DecodedPacket).flag_tc).toBe(false)
  })
})
