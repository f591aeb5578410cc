/**
 * ProxyRoutes on Caddy 2.6 through its admin API: L7 routes only (Debian's Caddy has no layer4
 * module, so it cannot pass TLS through). One Caddy server per listener, named
 * `<serverName>-<listener>`, with the routes first and a 404 catch-all last; certificates are
 * `load_files` entries. Caddy's own config (autosaved by Caddy) is the state: `list` reads it back.
 */
import { HttpBody, HttpClient, HttpClientRequest } from "@effect/platform"
import { Routes } from "@mcp/domain"
import { Data, Duration, Effect, Layer, Schedule, Schema } from "effect"
import { type ProxyRoute, ProxyError, ProxyRoutes } from "./ProxyRoutes.js"

export interface Options {
  /** Caddy's admin endpoint, e.g. "http://127.0.0.1:2019". */
  readonly adminUrl: string
  /** Prefix of the per-listener servers and of every `@id` this adapter creates. Default "mcp". */
  readonly serverName?: string
  /** Host part of the listen address; default "" (all interfaces, `:<listener>`). */
  readonly listenerBind?: string
  /** PEM CA file for verifying re-encrypted (backendTls) backends; default the system roots. */
  readonly backendCaFile?: string
  /** Per admin API request. Default 10 s. */
  readonly timeoutMs?: number
}

// ---------------------------------------------------------------------------------------------
// Caddy JSON as this adapter writes and reads it.

interface Handler {
  readonly handler: string
  readonly [field: string]: unknown
}
interface CaddyRoute {
  readonly "@id"?: string
  readonly match?: ReadonlyArray<{ readonly host?: ReadonlyArray<string> }>
  readonly handle?: ReadonlyArray<Handler>
  readonly terminal?: boolean
}
interface CaddyServer {
  readonly listen?: ReadonlyArray<string>
  readonly routes?: ReadonlyArray<CaddyRoute>
}
interface LoadedFile {
  readonly "@id"?: string
  readonly certificate: string
  readonly key: string
}
interface CaddyConfig {
  readonly apps?: {
    readonly http?: { readonly servers?: Readonly<Record<string, CaddyServer>> }
    readonly tls?: { readonly certificates?: { readonly load_files?: ReadonlyArray<LoadedFile> } }
  }
}

/** The `vars` field that carries the owning service, so `list` can give it back. */
const SERVICE_VAR = "mcp_service"

const ids = (prefix: string) => ({
  server: (listener: number) => `${prefix}-${listener}`,
  route: (listener: number, hostname: string) => `${prefix}-${listener}-${hostname}`,
  tls: (listener: number, hostname: string) => `${prefix}-${listener}-${hostname}-tls`,
  catchAll: (listener: number) => `${prefix}-${listener}-404`
})

/** The Caddy route for a ProxyRoute (pure). */
export const routeJson = (options: Options, route: ProxyRoute): CaddyRoute => {
  const id = ids(options.serverName ?? "mcp")
  const proxy: Handler = {
    handler: "reverse_proxy",
    upstreams: [{ dial: route.backend }],
    ...(route.backendTls
      ? {
        transport: {
          protocol: "http",
          // Verify the backend's certificate against the route's name, as HAProxy does.
          tls: { server_name: route.hostname, ...(options.backendCaFile === undefined ? {} : { root_ca_pem_files: [options.backendCaFile] }) }
        }
      }
      : {})
  }
  return {
    "@id": id.route(route.listener, route.hostname),
    match: [{ host: [route.hostname] }],
    handle: [...(route.service === undefined ? [] : [{ handler: "vars", [SERVICE_VAR]: route.service }]), proxy],
    terminal: true
  }
}

const catchAllJson = (prefix: string, listener: number): CaddyRoute => ({
  "@id": ids(prefix).catchAll(listener),
  handle: [{ handler: "static_response", status_code: 404, body: "no route for this host\n" }]
})

/** A new per-listener server holding `route` and the catch-all (pure). */
export const serverJson = (options: Options, route: ProxyRoute) => ({
  listen: [`${options.listenerBind ?? ""}:${route.listener}`],
  // Without this Caddy also opens UDP listeners for HTTP/3.
  protocols: ["h1", "h2"],
  // Certificates come from load_files; automatic HTTPS would try ACME and open a redirect server on :80.
  automatic_https: { disable: true },
  tls_connection_policies: [{}],
  routes: [routeJson(options, route), catchAllJson(options.serverName ?? "mcp", route.listener)]
})

// ---------------------------------------------------------------------------------------------

class Failure extends Data.TaggedError("CaddyFailure")<{ readonly reason: string }> {}

const causeOf = (e: unknown): { code?: string; message: string } => {
  const cause = e instanceof Error && e.cause instanceof Error ? e.cause : e
  const code = typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined
  const message = cause instanceof Error ? cause.message : String(cause)
  return code === undefined ? { message } : { code, message }
}

export const make = (options: Options): Effect.Effect<ProxyRoutes, never, HttpClient.HttpClient> =>
  Effect.gen(function* () {
    const adminUrl = options.adminUrl.replace(/\/+$/, "")
    const prefix = options.serverName ?? "mcp"
    const id = ids(prefix)
    const name = `caddy (${adminUrl})`
    const timeout = Duration.millis(options.timeoutMs ?? 10_000)
    const lock = yield* Effect.makeSemaphore(1)
    const client = yield* HttpClient.HttpClient

    const request = (method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE", path: string, body?: unknown, headers: Record<string, string> = {}) =>
      client.execute(
        HttpClientRequest.make(method)(`${adminUrl}${path}`, {
          // Caddy restarts its admin endpoint on every config change, closing kept-alive connections:
          // a reused one fails with "other side closed". One connection per request avoids that.
          headers: { connection: "close", ...headers },
          ...(body === undefined ? {} : { body: HttpBody.unsafeJson(body) })
        })
      ).pipe(
        // A connection reset before any answer: the admin endpoint was restarting after the last
        // config change and never served this request, so sending it again is safe.
        Effect.retry({ while: (e) => causeOf(e).code === "ECONNRESET", schedule: Schedule.spaced("100 millis"), times: 3 }),
        Effect.flatMap((res) => Effect.map(res.text, (text) => ({ status: res.status, text }))),
        Effect.mapError((e) => {
          const cause = causeOf(e)
          return new Failure({
            reason: cause.code === "ECONNREFUSED"
              ? `Caddy is not running: ${cause.message}`
              : `cannot reach Caddy's admin API at ${adminUrl}: ${cause.message}`
          })
        }),
        // Worded as a timed-out request has always been reported.
        Effect.timeoutFail({
          duration: timeout,
          onTimeout: () => new Failure({ reason: `cannot reach Caddy's admin API at ${adminUrl}: The operation was aborted due to timeout` })
        }),
        Effect.flatMap(({ status, text }) => {
          if (status >= 200 && status < 300) return Effect.succeed(text)
          let detail = text.trim()
          try {
            const parsed: unknown = JSON.parse(text)
            if (typeof parsed === "object" && parsed !== null && "error" in parsed && typeof parsed.error === "string") detail = parsed.error
          } catch {
            // not JSON: keep the raw text
          }
          return Effect.fail(new Failure({ reason: `Caddy answered ${status} to ${method} ${path}: ${detail}` }))
        })
      )

    const config = Effect.flatMap(request("GET", "/config/"), (text) =>
      Effect.try({
        try: () => (JSON.parse(text) ?? {}) as CaddyConfig,
        catch: (e) => new Failure({ reason: `Caddy's config is not JSON: ${String(e)}` })
      }))

    const servers = (c: CaddyConfig) => c.apps?.http?.servers ?? {}
    const loadFiles = (c: CaddyConfig) => c.apps?.tls?.certificates?.load_files
    const hasRoute = (c: CaddyConfig, listener: number, hostname: string) =>
      (servers(c)[id.server(listener)]?.routes ?? []).some((r) => r["@id"] === id.route(listener, hostname))
    const hasTls = (c: CaddyConfig, listener: number, hostname: string) =>
      (loadFiles(c) ?? []).some((f) => f["@id"] === id.tls(listener, hostname))

    const routesOf = (c: CaddyConfig): Effect.Effect<ReadonlyArray<ProxyRoute>, Failure> =>
      Effect.forEach(
        Object.entries(servers(c)).flatMap(([serverName, server]) => {
          const m = new RegExp(`^${prefix.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-(\\d+)$`).exec(serverName)
          if (m === null) return []
          const listener = Number(m[1])
          return (server.routes ?? []).flatMap((r) => {
            const routeId = r["@id"]
            const hostname = r.match?.[0]?.host?.[0]
            if (routeId === undefined || hostname === undefined || routeId !== id.route(listener, hostname)) return []
            return [{ listener, hostname, route: r }]
          })
        }),
        ({ hostname, listener, route }) => {
          const proxy = route.handle?.find((h) => h.handler === "reverse_proxy")
          const upstreams = proxy?.["upstreams"]
          const dial = Array.isArray(upstreams) ? (upstreams[0] as { dial?: unknown } | undefined)?.dial : undefined
          const transport = proxy?.["transport"] as { tls?: unknown } | undefined
          const service = route.handle?.find((h) => h.handler === "vars")?.[SERVICE_VAR]
          const tls = (loadFiles(c) ?? []).find((f) => f["@id"] === id.tls(listener, hostname))
          return Schema.decodeUnknown(Routes.ProxyRoute)({
            listener,
            hostname,
            backend: dial,
            mode: "l7",
            backendTls: transport?.tls !== undefined,
            ...(tls === undefined ? {} : { tlsCert: tls.certificate, tlsKey: tls.key }),
            ...(typeof service === "string" ? { service } : {})
          }).pipe(Effect.mapError((e) => new Failure({ reason: `Caddy route ${id.route(listener, hostname)} is not one this adapter can read: ${e.message}` })))
        }
      )

    const put = (route: ProxyRoute): Effect.Effect<void, ProxyError> =>
      Effect.gen(function* () {
        if (route.mode === "l4") {
          return yield* new Failure({
            reason: `Caddy cannot pass TLS through (L4 route for ${route.hostname}): it has no layer4 module here. Use HAProxy for L4 routes ([proxy] kind = "haproxy")`
          })
        }
        if (route.tlsCert === undefined || route.tlsKey === undefined) {
          return yield* new Failure({
            reason: `an L7 route needs tlsCert and tlsKey: Caddy terminates TLS for ${route.hostname} and this adapter turns off Caddy's own ACME`
          })
        }
        const c = yield* config
        const tlsEntry: LoadedFile = { "@id": id.tls(route.listener, route.hostname), certificate: route.tlsCert, key: route.tlsKey }
        // must-revalidate: reload even if the JSON is unchanged, so rewritten certificate files are read again.
        if (hasTls(c, route.listener, route.hostname)) {
          yield* request("PATCH", `/id/${tlsEntry["@id"]}`, tlsEntry, { "cache-control": "must-revalidate" })
        } else if (loadFiles(c) !== undefined) {
          yield* request("POST", "/config/apps/tls/certificates/load_files", tlsEntry)
        } else {
          yield* request("PUT", "/config/apps/tls/certificates/load_files", [tlsEntry])
        }
        const serverName = id.server(route.listener)
        if (hasRoute(c, route.listener, route.hostname)) {
          yield* request("PATCH", `/id/${id.route(route.listener, route.hostname)}`, routeJson(options, route))
        } else if (servers(c)[serverName] !== undefined) {
          // Index 0: new routes go first, the catch-all stays last.
          yield* request("PUT", `/config/apps/http/servers/${serverName}/routes/0`, routeJson(options, route))
        } else {
          yield* request("PUT", `/config/apps/http/servers/${serverName}`, serverJson(options, route))
        }
      }).pipe(lock.withPermits(1), withName(`put ${route.hostname} on listener ${route.listener}`))

    const remove = (listener: number, hostname: string): Effect.Effect<void, ProxyError> =>
      Effect.gen(function* () {
        const c = yield* config
        const server = servers(c)[id.server(listener)]
        const others = (server?.routes ?? []).filter((r) => r["@id"] !== id.route(listener, hostname) && r["@id"] !== id.catchAll(listener))
        if (hasRoute(c, listener, hostname)) {
          // The last route takes its server along, which closes the listener's port.
          yield* others.length === 0
            ? request("DELETE", `/config/apps/http/servers/${id.server(listener)}`)
            : request("DELETE", `/id/${id.route(listener, hostname)}`)
        }
        if (hasTls(c, listener, hostname)) yield* request("DELETE", `/id/${id.tls(listener, hostname)}`)
      }).pipe(lock.withPermits(1), withName(`remove ${hostname} from listener ${listener}`))

    const list = Effect.flatMap(config, routesOf).pipe(lock.withPermits(1), withName("list routes"))

    function withName(operation: string) {
      return <A>(self: Effect.Effect<A, Failure>): Effect.Effect<A, ProxyError> =>
        Effect.mapError(self, (e) => new ProxyError({ proxy: name, operation, reason: e.reason }))
    }

    return { name, switchesTraffic: true, put, remove, list } satisfies ProxyRoutes
  })

export const layer = (options: Options): Layer.Layer<ProxyRoutes, never, HttpClient.HttpClient> => Layer.effect(ProxyRoutes, make(options))
