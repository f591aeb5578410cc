/**
 * DnsRecords through RFC 2136 dynamic updates signed with TSIG (RFC 8945, hmac-sha256), for any
 * authoritative server that speaks them (Knot, BIND, ...): updates over UDP, zone transfers over TCP.
 */
import { Effect, Layer, Redacted } from "effect"
import { createHmac, randomInt, timingSafeEqual } from "node:crypto"
import * as dgram from "node:dgram"
import * as net from "node:net"
import { DnsError, DnsRecords, nameInZone, normalizeName, resolveIPv4 } from "./DnsRecords.js"

export interface Rfc2136Options {
  /** `host:port` of the primary server, e.g. `127.0.0.1:5300` (port 53 when omitted; `[v6]:port` for IPv6). */
  readonly server: string
  readonly zone: string
  /** The TSIG key's name as the server knows it (Knot `key: id`, BIND `key "name"`). */
  readonly keyName: string
  /** The key's secret, base64, as in the server's config. The algorithm is hmac-sha256. */
  readonly keySecret: Redacted.Redacted<string>
  readonly ttl?: number
  /** Per UDP attempt (three attempts); a zone transfer gets ten times this. Default 2 seconds. */
  readonly timeoutMs?: number
}

// ---------------------------------------------------------------------------------------------
// Wire format: just what updates, an SOA query and AXFR need. Names are written uncompressed and
// lowercase, which is also TSIG's canonical form.

export const TYPE = { A: 1, NS: 2, SOA: 6, TSIG: 250, AXFR: 252 } as const
export const CLASS = { IN: 1, NONE: 254, ANY: 255 } as const
type Exchange = "update" | "transfer" | "zone check"
const OPCODE_QUERY = 0
const OPCODE_UPDATE = 5
const TSIG_ALGORITHM = "hmac-sha256"
const TSIG_FUDGE = 300

const u16 = (n: number): Buffer => {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4)
  b.writeUInt32BE(n >>> 0)
  return b
}
const u48 = (n: number): Buffer => {
  const b = Buffer.alloc(6)
  b.writeUIntBE(n, 0, 6)
  return b
}

export const encodeName = (name: string): Buffer => {
  const labels = normalizeName(name).split(".").filter((l) => l !== "")
  const parts: Array<Buffer> = []
  for (const label of labels) {
    const bytes = Buffer.from(label, "ascii")
    if (bytes.length > 63) throw new Error(`the label "${label}" is longer than 63 bytes`)
    parts.push(Buffer.from([bytes.length]), bytes)
  }
  parts.push(Buffer.from([0]))
  const out = Buffer.concat(parts)
  if (out.length > 255) throw new Error(`the name "${name}" is longer than 255 bytes`)
  return out
}

export interface ResourceRecord {
  readonly name: string
  readonly type: number
  readonly class: number
  readonly ttl: number
  readonly rdata: Buffer
}

const rrBytes = (rr: ResourceRecord): Buffer =>
  Buffer.concat([encodeName(rr.name), u16(rr.type), u16(rr.class), u32(rr.ttl), u16(rr.rdata.length), rr.rdata])

const header = (id: number, opcode: number, counts: readonly [number, number, number, number]): Buffer =>
  Buffer.concat([u16(id), u16(opcode << 11), ...counts.map(u16)])

const ipv4Bytes = (address: string): Buffer => Buffer.from(address.split(".").map((o) => Number(o)))

/** An UPDATE for `zone` whose update section is `updates` (unsigned). */
export const updateMessage = (id: number, zone: string, updates: ReadonlyArray<ResourceRecord>): Buffer =>
  Buffer.concat([header(id, OPCODE_UPDATE, [1, 0, updates.length, 0]), encodeName(zone), u16(TYPE.SOA), u16(CLASS.IN), ...updates.map(rrBytes)])

/** RFC 2136 2.5.2: delete the whole RRset `name`/`type` (class ANY, TTL 0, no rdata). */
export const deleteRrset = (name: string, type: number): ResourceRecord => ({ name, type, class: CLASS.ANY, ttl: 0, rdata: Buffer.alloc(0) })

/** RFC 2136 2.5.1: add `name` A `address`. */
export const addA = (name: string, address: string, ttl: number): ResourceRecord => ({
  name,
  type: TYPE.A,
  class: CLASS.IN,
  ttl,
  rdata: ipv4Bytes(address)
})

/** A standard query (RD off: we ask the authority itself). */
export const queryMessage = (id: number, name: string, type: number): Buffer =>
  Buffer.concat([header(id, OPCODE_QUERY, [1, 0, 0, 0]), encodeName(name), u16(type), u16(CLASS.IN)])

export interface TsigKey {
  readonly name: string
  readonly secret: Buffer
}

/** The TSIG variables of RFC 8945 4.3.3, after the key name/class/TTL. */
const tsigTail = (timeSigned: number, fudge: number, error: number, other: Buffer): Buffer =>
  Buffer.concat([encodeName(TSIG_ALGORITHM), u48(timeSigned), u16(fudge), u16(error), u16(other.length), other])

const tsigVariables = (key: TsigKey, timeSigned: number, fudge: number, error: number, other: Buffer): Buffer =>
  Buffer.concat([encodeName(key.name), u16(CLASS.ANY), u32(0), tsigTail(timeSigned, fudge, error, other)])

const hmac = (key: TsigKey, ...parts: ReadonlyArray<Buffer>): Buffer => {
  const h = createHmac("sha256", key.secret)
  for (const p of parts) h.update(p)
  return h.digest()
}

/** Appends a TSIG RR to `message` (RFC 8945 4.3); returns the signed bytes and the MAC responses chain on. */
export const sign = (message: Buffer, key: TsigKey, now: number = Math.floor(Date.now() / 1000)): { readonly bytes: Buffer; readonly mac: Buffer } => {
  const mac = hmac(key, message, tsigVariables(key, now, TSIG_FUDGE, 0, Buffer.alloc(0)))
  const rdata = Buffer.concat([encodeName(TSIG_ALGORITHM), u48(now), u16(TSIG_FUDGE), u16(mac.length), mac, message.subarray(0, 2), u16(0), u16(0)])
  const signed = Buffer.from(message)
  signed.writeUInt16BE(signed.readUInt16BE(10) + 1, 10)
  return { bytes: Buffer.concat([signed, rrBytes({ name: key.name, type: TYPE.TSIG, class: CLASS.ANY, ttl: 0, rdata })]), mac }
}

export interface ParsedRecord {
  readonly name: string
  readonly type: number
  readonly class: number
  readonly ttl: number
  readonly rdata: Buffer
  /** Offset of the record's first byte in the message. */
  readonly start: number
}

export interface ParsedTsig {
  readonly keyName: string
  readonly algorithm: string
  readonly timeSigned: number
  readonly fudge: number
  readonly mac: Buffer
  readonly originalId: number
  readonly error: number
  readonly other: Buffer
  /** Offset of the TSIG RR: the bytes before it (with ARCOUNT - 1) are what the MAC covers. */
  readonly start: number
}

export interface ParsedMessage {
  readonly id: number
  readonly qr: boolean
  readonly opcode: number
  readonly aa: boolean
  readonly tc: boolean
  readonly rcode: number
  readonly answers: ReadonlyArray<ParsedRecord>
  readonly tsig: ParsedTsig | undefined
}

const decodeName = (buf: Buffer, offset: number): { readonly name: string; readonly next: number } => {
  const labels: Array<string> = []
  let pos = offset
  let next = -1
  for (let hops = 0; ; hops++) {
    if (hops > 128 || pos >= buf.length) throw new Error("malformed name")
    const len = buf[pos]!
    if (len === 0) {
      if (next < 0) next = pos + 1
      break
    }
    if ((len & 0xc0) === 0xc0) {
      if (next < 0) next = pos + 2
      pos = buf.readUInt16BE(pos) & 0x3fff
      continue
    }
    if ((len & 0xc0) !== 0) throw new Error("unsupported label type")
    labels.push(buf.toString("ascii", pos + 1, pos + 1 + len))
    pos += 1 + len
  }
  return { name: labels.join(".").toLowerCase(), next }
}

/** Parses a DNS message; throws on malformed input. */
export const parseMessage = (buf: Buffer): ParsedMessage => {
  if (buf.length < 12) throw new Error(`a ${buf.length}-byte message is shorter than a DNS header`)
  const flags = buf.readUInt16BE(2)
  const counts = [buf.readUInt16BE(4), buf.readUInt16BE(6), buf.readUInt16BE(8), buf.readUInt16BE(10)] as const
  let pos = 12
  for (let i = 0; i < counts[0]; i++) pos = decodeName(buf, pos).next + 4
  const answers: Array<ParsedRecord> = []
  let tsig: ParsedTsig | undefined
  const total = counts[1] + counts[2] + counts[3]
  for (let i = 0; i < total; i++) {
    const start = pos
    const { name, next } = decodeName(buf, pos)
    if (next + 10 > buf.length) throw new Error("truncated record")
    const type = buf.readUInt16BE(next)
    const cls = buf.readUInt16BE(next + 2)
    const ttl = buf.readUInt32BE(next + 4)
    const rdlength = buf.readUInt16BE(next + 8)
    const rdStart = next + 10
    if (rdStart + rdlength > buf.length) throw new Error("truncated rdata")
    const rdata = buf.subarray(rdStart, rdStart + rdlength)
    pos = rdStart + rdlength
    if (i < counts[1]) answers.push({ name, type, class: cls, ttl, rdata, start })
    if (type === TYPE.TSIG) {
      if (i !== total - 1) throw new Error("a TSIG record that is not the last record")
      const alg = decodeName(buf, rdStart)
      let p = alg.next
      const timeSigned = buf.readUIntBE(p, 6)
      const fudge = buf.readUInt16BE(p + 6)
      const macSize = buf.readUInt16BE(p + 8)
      p += 10
      const mac = buf.subarray(p, p + macSize)
      p += macSize
      const originalId = buf.readUInt16BE(p)
      const error = buf.readUInt16BE(p + 2)
      const otherLen = buf.readUInt16BE(p + 4)
      const other = buf.subarray(p + 6, p + 6 + otherLen)
      tsig = { keyName: name, algorithm: alg.name, timeSigned, fudge, mac, originalId, error, other, start }
    }
  }
  return {
    id: buf.readUInt16BE(0),
    qr: (flags & 0x8000) !== 0,
    opcode: (flags >> 11) & 0xf,
    aa: (flags & 0x0400) !== 0,
    tc: (flags & 0x0200) !== 0,
    rcode: flags & 0xf,
    answers,
    tsig
  }
}

/** The bytes a response's MAC covers: the message before its TSIG RR, ARCOUNT - 1, the original ID. */
const unsignedPart = (buf: Buffer, tsig: ParsedTsig): Buffer => {
  const out = Buffer.from(buf.subarray(0, tsig.start))
  out.writeUInt16BE(out.readUInt16BE(10) - 1, 10)
  out.writeUInt16BE(tsig.originalId, 0)
  return out
}

const TSIG_ERRORS: Record<number, string> = { 16: "BADSIG", 17: "BADKEY", 18: "BADTIME", 22: "BADTRUNC" }
const RCODES: Record<number, string> = {
  0: "NOERROR",
  1: "FORMERR",
  2: "SERVFAIL",
  3: "NXDOMAIN",
  4: "NOTIMP",
  5: "REFUSED",
  6: "YXDOMAIN",
  7: "YXRRSET",
  8: "NXRRSET",
  9: "NOTAUTH",
  10: "NOTZONE"
}

/**
 * Checks a response's TSIG (RFC 8945 5.3): `previousMac` is the request's MAC for the first
 * message, the last verified MAC for later messages of a transfer; `unsignedBefore` holds the
 * messages of a transfer since that MAC that carried no TSIG. Returns the new MAC, or why not.
 */
export const verifyResponse = (
  buf: Buffer,
  message: ParsedMessage,
  key: TsigKey,
  previousMac: Buffer,
  options: { readonly timersOnly: boolean; readonly unsignedBefore?: ReadonlyArray<Buffer>; readonly now?: number }
): { readonly ok: true; readonly mac: Buffer } | { readonly ok: false; readonly reason: string } => {
  const tsig = message.tsig
  if (tsig === undefined) return { ok: false, reason: "the response carries no TSIG signature" }
  if (tsig.keyName !== normalizeName(key.name)) return { ok: false, reason: `the response is signed with key "${tsig.keyName}", not "${key.name}"` }
  if (tsig.algorithm !== TSIG_ALGORITHM) return { ok: false, reason: `the response is signed with ${tsig.algorithm}, not ${TSIG_ALGORITHM}` }
  if (tsig.error !== 0) return { ok: false, reason: `TSIG error ${TSIG_ERRORS[tsig.error] ?? tsig.error}` }
  const variables = options.timersOnly
    ? Buffer.concat([u48(tsig.timeSigned), u16(tsig.fudge)])
    : Buffer.concat([encodeName(tsig.keyName), u16(CLASS.ANY), u32(0), tsigTail(tsig.timeSigned, tsig.fudge, tsig.error, tsig.other)])
  const expected = hmac(key, u16(previousMac.length), previousMac, ...(options.unsignedBefore ?? []), unsignedPart(buf, tsig), variables)
  // Truncated MACs (RFC 8945 5.2.2.1) are allowed down to half the hash, never below 10 bytes.
  if (tsig.mac.length < 16 || tsig.mac.length > expected.length || !timingSafeEqual(tsig.mac, expected.subarray(0, tsig.mac.length))) {
    return { ok: false, reason: "the response's TSIG signature does not verify (wrong key secret on one side, or the answer was altered)" }
  }
  const now = options.now ?? Math.floor(Date.now() / 1000)
  if (Math.abs(now - tsig.timeSigned) > tsig.fudge) {
    return { ok: false, reason: `the response was signed at ${tsig.timeSigned}, more than ${tsig.fudge} s from this machine's clock (${now})` }
  }
  return { ok: true, mac: tsig.mac }
}

/** The A records of AXFR answers: lowercase name without the trailing dot to its first address. */
export const aRecordsOf = (records: ReadonlyArray<ParsedRecord>): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  for (const rr of records) {
    if (rr.type === TYPE.A && rr.class === CLASS.IN && rr.rdata.length === 4 && !out.has(rr.name)) out.set(rr.name, [...rr.rdata].join("."))
  }
  return out
}

export const parseServer = (server: string): { readonly host: string; readonly port: number } => {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(server)
  if (bracketed !== null) return { host: bracketed[1]!, port: bracketed[2] === undefined ? 53 : Number(bracketed[2]) }
  const colons = server.split(":").length - 1
  if (colons === 1) {
    const [host, port] = server.split(":") as [string, string]
    return { host, port: Number(port) }
  }
  return { host: server, port: 53 }
}

// ---------------------------------------------------------------------------------------------
// Transport

type TransportFailure = { readonly _tag: "Unreachable"; readonly reason: string } | { readonly _tag: "Timeout" }

/** One UDP request/response; answers whose ID differs are ignored (late answers to an earlier attempt). */
const udpExchange = (host: string, port: number, bytes: Buffer, id: number, timeoutMs: number): Effect.Effect<Buffer, TransportFailure> =>
  Effect.async<Buffer, TransportFailure>((resume) => {
    const family = net.isIPv6(host) ? "udp6" : "udp4"
    const socket = dgram.createSocket(family)
    let done = false
    const finish = (result: Effect.Effect<Buffer, TransportFailure>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.close()
      resume(result)
    }
    const timer = setTimeout(() => finish(Effect.fail({ _tag: "Timeout" })), timeoutMs)
    // A connected socket gets ICMP port-unreachable back as ECONNREFUSED instead of a silent timeout.
    socket.on("error", (e) => finish(Effect.fail({ _tag: "Unreachable", reason: e.message })))
    socket.on("message", (msg) => {
      if (msg.length >= 2 && msg.readUInt16BE(0) === id) finish(Effect.succeed(msg))
    })
    socket.connect(port, host, () => socket.send(bytes, (e) => (e ? finish(Effect.fail({ _tag: "Unreachable", reason: e.message })) : undefined)))
    return Effect.sync(() => {
      done = true
      clearTimeout(timer)
      socket.close()
    })
  })

/**
 * One TCP exchange (2-byte length framing): `onMessage` sees each response message and answers
 * whether more are expected (a zone transfer spans several).
 */
const tcpExchange = (
  host: string,
  port: number,
  bytes: Buffer,
  timeoutMs: number,
  onMessage: (msg: Buffer) => boolean
): Effect.Effect<void, TransportFailure | { readonly _tag: "Aborted"; readonly error: unknown }> =>
  Effect.async((resume) => {
    const socket = net.connect({ host, port })
    let pending = Buffer.alloc(0)
    let done = false
    const finish = (result: Effect.Effect<void, TransportFailure | { readonly _tag: "Aborted"; readonly error: unknown }>) => {
      if (done) return
      done = true
      clearTimeout(timer)
      socket.destroy()
      resume(result)
    }
    const timer = setTimeout(() => finish(Effect.fail({ _tag: "Timeout" })), timeoutMs)
    socket.on("connect", () => socket.write(Buffer.concat([u16(bytes.length), bytes])))
    socket.on("error", (e) => finish(Effect.fail({ _tag: "Unreachable", reason: e.message })))
    socket.on("close", () => finish(Effect.fail({ _tag: "Unreachable", reason: "the server closed the connection before the answer was complete" })))
    socket.on("data", (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk])
      while (!done && pending.length >= 2) {
        const len = pending.readUInt16BE(0)
        if (pending.length < 2 + len) break
        const msg = pending.subarray(2, 2 + len)
        pending = pending.subarray(2 + len)
        try {
          if (!onMessage(msg)) finish(Effect.void)
        } catch (error) {
          finish(Effect.fail({ _tag: "Aborted", error }))
        }
      }
    })
    return Effect.sync(() => {
      done = true
      clearTimeout(timer)
      socket.destroy()
    })
  })

// ---------------------------------------------------------------------------------------------

export const make = (options: Rfc2136Options): Effect.Effect<DnsRecords, DnsError> =>
  Effect.gen(function* () {
    const zone = normalizeName(options.zone)
    const { host, port } = parseServer(options.server)
    const ttl = options.ttl ?? 60
    const timeoutMs = options.timeoutMs ?? 2000
    const server = `DNS server ${options.server}`
    const keyName = normalizeName(options.keyName)

    const secret = Buffer.from(Redacted.value(options.keySecret), "base64")
    if (secret.length === 0 || !Number.isInteger(port) || port <= 0 || port > 65535) {
      return yield* Effect.fail(
        new DnsError({
          server,
          operation: "configure",
          reason: secret.length === 0 ? `the secret of TSIG key "${keyName}" is empty or not base64` : `"${options.server}" is not host:port`
        })
      )
    }
    const key: TsigKey = { name: keyName, secret }

    const refusedAdvice = (what: Exchange) =>
      what === "update"
        ? `check the TSIG key name/secret and the zone's update ACL (key "${keyName}" must be allowed to update ${zone})`
        : what === "transfer"
          ? `check the TSIG key name/secret and the zone's transfer ACL (key "${keyName}" must be allowed to transfer ${zone})`
          : `check the TSIG key name/secret, that an ACL of zone ${zone} names key "${keyName}", and that the server serves ${zone}`

    /**
     * Why a response says no, in words an operator can act on; undefined when it says yes. Knot
     * answers NOTAUTH/BADKEY also for a known key the zone's ACL does not allow for the action.
     */
    const refusal = (message: ParsedMessage, what: Exchange): string | undefined => {
      const tsigError = message.tsig?.error ?? 0
      if (tsigError === 16) return `the server refused the ${what} (BADSIG): the secret of TSIG key "${keyName}" differs from the server's; ${refusedAdvice(what)}`
      if (tsigError === 17) return `the server refused the ${what} (BADKEY): it does not accept TSIG key "${keyName}" (${TSIG_ALGORITHM}) for it; ${refusedAdvice(what)}`
      if (tsigError === 18) return `the server refused the ${what} (BADTIME): this machine's clock and the server's differ by more than ${TSIG_FUDGE} s`
      if (tsigError !== 0) return `the server refused the ${what} (TSIG error ${TSIG_ERRORS[tsigError] ?? tsigError}): ${refusedAdvice(what)}`
      const name = RCODES[message.rcode] ?? `RCODE ${message.rcode}`
      switch (message.rcode) {
        case 0:
          return undefined
        case 5:
        case 9:
          return `the server refused the ${what} (${name}): ${refusedAdvice(what)}`
        case 10:
          return `the server says a name is outside the zone ${zone} (NOTZONE)`
        case 4:
          return `the server does not implement this ${what} (NOTIMP)`
        case 2:
          return `the server failed to perform the ${what} (SERVFAIL); its log says why`
        case 1:
          return `the server could not parse the ${what} (FORMERR)`
        default:
          return `the server answered ${name}`
      }
    }

    const transportError = (operation: string, failure: TransportFailure, via: string) =>
      new DnsError({
        server,
        operation,
        reason:
          failure._tag === "Timeout"
            ? `no answer from ${options.server} over ${via} within ${timeoutMs} ms`
            : `the DNS server at ${options.server} is not reachable over ${via}: ${failure.reason}`
      })

    const checkResponse = (operation: string, what: Exchange, buf: Buffer, id: number, requestMac: Buffer) =>
      Effect.gen(function* () {
        const message = yield* Effect.try({
          try: () => parseMessage(buf),
          catch: (e) => new DnsError({ server, operation, reason: `malformed answer: ${e instanceof Error ? e.message : String(e)}` })
        })
        if (!message.qr || message.id !== id) {
          return yield* Effect.fail(new DnsError({ server, operation, reason: "the answer does not match the request" }))
        }
        const refused = refusal(message, what)
        if (refused !== undefined) return yield* Effect.fail(new DnsError({ server, operation, reason: refused }))
        const verified = verifyResponse(buf, message, key, requestMac, { timersOnly: false })
        if (!verified.ok) return yield* Effect.fail(new DnsError({ server, operation, reason: verified.reason }))
        return message
      })

    /** Signs and sends one message over UDP (three attempts), then over TCP when the answer is truncated. */
    const exchange = (operation: string, what: Exchange, build: (id: number) => Buffer) =>
      Effect.gen(function* () {
        const id = randomInt(0, 0x10000)
        const signed = yield* Effect.try({
          try: () => sign(build(id), key),
          catch: (e) => new DnsError({ server, operation, reason: e instanceof Error ? e.message : String(e) })
        })
        // Retrying is safe: an update replaces an RRset or deletes it, so applying it twice changes nothing.
        const udp = yield* udpExchange(host, port, signed.bytes, id, timeoutMs).pipe(
          Effect.retry({ times: 2, while: (f) => f._tag === "Timeout" }),
          Effect.mapError((f) => transportError(operation, f, "UDP"))
        )
        const truncated = udp.length >= 4 && (udp.readUInt16BE(2) & 0x0200) !== 0
        if (!truncated) return yield* checkResponse(operation, what, udp, id, signed.mac)
        let tcp: Buffer | undefined
        yield* tcpExchange(host, port, signed.bytes, timeoutMs * 5, (msg) => {
          tcp = msg
          return false
        }).pipe(Effect.mapError((f) => (f._tag === "Aborted" ? new DnsError({ server, operation, reason: String(f.error) }) : transportError(operation, f, "TCP"))))
        if (tcp === undefined) return yield* Effect.fail(new DnsError({ server, operation, reason: "no answer over TCP" }))
        return yield* checkResponse(operation, what, tcp, id, signed.mac)
      })

    const update = (operation: string, updates: ReadonlyArray<ResourceRecord>) =>
      Effect.asVoid(exchange(operation, "update", (id) => updateMessage(id, zone, updates)))

    /** AXFR over TCP, every signed message verified (RFC 8945 5.3.1); ends at the closing SOA. */
    const transfer = Effect.gen(function* () {
      const operation = `list zone ${zone} (AXFR)`
      const id = randomInt(0, 0x10000)
      const signed = sign(queryMessage(id, zone, TYPE.AXFR), key)
      const records: Array<ParsedRecord> = []
      let previousMac = signed.mac
      let unsigned: Array<Buffer> = []
      let messages = 0
      let soaSeen = 0
      const fail = (reason: string): never => {
        throw new DnsError({ server, operation, reason })
      }
      yield* tcpExchange(host, port, signed.bytes, timeoutMs * 10, (buf) => {
        const message = parseMessage(buf)
        if (!message.qr || message.id !== id) fail("an answer does not match the transfer request")
        const refused = refusal(message, "transfer")
        if (refused !== undefined) fail(refused)
        if (message.tsig === undefined) {
          // RFC 8945 allows up to 99 unsigned messages between signed ones; the MAC covers them.
          if (messages === 0) fail("the first transfer message carries no TSIG signature")
          unsigned.push(buf)
          if (unsigned.length > 99) fail("more than 99 transfer messages in a row are unsigned")
        } else {
          const verified = verifyResponse(buf, message, key, previousMac, { timersOnly: messages > 0, unsignedBefore: unsigned })
          if (!verified.ok) fail(verified.reason)
          else previousMac = verified.mac
          unsigned = []
        }
        messages++
        for (const rr of message.answers) {
          if (rr.type === TYPE.SOA) soaSeen++
          else if (soaSeen === 0) fail("the transfer does not start with the zone's SOA")
          records.push(rr)
        }
        const finished = soaSeen >= 2
        if (finished && message.tsig === undefined) fail("the last transfer message carries no TSIG signature")
        return !finished
      }).pipe(
        Effect.mapError((f) =>
          f._tag === "Aborted"
            ? f.error instanceof DnsError
              ? f.error
              : new DnsError({ server, operation, reason: `malformed answer: ${f.error instanceof Error ? f.error.message : String(f.error)}` })
            : transportError(operation, f, "TCP")
        )
      )
      return aRecordsOf(records)
    })

    // Fails early on a wrong server, zone or key rather than at the first deploy: the SOA query is
    // signed, so BADKEY/BADSIG show up here.
    const soa = yield* exchange(`check zone ${zone}`, "zone check", (id) => queryMessage(id, zone, TYPE.SOA))
    if (!soa.aa || !soa.answers.some((rr) => rr.type === TYPE.SOA && rr.name === zone)) {
      return yield* Effect.fail(new DnsError({ server, operation: `check zone ${zone}`, reason: `the server is not authoritative for ${zone}` }))
    }

    const records: DnsRecords = {
      name: `RFC 2136 ${server} (zone ${zone}, key ${keyName})`,
      put: (name, address) =>
        Effect.gen(function* () {
          const record = yield* nameInZone(server, "put", name, zone)
          const ip = yield* resolveIPv4(server, record, address)
          // One message: the server applies the delete and the add atomically.
          yield* update(`put ${record} A ${ip}`, [deleteRrset(record, TYPE.A), addA(record, ip, ttl)])
        }),
      remove: (name) => Effect.flatMap(nameInZone(server, "remove", name, zone), (record) => update(`remove ${record}`, [deleteRrset(record, TYPE.A)])),
      list: transfer
    }
    return records
  })

export const layer = (options: Rfc2136Options): Layer.Layer<DnsRecords, DnsError> => Layer.effect(DnsRecords, make(options))
