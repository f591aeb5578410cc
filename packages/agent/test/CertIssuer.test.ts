// The CertIssuer contract on the embedded local CA, its name and CA checks (allowed names, the
// platform CA refused as ca_dir, key modes), the ACME account key check, and the memory issuer's
// own semantics (it writes no files, so the file-based contract does not apply to it).
import { afterAll, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Pki } from "@mcp/rpc"
import * as AcmeIssuer from "../src/certs/AcmeIssuer.js"
import { CertError, CertIssuer, makeMemory } from "../src/certs/CertIssuer.js"
import * as LocalCaIssuer from "../src/certs/LocalCaIssuer.js"
import * as RouteDomains from "../src/certs/RouteDomains.js"
import * as Agent from "../src/daemon/Agent.js"
import * as AgentConfig from "../src/daemon/AgentConfig.js"
import { makeFaults } from "../src/Faults.js"
import { certIssuerContract } from "./CertIssuerContract.js"
import { layerPlatform } from "./Platform.js"

const dataDir = mkdtempSync(join(tmpdir(), "mcp-local-ca-"))
afterAll(() => rmSync(dataDir, { recursive: true, force: true }))

const ZONE = "svc.mcp.internal"
// Contract hostnames live under mcp-contract.test: the data-dir CA takes it as its internal zone.
certIssuerContract("local CA", LocalCaIssuer.layer(dataDir, { internalZone: "mcp-contract.test" }).pipe(Layer.provide(layerPlatform)), () => readFileSync(join(dataDir, "ca", Pki.CA_CERT_FILE), "utf8"))

// [certs] ca_dir: a routes CA (as `mcp ca init-routes` makes it) issues, the data dir gets no CA of
// its own, and the contract's TLS handshake verifies through the CA's name constraints.
const platformCa = join(dataDir, "platform-ca")
const routesCa = join(dataDir, "routes-ca")
const externalData = join(dataDir, "external")
await Effect.runPromise(Pki.initCa(platformCa).pipe(Effect.provide(layerPlatform)))
await Effect.runPromise(Pki.initCa(routesCa, { permittedDns: [ZONE, "mcp-contract.test", "example.test"] }).pipe(Effect.provide(layerPlatform)))
const platformCaFile = join(platformCa, Pki.CA_CERT_FILE)
const routesOptions = { caDir: routesCa, internalZone: ZONE, allowedDomains: Effect.succeed(["mcp-contract.test", "example.test"]), platformCaFile }
certIssuerContract(
  "local CA with ca_dir",
  LocalCaIssuer.layer(externalData, routesOptions).pipe(Layer.provide(layerPlatform)),
  () => readFileSync(join(routesCa, Pki.CA_CERT_FILE), "utf8")
)

/** A copy of a CA directory, so a test can change a file's mode without touching the shared one. */
const copyCa = (from: string, name: string): string => {
  const to = join(dataDir, name)
  mkdirSync(to, { mode: 0o700 })
  for (const file of [Pki.CA_KEY_FILE, Pki.CA_CERT_FILE]) copyFileSync(join(from, file), join(to, file))
  chmodSync(join(to, Pki.CA_KEY_FILE), 0o600)
  return to
}

describe("local CA with ca_dir", () => {
  it.effect("refuses to start without the CA files, naming the fix, and creates none", () =>
    Effect.gen(function*() {
      const missing = join(dataDir, "no-such-ca")
      const error = yield* Effect.flip(LocalCaIssuer.make(join(dataDir, "data-2"), { caDir: missing, internalZone: ZONE }).pipe(Effect.provide(layerPlatform)))
      expect(error).toBeInstanceOf(CertError)
      expect(error.reason).toContain("mcp ca init-routes")
      expect(existsSync(missing)).toBe(false)
    }))

  it.effect("issues from the given CA and never creates one in the data dir", () =>
    Effect.gen(function*() {
      const issuer = yield* LocalCaIssuer.make(externalData, routesOptions).pipe(Effect.provide(layerPlatform))
      const cert = yield* issuer.issue("edge.example.test")
      expect(cert.certPath.startsWith(join(externalData, "certs"))).toBe(true)
      expect(existsSync(join(externalData, "ca"))).toBe(false)
      yield* issuer.revoke(cert)
    }))

  it.effect("refuses the platform CA ([tls] ca) as ca_dir at start, with the fix; also inside a bundle", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(LocalCaIssuer.make(join(dataDir, "data-3"), { caDir: platformCa, internalZone: ZONE, platformCaFile }).pipe(Effect.provide(layerPlatform)))
      expect(error.reason).toContain(`[certs] ca_dir ${platformCa} holds the platform CA ([tls] ca ${platformCaFile})`)
      expect(error.reason).toContain(`mcp ca init-routes <dir> --internal-zone ${ZONE}`)
      const bundle = join(dataDir, "bundle.pem")
      writeFileSync(bundle, readFileSync(join(routesCa, Pki.CA_CERT_FILE), "utf8") + readFileSync(platformCaFile, "utf8"))
      const inBundle = yield* Effect.flip(LocalCaIssuer.make(join(dataDir, "data-3"), { caDir: platformCa, internalZone: ZONE, platformCaFile: bundle }).pipe(Effect.provide(layerPlatform)))
      expect(inBundle.reason).toContain("holds the platform CA")
    }))

  it.effect("the agent's cert layer, built from its config, refuses the platform CA as ca_dir", () =>
    Effect.gen(function*() {
      const config = Either.getOrThrow(AgentConfig.decode(
        `node = "rift"\nlisten = "127.0.0.1:9444"\nnode_address = "10.0.0.5"\ndata_dir = "${join(dataDir, "data-4")}"\n` +
          `[tls]\ncert = "a"\nkey = "b"\nca = "${platformCaFile}"\n[auth]\ntoken_file = "t"\n[certs]\nkind = "local-ca"\nca_dir = "${platformCa}"\n`
      ))
      const error = yield* Effect.flip(Layer.build(Agent.layerCerts(config)).pipe(Effect.scoped, Effect.provide(layerPlatform)))
      expect(error.reason).toContain("holds the platform CA")
      // The same config with a routes CA starts, and its allowed domains can be replaced at run time.
      const routes = { ...config, certs: { kind: "local-ca" as const, ca_dir: routesCa } }
      const { domains, issuer } = yield* Effect.all({ domains: RouteDomains.RouteDomains, issuer: CertIssuer }).pipe(
        Effect.provide(Agent.layerCerts(routes)),
        Effect.provide(layerPlatform)
      )
      const before = yield* Effect.flip(issuer.issue("app.example.test"))
      expect(before.reason).toContain("none allowed")
      yield* domains.set(["Example.TEST."])
      const cert = yield* issuer.issue("app.example.test")
      yield* issuer.revoke(cert)
    }))

  it.effect("refuses a too-open or foreign-owned ca.key at start with the chmod fix", () =>
    Effect.gen(function*() {
      const open = copyCa(routesCa, "open-ca")
      chmodSync(join(open, Pki.CA_KEY_FILE), 0o644)
      const error = yield* Effect.flip(LocalCaIssuer.make(join(dataDir, "data-5"), { caDir: open, internalZone: ZONE }).pipe(Effect.provide(layerPlatform)))
      expect(error.reason).toContain(`routes CA private key ([certs] ca_dir) ${join(open, Pki.CA_KEY_FILE)} has mode 0644`)
      expect(error.reason).toContain(`chmod 600 ${join(open, Pki.CA_KEY_FILE)}`)
      chmodSync(join(open, Pki.CA_KEY_FILE), 0o600)
      yield* LocalCaIssuer.make(join(dataDir, "data-5"), { caDir: open, internalZone: ZONE }).pipe(Effect.provide(layerPlatform))
    }))
})

describe("local CA names", () => {
  it.effect("refuses a hostname outside the internal zone and the allowed domains, naming both, and writes nothing", () =>
    Effect.gen(function*() {
      const data = join(dataDir, "data-6")
      const issuer = yield* LocalCaIssuer.make(data, { internalZone: ZONE, allowedDomains: Effect.succeed(["example.com"]) }).pipe(Effect.provide(layerPlatform))
      for (const hostname of ["master.corp.test", "notexample.com", "svc.mcp.internal.evil.test"]) {
        const error = yield* Effect.flip(issuer.issue(hostname))
        expect(error).toBeInstanceOf(CertError)
        expect(error.hostname).toBe(hostname)
        expect(error.reason).toBe(
          `"${hostname}" is neither under the internal zone "${ZONE}" nor under an allowed domain ("example.com"); ` +
            `use a name under one of them, or add its domain to [certs] allowed_domains in mcp-agent.toml`
        )
      }
      expect(existsSync(join(data, "certs"))).toBe(false)
      for (const hostname of [`web.${ZONE}`, "example.com", "www.example.com"]) yield* issuer.revoke(yield* issuer.issue(hostname))
    }))

  it.effect("reads the allowed domains at every issue, so a replaced list applies to the next certificate", () =>
    Effect.gen(function*() {
      const domains = yield* RouteDomains.make([])
      const issuer = yield* LocalCaIssuer.make(join(dataDir, "data-7"), { internalZone: ZONE, allowedDomains: domains.get }).pipe(Effect.provide(layerPlatform))
      expect((yield* Effect.flip(issuer.issue("app.example.org"))).reason).toContain("(none allowed)")
      yield* domains.set(["example.org"])
      yield* issuer.revoke(yield* issuer.issue("app.example.org"))
      yield* domains.set([])
      expect((yield* Effect.flip(issuer.issue("app.example.org"))).hostname).toBe("app.example.org")
    }))

  it.effect("a routes CA refuses an allowed name its constraints do not cover, saying how to widen it", () =>
    Effect.gen(function*() {
      const issuer = yield* LocalCaIssuer.make(join(dataDir, "data-8"), { ...routesOptions, allowedDomains: Effect.succeed(["example.org"]) }).pipe(Effect.provide(layerPlatform))
      const error = yield* Effect.flip(issuer.issue("app.example.org"))
      expect(error.reason).toContain(`"app.example.org" is outside this CA's name constraints`)
      expect(error.reason).toContain("mcp ca init-routes --domain")
    }))
})

describe("ACME account key", () => {
  it.effect("a too-open account key fails the issuer's start with the chmod fix; a missing one passes", () =>
    Effect.gen(function*() {
      const data = join(dataDir, "acme-data")
      yield* AcmeIssuer.checkAccountKey(data).pipe(Effect.provide(layerPlatform))
      const keyPath = AcmeIssuer.accountKeyPath(data)
      mkdirSync(join(keyPath, ".."), { recursive: true, mode: 0o700 })
      writeFileSync(keyPath, "not read", { mode: 0o640 })
      chmodSync(keyPath, 0o640)
      const options = { directoryUrl: "https://127.0.0.1:1/dir", dataDir: data, challenge: { kind: "http-01" as const, serve: { port: 1 } } }
      const error = yield* Effect.flip(Layer.build(AcmeIssuer.layer(options)).pipe(Effect.scoped, Effect.provide(layerPlatform)))
      expect(error).toBeInstanceOf(CertError)
      expect(error.reason).toBe(`ACME account key ${keyPath} has mode 0640, which lets group or others read it; run: chmod 600 ${keyPath}`)
    }))

  it.effect("a key opened up after the start is not used: the issue fails with the fix before any request", () =>
    Effect.gen(function*() {
      const data = join(dataDir, "acme-data-2")
      const options = { directoryUrl: "https://127.0.0.1:1/dir", dataDir: data, challenge: { kind: "http-01" as const, serve: { port: 1 } } }
      const issuer = yield* AcmeIssuer.make(options).pipe(Effect.provide(layerPlatform))
      const keyPath = AcmeIssuer.accountKeyPath(data)
      mkdirSync(join(keyPath, ".."), { recursive: true, mode: 0o700 })
      writeFileSync(keyPath, "not read", { mode: 0o600 })
      chmodSync(keyPath, 0o604)
      const error = yield* Effect.flip(issuer.issue("app.example.test"))
      expect(error.reason).toContain(`run: chmod 600 ${keyPath}`)
    }))
})

describe("memory CertIssuer", () => {
  it.effect("issues distinct serials and forgets revoked certificates; revoke is idempotent", () =>
    Effect.gen(function*() {
      const issuer = yield* makeMemory()
      const a = yield* issuer.issue("a.example.test")
      const b = yield* issuer.issue("a.example.test")
      expect(a.serial).not.toBe(b.serial)
      expect((yield* issuer.live).map((c) => c.serial)).toEqual([a.serial, b.serial])
      yield* issuer.revoke(a)
      yield* issuer.revoke(a)
      expect((yield* issuer.live).map((c) => c.serial)).toEqual([b.serial])
    }))

  it.effect("an injected fault fails issue with a CertError", () =>
    Effect.gen(function*() {
      const faults = yield* makeFaults
      const issuer = yield* makeMemory({ faults })
      yield* faults.arm("cert.issue")
      const result = yield* Effect.either(issuer.issue("a.example.test"))
      expect(Either.isLeft(result) && result.left instanceof CertError).toBe(true)
    }))
})
