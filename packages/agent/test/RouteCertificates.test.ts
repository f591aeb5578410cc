/**
 * Route certificates over their life on the agent (issue 18): a redeploy that drops or changes a
 * hostname forgets and deletes its certificate once the new version is committed (a rollback
 * keeps it), so the renewal fiber no longer sees it; a renewal is a journaled saga, so one cut
 * short (the agent killed in a peer call) is rolled back or finished at the next start, leaving
 * the registry, the certificate files and the proxy in agreement. Certificates come from the
 * embedded local CA, so "deleted" means the files are gone from its directory.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Fiber, Option } from "effect"
import { existsSync, mkdtempSync, readdirSync } from "node:fs"
import { tmpdir } from "node:os"
import { basename, join } from "node:path"
import { CertError, type CertIssuer } from "../src/certs/CertIssuer.js"
import * as LocalCaIssuer from "../src/certs/LocalCaIssuer.js"
import * as Agent from "../src/daemon/Agent.js"
import { Lifecycle } from "../src/lifecycle/Lifecycle.js"
import type { ProxyRoutes } from "../src/proxy/ProxyRoutes.js"
import { Registry } from "../src/registry/Registry.js"
import { definition, IMAGE, layerAgent, makePeers, type Peers, settings, webService } from "./Harness.js"
import { layerPlatform } from "./Platform.js"

const noProgress = () => Effect.void
const internal = (service: string) => `${service}.${settings.internalZone}`
const ALT = "b-alt.svc.mcp.internal"

/** Service b with its own name and, unless `alt` is false, a second L7 hostname ALT. */
const serviceB = (alt: boolean, extra = "") =>
  definition(`name = "b"
[[components]]
name = "web"
image = "${IMAGE}"
cmd = ["httpd"]
${extra}
[[components.routes]]
name = "main"
port = 8443
mode = "l7"
${alt ? `[[components.routes]]
name = "alt"
port = 8443
mode = "l7"
hostname = "${ALT}"` : ""}
`)

/** A peer call the agent is killed in: the armed call never returns and says so on `reached`. */
type Point = "proxy.put" | "cert.revoke"

interface Rig {
  readonly peers: Peers
  readonly file: string
  readonly certDir: string
  /** The next call of `point` never returns; the Deferred is completed when it is reached. */
  readonly armCrash: (point: Point) => Effect.Effect<Deferred.Deferred<void>>
}

/** Memory peers, with the local CA (files in a temporary directory) as the issuer and crash points on the proxy and the CA. */
const makeRig = Effect.gen(function* () {
  const dir = mkdtempSync(join(tmpdir(), "mcp-route-certs-"))
  const base = yield* makePeers({ switchesTraffic: false })
  const ca = yield* LocalCaIssuer.make(join(dir, "data"), { internalZone: settings.internalZone }).pipe(Effect.provide(layerPlatform))
  let crash: { point: Point; reached: Deferred.Deferred<void> } | undefined
  const gate = (point: Point): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (crash?.point !== point) return Effect.void
      const reached = crash.reached
      crash = undefined
      return Effect.zipRight(Deferred.succeed(reached, undefined), Effect.never)
    })
  const certs: CertIssuer = {
    name: ca.name,
    issue: ca.issue,
    // The memory issuer's fault hook, on the local CA.
    revoke: (cert) =>
      Effect.zipRight(
        gate("cert.revoke"),
        Effect.flatMap(base.faults.take("cert.revoke"), (fail) =>
          fail ? Effect.fail(new CertError({ issuer: ca.name, hostname: cert.hostname, reason: "injected fault" })) : ca.revoke(cert))
      )
  }
  const proxy: ProxyRoutes = { ...base.proxy, put: (route) => Effect.zipRight(gate("proxy.put"), base.proxy.put(route)) }
  const peers: Peers = { ...base, proxy, certs: { ...certs, live: Effect.succeed([]) } }
  return {
    peers,
    file: join(dir, "registry.db"),
    certDir: join(dir, "data", "certs"),
    armCrash: (point: Point) =>
      Effect.map(Deferred.make<void>(), (reached) => {
        crash = { point, reached }
        return reached
      })
  } satisfies Rig
})

const withAgent = <A, E>(rig: Rig, body: Effect.Effect<A, E, Lifecycle | Registry>) => Effect.scoped(Effect.provide(body, layerAgent(rig.peers, rig.file)))

/** A new agent over the same peers and registry, after its start-up work. */
const restartAgent = <A, E>(rig: Rig, after: Effect.Effect<A, E, Lifecycle | Registry>) =>
  withAgent(rig, Effect.zipRight(Effect.flatMap(Lifecycle, (l) => l.resumeOpenWork), after))

const deploy = (def: ReturnType<typeof definition>) =>
  Effect.flatMap(Lifecycle, (l) => Effect.map(l.deploy(def, { dryRun: false }, noProgress), Option.getOrThrow))

/** `effect` forked and killed once it reaches the armed crash point: nothing of it runs after. */
const killedAt = <A, E, R>(rig: Rig, point: Point, effect: Effect.Effect<A, E, R>) =>
  Effect.gen(function* () {
    const reached = yield* rig.armCrash(point)
    const fiber = yield* Effect.fork(effect)
    yield* Deferred.await(reached)
    yield* Fiber.interrupt(fiber)
  })

const recordedHostnames = Effect.flatMap(Registry, (r) => Effect.map(r.certificates, (rows) => rows.map((c) => c.hostname)))

/** The files in the CA's certificate directory. */
const filesOf = (rig: Rig) => (existsSync(rig.certDir) ? readdirSync(rig.certDir).sort() : [])

/** The files the registry's certificates name. */
const recordedFiles = Effect.flatMap(Registry, (r) =>
  Effect.map(r.certificates, (rows) => rows.flatMap((c) => [basename(c.certPath), basename(c.keyPath)]).sort())
)

/** Every proxy route of `hostname` with the certificate it serves. */
const servedCerts = (rig: Rig, hostname: string) =>
  Effect.map(rig.peers.proxy.list, (routes) => routes.filter((r) => r.hostname === hostname).map((r) => r.tlsCert))

/**
 * The registry, the files and the proxy agree: every file is a recorded certificate's, every
 * recorded certificate's files exist, each route serves its hostname's recorded certificate, no
 * saga is open.
 */
const expectConsistent = (rig: Rig) =>
  Effect.gen(function* () {
    const registry = yield* Registry
    expect(filesOf(rig)).toEqual(yield* recordedFiles)
    const rows = new Map((yield* registry.certificates).map((c) => [c.hostname, c] as const))
    for (const route of yield* rig.peers.proxy.list) {
      if (route.mode === "l7") expect([route.hostname, route.tlsCert]).toEqual([route.hostname, rows.get(route.hostname)?.certPath])
    }
    expect(yield* registry.sagasIn("running")).toEqual([])
  })

const eventsOf = (kind: string) =>
  Effect.flatMap(Registry, (r) => Effect.map(r.events(1000), (rows) => rows.filter((e) => e.kind === kind).map((e) => [e.service, e.message])))

describe("a redeploy that no longer has a hostname", () => {
  it.live("forgets and deletes its certificate once committed (a rolled-back redeploy keeps it), and the renewal no longer lists it", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      yield* withAgent(rig, Effect.gen(function* () {
        const registry = yield* Registry
        yield* deploy(serviceB(true))
        expect(yield* recordedHostnames).toEqual([internal("b"), ALT].sort())
        const kept = (yield* registry.certificates).find((c) => c.hostname === internal("b"))!
        const dropped = (yield* registry.certificates).find((c) => c.hostname === ALT)!
        expect(filesOf(rig)).toHaveLength(4)

        // A redeploy without ALT that fails after its routes step: rolled back, ALT keeps its certificate and route.
        yield* rig.peers.faults.arm("dns.put")
        yield* Effect.flip((yield* Lifecycle).deploy(serviceB(false, `env = ["V=2"]`), { dryRun: false }, noProgress))
        expect(yield* recordedHostnames).toEqual([internal("b"), ALT].sort())
        expect(existsSync(dropped.certPath) && existsSync(dropped.keyPath)).toBe(true)
        expect(yield* servedCerts(rig, ALT)).toEqual([dropped.certPath])
        yield* expectConsistent(rig)

        // The same redeploy, committed.
        yield* deploy(serviceB(false, `env = ["V=2"]`))
        expect(yield* recordedHostnames).toEqual([internal("b")])
        expect(existsSync(dropped.certPath) || existsSync(dropped.keyPath)).toBe(false)
        expect(filesOf(rig).some((f) => f.startsWith(ALT))).toBe(false)
        expect(yield* servedCerts(rig, ALT)).toEqual([])
        // The hostname it kept keeps its certificate.
        expect((yield* registry.certificates).find((c) => c.hostname === internal("b"))).toEqual(kept)
        expect(yield* servedCerts(rig, internal("b"))).toEqual([kept.certPath])
        yield* expectConsistent(rig)

        // What the renewal fiber lists, every certificate due.
        const listed = yield* Agent.renewableCertificates(registry.certificates, Effect.succeed([]))
        expect(listed.map((c) => c.hostname)).toEqual([internal("b")])
      }))
    }))

  it.live("a changed hostname: the old name's certificate goes, the new name gets its own", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      yield* withAgent(rig, Effect.gen(function* () {
        const registry = yield* Registry
        yield* deploy(webService("c", "", "c-old.svc.mcp.internal"))
        const old = (yield* registry.certificates)[0]!
        yield* deploy(webService("c", "", "c-new.svc.mcp.internal"))
        expect(yield* recordedHostnames).toEqual(["c-new.svc.mcp.internal"])
        expect(existsSync(old.certPath)).toBe(false)
        expect(filesOf(rig).some((f) => f.startsWith("c-old"))).toBe(false)
        yield* expectConsistent(rig)
      }))
    }))

  it.live("a delete that fails after the commit is retried at the next start; undeploy deletes the rest", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      let dropped = ""
      yield* withAgent(rig, Effect.gen(function* () {
        yield* deploy(serviceB(true))
        dropped = (yield* (yield* Registry).certificates).find((c) => c.hostname === ALT)!.certPath
        // More failures than the retries: the deploy stands, the files stay for the next start.
        yield* rig.peers.faults.arm("cert.revoke", 10)
        yield* deploy(serviceB(false))
        expect(yield* recordedHostnames).toEqual([internal("b")])
        expect(existsSync(dropped)).toBe(true)
        expect((yield* (yield* Registry).sagasIn("running")).map((s) => [s.service, s.kind])).toEqual([["b", "revoke"]])
      }))
      yield* rig.peers.faults.clear
      yield* restartAgent(rig, Effect.gen(function* () {
        expect(existsSync(dropped)).toBe(false)
        expect(yield* eventsOf("recover")).toEqual([["b", "deleted the certificates an interrupted deploy or renewal no longer serves"]])
        yield* expectConsistent(rig)
        yield* (yield* Lifecycle).undeploy("b")
        expect(yield* recordedHostnames).toEqual([])
        expect(filesOf(rig)).toEqual([])
      }))
    }))

  it.live("an agent killed between the commit and the delete deletes at its next start", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      yield* withAgent(rig, Effect.gen(function* () {
        yield* deploy(serviceB(true))
        yield* killedAt(rig, "cert.revoke", deploy(serviceB(false)))
        expect(yield* recordedHostnames).toEqual([internal("b")])
        expect(filesOf(rig)).toHaveLength(4)
      }))
      yield* restartAgent(rig, Effect.gen(function* () {
        expect(yield* recordedHostnames).toEqual([internal("b")])
        yield* expectConsistent(rig)
      }))
    }))
})

describe("a certificate renewal cut short", () => {
  it.live("killed after the new certificate was written, before the proxy has it: the next start rolls it back", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      let before: ReadonlyArray<unknown> = []
      yield* withAgent(rig, Effect.gen(function* () {
        yield* deploy(serviceB(true))
        before = yield* (yield* Registry).certificates
        yield* killedAt(rig, "proxy.put", (yield* Lifecycle).renewCertificate(internal("b")))
        // The new certificate's files exist, recorded nowhere but in the journal.
        expect(filesOf(rig)).toHaveLength(6)
      }))
      yield* restartAgent(rig, Effect.gen(function* () {
        expect(yield* (yield* Registry).certificates).toEqual(before)
        expect(filesOf(rig)).toHaveLength(4)
        yield* expectConsistent(rig)
        expect(yield* eventsOf("recover")).toEqual([["b", "rolled back an interrupted certificate renewal"]])
        // The renewal runs again as if nothing happened.
        yield* (yield* Lifecycle).renewCertificate(internal("b"))
        yield* expectConsistent(rig)
      }))
    }))

  it.live("killed after the commit, before the old certificate was deleted: the next start finishes it", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      let old = ""
      yield* withAgent(rig, Effect.gen(function* () {
        yield* deploy(serviceB(true))
        old = (yield* (yield* Registry).certificates).find((c) => c.hostname === internal("b"))!.certPath
        yield* killedAt(rig, "cert.revoke", (yield* Lifecycle).renewCertificate(internal("b")))
      }))
      yield* restartAgent(rig, Effect.gen(function* () {
        const fresh = (yield* (yield* Registry).certificates).find((c) => c.hostname === internal("b"))!
        expect(fresh.certPath).not.toBe(old)
        expect(existsSync(old)).toBe(false)
        expect(yield* servedCerts(rig, internal("b"))).toEqual([fresh.certPath])
        yield* expectConsistent(rig)
      }))
    }))

  it.live("a proxy that fails is rolled back at once: the old certificate stays recorded and served, the new one is deleted", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      yield* withAgent(rig, Effect.gen(function* () {
        const registry = yield* Registry
        yield* deploy(serviceB(true))
        const before = yield* registry.certificates
        yield* rig.peers.faults.arm("proxy.put")
        const error = yield* Effect.flip((yield* Lifecycle).renewCertificate(internal("b")))
        expect(error.message).toContain(`renewing the certificate for ${internal("b")} failed at routes`)
        expect(yield* registry.certificates).toEqual(before)
        yield* expectConsistent(rig)
      }))
    }))

  it.live("a stopped service's renewal puts no route back in the proxy", () =>
    Effect.gen(function* () {
      const rig = yield* makeRig
      yield* withAgent(rig, Effect.gen(function* () {
        const lifecycle = yield* Lifecycle
        yield* deploy(serviceB(false))
        yield* lifecycle.stop("b")
        yield* lifecycle.renewCertificate(internal("b"))
        expect(yield* rig.peers.proxy.list).toEqual([])
        yield* expectConsistent(rig)
        yield* lifecycle.start("b")
        yield* expectConsistent(rig)
      }))
    }))
})
