/**
 * The DnsRecords contract: one suite every adapter must pass (memory here, PowerDNS and RFC 2136
 * in the top-level integration tests). Each test uses fresh `c-<random>` names in CONTRACT_ZONE.
 */
import { expect, layer } from "@effect/vitest"
import { Effect, type Layer } from "effect"
import { randomBytes } from "node:crypto"
import { DnsRecords } from "../src/dns/DnsRecords.js"

/** The zone the real servers under test serve; contract names live below it. */
export const CONTRACT_ZONE = "svc.mcp.internal"

/** A name no other test uses: servers are shared by a whole test file. */
export const contractName = (label = "c"): string => `${label}-${randomBytes(5).toString("hex")}.${CONTRACT_ZONE}`

export const dnsRecordsContract = (name: string, dnsLayer: Layer.Layer<DnsRecords, unknown>): void =>
  layer(dnsLayer, { excludeTestServices: true, timeout: "30 seconds" })(`DnsRecords contract: ${name}`, (it) => {
    it.effect("put then list shows the record", () =>
      Effect.gen(function* () {
        const dns = yield* DnsRecords
        const record = contractName()
        yield* dns.put(record, "127.0.0.21")
        expect((yield* dns.list).get(record)).toBe("127.0.0.21")
      }))

    it.effect("put again replaces the address: one name, exactly the new address", () =>
      Effect.gen(function* () {
        const dns = yield* DnsRecords
        const record = contractName()
        yield* dns.put(record, "127.0.0.22")
        yield* dns.put(record, "127.0.0.23")
        const listed = yield* dns.list
        expect(listed.get(record)).toBe("127.0.0.23")
        expect([...listed.keys()].filter((n) => n === record)).toHaveLength(1)
        // The same address again is a no-op, not a duplicate.
        yield* dns.put(record, "127.0.0.23")
        expect((yield* dns.list).get(record)).toBe("127.0.0.23")
      }))

    it.effect("remove deletes the record and leaves other names alone", () =>
      Effect.gen(function* () {
        const dns = yield* DnsRecords
        const gone = contractName()
        const kept = contractName()
        yield* dns.put(gone, "127.0.0.24")
        yield* dns.put(kept, "127.0.0.25")
        yield* dns.remove(gone)
        const listed = yield* dns.list
        expect(listed.has(gone)).toBe(false)
        expect(listed.get(kept)).toBe("127.0.0.25")
      }))

    it.effect("removing a missing record succeeds, also twice", () =>
      Effect.gen(function* () {
        const dns = yield* DnsRecords
        const record = contractName()
        yield* dns.remove(record)
        yield* dns.put(record, "127.0.0.26")
        yield* dns.remove(record)
        yield* dns.remove(record)
        expect((yield* dns.list).has(record)).toBe(false)
      }))

    it.effect("names are case-insensitive: listed lowercase without the trailing dot", () =>
      Effect.gen(function* () {
        const dns = yield* DnsRecords
        const record = contractName("mixed")
        const shouted = `${record.toUpperCase()}.`
        yield* dns.put(shouted, "127.0.0.27")
        const listed = yield* dns.list
        expect(listed.get(record)).toBe("127.0.0.27")
        expect(listed.has(shouted)).toBe(false)
        // Another spelling of the same name replaces, then removes, that one record.
        yield* dns.put(record.replace(/^m/, "M"), "127.0.0.28")
        expect((yield* dns.list).get(record)).toBe("127.0.0.28")
        yield* dns.remove(shouted)
        expect((yield* dns.list).has(record)).toBe(false)
      }))
  })
