/**
 * ACME dns-01 the way an agent does it: pebble validates the challenge by asking PowerDNS for
 * the `_acme-challenge` TXT record the agent wrote through PowerDNS's API.
 */
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Redacted } from "effect"
import { X509Certificate } from "node:crypto"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AcmeIssuer from "../packages/agent/src/certs/AcmeIssuer.js"
import * as PowerDnsRecords from "../packages/agent/src/dns/PowerDnsRecords.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { type Pebble, startPebble } from "./support/Pebble.js"
import { type PowerDnsServer, startPowerDns } from "./support/PowerDns.js"

let pdns: PowerDnsServer
let pebble: Pebble

beforeAll(async () => {
  pdns = await startPowerDns()
  pebble = await startPebble({ alwaysValid: false, dnsServer: `127.0.0.1:${pdns.dnsPort}` })
}, 60_000)

afterAll(async () => {
  await Promise.allSettled([pebble?.stop(), pdns?.close()])
})

describe("ACME dns-01 through PowerDNS", () => {
  it("pebble validates the TXT record written through PowerDNS and issues the certificate", async () => {
    const zone = "svc.mcp.internal"
    const options = { apiUrl: pdns.apiUrl, apiKey: Redacted.make(pdns.apiKey), zone }
    // The DNS layer creates the zone the agent's records (and challenges) live in.
    await Effect.runPromise(PowerDnsRecords.make(options).pipe(Effect.provide(layerPlatform)))
    const issuer = await Effect.runPromise(Effect.gen(function*() {
      return yield* AcmeIssuer.make({
        directoryUrl: pebble.directoryUrl,
        dataDir: mkdtempSync(join(tmpdir(), "mcp-acme-dns01-")),
        caBundle: pebble.tlsCa,
        challenge: { kind: "dns-01", solver: yield* PowerDnsRecords.makeTxtSolver(options) }
      })
    }).pipe(Effect.provide(layerPlatform)))
    const cert = await Effect.runPromise(issuer.issue(`web.${zone}`))
    const leaf = new X509Certificate(readFileSync(cert.certPath))
    expect(leaf.checkHost(`web.${zone}`)).toBe(`web.${zone}`)
    expect(leaf.verify(new X509Certificate(readFileSync(cert.certPath, "utf8").split(/(?=-----BEGIN CERTIFICATE-----)/)[1]!).publicKey)).toBe(true)
    // The challenge record is gone afterwards.
    const zoneJson = await fetch(`${pdns.apiUrl}/api/v1/servers/localhost/zones/${zone}.`, { headers: { "X-API-Key": pdns.apiKey } }).then((r) => r.json()) as { rrsets: Array<{ type: string }> }
    expect(zoneJson.rrsets.filter((r) => r.type === "TXT")).toEqual([])
  }, 60_000)
})
