// The memory DnsRecords layer against the shared contract (the real servers run it in test/DnsRecords.test.ts).
import { layerMemory } from "../src/dns/DnsRecords.js"
import { dnsRecordsContract } from "./DnsRecordsContract.js"

dnsRecordsContract("memory", layerMemory())
