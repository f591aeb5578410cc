/**
 * Edge routes over the memory proxy and CA (with fault hooks) and a real SQLite registry: setup,
 * idempotence, replacement, refusals that write nothing, compensation, removal, start-up recovery,
 * certificate renewal, and a property that random setups, removals, renewals and restarts with
 * injected faults and agent crashes leave the proxy, the CA and the registry in agreement.
 */
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Deferred, Effect, Either, FastCheck as fc, Layer, Logger, LogLevel, Option, Ref, Schedule, TestClock } from "effect"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import * as CertIssuer from "../src/certs/CertIssuer.js"
import * as CertRenewer from "../src/certs/CertRenewer.js"
import * as FleetPolicy from "../src/daemon/FleetPolicy.js"
import { NodeSettings } from "../src/NodeSettings.js"
import { EdgeRoutes, type EdgeRoutesOptions, layer, systemResolver } from "../src/edge/EdgeRoutes.js"
import { type Faults, makeFaults } from "../src/Faults.js"
import * as ProxyRoutes from "../src/proxy/ProxyRoutes.js"
import { type EdgeRouteRow, layerSqlite, Registry } from "../src/registry/Registry.js"
import { settings } from "./Harness.js"

/** Registry files go to a RAM disk where there is one (the property test opens many). */
const scratch = existsSync("/dev/shm") ? "/dev/shm" : tmpdir()
const scratchDirs: Array<string> = []
const freshFile = () => {
  const dir = mkdtempSync(join(scratch, "mcp-edge-"))
  scratchDirs.push(dir)
  return join(dir, "registry.db")
}
afterAll(() => {
  for (const dir of scratchDirs.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Backend names the fake resolver knows; anything else does not resolve. */
const HOSTS: Record<string, string> = {
  "web.svc.mcp.internal": "10.0.0.7",
  "web2.svc.mcp.internal": "10.0.0.8",
  // Internal names whose records point where an edge must never forward.
  "metadata.svc.mcp.internal": "169.254.169.254",
  "self.svc.mcp.internal": "127.0.0.1",
  "web.example.net": "10.0.0.7"
}

/** Where an agent can die: right after the peer call took effect, before it returned. */
type CrashPoint = "proxy.put" | "proxy.remove" | "cert.revoke"

interface Peers {
  readonly faults: Faults
  /** The armed faults that fired (a call they made fail), in order; the property resets it per step. */
  readonly hits: Ref.Ref<ReadonlyArray<string>>
  /** Armed like faults; an armed call takes effect, then never returns and signals `crashed`. */
  readonly crashes: Faults
  readonly crashed: Ref.Ref<Deferred.Deferred<void>>
  readonly proxy: ProxyRoutes.ProxyRoutes
  readonly certs: Effect.Effect.Success<ReturnType<typeof CertIssuer.makeMemory>>
}

const makePeers = Effect.gen(function* () {
  const armed = yield* makeFaults
  const hits = yield* Ref.make<ReadonlyArray<string>>([])
  const faults: Faults = {
    ...armed,
    take: (operation) => Effect.tap(armed.take(operation), (hit) => (hit ? Ref.update(hits, (h) => [...h, operation]) : Effect.void))
  }
  const crashes = yield* makeFaults
  const crashed = yield* Ref.make(yield* Deferred.make<void>())
  const proxy = yield* ProxyRoutes.makeMemory({ switchesTraffic: true, faults })
  const certs = yield* CertIssuer.makeMemory({ faults })
  const dieIf = (point: CrashPoint) =>
    Effect.flatMap(crashes.take(point), (armed) => (armed ? Effect.zipRight(Effect.flatMap(Ref.get(crashed), (d) => Deferred.succeed(d, undefined)), Effect.never) : Effect.void))
  return {
    faults,
    hits,
    crashes,
    crashed,
    proxy: { ...proxy, put: (r) => Effect.zipRight(proxy.put(r), dieIf("proxy.put")), remove: (l, h) => Effect.zipRight(proxy.remove(l, h), dieIf("proxy.remove")) },
    certs: { ...certs, revoke: (c) => Effect.zipRight(certs.revoke(c), dieIf("cert.revoke")) }
  } satisfies Peers
})

type TestOptions = Partial<EdgeRoutesOptions> & { readonly allowedDomains?: ReadonlyArray<string> }

const layerEdge = (peers: Peers, file: string, options: TestOptions = {}) =>
  EdgeRoutesLayer(options).pipe(
    Layer.provideMerge(Layer.mergeAll(
      Layer.succeed(ProxyRoutes.ProxyRoutes, peers.proxy),
      Layer.succeed(CertIssuer.CertIssuer, peers.certs),
      Layer.succeed(NodeSettings, { ...settings, node: "edge-1" }),
      // The public domains the master pushed: the tests publish names under these two.
      FleetPolicy.layer({ ...FleetPolicy.initial, allowedDomains: options.allowedDomains ?? ["example.com", "example.net"] })
    )),
    Layer.provideMerge(Registry.Default.pipe(Layer.provideMerge(layerSqlite(file))))
  )

const EdgeRoutesLayer = (options: Partial<EdgeRoutesOptions>) =>
  layer({
    role: "edge",
    listener: 443,
    resolve: (name) => (HOSTS[name] === undefined ? Effect.fail(`ENOTFOUND ${name}`) : Effect.succeed(HOSTS[name]!)),
    // No waiting between compensation attempts: the tests run on the TestClock.
    retry: Schedule.recurs(3),
    // Where IP-literal backends may be (the documentation range the tests use for workers).
    backendNetworks: ["192.0.2.0/24"],
    ...options
  })

const withEdge = <A, E>(peers: Peers, file: string, body: Effect.Effect<A, E, EdgeRoutes | Registry>, options: TestOptions = {}) =>
  Effect.scoped(Effect.provide(body, layerEdge(peers, file, options)))

const request = { hostname: "web.example.com", service: "web", workerNode: "rift", backendHostname: "web.svc.mcp.internal", backendPort: 8443 }

/** Everything the three peers hold, for "nothing changed" checks. */
const snapshot = (peers: Peers) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    return {
      routes: yield* peers.proxy.list,
      certs: (yield* peers.certs.live).map((c) => c.serial),
      rows: yield* registry.edgeRoutes
    }
  })

const refusal = (e: unknown) => (e instanceof Errors.InvalidRequest ? e.problems.map((p) => p.path) : [`not InvalidRequest: ${String(e)}`])

describe("edge routes", () => {
  it.live("the system resolver gives an IPv4 address", () =>
    Effect.map(systemResolver("localhost"), (ip) => expect(ip).toBe("127.0.0.1")))

  it.effect("setup issues a certificate for the public name, puts an L7 route to the resolved backend and records it", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const registry = yield* Registry
        const route = yield* edge.setup(request)
        const live = yield* peers.certs.live
        expect(live.map((c) => c.hostname)).toEqual(["web.example.com"])
        const cert = live[0]!
        expect(route).toEqual({
          hostname: "web.example.com", edgeNode: "edge-1", workerNode: "rift", backendHostname: "web.svc.mcp.internal",
          backendPort: 8443, service: "web", certSerial: cert.serial, certNotAfter: cert.notAfter
        })
        expect(yield* peers.proxy.list).toEqual([{
          listener: 443, hostname: "web.example.com", backend: "10.0.0.7:8443", mode: "l7", backendTls: true,
          tlsCert: cert.certPath, tlsKey: cert.keyPath, service: "web"
        }])
        const rows = yield* registry.edgeRoutes
        expect(rows.map((r) => [r.hostname, r.state, r.backend, r.cert?.serial])).toEqual([["web.example.com", "active", "10.0.0.7:8443", cert.serial]])
        expect(yield* edge.list).toEqual([route])
        expect((yield* registry.events(10)).map((e) => e.kind)).toContain("route")
      }))
    }))

  it.effect("the same request again returns the same route with no new certificate; an IP backend is used as is", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const first = yield* edge.setup(request)
        const again = yield* edge.setup(request)
        expect(again).toEqual(first)
        expect(yield* peers.certs.live).toHaveLength(1)
        expect(yield* peers.proxy.list).toHaveLength(1)

        const byIp = yield* edge.setup({ ...request, hostname: "ip.example.com", backendHostname: "192.0.2.9" })
        expect(byIp.backendHostname).toBe("192.0.2.9")
        expect((yield* peers.proxy.list).find((r) => r.hostname === "ip.example.com")?.backend).toBe("192.0.2.9:8443")
      }))
    }))

  it.effect("a changed backend replaces the route in place and keeps the certificate", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const first = yield* edge.setup(request)
        const moved = yield* edge.setup({ ...request, workerNode: "vale", backendHostname: "web2.svc.mcp.internal", backendPort: 9443 })
        expect(moved).toMatchObject({ workerNode: "vale", backendHostname: "web2.svc.mcp.internal", backendPort: 9443, certSerial: first.certSerial })
        expect((yield* peers.proxy.list).map((r) => [r.hostname, r.backend])).toEqual([["web.example.com", "10.0.0.8:9443"]])
        expect((yield* peers.certs.live).map((c) => c.serial)).toEqual([first.certSerial])
        expect(yield* edge.list).toEqual([moved])
      }))
    }))

  it.effect("a public name published for one service is refused to another, changing nothing", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        yield* edge.setup(request)
        const before = yield* snapshot(peers)
        const error = yield* Effect.flip(edge.setup({ ...request, service: "shop" }))
        expect(refusal(error)).toEqual(["hostname"])
        expect(error.message).toContain("service web")
        expect(yield* snapshot(peers)).toEqual(before)
      }))
    }))

  it.effect("a changed edge listener moves the route when it is set up again", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      const file = freshFile()
      const first = yield* withEdge(peers, file, Effect.flatMap(EdgeRoutes, (edge) => edge.setup(request)))
      yield* withEdge(peers, file, Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        yield* edge.resumeOpenWork // the recorded route stays where it was until it is set up again
        expect((yield* peers.proxy.list).map((r) => r.listener)).toEqual([443])
        const moved = yield* edge.setup(request)
        expect(moved).toEqual(first)
        expect((yield* peers.proxy.list).map((r) => [r.listener, r.hostname])).toEqual([[8443, "web.example.com"]])
      }), { listener: 8443 })
    }))

  it.effect("a node that is not an edge refuses, naming the role and where edge routes go", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const error = yield* Effect.flip(edge.setup(request))
        expect(refusal(error)).toEqual(["role"])
        expect(error.message).toContain(`role = "edge"`)
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }), { role: "worker" })
    }))

  it.effect("internal-zone and malformed hostnames are refused with nothing written", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const internal = yield* Effect.flip(edge.setup({ ...request, hostname: "web.svc.mcp.internal" }))
        expect(refusal(internal)).toEqual(["hostname"])
        expect(internal.message).toContain("internal zone")
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, hostname: "Web.Example.com" })))).toEqual(["hostname"])
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, hostname: "web" })))).toEqual(["hostname"])
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, backendHostname: "bad_name!" })))).toEqual(["backendHostname"])
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, backendHostname: "::1" })))).toEqual(["backendHostname"])
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }))
    }))

  it.effect("only names under the allowed public domains the master pushed are published", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      const file = freshFile()
      yield* withEdge(peers, file, Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const error = yield* Effect.flip(edge.setup({ ...request, hostname: "web.example.org" }))
        expect(refusal(error)).toEqual(["hostname"])
        expect(error.message).toContain(`"web.example.org" is not under an allowed public domain (example.com, example.net)`)
        // A look-alike suffix is not under the domain.
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, hostname: "web.notexample.com" })))).toEqual(["hostname"])
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }))
      // No master has pushed any yet: nothing is published.
      yield* withEdge(peers, file, Effect.gen(function* () {
        const error = yield* Effect.flip(Effect.flatMap(EdgeRoutes, (edge) => edge.setup(request)))
        expect(refusal(error)).toEqual(["hostname"])
        expect(error.message).toContain("none yet")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }), { allowedDomains: [] })
    }))

  it.effect("a backend is a worker's internal name or an address inside backend_networks; never loopback or link-local", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const refused = (backendHostname: string) =>
          Effect.map(Effect.flip(edge.setup({ ...request, backendHostname })), (e) => ({ paths: refusal(e), message: e.message }))
        for (const ip of ["127.0.0.1", "127.1.2.3", "169.254.169.254", "0.0.0.0", "224.0.0.1"]) {
          const r = yield* refused(ip)
          expect(r.paths, ip).toEqual(["backendHostname"])
          expect(r.message, ip).toMatch(/is a (loopback|link-local|unroutable) address/)
        }
        const outside = yield* refused("198.51.100.7")
        expect(outside.paths).toEqual(["backendHostname"])
        expect(outside.message).toContain(`"198.51.100.7" is not inside [proxy] backend_networks (192.0.2.0/24) of edge-1`)
        // A name outside the internal zone could resolve anywhere: refused before it is looked up.
        expect((yield* refused("web.example.net")).paths).toEqual(["backendHostname"])
        // Names that resolve where an edge never forwards: refused without saying what they resolved to.
        for (const name of ["metadata.svc.mcp.internal", "self.svc.mcp.internal"]) {
          const r = yield* refused(name)
          expect(r.paths, name).toEqual(["backendHostname"])
          expect(r.message, name).not.toMatch(/169\.254|127\.0|loopback|link-local/)
        }
        expect(refusal(yield* Effect.flip(edge.setup({ ...request, backendPort: 0 })))).toEqual(["backendPort"])
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
        // Inside the configured network: set up.
        const ok = yield* edge.setup({ ...request, backendHostname: "192.0.2.10" })
        expect(ok.backendHostname).toBe("192.0.2.10")
      }))
    }))

  it.effect("with no backend_networks configured, an IP-literal backend is refused; internal names still work", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const error = yield* Effect.flip(edge.setup({ ...request, backendHostname: "192.0.2.10" }))
        expect(refusal(error)).toEqual(["backendHostname"])
        expect(error.message).toContain("none configured")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
        yield* edge.setup(request)
      }), { backendNetworks: [] })
    }))

  it.effect("a backend name that does not resolve fails naming the name, with nothing written", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const error = yield* Effect.flip(edge.setup({ ...request, backendHostname: "nowhere.svc.mcp.internal" }))
        expect(error).toBeInstanceOf(Errors.PeerFailed)
        expect(error.message).toContain("nowhere.svc.mcp.internal")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }))
    }))

  it.effect("a proxy failure compensates: the certificate it issued is deleted and no row is left", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        yield* peers.faults.arm("proxy.put")
        const error = yield* Effect.flip(edge.setup(request))
        expect(error).toBeInstanceOf(Errors.PeerFailed)
        expect(error instanceof Errors.PeerFailed && error.peer).toBe("memory proxy")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })

        yield* peers.faults.arm("cert.issue")
        const caDown = yield* Effect.flip(edge.setup(request))
        expect(caDown instanceof Errors.PeerFailed && caDown.peer).toBe("memory CA")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }))
    }))

  it.effect("a failed replacement puts the old route back and keeps its certificate", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const first = yield* edge.setup(request)
        const before = yield* snapshot(peers)
        yield* peers.faults.arm("proxy.put")
        yield* Effect.flip(edge.setup({ ...request, backendHostname: "web2.svc.mcp.internal" }))
        expect(yield* snapshot(peers)).toEqual(before)
        expect(yield* edge.list).toEqual([first])
      }))
    }))

  it.effect("a rollback that keeps failing leaves the row setting-up; the next setup finishes it first", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const registry = yield* Registry
        yield* peers.faults.arm("proxy.put")
        yield* peers.faults.arm("proxy.remove", 4) // one try and three retries
        const error = yield* Effect.flip(edge.setup(request))
        expect(error.message).toContain("rollback incomplete")
        expect((yield* registry.edgeRoutes).map((r) => r.state)).toEqual(["setting-up"])
        expect(yield* edge.list).toEqual([])
        const route = yield* edge.setup(request)
        expect((yield* peers.certs.live).map((c) => c.serial)).toEqual([route.certSerial])
        expect((yield* registry.edgeRoutes).map((r) => r.state)).toEqual(["active"])
      }))
    }))

  it.effect("remove takes route, certificate and row away; removing a missing route succeeds", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        yield* edge.setup(request)
        yield* edge.remove("web.example.com")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
        yield* edge.remove("web.example.com")
        yield* edge.remove("never.example.com")
      }))
    }))

  it.effect("a removal cut short is finished by the next remove", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const registry = yield* Registry
        yield* edge.setup(request)
        yield* peers.faults.arm("proxy.remove")
        const error = yield* Effect.flip(edge.remove("web.example.com"))
        expect(error.peer).toBe("memory proxy")
        expect((yield* registry.edgeRoutes).map((r) => r.state)).toEqual(["removing"])
        expect(yield* edge.list).toEqual([])
        yield* edge.remove("web.example.com")
        expect(yield* snapshot(peers)).toEqual({ routes: [], certs: [], rows: [] })
      }))
    }))

  it.effect("at start, a row a crash left setting-up is compensated and recorded; a replaced route comes back", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      const file = freshFile()
      // What a crash mid-setup leaves: the row, the certificate it recorded and the route it put.
      const orphan = yield* peers.certs.issue("new.example.com")
      yield* withEdge(peers, file, Effect.gen(function* () {
        const registry = yield* Registry
        const edge = yield* EdgeRoutes
        const kept = yield* edge.setup(request)
        const keptRow = (yield* registry.edgeRoutes)[0]!
        const replacement = yield* peers.certs.issue("web.example.com")
        const crashedNew: EdgeRouteRow = {
          hostname: "new.example.com", state: "setting-up", service: "new", workerNode: "rift", backendHostname: "web.svc.mcp.internal",
          backendPort: 8443, backend: "10.0.0.7:8443", listener: 443, cert: orphan, previous: undefined, retired: []
        }
        const crashedReplace: EdgeRouteRow = { ...keptRow, state: "setting-up", backend: "10.0.0.8:8443", cert: replacement, previous: { ...keptRow } }
        yield* registry.putEdgeRoute(crashedNew)
        yield* registry.putEdgeRoute(crashedReplace)
        yield* peers.proxy.put({ listener: 443, hostname: "new.example.com" as never, backend: "10.0.0.7:8443", mode: "l7", backendTls: true, tlsCert: orphan.certPath, tlsKey: orphan.keyPath })
        yield* peers.proxy.put({ listener: 443, hostname: "web.example.com" as never, backend: "10.0.0.8:8443", mode: "l7", backendTls: true, tlsCert: replacement.certPath, tlsKey: replacement.keyPath })
        return kept
      }))
      // The agent starts again.
      yield* withEdge(peers, file, Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const registry = yield* Registry
        yield* edge.resumeOpenWork
        const rows = yield* registry.edgeRoutes
        expect(rows.map((r) => [r.hostname, r.state, r.backend])).toEqual([["web.example.com", "active", "10.0.0.7:8443"]])
        expect((yield* peers.proxy.list).map((r) => [r.hostname, r.backend, r.tlsCert])).toEqual([["web.example.com", "10.0.0.7:8443", rows[0]!.cert?.certPath]])
        expect((yield* peers.certs.live).map((c) => c.serial)).toEqual([rows[0]!.cert?.serial])
        // A proxy that lost its routes gets the active ones back at start.
        yield* peers.proxy.remove(443, "web.example.com")
        yield* edge.resumeOpenWork
        expect((yield* peers.proxy.list).map((r) => [r.hostname, r.backend])).toEqual([["web.example.com", "10.0.0.7:8443"]])
        const recovered = (yield* registry.events(20)).filter((e) => e.kind === "recover").map((e) => e.message)
        expect(recovered.some((m) => m.includes("new.example.com"))).toBe(true)
        expect(recovered.some((m) => m.includes("web.example.com"))).toBe(true)
      }))
    }))

  it.effect("renewal issues a new certificate, puts the route with it, records it and deletes the old one", () =>
    Effect.gen(function* () {
      const peers = yield* makePeers
      yield* withEdge(peers, freshFile(), Effect.gen(function* () {
        const edge = yield* EdgeRoutes
        const first = yield* edge.setup(request)
        // What the renewal fiber sees: the edge certificate, due once its expiry is within the margin.
        const listed = yield* edge.certificates
        expect(listed).toEqual([{ hostname: "web.example.com", serial: first.certSerial, notAfter: first.certNotAfter }])
        expect(CertRenewer.renewDue(listed, Date.parse(first.certNotAfter) - 1000)).toEqual(listed)
        expect(CertRenewer.renewDue(listed, Date.now())).toEqual([])

        const renewer = yield* CertRenewer.makeRenewer({
          every: "12 hours",
          list: edge.certificates,
          renew: (c) => edge.renewCertificate(c.hostname),
          margin: "365 days"
        })
        yield* TestClock.setTime(Date.now()) // the renewer reads the Clock; the certificates carry real dates
        const round = yield* renewer.runOnce
        expect(round.renewed).toEqual(["web.example.com"])
        const [renewed] = yield* edge.list
        expect(renewed!.certSerial).not.toBe(first.certSerial)
        const live = yield* peers.certs.live
        expect(live.map((c) => c.serial)).toEqual([renewed!.certSerial])
        expect((yield* peers.proxy.list).map((r) => r.tlsCert)).toEqual([live[0]!.certPath])

        // A renewal the proxy refuses keeps the old certificate serving and deletes the new one.
        yield* peers.faults.arm("proxy.put")
        yield* Effect.flip(edge.renewCertificate("web.example.com"))
        expect((yield* peers.certs.live).map((c) => c.serial)).toEqual([renewed!.certSerial])
        expect(yield* edge.list).toEqual([renewed])
      }))
    }))
})

// -------------------------------------------------------------------------------------------
// Property: whatever fails, the proxy, the CA and the registry agree.

/** MCP_EDGE_RUNS overrides the number of runs (default 150, a few seconds). */
const RUNS = Number(process.env["MCP_EDGE_RUNS"] ?? "") || 150

const HOSTNAMES = ["a.example.com", "b.example.com", "c.example.net"] as const
const BACKENDS = ["web.svc.mcp.internal", "web2.svc.mcp.internal"] as const
const FAULTS = ["proxy.put", "cert.issue", "proxy.remove"] as const
const CRASHES: ReadonlyArray<CrashPoint> = ["proxy.put", "proxy.remove", "cert.revoke"]

type Op =
  | { readonly kind: "setup"; readonly host: number; readonly backend: number; readonly port: number }
  | { readonly kind: "remove"; readonly host: number }
  | { readonly kind: "renew"; readonly host: number }
  | { readonly kind: "restart" }
interface Step {
  readonly op: Op
  readonly fault: { readonly at: (typeof FAULTS)[number]; readonly count: number } | null
  /** The agent dies in this call (if the operation makes it), and starts again. */
  readonly crash: CrashPoint | null
}

const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant("setup" as const), host: fc.nat(2), backend: fc.nat(1), port: fc.constantFrom(8443, 9443) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("remove" as const), host: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("renew" as const), host: fc.nat(2) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("restart" as const) }) }
)
const stepArb: fc.Arbitrary<Step> = fc.record({
  op: opArb,
  // Up to 5 failures in a row: more than the compensation's retries, so some rollbacks stay open.
  fault: fc.option(fc.record({ at: fc.constantFrom(...FAULTS), count: fc.integer({ min: 1, max: 5 }) }), { freq: 2 }),
  crash: fc.option(fc.constantFrom(...CRASHES), { freq: 5 })
})

/** Every active row has its route (with its backend and certificate) and its live certificate; nothing exists without a row. */
const checkAgreement = (peers: Peers, rows: ReadonlyArray<EdgeRouteRow>, when: string) =>
  Effect.gen(function* () {
    const routes = yield* peers.proxy.list
    const live = new Set((yield* peers.certs.live).map((c) => c.serial))
    for (const row of rows.filter((r) => r.state === "active")) {
      const route = routes.find((r) => r.hostname === row.hostname && r.listener === row.listener)
      expect(route, `${when}: route of active ${row.hostname}`).toBeDefined()
      expect(route!.backend, when).toBe(row.backend)
      expect(route!.tlsCert, when).toBe(row.cert?.certPath)
      expect(live.has(row.cert!.serial), `${when}: certificate of active ${row.hostname}`).toBe(true)
    }
    const keys = new Set(rows.flatMap((r) => [`${r.listener} ${r.hostname}`, ...(r.previous === undefined ? [] : [`${r.previous.listener} ${r.hostname}`])]))
    for (const route of routes) expect(keys.has(`${route.listener} ${route.hostname}`), `${when}: route ${route.hostname} on ${route.listener} has a row`).toBe(true)
    const owned = new Set(rows.flatMap((r) => [r.cert, r.previous?.cert, ...r.retired]).flatMap((c) => (c === undefined ? [] : [c.serial])))
    for (const serial of live) expect(owned.has(serial), `${when}: certificate ${serial} has a row`).toBe(true)
  })

describe("edge routes under faults", () => {
  it.effect.prop(
    "random setups, removals, renewals, crashes and restarts with injected faults keep proxy, CA and registry in agreement",
    [fc.array(stepArb, { minLength: 1, maxLength: 14 })],
    ([steps]) =>
      Effect.gen(function* () {
        const peers = yield* makePeers
        const file = freshFile()
        // The routes that must be active once every open operation is closed: a failed or cut-off
        // setup or renewal changes nothing; a removal always ends in removal (finished later if cut off).
        const model = new Map<string, string>()
        let next = 0
        let lives = 0
        // One agent life per iteration: it starts (closing open work with healthy peers), runs steps
        // until one crashes it, and the next life starts over the same registry and peers.
        while (true) {
          // Every other life the edge listener is reconfigured: the routes move as they are set up again.
          const listener = lives++ % 2 === 0 ? 443 : 8443
          const crashed = yield* withEdge(peers, file, Effect.gen(function* () {
            const edge = yield* EdgeRoutes
            const registry = yield* Registry
            yield* edge.resumeOpenWork
            const started = yield* registry.edgeRoutes
            expect(started.filter((r) => r.state !== "active" || r.retired.length > 0), "after a clean start").toEqual([])
            yield* checkAgreement(peers, started, "after a clean start")
            expect(new Map(started.map((r) => [r.hostname, r.backend]))).toEqual(model)
            for (; next < steps.length; next++) {
              const { op, fault, crash } = steps[next]!
              if (fault !== null) yield* peers.faults.arm(fault.at, fault.count)
              if (crash !== null) yield* peers.crashes.arm(crash)
              const signal = yield* Deferred.make<void>()
              yield* Ref.set(peers.crashed, signal)
              const run = <A, E>(effect: Effect.Effect<A, E>) =>
                Effect.raceFirst(Effect.map(Effect.either(effect), Option.some), Effect.as(Deferred.await(signal), Option.none()))
              const when = `step ${next} ${JSON.stringify(steps[next])}`
              yield* Ref.set(peers.hits, [])
              /**
               * Every request is for the one service "web" (no hostname is ever taken by another
               * service) and every backend name resolves: the only failure the model allows is a
               * PeerFailed caused by an injected fault that fired during this operation.
               */
              const expectSucceededUnlessFaulted = <A, E>(outcome: Option.Option<Either.Either<A, E>>) =>
                Effect.gen(function* () {
                  if (Option.isNone(outcome) || Either.isRight(outcome.value)) return
                  const error = outcome.value.left
                  const fired = yield* Ref.get(peers.hits)
                  expect(fired, `${when}: failed with no injected fault fired: ${String((error as { message?: unknown }).message ?? error)}`).not.toEqual([])
                  expect(error, when).toBeInstanceOf(Errors.PeerFailed)
                })
              let died = false
              switch (op.kind) {
                case "setup": {
                  const hostname = HOSTNAMES[op.host]!
                  const backendHostname = BACKENDS[op.backend]!
                  const outcome = yield* run(edge.setup({ ...request, hostname, backendHostname, backendPort: op.port }))
                  died = Option.isNone(outcome)
                  yield* expectSucceededUnlessFaulted(outcome)
                  if (Option.isSome(outcome) && Either.isRight(outcome.value)) {
                    expect(outcome.value.right, when).toMatchObject({ hostname, service: "web", backendHostname, backendPort: op.port, edgeNode: "edge-1" })
                    model.set(hostname, `${HOSTS[backendHostname]}:${op.port}`)
                  }
                  break
                }
                case "remove": {
                  const outcome = yield* run(edge.remove(HOSTNAMES[op.host]!))
                  died = Option.isNone(outcome)
                  yield* expectSucceededUnlessFaulted(outcome)
                  if (Option.isSome(outcome) && Either.isRight(outcome.value)) {
                    expect((yield* registry.edgeRoutes).map((r) => r.hostname), `${when}: removed`).not.toContain(HOSTNAMES[op.host]!)
                  }
                  model.delete(HOSTNAMES[op.host]!)
                  break
                }
                case "renew": {
                  const outcome = yield* run(edge.renewCertificate(HOSTNAMES[op.host]!))
                  died = Option.isNone(outcome)
                  yield* expectSucceededUnlessFaulted(outcome)
                  break
                }
                case "restart": {
                  // Per-route trouble is logged and left for the next start: the call itself never fails.
                  const outcome = yield* run(edge.resumeOpenWork)
                  died = Option.isNone(outcome)
                  if (Option.isSome(outcome)) expect(Either.isRight(outcome.value) ? "succeeded" : outcome.value.left, when).toBe("succeeded")
                  break
                }
              }
              // A fault or crash the operation did not reach must not hit the next one.
              yield* peers.faults.clear
              yield* peers.crashes.clear
              if (died) {
                next++
                return true
              }
              yield* checkAgreement(peers, yield* registry.edgeRoutes, when)
            }
            return false
          }), { listener })
          if (!crashed) break
        }
        // The agent starts once more with its peers healthy: all open work is closed.
        yield* withEdge(peers, file, Effect.gen(function* () {
          const edge = yield* EdgeRoutes
          const registry = yield* Registry
          yield* edge.resumeOpenWork
          const rows = yield* registry.edgeRoutes
          expect(rows.filter((r) => r.state !== "active" || r.retired.length > 0)).toEqual([])
          yield* checkAgreement(peers, rows, "at the end")
          expect(new Map(rows.map((r) => [r.hostname, r.backend]))).toEqual(model)
        }))
        rmSync(dirname(file), { recursive: true, force: true })
      }).pipe(Logger.withMinimumLogLevel(LogLevel.None)),
    { timeout: Math.max(120_000, RUNS * 200), fastCheck: { numRuns: RUNS } }
  )
})
