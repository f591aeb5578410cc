/**
 * DnsRecords on PowerDNS Authoritative through its HTTP API: A rrsets in one zone, replaced with
 * PATCH (changetype REPLACE), deleted with changetype DELETE, listed from GET zone.
 */
import { HttpBody, HttpClient, HttpClientRequest } from "@effect/platform"
import type { Dns01Solver } from "../certs/AcmeIssuer.js"
import { Duration, Effect, Layer, Redacted } from "effect"
import { DnsError, DnsRecords, nameInZone, normalizeName, resolveIPv4 } from "./DnsRecords.js"

export interface PowerDnsOptions {
  /** The API base, e.g. `http://127.0.0.1:8081` (without `/api/v1`). */
  readonly apiUrl: string
  readonly apiKey: Redacted.Redacted<string>
  /** The PowerDNS server id in API paths; `localhost` on every single server. */
  readonly server?: string
  /** The zone records live in, e.g. `svc.mcp.internal`; created as a Native zone when missing. */
  readonly zone: string
  readonly ttl?: number
  /** Per request; default 10 seconds. */
  readonly timeoutMs?: number
}

/** The rrset change for `PATCH /zones/<zone>` that leaves `name` with exactly `address`. */
export const replaceRrset = (name: string, address: string, ttl: number) => ({
  name: `${normalizeName(name)}.`,
  type: "A",
  ttl,
  changetype: "REPLACE",
  records: [{ content: address, disabled: false }]
})

/** The rrset change that deletes the A rrset of `name` (a missing rrset is no error to PowerDNS). */
export const deleteRrset = (name: string) => ({ name: `${normalizeName(name)}.`, type: "A", changetype: "DELETE" })

/** The body of `POST /zones` for a Native zone whose SOA serial the API bumps on every change. */
export const createZoneBody = (zone: string) => ({
  name: `${normalizeName(zone)}.`,
  kind: "Native",
  nameservers: [`ns1.${normalizeName(zone)}.`],
  soa_edit_api: "DEFAULT"
})

interface ZoneJson {
  readonly rrsets?: ReadonlyArray<{
    readonly name: string
    readonly type: string
    readonly records?: ReadonlyArray<{ readonly content: string; readonly disabled?: boolean }>
  }>
}

/** The A records of a `GET /zones/<zone>` answer: name (lowercase, no trailing dot) to its first enabled address. */
export const aRecordsOf = (zone: ZoneJson): ReadonlyMap<string, string> => {
  const out = new Map<string, string>()
  for (const rrset of zone.rrsets ?? []) {
    if (rrset.type !== "A") continue
    const enabled = (rrset.records ?? []).find((r) => r.disabled !== true)
    if (enabled !== undefined) out.set(normalizeName(rrset.name), enabled.content)
  }
  return out
}

interface HttpAnswer {
  readonly status: number
  readonly body: string
}

/** What a failed request was, from its `cause` chain ("Transport error" alone says nothing). */
const describeTransportError = (error: unknown): string => {
  const parts: Array<string> = []
  let current: unknown = error
  for (let depth = 0; depth < 4 && current !== undefined && current !== null; depth++) {
    if (current instanceof Error) {
      if (!parts.includes(current.message)) parts.push(current.message)
      current = (current as { cause?: unknown }).cause
    } else {
      parts.push(String(current))
      break
    }
  }
  // The innermost cause is the useful one (e.g. "connect ECONNREFUSED 127.0.0.1:8081").
  return parts.length > 0 ? parts[parts.length - 1]! : "unknown error"
}

/**
 * One API request, answered with its status and body whatever the status; the failure says why
 * PowerDNS could not be asked. The timeout covers the body too.
 */
const apiRequest = (client: HttpClient.HttpClient, options: PowerDnsOptions) => {
  const apiUrl = options.apiUrl.replace(/\/+$/, "")
  const timeout = Duration.millis(options.timeoutMs ?? 10_000)
  return (method: "GET" | "POST" | "PATCH", path: string, body?: unknown): Effect.Effect<HttpAnswer, string> =>
    client.execute(
      HttpClientRequest.make(method)(`${apiUrl}${path}`, {
        // The key goes into this header only; no error message or log line carries it.
        headers: { "X-API-Key": Redacted.value(options.apiKey), accept: "application/json" },
        ...(body === undefined ? {} : { body: HttpBody.unsafeJson(body) })
      })
    ).pipe(
      Effect.flatMap((res) => Effect.map(res.text, (text) => ({ status: res.status, body: text }))),
      Effect.mapError(describeTransportError),
      Effect.timeoutFail({ duration: timeout, onTimeout: () => "the request timed out" }),
      Effect.mapError((reason) => `PowerDNS API at ${apiUrl} is not reachable: ${reason}`)
    )
}

const errorText = (answer: HttpAnswer): string => {
  try {
    const parsed = JSON.parse(answer.body) as { error?: unknown }
    if (typeof parsed.error === "string") return parsed.error
  } catch {
    // PowerDNS answers some errors (401, unknown paths) as plain text.
  }
  return answer.body.trim().slice(0, 200) || "(empty body)"
}

export const make = (options: PowerDnsOptions): Effect.Effect<DnsRecords, DnsError, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const apiUrl = options.apiUrl.replace(/\/+$/, "")
    const serverId = options.server ?? "localhost"
    const zone = normalizeName(options.zone)
    const ttl = options.ttl ?? 60
    const send = apiRequest(yield* HttpClient.HttpClient, options)
    const server = `PowerDNS at ${apiUrl}`
    const zonesPath = `/api/v1/servers/${encodeURIComponent(serverId)}/zones`
    const zonePath = `${zonesPath}/${encodeURIComponent(`${zone}.`)}`

    const request = (operation: string, method: "GET" | "POST" | "PATCH", path: string, body?: unknown): Effect.Effect<HttpAnswer, DnsError> =>
      Effect.mapError(send(method, path, body), (reason) => new DnsError({ server, operation, reason }))

    /** Turns a non-2xx answer into the error an operator can act on. */
    const failed = (operation: string, answer: HttpAnswer): DnsError => {
      const reason =
        answer.status === 401 || answer.status === 403
          ? "PowerDNS rejected the API key (check api-key in pdns.conf against the configured key)"
          : answer.status === 404
            ? `zone ${zone} does not exist on PowerDNS server "${serverId}" (HTTP 404)`
            : `HTTP ${answer.status}: ${errorText(answer)}`
      return new DnsError({ server, operation, reason })
    }

    const patch = (operation: string, rrset: unknown) =>
      Effect.flatMap(request(operation, "PATCH", zonePath, { rrsets: [rrset] }), (answer) =>
        answer.status >= 200 && answer.status < 300 ? Effect.void : Effect.fail(failed(operation, answer))
      )

    // The zone must exist before the first put: PATCH on a missing zone is a 404 for every record.
    const ensureZone = Effect.gen(function* () {
      const operation = `ensure zone ${zone}`
      const found = yield* request(operation, "GET", zonePath)
      if (found.status === 200) return
      if (found.status !== 404) return yield* Effect.fail(failed(operation, found))
      const created = yield* request(operation, "POST", zonesPath, createZoneBody(zone))
      // 409: created by someone else since our GET; the zone exists either way.
      if (created.status === 201 || created.status === 409) {
        yield* Effect.logInfo(`created Native zone ${zone} on ${server}`)
        return
      }
      if (created.status === 404) {
        return yield* Effect.fail(new DnsError({ server, operation, reason: `PowerDNS has no server "${serverId}" (HTTP 404 on ${zonesPath})` }))
      }
      return yield* Effect.fail(failed(operation, created))
    })
    yield* ensureZone

    const records: DnsRecords = {
      name: `${server} (zone ${zone})`,
      put: (name, address) =>
        Effect.gen(function* () {
          const record = yield* nameInZone(server, "put", name, zone)
          const ip = yield* resolveIPv4(server, record, address)
          yield* patch(`put ${record} A ${ip}`, replaceRrset(record, ip, ttl))
        }),
      remove: (name) =>
        Effect.flatMap(nameInZone(server, "remove", name, zone), (record) => patch(`remove ${record}`, deleteRrset(record))),
      list: Effect.gen(function* () {
        const operation = `list zone ${zone}`
        const answer = yield* request(operation, "GET", zonePath)
        if (answer.status !== 200) return yield* Effect.fail(failed(operation, answer))
        const parsed = yield* Effect.try({
          try: () => JSON.parse(answer.body) as ZoneJson,
          catch: () => new DnsError({ server, operation, reason: `PowerDNS answered with something other than JSON: ${answer.body.slice(0, 200)}` })
        })
        return aRecordsOf(parsed)
      })
    }
    return records
  })

export const layer = (options: PowerDnsOptions): Layer.Layer<DnsRecords, DnsError, HttpClient.HttpClient> =>
  Layer.effect(DnsRecords, make(options))

/**
 * An ACME dns-01 solver over the same PowerDNS zone: `_acme-challenge.<host>` TXT records are
 * set for the CA's check and deleted afterwards. The value is quoted, as PowerDNS stores TXT.
 */
export const makeTxtSolver = (options: PowerDnsOptions): Effect.Effect<Dns01Solver, never, HttpClient.HttpClient> =>
  Effect.map(HttpClient.HttpClient, (client) => {
    const apiUrl = options.apiUrl.replace(/\/+$/, "")
    const zone = normalizeName(options.zone)
    const path = `/api/v1/servers/${encodeURIComponent(options.server ?? "localhost")}/zones/${encodeURIComponent(`${zone}.`)}`
    const send = apiRequest(client, options)
    const patch = (rrset: unknown) =>
      Effect.flatMap(send("PATCH", path, { rrsets: [rrset] }), (answer) =>
        answer.status >= 200 && answer.status < 300
          ? Effect.void
          : Effect.fail(`PowerDNS at ${apiUrl} answered HTTP ${answer.status}: ${answer.body.slice(0, 200)}`))
    const fqdn = (name: string) => `${normalizeName(name)}.`
    return {
      set: (name, value) =>
        patch({ name: fqdn(name), type: "TXT", ttl: 60, changetype: "REPLACE", records: [{ content: JSON.stringify(value), disabled: false }] }),
      clear: (name) => patch({ name: fqdn(name), type: "TXT", changetype: "DELETE" })
    } satisfies Dns01Solver
  })
