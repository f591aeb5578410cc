/**
 * The internal zone as the master answers for it: one A record per service name (what agents
 * register), the zone's SOA and NS, and the rules of an authoritative server. Names in the zone
 * that have no record get NXDOMAIN, names outside it REFUSED (the master is no resolver), with
 * the SOA in the authority section so resolvers cache the negative answer for its minimum TTL.
 * Pure: a query's bytes in, the response's bytes out (dns-packet does the wire format).
 */
import * as Packet from "dns-packet"

export interface ZoneState {
  /** The zone's name, lowercase, without the trailing dot: "svc.mcp.internal". */
  readonly origin: string
  /** Bumped on every change, so secondaries and caches can tell. */
  readonly serial: number
  /** Name (lowercase, in the zone) to its IPv4 address. */
  readonly records: ReadonlyMap<string, string>
  /** The zone's name server (an NS record, and an A record when it is in the zone). */
  readonly nameserver: { readonly name: string; readonly address: string }
}

/** Records live this long in caches: a moved service is found again within it. */
export const TTL_SECONDS = 30
/** Without EDNS a UDP answer holds at most this many bytes (RFC 1035); longer ones are truncated. */
export const CLASSIC_UDP_BYTES = 512

/** The largest UDP answer sent to an EDNS client (the DNS flag day 2020 value: no IP fragments). */
export const EDNS_UDP_BYTES = 1232

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const
type Rcode = keyof typeof RCODE

const normalize = (name: string) => name.toLowerCase().replace(/\.$/, "")

export const inZone = (origin: string, name: string): boolean => name === origin || name.endsWith(`.${origin}`)

const soa = (zone: ZoneState): Packet.Answer => ({
  type: "SOA",
  name: zone.origin,
  ttl: TTL_SECONDS,
  data: {
    mname: zone.nameserver.name,
    rname: `hostmaster.${zone.origin}`,
    serial: zone.serial,
    refresh: 3600,
    retry: 600,
    expire: 86400,
    // The negative-caching TTL (RFC 2308).
    minimum: TTL_SECONDS
  }
})

const aRecord = (name: string, address: string): Packet.Answer => ({ type: "A", name, ttl: TTL_SECONDS, data: address })

/** The address a name in the zone has: a service's record, or the name server's own. */
const addressOf = (zone: ZoneState, name: string): string | undefined =>
  zone.records.get(name) ?? (name === normalize(zone.nameserver.name) ? zone.nameserver.address : undefined)

interface Sections {
  readonly rcode: Rcode
  readonly answers?: ReadonlyArray<Packet.Answer>
  readonly authorities?: ReadonlyArray<Packet.Answer>
  readonly additionals?: ReadonlyArray<Packet.Answer>
}

/** What the zone says to one question. */
export const resolve = (zone: ZoneState, question: Packet.Question): Sections => {
  const name = normalize(question.name)
  if ((question.class ?? "IN") !== "IN" || !inZone(zone.origin, name)) return { rcode: "REFUSED" }
  const address = addressOf(zone, name)
  const nsGlue = inZone(zone.origin, normalize(zone.nameserver.name)) ? [aRecord(normalize(zone.nameserver.name), zone.nameserver.address)] : []
  const apex = name === zone.origin
  const wants = question.type as string
  if (apex && wants === "SOA") return { rcode: "NOERROR", answers: [soa(zone)] }
  if (apex && wants === "NS") return { rcode: "NOERROR", answers: [{ type: "NS", name: zone.origin, ttl: TTL_SECONDS, data: zone.nameserver.name }], additionals: nsGlue }
  if (address !== undefined && (wants === "A" || wants === "ANY")) return { rcode: "NOERROR", answers: [aRecord(name, address)] }
  // The name exists (a record, or the apex) but has no data of this type: NODATA.
  if (address !== undefined || apex) return { rcode: "NOERROR", authorities: [soa(zone)] }
  return { rcode: "NXDOMAIN", authorities: [soa(zone)] }
}

/**
 * SERVFAIL for a query the zone could not be read for (the master's database failed): the
 * client tries again later instead of caching a wrong NXDOMAIN.
 */
export const serverFailure = (message: Buffer): Buffer | undefined => {
  const id = idOf(message)
  if (id === undefined || (message.readUInt8(2) & 0x80) !== 0) return undefined
  return Packet.encode({ type: "response", id, flags: RCODE.SERVFAIL, questions: [] })
}

/** The 16-bit id of a message, if it is long enough to have a header. */
const idOf = (message: Buffer) => (message.length >= 12 ? message.readUInt16BE(0) : undefined)

/**
 * The response to a query message, or undefined when there is nothing to answer (no DNS header,
 * or a response rather than a query). `maxBytes` limits a UDP answer: a longer one is sent empty
 * with TC set, and the client asks again over TCP.
 */
export const answer = (zone: ZoneState, message: Buffer, transport: "udp" | "tcp"): Buffer | undefined => {
  const id = idOf(message)
  if (id === undefined) return undefined
  if ((message.readUInt8(2) & 0x80) !== 0) return undefined // a response: never answer one (no loops)
  const reply = (rcode: Rcode, query?: Packet.DecodedPacket, sections: Omit<Sections, "rcode"> = {}, truncated = false): Buffer => {
    // A query with EDNS gets EDNS back (RFC 6891), saying how large a UDP answer this server sends.
    const edns = (query?.additionals ?? []).some((a) => a.type === "OPT")
      ? [{ type: "OPT", name: ".", udpPayloadSize: EDNS_UDP_BYTES, extendedRcode: 0, ednsVersion: 0, flags: 0, options: [] } as unknown as Packet.Answer]
      : []
    return Packet.encode({
      type: "response",
      id,
      flags: Packet.AUTHORITATIVE_ANSWER | ((query?.flags ?? 0) & Packet.RECURSION_DESIRED) | (truncated ? Packet.TRUNCATED_RESPONSE : 0) | RCODE[rcode],
      questions: query?.questions ?? [],
      answers: [...(sections.answers ?? [])],
      authorities: [...(sections.authorities ?? [])],
      additionals: [...(sections.additionals ?? []), ...edns]
    })
  }
  let query: Packet.DecodedPacket
  try {
    query = Packet.decode(message) as Packet.DecodedPacket
  } catch {
    return reply("FORMERR")
  }
  const opcode = (query as { opcode?: string }).opcode
  if (opcode !== undefined && opcode !== "QUERY") return reply("NOTIMP", query)
  if (query.questions?.length !== 1) return reply("FORMERR", query)
  const sections = resolve(zone, query.questions[0]!)
  const full = reply(sections.rcode, query, sections)
  if (transport === "tcp") return full
  // EDNS (an OPT record) tells how large a UDP answer the client takes.
  const opt = (query.additionals ?? []).find((a) => a.type === "OPT") as { udpPayloadSize?: number } | undefined
  const limit = Math.min(EDNS_UDP_BYTES, Math.max(CLASSIC_UDP_BYTES, opt?.udpPayloadSize ?? CLASSIC_UDP_BYTES))
  return full.length <= limit ? full : reply(sections.rcode, query, {}, true)
}
