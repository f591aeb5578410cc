// The ACME CertIssuer against pebble (started by the harness): the shared CertIssuer contract with
// http-01 always valid, with a real http-01 (pebble's VA fetches from our challenge server) and a
// real dns-01 (pebble's VA asks the harness DNS), plus what only a real CA shows: errors an
// operator can act on when the CA is down, hangs, is untrusted, or cannot validate.
import { afterAll, beforeAll, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Either, Layer } from "effect"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import * as AcmeIssuer from "../packages/agent/src/certs/AcmeIssuer.js"
import { CertError, type CertIssuer } from "../packages/agent/src/certs/CertIssuer.js"
import { certIssuerContract, contractHostname, pemBlocks, tlsHandshake, verifyChain } from "../packages/agent/test/CertIssuerContract.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { freePort, type Pebble, startPebble, startTestDns, type TestDns } from "./support/Pebble.js"

const scratch = mkdtempSync(path.join(tmpdir(), "mcp-acme-test-"))
const dataDir = (name: string) => path.join(scratch, name)

let alwaysValid: Pebble | undefined
let alwaysValidRoot = ""
let real: Pebble | undefined
let realRoot = ""
let dns: TestDns | undefined
let servePort = 0

beforeAll(async () => {
  dns = await startTestDns()
  servePort = await freePort()
  alwaysValid = await startPebble({ alwaysValid: true })
  // pebble's VA fetches http-01 from port `servePort` of whatever the DNS says (127.0.0.1).
  real = await startPebble({ alwaysValid: false, httpPort: servePort, dnsServer: dns.address })
  alwaysValidRoot = await alwaysValid.issuingRoot()
  realRoot = await real.issuingRoot()
}, 60_000)

afterAll(async () => {
  await alwaysValid?.stop()
  await real?.stop()
  await dns?.stop()
  rmSync(scratch, { recursive: true, force: true })
})

const started = (pebble: Pebble | undefined): Pebble => {
  if (pebble === undefined) throw new Error("pebble not started")
  return pebble
}

const dnsSolver = (): AcmeIssuer.Dns01Solver => {
  const d = dns
  if (d === undefined) throw new Error("test DNS not started")
  return { set: (name, value) => Effect.sync(() => d.setTxt(name, value)), clear: (name) => Effect.sync(() => d.clearTxt(name)) }
}

const httpOptions = (pebble: Pebble, dir: string, extra: Partial<AcmeIssuer.AcmeIssuerOptions> = {}): AcmeIssuer.AcmeIssuerOptions => ({
  directoryUrl: pebble.directoryUrl,
  dataDir: dir,
  caBundle: pebble.tlsCa,
  challenge: { kind: "http-01", serve: { port: servePort, host: "127.0.0.1" } },
  timeout: "30 seconds",
  ...extra
})

// Built lazily: pebble's URL and TLS CA exist only once beforeAll has run.
const lazy = (options: () => AcmeIssuer.AcmeIssuerOptions) =>
  Layer.unwrapEffect(Effect.sync(() => AcmeIssuer.layer(options()))).pipe(Layer.provide(layerPlatform))

certIssuerContract(
  "ACME http-01 (pebble, PEBBLE_VA_ALWAYS_VALID)",
  lazy(() => httpOptions(started(alwaysValid), dataDir("always-valid"))),
  () => alwaysValidRoot
)

certIssuerContract(
  "ACME http-01 (pebble validates against our challenge server)",
  lazy(() => httpOptions(started(real), dataDir("http-01"))),
  () => realRoot
)

certIssuerContract(
  "ACME dns-01 (pebble validates the TXT record through DNS)",
  lazy(() => ({ ...httpOptions(started(real), dataDir("dns-01")), challenge: { kind: "dns-01", solver: dnsSolver() } })),
  () => realRoot
)

const make = (options: AcmeIssuer.AcmeIssuerOptions): Effect.Effect<CertIssuer> => AcmeIssuer.make(options).pipe(Effect.provide(layerPlatform))

const failure = <A>(effect: Effect.Effect<A, CertError>) =>
  Effect.gen(function*() {
    const start = Date.now()
    const result = yield* Effect.either(effect)
    if (Either.isRight(result)) throw new Error(`expected a CertError, got ${JSON.stringify(result.right)}`)
    expect(result.left).toBeInstanceOf(CertError)
    return { error: result.left, ms: Date.now() - start }
  })

describe("AcmeIssuer against pebble", () => {
  it.live("writes the full chain (leaf + pebble's intermediate) and key with mode 0600; the chain leads to /roots/0", () =>
    Effect.gen(function*() {
      const issuer = yield* make(httpOptions(started(real), dataDir("files")))
      const hostname = contractHostname()
      const cert = yield* issuer.issue(hostname)
      const chain = readFileSync(cert.certPath, "utf8")
      expect(pemBlocks(chain)).toHaveLength(2)
      verifyChain(chain, realRoot, hostname)
      expect(statSync(cert.certPath).mode & 0o777).toBe(0o600)
      expect(statSync(cert.keyPath).mode & 0o777).toBe(0o600)
      expect(path.dirname(cert.certPath)).toBe(path.join(dataDir("files"), "certs"))
      expect(path.basename(cert.certPath)).toMatch(new RegExp(`^${hostname.replace(/\./g, "\\.")}-[0-9a-z]+\\.crt$`))
      // The pebble that issued it is not trusted by a client that trusts the other pebble's root.
      const foreign = yield* tlsHandshake(cert, alwaysValidRoot)
      expect(foreign.authorized).toBe(false)
      yield* issuer.revoke(cert)
    }))

  it.live("creates the account key once (0600) and reuses it; the challenge server is gone after issue", () =>
    Effect.gen(function*() {
      const dir = dataDir("account")
      const issuer = yield* make(httpOptions(started(real), dir, { email: "ops@example.test" }))
      const first = yield* issuer.issue(contractHostname())
      const keyPath = path.join(dir, "acme", "account.key")
      const key = readFileSync(keyPath, "utf8")
      expect(statSync(keyPath).mode & 0o777).toBe(0o600)
      // A second issuer on the same data dir (an agent restart) finds the same account.
      const again = yield* make(httpOptions(started(real), dir, { email: "ops@example.test" }))
      const second = yield* again.issue(contractHostname())
      expect(readFileSync(keyPath, "utf8")).toBe(key)
      const refused = yield* Effect.promise(() =>
        new Promise<boolean>((resolve) => {
          const socket = net.connect(servePort, "127.0.0.1")
          socket.once("connect", () => (socket.destroy(), resolve(false)))
          socket.once("error", () => resolve(true))
        })
      )
      expect(refused).toBe(true)
      yield* issuer.revoke(first)
      yield* again.revoke(second)
    }))

  it.live("issues concurrently requested certificates one after another on the one challenge port", () =>
    Effect.gen(function*() {
      const issuer = yield* make(httpOptions(started(real), dataDir("concurrent")))
      const certs = yield* Effect.all([issuer.issue(contractHostname()), issuer.issue(contractHostname()), issuer.issue(contractHostname())], {
        concurrency: "unbounded"
      })
      expect(new Set(certs.map((c) => c.serial)).size).toBe(3)
      yield* Effect.forEach(certs, issuer.revoke)
    }))

  it.live("dns-01 sets _acme-challenge.<host> for pebble to see, and clears it afterwards", () =>
    Effect.gen(function*() {
      const d = dns!
      const seen: Array<string> = []
      const cleared: Array<string> = []
      const base = dnsSolver()
      const issuer = yield* make({
        ...httpOptions(started(real), dataDir("dns-01-records")),
        challenge: {
          kind: "dns-01",
          solver: {
            set: (name, value) => Effect.zipRight(Effect.sync(() => seen.push(name)), base.set(name, value)),
            clear: (name) => Effect.zipRight(Effect.sync(() => cleared.push(name)), base.clear(name))
          }
        }
      })
      const hostname = contractHostname()
      const queriesBefore = d.txtQueries.length
      const cert = yield* issuer.issue(hostname)
      expect(seen).toEqual([`_acme-challenge.${hostname}`])
      expect(cleared).toEqual([`_acme-challenge.${hostname}`])
      expect(d.txtQueries.slice(queriesBefore)).toContain(`_acme-challenge.${hostname}`)
      yield* issuer.revoke(cert)
    }))

  it.live("dns-01 issues a wildcard: the TXT record is on the base name, the files on a safe name", () =>
    Effect.gen(function*() {
      const seen: Array<string> = []
      const base = dnsSolver()
      const issuer = yield* make({
        ...httpOptions(started(real), dataDir("wildcard-dns-01")),
        challenge: { kind: "dns-01", solver: { ...base, set: (name, value) => Effect.zipRight(Effect.sync(() => seen.push(name)), base.set(name, value)) } }
      })
      const domain = contractHostname()
      const cert = yield* issuer.issue(`*.${domain}`)
      expect(seen).toEqual([`_acme-challenge.${domain}`])
      expect(path.basename(cert.certPath).startsWith(`_wildcard.${domain}-`)).toBe(true)
      const leaf = verifyChain(readFileSync(cert.certPath, "utf8"), realRoot, `www.${domain}`)
      expect(leaf.checkHost(domain)).toBeUndefined()
      yield* issuer.revoke(cert)
    }))

  it.live("a dns-01 solver failure is the CertError's reason", () =>
    Effect.gen(function*() {
      const issuer = yield* make({
        ...httpOptions(started(real), dataDir("dns-01-broken")),
        challenge: { kind: "dns-01", solver: { set: () => Effect.fail("zone example.test not found"), clear: () => Effect.void } }
      })
      const hostname = contractHostname()
      const { error } = yield* failure(issuer.issue(hostname))
      expect(error.issuer).toBe(`ACME (${started(real).directoryUrl})`)
      expect(error.reason).toContain(`_acme-challenge.${hostname}`)
      expect(error.reason).toContain("zone example.test not found")
    }))

  it.live("http-01 that the CA cannot reach fails with the CA's verdict and what to check", () =>
    Effect.gen(function*() {
      // Serving on another port than pebble's VA fetches from: the validation is refused.
      const elsewhere = yield* Effect.promise(freePort)
      const issuer = yield* make({
        ...httpOptions(started(real), dataDir("http-01-unreachable")),
        challenge: { kind: "http-01", serve: { port: elsewhere, host: "127.0.0.1" } }
      })
      const hostname = contractHostname()
      const { error } = yield* failure(issuer.issue(hostname))
      expect(error.reason).toContain(`could not validate the http-01 challenge for ${hostname}`)
      expect(error.reason).toContain(`reaches port ${elsewhere}`)
    }))

  it.live("a busy challenge port fails at once, naming the port", () =>
    Effect.gen(function*() {
      const busy = net.createServer()
      yield* Effect.promise(() => new Promise<void>((resolve) => busy.listen(servePort, "127.0.0.1", resolve)))
      const issuer = yield* make(httpOptions(started(real), dataDir("busy")))
      const { error } = yield* failure(issuer.issue(contractHostname())).pipe(
        Effect.ensuring(Effect.promise(() => new Promise<void>((resolve) => busy.close(() => resolve()))))
      )
      expect(error.reason).toContain(`cannot listen on 127.0.0.1:${servePort}`)
      expect(error.reason).toContain("EADDRINUSE")
    }))

  it.live("without caBundle pebble's TLS is not trusted, and the reason says to pass it", () =>
    Effect.gen(function*() {
      const { caBundle: _, ...untrusting } = httpOptions(started(real), dataDir("untrusted"))
      const issuer = yield* make(untrusting)
      const { error, ms } = yield* failure(issuer.issue(contractHostname()))
      expect(error.reason).toContain("does not trust")
      expect(error.reason).toContain("caBundle")
      expect(ms).toBeLessThan(5_000)
    }))

  it.live("a wildcard needs dns-01", () =>
    Effect.gen(function*() {
      const issuer = yield* make(httpOptions(started(real), dataDir("wildcard")))
      const { error } = yield* failure(issuer.issue("*.example.test"))
      expect(error.reason).toContain("dns-01")
    }))
})

describe("AcmeIssuer when the CA is down", () => {
  it.live("nothing listening: fails fast with a CertError naming the ACME server", () =>
    Effect.gen(function*() {
      const port = yield* Effect.promise(freePort)
      const directoryUrl = `https://127.0.0.1:${port}/dir`
      const issuer = yield* make({ ...httpOptions(started(real), dataDir("down")), directoryUrl })
      const { error, ms } = yield* failure(issuer.issue(contractHostname()))
      expect(error.issuer).toBe(`ACME (${directoryUrl})`)
      expect(error.reason).toBe(
        `the ACME server at ${directoryUrl} is not reachable (ECONNREFUSED); check directoryUrl and that the server is up`
      )
      expect(error.message).toContain("ACME")
      expect(ms).toBeLessThan(5_000)
    }))

  it.live("pebble stopped after a good issue: the next one fails fast", () =>
    Effect.gen(function*() {
      const pebble = yield* Effect.promise(() => startPebble({ alwaysValid: true }))
      const issuer = yield* make(httpOptions(pebble, dataDir("stopped")))
      const ok = yield* issuer.issue(contractHostname()).pipe(Effect.ensuring(Effect.promise(pebble.stop)))
      expect(ok.serial).not.toBe("")
      const { error, ms } = yield* failure(issuer.issue(contractHostname()))
      expect(error.reason).toContain("is not reachable")
      expect(ms).toBeLessThan(5_000)
    }))

  it.live("a server that accepts but never answers: bounded by the issuer's timeout", () =>
    Effect.gen(function*() {
      const sockets = new Set<net.Socket>()
      const silent = net.createServer((socket) => void sockets.add(socket))
      const port = yield* Effect.promise(() =>
        new Promise<number>((resolve) => silent.listen(0, "127.0.0.1", () => resolve((silent.address() as net.AddressInfo).port)))
      )
      const directoryUrl = `https://127.0.0.1:${port}/dir`
      const issuer = yield* make({ ...httpOptions(started(real), dataDir("silent")), directoryUrl, timeout: "2 seconds" })
      const { error, ms } = yield* failure(issuer.issue(contractHostname())).pipe(
        Effect.ensuring(Effect.sync(() => {
          for (const s of sockets) s.destroy()
          silent.close()
        }))
      )
      expect(error.issuer).toBe(`ACME (${directoryUrl})`)
      expect(error.reason).toContain(`did not finish the order within ${Duration.format(Duration.seconds(2))}`)
      expect(ms).toBeGreaterThanOrEqual(1_900)
      expect(ms).toBeLessThan(5_000)
    }))
})
