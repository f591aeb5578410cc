// The real DnsRecords adapters against real servers started by the harnesses: PowerDNS through its
// HTTP API, Knot through RFC 2136 + TSIG. The shared contract, then what only a real server shows:
// the records answer DNS queries, survive a restart, and failures read as something to fix.
import { afterAll, beforeAll, describe, expect, it, layer } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import * as dgram from "node:dgram"
import * as dns from "node:dns"
import { DnsError, DnsRecords } from "../packages/agent/src/dns/DnsRecords.js"
import * as PowerDnsRecords from "../packages/agent/src/dns/PowerDnsRecords.js"
import * as Rfc2136Records from "../packages/agent/src/dns/Rfc2136Records.js"
import { CONTRACT_ZONE, contractName, dnsRecordsContract } from "../packages/agent/test/DnsRecordsContract.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { type KnotServer, startKnot } from "./support/Knot.js"
import { type PowerDnsServer, startPowerDns } from "./support/PowerDns.js"

let pdns: PowerDnsServer | undefined
let knot: KnotServer | undefined

beforeAll(async () => {
  const [p, k] = await Promise.allSettled([startPowerDns(), startKnot({ zone: CONTRACT_ZONE })])
  if (p.status === "fulfilled") pdns = p.value
  if (k.status === "fulfilled") knot = k.value
  if (p.status === "rejected") throw p.reason
  if (k.status === "rejected") throw k.reason
}, 60_000)

afterAll(async () => {
  await Promise.all([pdns?.close(), knot?.close()])
})

const started = <A>(peer: A | undefined, what: string): A => {
  if (peer === undefined) throw new Error(`${what} was not started`)
  return peer
}

const pdnsOptions = (server: PowerDnsServer, overrides: Partial<PowerDnsRecords.PowerDnsOptions> = {}): PowerDnsRecords.PowerDnsOptions => ({
  apiUrl: server.apiUrl,
  apiKey: Redacted.make(server.apiKey),
  zone: CONTRACT_ZONE,
  ...overrides
})

const knotOptions = (server: KnotServer, overrides: Partial<Rfc2136Records.Rfc2136Options> = {}): Rfc2136Records.Rfc2136Options => ({
  server: server.server,
  zone: server.zone,
  keyName: server.key.name,
  keySecret: Redacted.make(server.key.secret),
  ...overrides
})

// Built lazily: the servers exist only once beforeAll has run.
const pdnsLayer = Layer.unwrapEffect(Effect.sync(() => PowerDnsRecords.layer(pdnsOptions(started(pdns, "PowerDNS"))))).pipe(
  Layer.provide(layerPlatform)
)
const knotLayer = Layer.unwrapEffect(Effect.sync(() => Rfc2136Records.layer(knotOptions(started(knot, "Knot")))))

dnsRecordsContract("PowerDNS HTTP API", pdnsLayer)
dnsRecordsContract("RFC 2136 on Knot", knotLayer)

/** What a DNS client sees: the A addresses of `name` from the server on `port`, [] when there are none. */
const resolveA = (port: number, name: string): Effect.Effect<ReadonlyArray<string>> =>
  Effect.promise(async () => {
    const resolver = new dns.promises.Resolver({ timeout: 2000, tries: 1 })
    resolver.setServers([`127.0.0.1:${port}`])
    try {
      return (await resolver.resolve4(name)).sort()
    } catch (e) {
      const code = (e as { code?: string }).code
      if (code === dns.NODATA || code === dns.NOTFOUND) return []
      throw e
    }
  })

/** put / replace / remove as seen by a DNS client, hostname resolution, names outside the zone. */
const queryBehaviour = (name: string, dnsLayer: Layer.Layer<DnsRecords, unknown>, port: () => number): void =>
  layer(dnsLayer, { excludeTestServices: true, timeout: "30 seconds" })(`${name}: what DNS clients see`, (it) => {
    it.effect("after put the server answers the name with exactly the address; remove makes it vanish", () =>
      Effect.gen(function* () {
        const records = yield* DnsRecords
        const record = contractName("query")
        yield* records.put(record, "127.0.0.31")
        expect(yield* resolveA(port(), record)).toEqual(["127.0.0.31"])
        yield* records.put(record.toUpperCase(), "127.0.0.32")
        expect(yield* resolveA(port(), record)).toEqual(["127.0.0.32"])
        yield* records.remove(record)
        expect(yield* resolveA(port(), record)).toEqual([])
      }))

    it.effect("a hostname given as the address is stored as its IPv4 address", () =>
      Effect.gen(function* () {
        const records = yield* DnsRecords
        const record = contractName("x")
        yield* records.put(record, "localhost")
        expect((yield* records.list).get(record)).toBe("127.0.0.1")
        expect(yield* resolveA(port(), record)).toEqual(["127.0.0.1"])

        const unresolvable = yield* Effect.flip(records.put(record, "no-such-node.invalid"))
        expect(unresolvable).toBeInstanceOf(DnsError)
        expect(unresolvable.reason).toContain("no-such-node.invalid")
        expect(unresolvable.reason).toContain("does not resolve")
        // The failed put left the earlier record alone.
        expect((yield* records.list).get(record)).toBe("127.0.0.1")

        const v6 = yield* Effect.flip(records.put(record, "::1"))
        expect(v6.reason).toContain("IPv4")
      }))

    it.effect("a name outside the zone is refused before anything is sent", () =>
      Effect.gen(function* () {
        const records = yield* DnsRecords
        const outside = yield* Effect.flip(records.put("web.example.test", "127.0.0.1"))
        expect(outside.reason).toContain(`outside the zone ${CONTRACT_ZONE}`)
      }))
  })

queryBehaviour("PowerDNS", pdnsLayer, () => started(pdns, "PowerDNS").dnsPort)
queryBehaviour("Knot", knotLayer, () => started(knot, "Knot").port)

describe("PowerDnsRecords on PowerDNS 4.7", () => {
  it.live("a missing zone is created (Native); records persist across a restart; a stopped server fails put naming PowerDNS", () =>
    Effect.gen(function* () {
      const own = yield* Effect.acquireRelease(
        Effect.promise(() => startPowerDns()),
        (server) => Effect.promise(() => server.close())
      )
      const zoneUrl = `${own.apiUrl}/api/v1/servers/localhost/zones/${CONTRACT_ZONE}.`
      const zoneStatus = Effect.promise(() => fetch(zoneUrl, { headers: { "X-API-Key": own.apiKey } }).then(async (r) => ({ status: r.status, body: await r.text() })))
      expect((yield* zoneStatus).status).toBe(404)

      const records = yield* PowerDnsRecords.make(pdnsOptions(own))
      const zone = yield* zoneStatus
      expect(zone.status).toBe(200)
      expect(JSON.parse(zone.body)).toMatchObject({ kind: "Native", name: `${CONTRACT_ZONE}.` })

      const name = contractName("persist")
      yield* records.put(name, "127.0.0.41")
      yield* Effect.promise(() => own.stop())

      const down = yield* Effect.flip(records.put(name, "127.0.0.42"))
      expect(down).toBeInstanceOf(DnsError)
      expect(down.message).toContain("PowerDNS")
      expect(down.reason).toContain(`PowerDNS API at ${own.apiUrl} is not reachable`)
      expect(down.reason).toContain("ECONNREFUSED")
      const atStart = yield* Effect.flip(PowerDnsRecords.make(pdnsOptions(own)))
      expect(atStart.reason).toContain("is not reachable")

      yield* Effect.promise(() => own.start())
      expect((yield* records.list).get(name)).toBe("127.0.0.41")
      expect(yield* resolveA(own.dnsPort, name)).toEqual(["127.0.0.41"])
      // A restart finds the zone and leaves it as it is.
      const again = yield* PowerDnsRecords.make(pdnsOptions(own))
      expect((yield* again.list).get(name)).toBe("127.0.0.41")
    }).pipe(Effect.scoped, Effect.provide(layerPlatform)))

  it.live("a wrong API key fails at start with a message that does not contain either key", () =>
    Effect.gen(function* () {
      const server = started(pdns, "PowerDNS")
      const wrong = "wrong-key-0123456789"
      const error = yield* Effect.flip(PowerDnsRecords.make(pdnsOptions(server, { apiKey: Redacted.make(wrong) })))
      expect(error).toBeInstanceOf(DnsError)
      expect(error.reason).toContain("PowerDNS rejected the API key")
      expect(error.message).not.toContain(wrong)
      expect(error.message).not.toContain(server.apiKey)
      expect(String(Redacted.make(wrong))).not.toContain(wrong)
    }).pipe(Effect.provide(layerPlatform)))

  it.live("a wrong server id fails at start naming it", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(PowerDnsRecords.make(pdnsOptions(started(pdns, "PowerDNS"), { server: "nope" })))
      expect(error.reason).toContain(`no server "nope"`)
    }).pipe(Effect.provide(layerPlatform)))
})

describe("Rfc2136Records on Knot 3.2", () => {
  it.live("a wrong secret, an unknown key, a key the ACL does not allow: each fails with what to check", () =>
    Effect.gen(function* () {
      const server = started(knot, "Knot")
      const otherSecret = Buffer.alloc(32, 7).toString("base64")
      const badSig = yield* Effect.flip(Rfc2136Records.make(knotOptions(server, { keySecret: Redacted.make(otherSecret) })))
      expect(badSig.reason).toContain("BADSIG")
      expect(badSig.reason).toContain(`the secret of TSIG key "${server.key.name}" differs`)
      expect(badSig.message).not.toContain(otherSecret)
      expect(badSig.message).not.toContain(server.key.secret)

      const badKey = yield* Effect.flip(Rfc2136Records.make(knotOptions(server, { keyName: "no-such-key" })))
      expect(badKey.reason).toContain("BADKEY")
      expect(badKey.reason).toContain("no-such-key")

      // The outsider key may only NOTIFY: the signed SOA check at start passes, the update and
      // the transfer are refused (Knot says NOTAUTH/BADKEY for a key the action's ACL lacks).
      const outsider = yield* Rfc2136Records.make(
        knotOptions(server, { keyName: server.outsiderKey.name, keySecret: Redacted.make(server.outsiderKey.secret) })
      )
      const refused = yield* Effect.flip(outsider.put(contractName(), "127.0.0.51"))
      expect(refused.reason).toContain("the server refused the update")
      expect(refused.reason).toContain("check the TSIG key name/secret and the zone's update ACL")
      const transfer = yield* Effect.flip(outsider.list)
      expect(transfer.reason).toContain("the server refused the transfer")
      expect(transfer.reason).toContain("transfer ACL")
    }))

  it.live("list reads a zone transfer spanning many TCP messages, verifying each TSIG", () =>
    Effect.gen(function* () {
      // ~4000 A records are well over one 64 KiB message.
      const seeded = Array.from({ length: 4000 }, (_, i) => [`bulk-${i}`, `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`] as const)
      const own = yield* Effect.acquireRelease(
        Effect.promise(() => startKnot({ zone: CONTRACT_ZONE, records: seeded })),
        (server) => Effect.promise(() => server.close())
      )
      const records = yield* Rfc2136Records.make(knotOptions(own))
      const listed = yield* records.list
      expect(listed.size).toBe(seeded.length + 1) // + ns1
      expect(listed.get(`bulk-3999.${CONTRACT_ZONE}`)).toBe("10.0.15.159")
      expect(listed.get(`ns1.${CONTRACT_ZONE}`)).toBe("127.0.0.1")
    }).pipe(Effect.scoped))

  it.live("a zone the server does not serve fails at start", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(Rfc2136Records.make(knotOptions(started(knot, "Knot"), { zone: "other.test" })))
      expect(error.operation).toContain("other.test")
      expect(error.reason).toMatch(/refused|not authoritative/)
    }))

  it.live("a stopped server fails put and list as not reachable", () =>
    Effect.gen(function* () {
      const own = yield* Effect.acquireRelease(
        Effect.promise(() => startKnot({ zone: CONTRACT_ZONE })),
        (server) => Effect.promise(() => server.close())
      )
      const records = yield* Rfc2136Records.make(knotOptions(own, { timeoutMs: 500 }))
      const name = contractName()
      yield* records.put(name, "127.0.0.61")
      yield* Effect.promise(() => own.stop())
      const put = yield* Effect.flip(records.put(name, "127.0.0.62"))
      expect(put.message).toContain(own.server)
      expect(put.reason).toMatch(/not reachable|no answer/)
      const list = yield* Effect.flip(records.list)
      expect(list.reason).toContain("not reachable")
    }).pipe(Effect.scoped))
})

describe("Rfc2136Records against a forged server", () => {
  /** A UDP server on 127.0.0.1 answering every request with `answer(request)`. */
  const fakeServer = (answer: (request: Buffer) => Buffer) =>
    Effect.acquireRelease(
      Effect.async<dgram.Socket>((resume) => {
        const socket = dgram.createSocket("udp4")
        socket.on("message", (msg, rinfo) => socket.send(answer(msg), rinfo.port, rinfo.address))
        socket.bind(0, "127.0.0.1", () => resume(Effect.succeed(socket)))
      }),
      (socket) =>
        Effect.async<void>((resume) => {
          socket.close(() => resume(Effect.void))
        })
    )

  /** The request turned into a NOERROR answer (QR, AA set), its TSIG removed. */
  const answerOf = (request: Buffer, soa: boolean): Buffer => {
    const parsed = Rfc2136Records.parseMessage(request)
    const body = Buffer.from(request.subarray(0, parsed.tsig!.start))
    body.writeUInt16BE(body.readUInt16BE(2) | 0x8400, 2)
    body.writeUInt16BE(0, 10)
    if (!soa) return body
    // Answer the SOA question with a minimal SOA record pointing back at the question name (offset 12).
    const rdata = Buffer.concat([Buffer.from([0xc0, 12, 0xc0, 12]), Buffer.alloc(20)])
    const rr = Buffer.concat([Buffer.from([0xc0, 12, 0, 6, 0, 1, 0, 0, 0, 60, 0, rdata.length]), rdata])
    body.writeUInt16BE(1, 6)
    return Buffer.concat([body, rr])
  }

  const key = { name: "mcp-test-key", secret: Buffer.alloc(32, 1) }
  const options = (port: number): Rfc2136Records.Rfc2136Options => ({
    server: `127.0.0.1:${port}`,
    zone: CONTRACT_ZONE,
    keyName: key.name,
    keySecret: Redacted.make(key.secret.toString("base64")),
    timeoutMs: 500
  })

  it.live("an unsigned answer is rejected", () =>
    Effect.gen(function* () {
      const socket = yield* fakeServer((request) => answerOf(request, true))
      const error = yield* Effect.flip(Rfc2136Records.make(options(socket.address().port)))
      expect(error.reason).toContain("carries no TSIG signature")
    }).pipe(Effect.scoped))

  it.live("an answer signed with another secret is rejected", () =>
    Effect.gen(function* () {
      const forger = { name: key.name, secret: Buffer.alloc(32, 2) }
      const socket = yield* fakeServer((request) => Rfc2136Records.sign(answerOf(request, true), forger).bytes)
      const error = yield* Effect.flip(Rfc2136Records.make(options(socket.address().port)))
      expect(error.reason).toContain("does not verify")
    }).pipe(Effect.scoped))

  it.live("the wire format round-trips: a signed update parses back with its TSIG", () =>
    Effect.sync(() => {
      const message = Rfc2136Records.updateMessage(0x1234, CONTRACT_ZONE, [
        Rfc2136Records.deleteRrset(`web.${CONTRACT_ZONE}`, Rfc2136Records.TYPE.A),
        Rfc2136Records.addA(`web.${CONTRACT_ZONE}`, "10.0.0.5", 60)
      ])
      const signed = Rfc2136Records.sign(message, key, 1_700_000_000)
      const parsed = Rfc2136Records.parseMessage(signed.bytes)
      expect(parsed.opcode).toBe(5)
      expect(parsed.tsig).toMatchObject({ keyName: key.name, algorithm: "hmac-sha256", timeSigned: 1_700_000_000, fudge: 300, originalId: 0x1234, error: 0 })
      expect(parsed.tsig?.mac).toEqual(signed.mac)
      // Delete RRset (class ANY, no rdata), then add (class IN, 4-byte address).
      expect(parsed.answers).toHaveLength(0)
      expect(signed.bytes.readUInt16BE(8)).toBe(2)
      expect(signed.bytes.readUInt16BE(10)).toBe(1)
    }))
})
