// DnsRecords on the master's internal zone ([dns] kind = "master"): the shared contract against a
// real master daemon with [dns] listen, through its /control endpoint with an enrolled node's own
// token and certificate, and what a DNS client then gets from the master's DNS server.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Effect, Layer, Redacted } from "effect"
import { mkdtempSync, readFileSync } from "node:fs"
import { Resolver } from "node:dns/promises"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { DnsRecords } from "../packages/agent/src/dns/DnsRecords.js"
import * as MasterRecords from "../packages/agent/src/dns/MasterRecords.js"
import { CONTRACT_ZONE, contractName, dnsRecordsContract } from "../packages/agent/test/DnsRecordsContract.js"
import * as LocalFleet from "./support/LocalFleet.js"

const NODE = "zonenode"
let fleet: LocalFleet.Fleet | undefined
let master: LocalFleet.Daemon | undefined
let masterPort = 0
let dnsPort = 0

beforeAll(async () => {
  masterPort = await LocalFleet.freePort()
  dnsPort = await LocalFleet.freePort()
  fleet = await LocalFleet.prepare(mkdtempSync(join(tmpdir(), "mcp-master-zone-")), { masters: [`127.0.0.1:${masterPort}`] })
  await LocalFleet.enrolNode(fleet, NODE)
  master = await LocalFleet.spawnDaemon(LocalFleet.bins.master, LocalFleet.writeMasterConfig(fleet, { port: masterPort, extra: `[dns]\nlisten = "127.0.0.1:${dnsPort}"` }))
}, 60_000)

afterAll(async () => {
  await master?.stop()
})

const options = (node = NODE): MasterRecords.MasterRecordsOptions => {
  if (fleet === undefined) throw new Error("the master was not started")
  return {
    node,
    zone: CONTRACT_ZONE,
    masters: [`127.0.0.1:${masterPort}`],
    ca: readFileSync(join(fleet.caDir, "ca.crt"), "utf8"),
    token: Redacted.make(readFileSync(LocalFleet.nodeTokenFile(fleet, NODE), "utf8").trim()),
    clientCert: { cert: readFileSync(join(fleet.caDir, `${NODE}.crt`), "utf8"), key: Redacted.make(readFileSync(join(fleet.caDir, `${NODE}.key`), "utf8")) }
  }
}

// Built lazily: the master exists only once beforeAll has run.
const masterLayer = Layer.unwrapEffect(Effect.sync(() => MasterRecords.layer(options())))

dnsRecordsContract("the master's internal zone", masterLayer)

describe("the master's zone, as DNS clients see it", () => {
  it.live("a record a node puts is answered by the master's DNS server at once, and gone once removed", () =>
    Effect.gen(function* () {
      const records = yield* DnsRecords
      const name = contractName("served")
      const resolver = new Resolver({ timeout: 2000, tries: 1 })
      resolver.setServers([`127.0.0.1:${dnsPort}`])
      yield* records.put(name, "127.0.0.31")
      expect(yield* Effect.promise(() => resolver.resolve4(name))).toEqual(["127.0.0.31"])
      yield* records.remove(name)
      expect(yield* Effect.promise(() => resolver.resolve4(name).then(() => "found", (e: NodeJS.ErrnoException) => e.code))).toBe("ENOTFOUND")
    }).pipe(Effect.provide(masterLayer), Effect.scoped))

  it.live("a name outside the zone is refused by the agent before any request, and a node may not speak for another", () =>
    Effect.gen(function* () {
      const records = yield* DnsRecords
      const outside = yield* Effect.flip(records.put("hello.example.com", "127.0.0.1"))
      expect(outside.reason).toContain(`outside the zone ${CONTRACT_ZONE}`)
      const other = yield* Effect.flip(Effect.flatMap(MasterRecords.make(options("someone-else")), (r) => r.put(contractName(), "127.0.0.1")))
      expect(other.reason).toContain(`may not speak for node someone-else`)
    }).pipe(Effect.provide(masterLayer), Effect.scoped))
})
