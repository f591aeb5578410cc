import { NodeFileSystem } from "@effect/platform-node"
import { describe, expect, it } from "@effect/vitest"
import * as x509 from "@peculiar/x509"
import { Effect, TestClock } from "effect"
import { execFileSync } from "node:child_process"
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, KeyObject, randomBytes, X509Certificate } from "node:crypto"
import { chmodSync, copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import * as Pki from "../src/Pki.js"

const tempDir = Effect.acquireRelease(
  Effect.sync(() => mkdtempSync(join(tmpdir(), "mcp-pki-"))),
  (dir) => Effect.sync(() => rmSync(dir, { recursive: true, force: true }))
)

const read = (file: string) => readFileSync(file, "utf8")
const modeOf = (file: string) => statSync(file).mode & 0o777

/** A TLS server that requires a client certificate from `ca` and greets the client by its CN. */
const mtlsServer = (options: { key: string; cert: string; ca: string }) =>
  Effect.acquireRelease(
    Effect.async<tls.Server>((resume) => {
      const server = tls.createServer({ ...options, requestCert: true, rejectUnauthorized: true }, (socket) => {
        const peer = socket.getPeerCertificate()
        socket.end(`hello ${peer.subject.CN}`)
      })
      // Handshake failures are expected in some tests; they surface on the client side.
      server.on("tlsClientError", () => {})
      server.listen(0, "127.0.0.1", () => resume(Effect.succeed(server)))
    }),
    (server) => Effect.async<void>((resume) => { server.close(() => resume(Effect.void)) })
  ).pipe(Effect.map((server) => (server.address() as AddressInfo).port))

/** Connect, read until the server closes, and return what it sent; fails with the socket's error. */
const request = (options: tls.ConnectionOptions) =>
  Effect.async<string, NodeJS.ErrnoException>((resume) => {
    let data = ""
    const socket = tls.connect({ host: "127.0.0.1", ...options })
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => { data += chunk })
    socket.on("error", (error) => resume(Effect.fail(error)))
    socket.on("end", () => resume(Effect.succeed(data)))
    return Effect.sync(() => socket.destroy())
  })

/**
 * With TLS 1.3 the client finishes its handshake before the server checks the client certificate,
 * so a refusal shows up either as an alert/reset or as a close with no data, whichever comes first.
 */
const outcome = (options: tls.ConnectionOptions) =>
  request(options).pipe(
    Effect.match({
      onFailure: (error) => `refused: ${error.message}`,
      onSuccess: (data) => (data === "" ? "refused: closed without data" : data)
    })
  )

/** A CA in a fresh temp dir, a server cert for 127.0.0.1 and a client cert, all issued into it. */
const fixture = Effect.gen(function* () {
  const dir = yield* tempDir
  yield* Pki.initCa(dir, { commonName: "test CA" })
  const server = yield* Pki.issueCertificate(dir, "server", { ips: ["127.0.0.1"], dns: [], usage: "server" })
  const client = yield* Pki.issueCertificate(dir, "client1", { ips: [], dns: [], usage: "client" })
  const ca = yield* Pki.readCa(dir)
  const port = yield* mtlsServer({ key: read(server.keyPath), cert: read(server.certPath), ca })
  return { dir, ca, port, server, client }
})

describe("Pki over real TLS", () => {
  it.scopedLive("a client pinned to the CA, with a client certificate, gets data", () =>
    Effect.gen(function* () {
      const { ca, client, port } = yield* fixture
      const reply = yield* request({ port, ca, key: read(client.keyPath), cert: read(client.certPath) })
      expect(reply).toBe("hello client1")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a client pinned to a different CA rejects the server", () =>
    Effect.gen(function* () {
      const { client, port } = yield* fixture
      const otherDir = yield* tempDir
      yield* Pki.initCa(otherDir)
      const error = yield* Effect.flip(
        request({ port, ca: yield* Pki.readCa(otherDir), key: read(client.keyPath), cert: read(client.certPath) })
      )
      expect(error.code).toBe("SELF_SIGNED_CERT_IN_CHAIN")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("the server refuses a client without a certificate", () =>
    Effect.gen(function* () {
      const { ca, port } = yield* fixture
      expect(yield* outcome({ port, ca })).toMatch(/^refused: /)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("the server refuses a client certificate from another CA", () =>
    Effect.gen(function* () {
      const { ca, port } = yield* fixture
      const otherDir = yield* tempDir
      yield* Pki.initCa(otherDir)
      const rogue = yield* Pki.issueCertificate(otherDir, "rogue", { ips: [], dns: [], usage: "client" })
      expect(yield* outcome({ port, ca, key: read(rogue.keyPath), cert: read(rogue.certPath) })).toMatch(/^refused: /)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("the server certificate only matches its SANs", () =>
    Effect.gen(function* () {
      const { ca, client, port } = yield* fixture
      const error = yield* Effect.flip(
        request({ port, ca, servername: "other.example", key: read(client.keyPath), cert: read(client.certPath) })
      )
      expect(error.code).toBe("ERR_TLS_CERT_ALTNAME_INVALID")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("Pki files", () => {
  it.scopedLive("keys are 0600, the CA dir is 0700, and <name>.crt is the leaf followed by the CA", () =>
    Effect.gen(function* () {
      const dir = join(yield* tempDir, "ca")
      const ca = yield* Pki.initCa(dir)
      const out = join(dir, "..", "out")
      const leaf = yield* Pki.issueCertificate(dir, "node-1", {
        ips: ["10.0.0.5", "::1"],
        dns: ["node-1.mcp.internal"],
        usage: "both",
        outDir: out
      })
      expect(modeOf(dir)).toBe(0o700)
      expect(modeOf(ca.keyPath)).toBe(0o600)
      expect(modeOf(leaf.keyPath)).toBe(0o600)
      expect(leaf.keyPath).toBe(join(out, "node-1.key"))
      expect(read(ca.keyPath)).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)

      const chain = read(leaf.certPath)
      expect(chain.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(2)
      const caCert = new X509Certificate(read(ca.certPath))
      const leafCert = new X509Certificate(chain)
      expect(chain.endsWith(read(ca.certPath))).toBe(true)
      expect(caCert.ca).toBe(true)
      expect(leafCert.ca).toBe(false)
      expect(leafCert.checkIssued(caCert)).toBe(true)
      expect(leafCert.verify(caCert.publicKey)).toBe(true)
      expect(leafCert.subject).toBe("CN=node-1")
      expect(leafCert.subjectAltName).toBe("IP Address:10.0.0.5, IP Address:0:0:0:0:0:0:0:1, DNS:node-1.mcp.internal")
      expect(leafCert.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
      expect(leafCert.serialNumber).toBe(leaf.serial)
      expect(new Date(leafCert.validTo)).toEqual(leaf.notAfter)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("re-issuing replaces the key and keeps it 0600", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      yield* Pki.initCa(dir)
      const first = yield* Pki.issueCertificate(dir, "web", { ips: ["127.0.0.1"], dns: [], usage: "server" })
      const firstKey = read(first.keyPath)
      const second = yield* Pki.issueCertificate(dir, "web", { ips: ["127.0.0.1"], dns: [], usage: "server" })
      expect(read(second.keyPath)).not.toBe(firstKey)
      expect(second.serial).not.toBe(first.serial)
      expect(modeOf(second.keyPath)).toBe(0o600)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scoped("leaves default to 825 days and never outlive the CA", () =>
    Effect.gen(function* () {
      const now = Date.UTC(2030, 0, 1)
      yield* TestClock.setTime(now)
      const dir = yield* tempDir
      const ca = yield* Pki.initCa(dir, { days: 1000 })
      expect(ca.notAfter.getTime()).toBe(now + 1000 * 86_400_000)
      const leaf = yield* Pki.issueCertificate(dir, "a", { ips: ["127.0.0.1"], dns: [], usage: "server" })
      expect(leaf.notAfter.getTime()).toBe(now + 825 * 86_400_000)
      const long = yield* Pki.issueCertificate(dir, "b", { ips: ["127.0.0.1"], dns: [], usage: "server", days: 2000 })
      expect(long.notAfter).toEqual(ca.notAfter)
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("Pki errors", () => {
  it.scopedLive("initCa twice fails with CaExists and leaves the CA alone", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const ca = yield* Pki.initCa(dir)
      const key = read(ca.keyPath)
      const error = yield* Effect.flip(Pki.initCa(dir))
      expect(error).toBeInstanceOf(Pki.PkiError)
      expect(error._tag).toBe("PkiError")
      expect(error.reason).toBe("CaExists")
      expect(error.path).toBe(ca.keyPath)
      expect(error.message).toContain("Remove it or choose another directory")
      expect(read(ca.keyPath)).toBe(key)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("initCa refuses a directory that already holds a ca.crt", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      writeFileSync(join(dir, "ca.crt"), "pinned copy of some other CA\n")
      const error = yield* Effect.flip(Pki.initCa(dir))
      expect(error.reason).toBe("CaExists")
      expect(existsSync(join(dir, "ca.key"))).toBe(false)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a server certificate without any SAN is refused and nothing is written", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      yield* Pki.initCa(dir)
      for (const usage of ["server", "both"] as const) {
        const error = yield* Effect.flip(Pki.issueCertificate(dir, "web", { ips: [], dns: [], usage }))
        expect(error.reason).toBe("InvalidRequest")
        expect(error.message).toContain("pass --ip and/or --dns")
      }
      expect(existsSync(join(dir, "web.key"))).toBe(false)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("bad IPs, DNS names and certificate names are refused", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      yield* Pki.initCa(dir)
      const issue = (name: string, ips: Array<string>, dns: Array<string>) =>
        Effect.flip(Pki.issueCertificate(dir, name, { ips, dns, usage: "server" }))
      expect((yield* issue("web", ["10.0.0.256"], [])).message).toContain(`"10.0.0.256" is not an IPv4 or IPv6 address`)
      expect((yield* issue("web", [], ["bad name"])).message).toContain(`"bad name" is not a DNS name`)
      expect((yield* issue("../web", ["127.0.0.1"], [])).reason).toBe("InvalidRequest")
      expect((yield* issue("ca", ["127.0.0.1"], [])).reason).toBe("InvalidRequest")
      expect(read(join(dir, "ca.crt"))).toContain("BEGIN CERTIFICATE")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a missing CA is CaMissing, and a mismatched key is CaInvalid without key material", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const missing = yield* Effect.flip(Pki.readCa(dir))
      expect(missing.reason).toBe("CaMissing")
      expect(missing.path).toBe(join(dir, "ca.crt"))
      expect(missing.message).toContain("mcp ca init")
      const notIssued = yield* Effect.flip(Pki.issueCertificate(dir, "web", { ips: ["127.0.0.1"], dns: [], usage: "server" }))
      expect(notIssued.reason).toBe("CaMissing")

      yield* Pki.initCa(dir)
      const other = yield* tempDir
      yield* Pki.initCa(other)
      const foreignKey = read(join(other, "ca.key"))
      copyFileSync(join(other, "ca.key"), join(dir, "ca.key"))
      const mismatch = yield* Effect.flip(Pki.issueCertificate(dir, "web", { ips: ["127.0.0.1"], dns: [], usage: "server" }))
      expect(mismatch.reason).toBe("CaInvalid")
      expect(mismatch.message).toContain("does not belong to")

      writeFileSync(join(dir, "ca.key"), `-----BEGIN PRIVATE KEY-----\n${"A".repeat(64)}\n-----END PRIVATE KEY-----\n`)
      const corrupt = yield* Effect.flip(Pki.issueCertificate(dir, "web", { ips: ["127.0.0.1"], dns: [], usage: "server" }))
      expect(corrupt.reason).toBe("CaInvalid")
      for (const error of [mismatch, corrupt]) {
        const shown = `${error.message} ${JSON.stringify(error)} ${String(error.cause)}`
        expect(shown).not.toContain("PRIVATE KEY")
        expect(shown).not.toContain(foreignKey.split("\n")[1])
      }
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

/**
 * A leaf for `dns` signed with the CA key in `dir` directly, bypassing issueCertificate's own
 * constraint check: what a leaked routes CA key could make. Returns the leaf and its key as PEM.
 */
const forgeLeaf = (dir: string, dns: string) =>
  Effect.promise(async () => {
    const ec = { name: "ECDSA", namedCurve: "P-256" } as const
    const ca = new x509.X509Certificate(read(join(dir, "ca.crt")))
    const caKey = await crypto.subtle.importKey("pkcs8", createPrivateKey(read(join(dir, "ca.key"))).export({ type: "pkcs8", format: "der" }), ec, false, ["sign"])
    const keys = await crypto.subtle.generateKey(ec, true, ["sign", "verify"])
    const leaf = await x509.X509CertificateGenerator.create({
      serialNumber: randomBytes(8).toString("hex"),
      subject: [{ CN: [dns] }],
      issuer: ca.subjectName,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 86_400_000),
      publicKey: keys.publicKey,
      signingKey: caKey,
      signingAlgorithm: { name: "ECDSA", hash: "SHA-256" },
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: "dns", value: dns }])
      ]
    })
    const key = KeyObject.from(keys.privateKey).export({ type: "pkcs8", format: "pem" }).toString()
    return { cert: leaf.toString("pem"), key }
  })

/** What `openssl verify` says about `leafPem` against the CA in `dir`: "OK" or its error line. */
const opensslVerify = (dir: string, leafPem: string): string => {
  const leafFile = join(dir, `leaf-${randomBytes(4).toString("hex")}.pem`)
  writeFileSync(leafFile, leafPem)
  try {
    execFileSync("openssl", ["verify", "-CAfile", join(dir, "ca.crt"), leafFile], { stdio: "pipe" })
    return "OK"
  } catch (e) {
    return String((e as { stderr?: Buffer }).stderr ?? e)
  }
}

// openssl is a test peer (scripts/setup-peers.sh): missing, these tests fail saying so, never skip.
const requireOpenssl = (): void => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" })
  } catch {
    throw new Error("openssl is not installed (needed to check the CA with OpenSSL itself). Fix: run: sudo bash scripts/setup-peers.sh, or apt-get install openssl")
  }
}

describe("routes CA (name-constrained)", () => {
  const routesCa = Effect.gen(function* () {
    const dir = yield* tempDir
    const written = yield* Pki.initCa(dir, { commonName: Pki.DEFAULT_ROUTES_CA_COMMON_NAME, permittedDns: ["svc.mcp.internal", "Example.COM"] })
    return { dir, written }
  })

  it.scopedLive("the CA certificate carries critical name constraints: the zone and domains permitted, every IP excluded", () =>
    Effect.gen(function* () {
      const { dir } = yield* routesCa
      expect(Pki.nameConstraintsOf(read(join(dir, "ca.crt")))).toEqual({
        critical: true,
        permittedDns: ["svc.mcp.internal", "example.com"],
        excludedIps: ["0.0.0.0/0", "0:0:0:0:0:0:0:0/0"]
      })
      expect(yield* Pki.readCaConstraints(dir)).toEqual(Pki.nameConstraintsOf(read(join(dir, "ca.crt"))))
      // The platform CA stays unconstrained: it signs the daemons' own names and addresses.
      const platform = yield* tempDir
      yield* Pki.initCa(platform)
      expect(yield* Pki.readCaConstraints(platform)).toBeUndefined()
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("openssl reads the extension as we wrote it", () =>
    Effect.gen(function* () {
      requireOpenssl()
      const { dir } = yield* routesCa
      const text = execFileSync("openssl", ["x509", "-noout", "-text", "-in", join(dir, "ca.crt")], { encoding: "utf8" })
      expect(text).toMatch(/X509v3 Name Constraints: critical\s+Permitted:\s+DNS:svc\.mcp\.internal\s+DNS:example\.com\s+Excluded:\s+IP:0\.0\.0\.0\/0\.0\.0\.0\s+IP:0:0:0:0:0:0:0:0\/0:0:0:0:0:0:0:0/)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("issueCertificate refuses names outside the constraints and IP SANs, saying how to widen the CA", () =>
    Effect.gen(function* () {
      const { dir } = yield* routesCa
      const outside = yield* Effect.flip(Pki.issueCertificate(dir, "master", { ips: [], dns: ["master.corp.test"], usage: "server" }))
      expect(outside.reason).toBe("InvalidRequest")
      expect(outside.message).toContain(`"master.corp.test" is outside this CA's name constraints ("svc.mcp.internal", "example.com")`)
      expect(outside.message).toContain("mcp ca init-routes --domain")
      // "notexample.com" ends with "example.com" but is not below it.
      expect((yield* Effect.flip(Pki.issueCertificate(dir, "x", { ips: [], dns: ["notexample.com"], usage: "server" }))).reason).toBe("InvalidRequest")
      const ip = yield* Effect.flip(Pki.issueCertificate(dir, "ip", { ips: ["127.0.0.1"], dns: ["a.example.com"], usage: "server" }))
      expect(ip.message).toContain("signs no IP address; drop --ip")
      expect(existsSync(join(dir, "master.key"))).toBe(false)
      const inside = yield* Pki.issueCertificate(dir, "web", { ips: [], dns: ["web.svc.mcp.internal", "*.apps.example.com"], usage: "server" })
      expect(new X509Certificate(read(inside.certPath)).checkHost("web.svc.mcp.internal")).toBe("web.svc.mcp.internal")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a bad or empty permitted list is refused before anything is written", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      expect((yield* Effect.flip(Pki.initCa(dir, { permittedDns: [] }))).message).toContain("--internal-zone")
      expect((yield* Effect.flip(Pki.initCa(dir, { permittedDns: ["*.example.com"] }))).message).toContain(`"*.example.com" is not a DNS suffix`)
      expect(existsSync(join(dir, "ca.key"))).toBe(false)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a TLS client and openssl refuse a leaf outside the constraints even when the CA key signed it", () =>
    Effect.gen(function* () {
      const { dir } = yield* routesCa
      const ca = read(join(dir, "ca.crt"))
      const forged = yield* forgeLeaf(dir, "master.corp.test")
      const fair = yield* forgeLeaf(dir, "web.example.com")
      // Node's TLS client verifies the chain with OpenSSL, name constraints included.
      const handshake = (leaf: { cert: string; key: string }, servername: string) =>
        Effect.gen(function* () {
          const server = yield* Effect.acquireRelease(
            Effect.async<tls.Server>((resume) => {
              const s = tls.createServer({ cert: leaf.cert, key: leaf.key }, (socket) => socket.end("hi"))
              s.on("tlsClientError", () => {})
              s.listen(0, "127.0.0.1", () => resume(Effect.succeed(s)))
            }),
            (s) => Effect.async<void>((resume) => { s.close(() => resume(Effect.void)) })
          )
          return yield* request({ port: (server.address() as AddressInfo).port, ca, servername }).pipe(
            Effect.match({ onFailure: (e) => `refused: ${e.code}: ${e.message}`, onSuccess: (data) => data })
          )
        })
      expect(yield* handshake(forged, "master.corp.test")).toMatch(/^refused: .*permitted subtree violation/)
      expect(yield* handshake(fair, "web.example.com")).toBe("hi")
      requireOpenssl()
      expect(opensslVerify(dir, forged.cert)).toMatch(/permitted subtree violation/)
      expect(opensslVerify(dir, fair.cert)).toBe("OK")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})

describe("certificate requests (a CA kept offline)", () => {
  /** A CSR for `cn` asking for `sans`, made with a fresh key of `curve`: what a node could send. */
  const craftRequest = (cn: string, sans: Array<x509.JsonGeneralName>, curve: "P-256" | "P-384" = "P-256") =>
    Effect.promise(async () => {
      const keys = await crypto.subtle.generateKey({ name: "ECDSA", namedCurve: curve }, true, ["sign", "verify"])
      const csr = await x509.Pkcs10CertificateRequestGenerator.create({
        name: [{ CN: [cn] }],
        keys,
        signingAlgorithm: { name: "ECDSA", hash: curve === "P-256" ? "SHA-256" : "SHA-384" },
        extensions: sans.length > 0 ? [new x509.SubjectAlternativeNameExtension(sans)] : []
      })
      return csr.toString("pem")
    })

  it.scopedLive("request makes a 0600 PKCS#8 key once and reuses it: the same public key each time", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const keyPath = join(dir, "node.key")
      const first = yield* Pki.requestCertificate(keyPath, "n2")
      expect(first.keyCreated).toBe(true)
      expect(modeOf(keyPath)).toBe(0o600)
      expect(read(keyPath)).toMatch(/^-----BEGIN PRIVATE KEY-----\n/)
      expect(first.csrPem).toMatch(/^-----BEGIN CERTIFICATE REQUEST-----\n[\s\S]*-----END CERTIFICATE REQUEST-----\n$/)
      const csr = new x509.Pkcs10CertificateRequest(first.csrPem)
      expect(csr.subject).toBe("CN=n2")
      expect(yield* Effect.promise(() => csr.verify())).toBe(true)

      const key = read(keyPath)
      const second = yield* Pki.requestCertificate(keyPath, "n2")
      expect(second.keyCreated).toBe(false)
      expect(read(keyPath)).toBe(key)
      expect(yield* Pki.requestPublicKeySha256(second.csrPem)).toBe(yield* Pki.requestPublicKeySha256(first.csrPem))
      // The hash is that of the key file's own public key.
      const spki = createPublicKey(createPrivateKey(key)).export({ type: "spki", format: "der" })
      expect(yield* Pki.requestPublicKeySha256(first.csrPem)).toBe(createHash("sha256").update(spki).digest("hex"))
      expect(readdirSync(dir)).toEqual(["node.key"])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("request refuses a key others can read, a key that is not PKCS#8 P-256, and a missing directory", () =>
    Effect.gen(function* () {
      const dir = yield* tempDir
      const keyPath = join(dir, "node.key")
      yield* Pki.requestCertificate(keyPath, "n2")
      chmodSync(keyPath, 0o644)
      const open = yield* Effect.flip(Pki.requestCertificate(keyPath, "n2"))
      expect(open.reason).toBe("KeyInvalid")
      expect(open.message).toContain(`chmod 600 ${keyPath}`)

      const p384 = join(dir, "p384.key")
      writeFileSync(p384, generateKeyPairSync("ec", { namedCurve: "P-384" }).privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 })
      const sec1 = join(dir, "sec1.key")
      writeFileSync(sec1, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "sec1", format: "pem" }), { mode: 0o600 })
      const garbage = join(dir, "garbage.key")
      writeFileSync(garbage, `-----BEGIN PRIVATE KEY-----\n${"A".repeat(64)}\n-----END PRIVATE KEY-----\n`, { mode: 0o600 })
      for (const file of [p384, sec1, garbage]) {
        const error = yield* Effect.flip(Pki.requestCertificate(file, "n2"))
        expect(error.reason).toBe("KeyInvalid")
        expect(error.message).toContain("is not a PKCS#8 EC P-256 private key PEM")
        expect(error.message).not.toContain("AAAA")
      }

      const nowhere = join(dir, "missing", "node.key")
      const missing = yield* Effect.flip(Pki.requestCertificate(nowhere, "n2"))
      expect(missing.reason).toBe("FileSystem")
      expect(missing.message).toContain("install -d -m 0700")
      expect(existsSync(join(dir, "missing"))).toBe(false)
      expect((yield* Effect.flip(Pki.requestCertificate(join(dir, "x.key"), "../n2"))).reason).toBe("InvalidRequest")
      expect(existsSync(join(dir, "x.key"))).toBe(false)
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("signRequest issues for the CSR's key, with the option names only, verifying against the CA, and writes nothing", () =>
    Effect.gen(function* () {
      const caDir = yield* tempDir
      yield* Pki.initCa(caDir, { commonName: "test CA" })
      const before = readdirSync(caDir).sort()
      const nodeDir = yield* tempDir
      const keyPath = join(nodeDir, "n2.key")
      const { csrPem } = yield* Pki.requestCertificate(keyPath, "n2")
      const signed = yield* Pki.signRequest(caDir, csrPem, { name: "n2", ips: ["127.0.0.1"], dns: ["n2"], usage: "both" })
      expect(readdirSync(caDir).sort()).toEqual(before)

      const caPem = read(join(caDir, "ca.crt"))
      expect(signed.certPem.match(/-----BEGIN CERTIFICATE-----/g)).toHaveLength(2)
      expect(signed.certPem.endsWith(caPem)).toBe(true)
      const leaf = new X509Certificate(signed.certPem)
      const caCert = new X509Certificate(caPem)
      expect(leaf.checkIssued(caCert)).toBe(true)
      expect(leaf.verify(caCert.publicKey)).toBe(true)
      expect(leaf.subject).toBe("CN=n2")
      expect(leaf.subjectAltName).toBe("IP Address:127.0.0.1, DNS:n2")
      expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1", "1.3.6.1.5.5.7.3.2"])
      expect(leaf.ca).toBe(false)
      expect(leaf.serialNumber).toBe(signed.serial)
      expect(leaf.checkPrivateKey(createPrivateKey(read(keyPath)))).toBe(true)

      const info = yield* Pki.inspectCertificate(signed.certPem, caPem)
      expect(info).toEqual({
        signedByCa: true,
        commonName: "n2",
        dnsNames: ["n2"],
        ips: ["127.0.0.1"],
        serial: signed.serial,
        notAfter: signed.notAfter,
        publicKeySha256: yield* Pki.requestPublicKeySha256(csrPem)
      })

      // The node's own key and the signed chain serve mTLS to a client of the same CA.
      const client = yield* Pki.issueCertificate(caDir, "client1", { ips: [], dns: [], usage: "client" })
      const port = yield* mtlsServer({ key: read(keyPath), cert: signed.certPem, ca: caPem })
      expect(yield* request({ port, ca: caPem, key: read(client.keyPath), cert: read(client.certPath) })).toBe("hello client1")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("the names a CSR asks for are ignored: the leaf carries only the signer's", () =>
    Effect.gen(function* () {
      const caDir = yield* tempDir
      yield* Pki.initCa(caDir)
      const csrPem = yield* craftRequest("ctl", [{ type: "dns", value: "ctl" }, { type: "ip", value: "10.0.0.1" }])
      const signed = yield* Pki.signRequest(caDir, csrPem, { name: "n2", ips: ["10.0.0.5"], dns: [], usage: "server" })
      const leaf = new X509Certificate(signed.certPem)
      expect(leaf.subject).toBe("CN=n2")
      expect(leaf.subjectAltName).toBe("IP Address:10.0.0.5")
      expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"])
      const info = yield* Pki.inspectCertificate(signed.certPem, read(join(caDir, "ca.crt")))
      expect(info.dnsNames).toEqual([])
      expect(info.ips).toEqual(["10.0.0.5"])
      // The options are checked as issueCertificate checks them.
      const noSan = yield* Effect.flip(Pki.signRequest(caDir, csrPem, { name: "n2", ips: [], dns: [], usage: "server" }))
      expect(noSan.message).toContain("pass --ip and/or --dns")
      expect((yield* Effect.flip(Pki.signRequest(caDir, csrPem, { name: "ca", ips: ["10.0.0.5"], dns: [], usage: "both" }))).reason).toBe("InvalidRequest")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("a tampered CSR, a non-CSR, garbage and a non-P-256 key are refused", () =>
    Effect.gen(function* () {
      const caDir = yield* tempDir
      yield* Pki.initCa(caDir)
      const options = { name: "n2", ips: ["10.0.0.5"], dns: ["n2"], usage: "both" as const, requestPath: "n2.csr" }
      const nodeDir = yield* tempDir
      const { csrPem } = yield* Pki.requestCertificate(join(nodeDir, "n2.key"), "n2")

      // Change the CN inside the signed part: still a well-formed CSR, but its signature is broken.
      const der = Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData)
      const at = der.indexOf(Buffer.from("n2"))
      expect(at).toBeGreaterThan(0)
      der[at + 1] = "3".charCodeAt(0)
      const tampered = new x509.Pkcs10CertificateRequest(der).toString("pem")
      expect(new x509.Pkcs10CertificateRequest(tampered).subject).toBe("CN=n3")
      const broken = yield* Effect.flip(Pki.signRequest(caDir, tampered, options))
      expect(broken.reason).toBe("InvalidRequest")
      expect(broken.message).toContain("the signature of n2.csr does not verify")

      const garbage = yield* Effect.flip(Pki.signRequest(caDir, "not a request", options))
      expect(garbage.message).toContain("n2.csr holds no PEM block")
      const cert = yield* Effect.flip(Pki.signRequest(caDir, read(join(caDir, "ca.crt")), options))
      expect(cert.message).toContain("n2.csr is a PEM CERTIFICATE, not a CERTIFICATE REQUEST")
      const truncated = csrPem.replace(/\n[A-Za-z0-9+/=]+\n-----END/, "\n-----END")
      expect((yield* Effect.flip(Pki.signRequest(caDir, truncated, options))).reason).toBe("InvalidRequest")
      const p384 = yield* Effect.flip(Pki.signRequest(caDir, yield* craftRequest("n2", [], "P-384"), options))
      expect(p384.message).toContain("not EC P-256")
      expect((yield* Effect.flip(Pki.requestPublicKeySha256("not a request"))).reason).toBe("InvalidRequest")
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.scopedLive("inspectCertificate says when another CA signed the certificate, and refuses what is not one", () =>
    Effect.gen(function* () {
      const caDir = yield* tempDir
      yield* Pki.initCa(caDir, { commonName: "same name" })
      const otherDir = yield* tempDir
      yield* Pki.initCa(otherDir, { commonName: "same name" })
      const rogue = yield* Pki.issueCertificate(otherDir, "n2", { ips: ["10.0.0.5"], dns: ["n2"], usage: "both" })
      const info = yield* Pki.inspectCertificate(read(rogue.certPath), read(join(caDir, "ca.crt")))
      expect(info.signedByCa).toBe(false)
      expect(info.commonName).toBe("n2")
      expect(info.dnsNames).toEqual(["n2"])
      expect(info.ips).toEqual(["10.0.0.5"])
      const spki = createPublicKey(createPrivateKey(read(rogue.keyPath))).export({ type: "spki", format: "der" })
      expect(info.publicKeySha256).toBe(createHash("sha256").update(spki).digest("hex"))
      expect((yield* Pki.inspectCertificate(read(rogue.certPath), read(join(otherDir, "ca.crt")))).signedByCa).toBe(true)

      const bad = yield* Effect.flip(Pki.inspectCertificate("junk", read(join(caDir, "ca.crt"))))
      expect(bad.reason).toBe("CertificateInvalid")
      expect((yield* Effect.flip(Pki.inspectCertificate(read(rogue.certPath), "junk"))).reason).toBe("CaInvalid")
    }).pipe(Effect.provide(NodeFileSystem.layer)))
})
