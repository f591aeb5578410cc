/**
 * ProxyRoutesAdd: a manual route (one MCP does not deploy) checked before the proxy sees it.
 *
 * The agent runs as the proxy's owner, so whatever a route names it reads and forwards to with
 * its own rights. Two things are therefore never the caller's choice:
 *
 * - Files. The certificate arrives as PEM (`tlsCertPem`/`tlsKeyPem`: checked, matched, written
 *   0600 into the agent's certificate directory `<data_dir>/certs`), or as a name of a file
 *   already in that directory (resolved through symlinks, so a link out of it is refused). Any
 *   other path is refused with one message that never says whether the file exists, is a
 *   directory or is unreadable: the refusal must not be a way to probe the node's filesystem.
 * - Addresses. The backend is an IP literal (a name could resolve anywhere later); on this node
 *   (loopback, the publish address, node_address, any local interface) only a port of the
 *   agent's range, never its RPC port; elsewhere only inside `[proxy] backend_networks`; never
 *   link-local (cloud metadata) nor unroutable addresses.
 *
 * Everything is checked before anything is written: a refused request writes no file and
 * changes no route.
 */
import { Errors, type Routes } from "@mcp/domain"
import { Failures } from "@mcp/rpc"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto"
import * as fs from "node:fs/promises"
import { networkInterfaces } from "node:os"
import { isAbsolute, join, relative, resolve } from "node:path"
import type { NodeSettings } from "../NodeSettings.js"
import { classify, type Networks, networks } from "./BackendAddress.js"
import type { ProxyRoutes } from "./ProxyRoutes.js"

/** What the agent's config says about manual routes (Agent.ts provides it from the config). */
export interface ManualRouteRules {
  /** The agent's port range (`[ports] min`/`max`): what this node's services listen on. */
  readonly ports: { readonly min: number; readonly max: number }
  /** The agent's own RPC port (`listen`), never a backend on this node. */
  readonly rpcPort: number | undefined
  /** `[proxy] backend_networks`: other hosts a route may forward to. Default none. */
  readonly backendNetworks: Networks
}
export const ManualRouteRules = Context.GenericTag<ManualRouteRules>("@mcp/agent/ManualRouteRules")

/** The config's defaults, for an agent assembled without the rules (tests): nothing wider. */
export const DEFAULT_RULES: ManualRouteRules = { ports: { min: 10000, max: 60000 }, rpcPort: undefined, backendNetworks: networks([]) }

export const layerRules = (rules: ManualRouteRules) => Layer.succeed(ManualRouteRules, rules)

export const certDirOf = (dataDir: string) => join(dataDir, "certs")

type Problem = { readonly path: string; readonly message: string }
const refuse = (...problems: ReadonlyArray<Problem>) => new Errors.InvalidRequest({ problems })

/** This node's own addresses: a backend there is one of this node's ports. */
const ownAddresses = (settings: NodeSettings): ReadonlySet<string> =>
  new Set([
    settings.bindAddress,
    settings.nodeAddress,
    ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address))
  ])

/** The backend's problem, or undefined; decided from the request and the config alone (no probe). */
export const backendProblem = (backend: string, settings: NodeSettings, rules: ManualRouteRules): Problem | undefined => {
  const at = backend.lastIndexOf(":")
  const host = backend.slice(0, at)
  const port = Number(backend.slice(at + 1))
  const range = `${rules.ports.min}-${rules.ports.max}`
  const problem = (message: string) => ({ path: "backend", message })
  if (!Number.isInteger(port) || port < 1 || port > 65535) return problem(`"${backend}" has port ${backend.slice(at + 1)} outside 1-65535`)
  const kind = classify(host)
  if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(host) || kind === "unroutable") {
    return problem(`"${host}" is not a usable IPv4 address; a manual route forwards to an IP literal (a name could later resolve anywhere): give the backend's IPv4 address, e.g. "127.0.0.1:${rules.ports.min}"`)
  }
  if (kind === "link-local") {
    return problem(`"${host}" is link-local (169.254.0.0/16), where cloud metadata services answer; a route never forwards there: use the backend's own address`)
  }
  if (kind === "loopback" || ownAddresses(settings).has(host)) {
    if (port === rules.rpcPort) return problem(`port ${port} on this node is the agent's RPC port; a route never forwards to it: use the port your backend listens on (${range})`)
    if (port < rules.ports.min || port > rules.ports.max) {
      return problem(`port ${port} on this node is outside the agent's port range ${range} ([ports] in mcp-agent.toml); a route to this node forwards only to ports of that range: run the backend on one`)
    }
    return undefined
  }
  if (rules.backendNetworks.contains(host)) return undefined
  const allowed = rules.backendNetworks.list.length === 0 ? "none configured" : rules.backendNetworks.list.join(", ")
  return problem(`"${host}" is neither this node nor inside [proxy] backend_networks (${allowed}); add the backend's network to backend_networks in mcp-agent.toml, or forward to this node`)
}

/** The one answer for any certificate path the agent will not use, whatever the reason. */
const pathRefused = (field: "tlsCert" | "tlsKey", certDir: string): Problem => ({
  path: field,
  message: `must name a file in the agent's certificate directory ${certDir}; send a certificate from elsewhere as PEM instead (${field}Pem; \`mcp route add --tls-cert <file> --tls-key <file>\` reads local files and does this)`
})

interface Parsed {
  readonly cert: X509Certificate
  readonly certPem: string
  readonly keyPem: string
}

/** The certificate's and key's problems (they must parse, match and name the hostname). */
const pairProblems = (certPem: string, keyPem: string, hostname: string, fields: { cert: string; key: string }): ReadonlyArray<Problem> | Parsed => {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch {
    return [{ path: fields.cert, message: `the first certificate does not parse as X.509; send the leaf certificate first, then its chain` }]
  }
  let key
  try {
    key = createPrivateKey(keyPem)
  } catch {
    return [{ path: fields.key, message: `does not parse as a private key; send the unencrypted key (openssl pkey -in <file>)` }]
  }
  if (!cert.checkPrivateKey(key)) return [{ path: fields.key, message: `is not the key of ${fields.cert}'s certificate; send the key the certificate was issued for` }]
  if (cert.checkHost(hostname) === undefined) {
    return [{ path: fields.cert, message: `the certificate does not name ${hostname} (subject ${cert.subject.replace(/\n/g, ", ")}); use a certificate issued for the route's hostname` }]
  }
  return { cert, certPem, keyPem }
}

/** A name (or path) resolved inside the certificate directory, read; undefined for anything else. */
const readInside = (name: string, certDir: string): Effect.Effect<{ readonly path: string; readonly text: string } | undefined> =>
  Effect.promise(async () => {
    try {
      const dir = await fs.realpath(certDir)
      const real = await fs.realpath(isAbsolute(name) ? name : resolve(dir, name))
      const rel = relative(dir, real)
      if (rel === "" || rel.startsWith("..") || isAbsolute(rel)) return undefined
      if (!(await fs.stat(real)).isFile()) return undefined
      return { path: real, text: await fs.readFile(real, "utf8") }
    } catch {
      return undefined
    }
  })

/** What the proxy gets: the route with file paths inside the certificate directory only. */
interface Prepared {
  readonly route: Routes.ProxyRoute
  /** Files this request writes (PEM sent): written only after every check passed. */
  readonly write: ReadonlyArray<{ readonly path: string; readonly text: string }>
}

const prepare = (route: Routes.ProxyRoute, settings: NodeSettings, rules: ManualRouteRules, certDir: string): Effect.Effect<Prepared, Errors.InvalidRequest> =>
  Effect.gen(function* () {
    const { tlsCert, tlsKey, tlsCertPem, tlsKeyPem, ...rest } = route
    const backend = backendProblem(route.backend, settings, rules)
    const problems: Array<Problem> = backend === undefined ? [] : [backend]
    if (route.service !== undefined) problems.push({ path: "service", message: `a manual route belongs to no service; leave service out (a service's routes come with its deploy)` })
    const byPath = tlsCert !== undefined || tlsKey !== undefined
    const byPem = tlsCertPem !== undefined || tlsKeyPem !== undefined
    if (byPath && byPem) problems.push({ path: "tlsCert", message: `give the certificate either as PEM (tlsCertPem, tlsKeyPem) or as files in the agent's certificate directory (tlsCert, tlsKey), not both` })
    else if (route.mode === "l4" && (byPath || byPem)) problems.push({ path: byPem ? "tlsCertPem" : "tlsCert", message: `an l4 route passes TLS through to the backend and serves no certificate; leave the certificate out, or use mode l7` })
    else if (byPem && (tlsCertPem === undefined || tlsKeyPem === undefined)) problems.push({ path: tlsCertPem === undefined ? "tlsCertPem" : "tlsKeyPem", message: `the certificate and its key go together; send both tlsCertPem and tlsKeyPem` })
    else if (byPath && (tlsCert === undefined || tlsKey === undefined)) problems.push({ path: tlsCert === undefined ? "tlsCert" : "tlsKey", message: `the certificate and its key go together; give both tlsCert and tlsKey` })
    if (problems.length > 0) return yield* refuse(...problems)
    if (tlsCertPem !== undefined && tlsKeyPem !== undefined) {
      const parsed = pairProblems(tlsCertPem, Redacted.value(tlsKeyPem), route.hostname, { cert: "tlsCertPem", key: "tlsKeyPem" })
      if (Array.isArray(parsed)) return yield* refuse(...parsed)
      const { certPem, keyPem } = parsed as Parsed
      // A fresh pair of names per request: a put that fails never changes what a live route serves.
      const base = join(certDir, `manual-${route.listener}-${route.hostname}-${Date.now().toString(36)}${randomBytes(3).toString("hex")}`)
      return {
        route: { ...rest, tlsCert: `${base}.crt`, tlsKey: `${base}.key` },
        write: [{ path: `${base}.crt`, text: certPem.endsWith("\n") ? certPem : `${certPem}\n` }, { path: `${base}.key`, text: keyPem.endsWith("\n") ? keyPem : `${keyPem}\n` }]
      }
    }
    if (tlsCert !== undefined && tlsKey !== undefined) {
      const cert = yield* readInside(tlsCert, certDir)
      const key = yield* readInside(tlsKey, certDir)
      const refused = [...(cert === undefined ? [pathRefused("tlsCert", certDir)] : []), ...(key === undefined ? [pathRefused("tlsKey", certDir)] : [])]
      if (refused.length > 0 || cert === undefined || key === undefined) return yield* refuse(...refused)
      // A file of the agent's own directory that is not a matching pair: the same answer, so the
      // directory's contents are not told either.
      const parsed = pairProblems(cert.text, key.text, route.hostname, { cert: "tlsCert", key: "tlsKey" })
      if (Array.isArray(parsed)) return yield* refuse(pathRefused("tlsCert", certDir), pathRefused("tlsKey", certDir))
      return { route: { ...rest, tlsCert: cert.path, tlsKey: key.path }, write: [] }
    }
    return { route: rest, write: [] }
  })

const peer = (operation: string, reason: string) => new Errors.PeerFailed({ peer: "agent certificate directory", operation, reason, retryable: true })

/** Removes certificate files the agent wrote; one that cannot go is logged and counted, not hidden. */
const removeQuietly = (paths: ReadonlyArray<string>) =>
  Effect.forEach(paths, (p) =>
    Effect.tryPromise(() => fs.rm(p, { force: true })).pipe(Failures.bestEffort(`remove the unused certificate file ${p}`)), { discard: true })

/** The files a manual route was given as PEM (the agent named them `manual-*` in its directory). */
const writtenFiles = (route: Routes.ProxyRoute | undefined, certDir: string): ReadonlyArray<string> =>
  route === undefined || route.service !== undefined
    ? []
    : [route.tlsCert, route.tlsKey].filter((p): p is string => p !== undefined && p.startsWith(join(certDir, "manual-")))

/**
 * Checks the route, writes a sent certificate, puts the route; a put that fails removes what it
 * wrote, and one that replaced a manual route removes that route's files it no longer serves.
 */
export const add = (
  route: Routes.ProxyRoute,
  env: { readonly proxy: ProxyRoutes; readonly settings: NodeSettings; readonly dataDir: string }
): Effect.Effect<void, Errors.InvalidRequest | Errors.PeerFailed> =>
  Effect.gen(function* () {
    const rules = Option.getOrElse(yield* Effect.serviceOption(ManualRouteRules), () => DEFAULT_RULES)
    const certDir = certDirOf(env.dataDir)
    const prepared = yield* prepare(route, env.settings, rules, certDir)
    const operation = `add route ${route.hostname}`
    // Only to find files a replaced route no longer serves: without the list, they stay (logged, counted).
    const previous = yield* Effect.catchAll(env.proxy.list, (e) =>
      Effect.as(Failures.reported("list the proxy's routes before adding a manual one", e), [] as ReadonlyArray<Routes.ProxyRoute>))
    if (prepared.write.length > 0) {
      yield* Effect.tryPromise({
        try: async () => {
          await fs.mkdir(certDir, { recursive: true, mode: 0o700 })
          // "wx": never through a file (or link) already there; 0600: the key is the agent's alone.
          for (const f of prepared.write) await fs.writeFile(f.path, f.text, { mode: 0o600, flag: "wx" })
        },
        catch: (e) => peer(operation, `cannot write the certificate into ${certDir} (${(e as NodeJS.ErrnoException).code ?? "error"}); check the directory's owner and permissions`)
      }).pipe(Effect.tapError(() => removeQuietly(prepared.write.map((f) => f.path))))
    }
    yield* env.proxy.put(prepared.route).pipe(
      Effect.mapError((e) => new Errors.PeerFailed({ peer: env.proxy.name, operation, reason: e.message, retryable: true })),
      Effect.tapError(() => removeQuietly(prepared.write.map((f) => f.path)))
    )
    // Files an earlier manual route on this (listener, hostname) was given as PEM, now unused.
    const replaced = previous.find((r) => r.listener === route.listener && r.hostname === route.hostname && r.service === undefined)
    const stale = writtenFiles(replaced, certDir).filter((p) => p !== prepared.route.tlsCert && p !== prepared.route.tlsKey)
    if (stale.length > 0) yield* removeQuietly(stale)
  })

/** Removes a manual route, then the certificate files the agent wrote for it. */
export const remove = (
  listener: number,
  hostname: string,
  env: { readonly proxy: ProxyRoutes; readonly dataDir: string }
): Effect.Effect<void, Errors.PeerFailed> =>
  Effect.gen(function* () {
    const operation = `remove route ${hostname}`
    const asPeer = (e: { readonly message: string }) => new Errors.PeerFailed({ peer: env.proxy.name, operation, reason: e.message, retryable: true })
    const existing = (yield* Effect.mapError(env.proxy.list, asPeer)).find((r) => r.listener === listener && r.hostname === hostname)
    yield* Effect.mapError(env.proxy.remove(listener, hostname), asPeer)
    const files = writtenFiles(existing, certDirOf(env.dataDir))
    if (files.length > 0) yield* removeQuietly(files)
  })
