/**
 * The platform CA behind the RPC transport's pinned-CA HTTPS and optional mTLS: creates the CA
 * (ca.key + ca.crt in one 0700 directory), issues ECDSA P-256 leaf certificates, and reads the CA for pinning.
 *
 * A CA kept offline signs without any key travelling: the node makes its own key and a CSR
 * (requestCertificate), the operator signs the CSR (signRequest), and inspectCertificate tells
 * whether a certificate still matches its key, the CA and the wanted names.
 */
import { type Error as PlatformError, FileSystem } from "@effect/platform"
import * as x509 from "@peculiar/x509"
import { Clock, Data, Effect } from "effect"
import { bestEffort } from "./Failures.js"
import * as DiskSpace from "./DiskSpace.js"
import { createHash, createPrivateKey, createPublicKey, KeyObject, randomBytes, type webcrypto } from "node:crypto"
import { isIP } from "node:net"
import * as path from "node:path"

// @peculiar/x509 picks a global crypto on its own in Node 20, but say which one explicitly.
x509.cryptoProvider.set(globalThis.crypto)

export type PkiErrorReason =
  | "CaExists" // initCa would overwrite an existing CA
  | "CaMissing" // ca.crt or ca.key is not there
  | "CaInvalid" // the CA files cannot be parsed, or key and certificate do not belong together
  | "InvalidRequest" // bad name, SAN, IP or validity period; a CSR that does not parse or verify
  | "KeyInvalid" // a node's existing key file is not a PKCS#8 EC P-256 key, or others can read it
  | "CertificateInvalid" // a certificate given to inspectCertificate does not parse
  | "FileSystem" // reading or writing a file failed
  | "Crypto" // key generation or signing failed unexpectedly

/** `message` says what to do about it; key material never goes into an error. */
export class PkiError extends Data.TaggedError("PkiError")<{
  readonly reason: PkiErrorReason
  readonly path: string
  readonly message: string
  readonly cause?: unknown
}> {}

export interface InitCaOptions {
  readonly commonName?: string
  /** Validity in days; default 3650. */
  readonly days?: number
  /**
   * DNS suffixes the CA may sign for (a routes CA: the internal zone and the allowed public
   * domains). The certificate then carries a critical NameConstraints extension permitting only
   * these subtrees and excluding every IP address, so a leaf for any other name (the master's,
   * an agent's address) fails verification wherever this CA is trusted, even if its key leaks.
   * Left out: no constraints, as the platform CA needs to sign the daemons' own names.
   */
  readonly permittedDns?: ReadonlyArray<string>
}

/** A CA certificate's NameConstraints, as far as MCP writes them. */
export interface CaNameConstraints {
  readonly critical: boolean
  /** The permitted dNSName subtrees, e.g. `svc.mcp.internal`, `example.com`. */
  readonly permittedDns: ReadonlyArray<string>
  /** The excluded iPAddress subtrees as `address/prefix`, e.g. `0.0.0.0/0`. */
  readonly excludedIps: ReadonlyArray<string>
}

export type CertificateUsage = "server" | "client" | "both"

/** What a leaf says besides its name; the same for a certificate issued with its key and one signed from a CSR. */
export interface LeafOptions {
  readonly ips: ReadonlyArray<string>
  readonly dns: ReadonlyArray<string>
  readonly usage: CertificateUsage
  /** Validity in days; default 825, and never past the CA's own expiry. */
  readonly days?: number
}

export interface IssueOptions extends LeafOptions {
  /** Where `<name>.key` and `<name>.crt` go; default the CA directory. */
  readonly outDir?: string
}

export interface SignOptions extends LeafOptions {
  /** The CN. It and the SANs come from here only, never from the CSR: a node does not choose its own names. */
  readonly name: string
  /** Where the CSR was read from, for messages; default "the certificate request". */
  readonly requestPath?: string
}

/** A node's certificate request (PKCS#10 PEM), and whether its key was made just now. */
export interface CertificateRequest {
  readonly csrPem: string
  readonly keyCreated: boolean
}

/** A certificate signed from a CSR: `certPem` is the leaf followed by the CA certificate, as `<name>.crt`. */
export interface SignedCertificate {
  readonly certPem: string
  readonly serial: string
  readonly notAfter: Date
}

/** What a leaf certificate says, for deciding whether it still fits its key, the CA and the wanted names. */
export interface CertificateInfo {
  /** The leaf's signature verifies with the CA's key and its issuer is the CA's subject (validity dates not checked). */
  readonly signedByCa: boolean
  readonly commonName: string
  readonly dnsNames: ReadonlyArray<string>
  /** IP SANs as text, IPv6 compressed (`::1`). */
  readonly ips: ReadonlyArray<string>
  readonly serial: string
  readonly notAfter: Date
  /** Lower-case hex SHA-256 of the leaf's SubjectPublicKeyInfo DER; compare with requestPublicKeySha256. */
  readonly publicKeySha256: string
}

/** What was written. `serial` is upper-case hex, as openssl prints it. */
export interface WrittenCertificate {
  readonly certPath: string
  readonly keyPath: string
  readonly serial: string
  readonly notAfter: Date
}

export const CA_KEY_FILE = "ca.key"
export const CA_CERT_FILE = "ca.crt"
export const DEFAULT_CA_COMMON_NAME = "MCP platform CA"
export const DEFAULT_ROUTES_CA_COMMON_NAME = "MCP routes CA"
/** The X.509 NameConstraints extension (RFC 5280 4.2.1.10). */
export const NAME_CONSTRAINTS_OID = "2.5.29.30"
export const DEFAULT_CA_DAYS = 3650
export const DEFAULT_LEAF_DAYS = 825

const DAY_MS = 24 * 60 * 60 * 1000
// Backdate notBefore so a peer whose clock runs a little behind still accepts a fresh certificate.
const CLOCK_SKEW_MS = 5 * 60 * 1000
const EC_KEY = { name: "ECDSA", namedCurve: "P-256" } as const
const SIGNING = { name: "ECDSA", hash: "SHA-256" } as const
// A leaf name becomes a file name and the CN; "ca" is reserved so a leaf can never replace ca.key/ca.crt.
const LEAF_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/
const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/

/**
 * Create a new CA in `dir`: `ca.key` (PKCS#8 PEM, mode 0600) and a self-signed `ca.crt`.
 * Refuses if either file already exists: a CA is never overwritten.
 */
export const initCa = (
  dir: string,
  options: InitCaOptions = {}
): Effect.Effect<WrittenCertificate, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const keyPath = path.resolve(dir, CA_KEY_FILE)
    const certPath = path.resolve(dir, CA_CERT_FILE)
    const days = yield* validDays(options.days ?? DEFAULT_CA_DAYS, certPath)
    const commonName = options.commonName ?? DEFAULT_CA_COMMON_NAME
    if (commonName.trim() === "") {
      return yield* invalidRequest(certPath, "the CA common name is empty; pass a non-empty name or leave it out")
    }
    const permitted = options.permittedDns === undefined ? undefined : yield* validPermittedDns(options.permittedDns, certPath)
    // ca.crt alone counts too: it may be the pinned copy of another CA on this host.
    for (const existing of [keyPath, certPath]) {
      if (yield* exists(existing)) return yield* Effect.fail(caExists(existing))
    }

    const now = yield* Clock.currentTimeMillis
    const keys = yield* cryptoOp(certPath, "generate the CA key", () =>
      crypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]))
    const cert = yield* cryptoOp(certPath, "create the CA certificate", async () =>
      x509.X509CertificateGenerator.createSelfSigned({
        serialNumber: randomSerial(),
        name: [{ CN: [commonName] }],
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(now + days * DAY_MS),
        keys,
        signingAlgorithm: SIGNING,
        extensions: [
          // pathLength 0: this CA signs leaves only, never intermediate CAs.
          new x509.BasicConstraintsExtension(true, 0, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
          await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
          // Critical: a verifier that cannot enforce the constraints must reject the CA outright.
          ...(permitted === undefined ? [] : [new x509.Extension(NAME_CONSTRAINTS_OID, true, encodeNameConstraints(permitted))])
        ]
      }))

    yield* mkdirPrivate(dir)
    // "wx" makes the refusal race-free: a CA created since the check above is not overwritten either.
    const writeNew = (target: string, data: string, mode: number) =>
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.writeFileString(target, data, { mode, flag: "wx" })).pipe(
        Effect.mapError((e) => (e._tag === "SystemError" && e.reason === "AlreadyExists" ? caExists(target) : fsError(target, "write")(e)))
      )
    yield* writeNew(keyPath, privateKeyPem(keys.privateKey), 0o600)
    yield* writeNew(certPath, pem(cert), 0o644).pipe(Effect.tapError(() => removeAfterFailure(keyPath)))
    return { certPath, keyPath, serial: cert.serialNumber.toUpperCase(), notAfter: cert.notAfter }
  })

/**
 * Issue a leaf certificate signed by the CA in `caDir`. Writes `<name>.key` (mode 0600) and
 * `<name>.crt` holding the leaf followed by the CA certificate. Re-issuing replaces both files.
 */
export const issueCertificate = (
  caDir: string,
  name: string,
  options: IssueOptions
): Effect.Effect<WrittenCertificate, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const outDir = options.outDir ?? caDir
    const keyPath = path.resolve(outDir, `${name}.key`)
    const certPath = path.resolve(outDir, `${name}.crt`)
    const plan = yield* planLeaf(caDir, name, options, certPath)
    const keys = yield* cryptoOp(certPath, "generate the key", () =>
      crypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]))
    const cert = yield* signLeaf(caDir, plan, keys.publicKey, certPath)

    yield* mkdirPrivate(outDir)
    yield* writeFileAtomic(keyPath, privateKeyPem(keys.privateKey), 0o600)
    yield* writeFileAtomic(certPath, pem(cert) + pem(plan.ca.cert), 0o644)
    return { certPath, keyPath, serial: cert.serialNumber.toUpperCase(), notAfter: cert.notAfter }
  })

/**
 * On the node: a CSR for `name`, signed with the key in `keyPath`. A missing key file is created
 * (EC P-256, PKCS#8 PEM, mode 0600, written atomically; its directory must exist); an existing one
 * is reused, and refused if it is not such a key or group or others can read it. The private key
 * never leaves this machine: only the CSR goes to whoever holds the CA.
 */
export const requestCertificate = (
  keyPath: string,
  name: string
): Effect.Effect<CertificateRequest, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const target = path.resolve(keyPath)
    yield* validName(name, target)
    const existing = yield* exists(target)
    if (!existing) yield* requireDirectory(path.dirname(target))
    const keys = existing
      ? yield* loadNodeKey(target)
      : yield* cryptoOp(target, "generate the key", () => crypto.subtle.generateKey(EC_KEY, true, ["sign", "verify"]))
    const csr = yield* cryptoOp(target, "create the certificate request", () =>
      x509.Pkcs10CertificateRequestGenerator.create({ name: [{ CN: [name] }], keys, signingAlgorithm: SIGNING }))
    if (!existing) yield* writeNewFileAtomic(target, privateKeyPem(keys.privateKey), 0o600)
    return { csrPem: `${csr.toString("pem").trim()}\n`, keyCreated: !existing }
  })

/**
 * On the operator's machine: sign a node's CSR with the CA in `caDir`. The CSR's self-signature
 * must verify (it proves the node holds the key); only its public key is used. The CN, SANs,
 * usage and validity come from `options`, checked as issueCertificate checks them: whatever
 * names the CSR asks for are ignored. Writes nothing.
 */
export const signRequest = (
  caDir: string,
  csrPem: string,
  options: SignOptions
): Effect.Effect<SignedCertificate, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const source = options.requestPath ?? "the certificate request"
    const csr = yield* parseRequest(csrPem, source)
    const verified = yield* Effect.tryPromise(() => csr.verify()).pipe(Effect.orElseSucceed(() => false))
    if (!verified) {
      return yield* invalidRequest(
        source,
        `the signature of ${source} does not verify: it was altered or not made with its own key; have the node run \`mcp ca request\` again`
      )
    }
    yield* requireP256(csr.publicKey, source)
    const plan = yield* planLeaf(caDir, options.name, options, source)
    if (Buffer.from(plan.ca.cert.publicKey.rawData).equals(Buffer.from(csr.publicKey.rawData))) {
      return yield* invalidRequest(source, `${source} carries the CA's own public key; a leaf needs a key of its own, made on the node`)
    }
    const cert = yield* signLeaf(caDir, plan, csr.publicKey, source)
    return { certPem: pem(cert) + pem(plan.ca.cert), serial: cert.serialNumber.toUpperCase(), notAfter: cert.notAfter }
  })

/**
 * What the first certificate in `certPem` (a leaf, or a chain starting with it) says, and whether
 * the CA certificate `caCertPem` signed it. Dates are reported, not judged.
 */
export const inspectCertificate = (certPem: string, caCertPem: string): Effect.Effect<CertificateInfo, PkiError> =>
  Effect.gen(function* () {
    const leaf = yield* parseFirstCertificate(certPem, "certificate", "CertificateInvalid")
    const ca = yield* parseFirstCertificate(caCertPem, "CA certificate", "CaInvalid")
    const signatureOk = yield* Effect.tryPromise(() => leaf.verify({ publicKey: ca.publicKey, signatureOnly: true })).pipe(
      Effect.orElseSucceed(() => false)
    )
    const names = leaf.getExtension(x509.SubjectAlternativeNameExtension)?.names.items ?? []
    return {
      signedByCa: signatureOk && leaf.issuerName.toString() === ca.subjectName.toString(),
      commonName: leaf.subjectName.getField("CN")[0] ?? "",
      dnsNames: names.filter((n) => n.type === "dns").map((n) => n.value),
      ips: names.filter((n) => n.type === "ip").map((n) => n.value),
      serial: leaf.serialNumber.toUpperCase(),
      notAfter: leaf.notAfter,
      publicKeySha256: spkiSha256(leaf.publicKey)
    }
  })

/** The SHA-256 of a CSR's public key, as inspectCertificate's publicKeySha256: equal when both hold the same key. */
export const requestPublicKeySha256 = (csrPem: string): Effect.Effect<string, PkiError> =>
  Effect.map(parseRequest(csrPem, "the certificate request"), (csr) => spkiSha256(csr.publicKey))

/** Writes a certificate chain (public) atomically with mode 0644, replacing the file. */
export const writeCertificateFile = (target: string, certPem: string): Effect.Effect<void, PkiError, FileSystem.FileSystem> =>
  writeFileAtomic(path.resolve(target), certPem, 0o644)

/** The CA certificate as PEM, for clients and servers to pin. */
export const readCa = (dir: string): Effect.Effect<string, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const certPath = path.resolve(dir, CA_CERT_FILE)
    const text = yield* readCaFile(certPath)
    yield* parseCertificate(certPath, text)
    return text
  })

/**
 * The NameConstraints of a PEM certificate, or undefined when it has none (the platform CA).
 * Throws on a certificate or extension that does not parse.
 */
export const nameConstraintsOf = (certPem: string): CaNameConstraints | undefined => {
  const extension = new x509.X509Certificate(certPem).getExtension(NAME_CONSTRAINTS_OID)
  return extension === null ? undefined : { critical: extension.critical, ...decodeNameConstraints(new Uint8Array(extension.value)) }
}

/** The NameConstraints of the CA in `dir`, or undefined when it has none. */
export const readCaConstraints = (dir: string): Effect.Effect<CaNameConstraints | undefined, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const certPath = path.resolve(dir, CA_CERT_FILE)
    const text = yield* readCaFile(certPath)
    return yield* Effect.try({
      try: () => nameConstraintsOf(text),
      catch: () =>
        new PkiError({
          reason: "CaInvalid",
          path: certPath,
          message: `${certPath} has a NameConstraints extension that cannot be read; create a new routes CA with \`mcp ca init-routes\``
        })
    })
  })

/** True when `name` is `suffix` or a name below it, as RFC 5280 matches a dNSName constraint. */
export const dnsWithin = (name: string, suffix: string): boolean => {
  const n = name.toLowerCase()
  const s = suffix.toLowerCase()
  return n === s || n.endsWith(`.${s}`)
}

// ---------------------------------------------------------------------------------------------
// NameConstraints in DER. Written by hand: @peculiar/x509 has no class for it, and the shape MCP
// writes (dNSName permitted subtrees, all IPs excluded) is small enough not to need another dependency.

const derLength = (n: number): Array<number> =>
  n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]

const tlv = (tag: number, content: Uint8Array): Uint8Array => new Uint8Array([tag, ...derLength(content.length), ...content])

const concat = (parts: ReadonlyArray<Uint8Array>): Uint8Array => {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

// GeneralSubtree ::= SEQUENCE { base GeneralName }; dNSName is [2] IA5String, iPAddress [7] OCTET STRING.
const TAG_SEQUENCE = 0x30
const TAG_PERMITTED = 0xa0
const TAG_EXCLUDED = 0xa1
const TAG_DNS_NAME = 0x82
const TAG_IP_ADDRESS = 0x87
// Address and mask all zero: every IPv4 and every IPv6 address.
const ALL_IPV4 = new Uint8Array(8)
const ALL_IPV6 = new Uint8Array(32)

const encodeNameConstraints = (permittedDns: ReadonlyArray<string>): ArrayBuffer => {
  const subtree = (tag: number, value: Uint8Array) => tlv(TAG_SEQUENCE, tlv(tag, value))
  const permitted = tlv(TAG_PERMITTED, concat(permittedDns.map((d) => subtree(TAG_DNS_NAME, new TextEncoder().encode(d)))))
  const excluded = tlv(TAG_EXCLUDED, concat([subtree(TAG_IP_ADDRESS, ALL_IPV4), subtree(TAG_IP_ADDRESS, ALL_IPV6)]))
  return tlv(TAG_SEQUENCE, concat([permitted, excluded])).slice().buffer
}

interface Tlv {
  readonly tag: number
  readonly content: Uint8Array
}

const readTlvs = (bytes: Uint8Array): Array<Tlv> => {
  const out: Array<Tlv> = []
  let at = 0
  while (at < bytes.length) {
    const tag = bytes[at++]!
    let length = bytes[at++]!
    if (length === undefined) throw new Error("truncated DER")
    if (length & 0x80) {
      const octets = length & 0x7f
      if (octets === 0 || octets > 3) throw new Error("unsupported DER length")
      length = 0
      for (let i = 0; i < octets; i++) length = (length << 8) | bytes[at++]!
    }
    if (at + length > bytes.length) throw new Error("truncated DER")
    out.push({ tag, content: bytes.subarray(at, at + length) })
    at += length
  }
  return out
}

const ipSubtree = (b: Uint8Array): string => {
  const half = b.length / 2
  const prefix = [...b.subarray(half)].reduce((n, byte) => n + byte.toString(2).replace(/0/g, "").length, 0)
  const address = half === 4
    ? [...b.subarray(0, 4)].join(".")
    : Array.from({ length: 8 }, (_, i) => ((b[2 * i]! << 8) | b[2 * i + 1]!).toString(16)).join(":")
  return `${address}/${prefix}`
}

const decodeNameConstraints = (der: Uint8Array): Omit<CaNameConstraints, "critical"> => {
  const [outer] = readTlvs(der)
  if (outer === undefined || outer.tag !== TAG_SEQUENCE) throw new Error("NameConstraints is not a SEQUENCE")
  const names = (tag: number, nameTag: number) =>
    readTlvs(outer.content)
      .filter((t) => t.tag === tag)
      .flatMap((t) => readTlvs(t.content))
      .map((subtree) => readTlvs(subtree.content)[0])
      .filter((base): base is Tlv => base?.tag === nameTag)
      .map((base) => base.content)
  return {
    permittedDns: names(TAG_PERMITTED, TAG_DNS_NAME).map((b) => new TextDecoder().decode(b)),
    excludedIps: names(TAG_EXCLUDED, TAG_IP_ADDRESS).map(ipSubtree)
  }
}

// ---------------------------------------------------------------------------------------------

interface LoadedCa {
  readonly cert: x509.X509Certificate
  readonly key: CryptoKey
}

type CryptoKey = webcrypto.CryptoKey

const loadCa = (dir: string): Effect.Effect<LoadedCa, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const certPath = path.resolve(dir, CA_CERT_FILE)
    const keyPath = path.resolve(dir, CA_KEY_FILE)
    const cert = yield* parseCertificate(certPath, yield* readCaFile(certPath))
    if (!cert.getExtension(x509.BasicConstraintsExtension)?.ca) {
      return yield* new PkiError({
        reason: "CaInvalid",
        path: certPath,
        message: `${certPath} is not a CA certificate (basicConstraints CA:false); pass the CA directory`
      })
    }
    const keyText = yield* readCaFile(keyPath)
    const caInvalid = (message: string) => new PkiError({ reason: "CaInvalid", path: keyPath, message })

    // No cause attached: errors from parsing a key could echo parts of it.
    const keyObject = yield* Effect.try({
      try: () => createPrivateKey(keyText),
      catch: () => caInvalid(`${keyPath} is not a PEM private key; restore it from backup or create a new CA`)
    })
    const keySpki = createPublicKey(keyObject).export({ type: "spki", format: "der" })
    if (!Buffer.from(cert.publicKey.rawData).equals(keySpki)) {
      return yield* caInvalid(`${keyPath} does not belong to ${certPath}; restore the matching pair or create a new CA`)
    }
    const key = yield* Effect.tryPromise({
      try: () =>
        crypto.subtle.importKey("pkcs8", keyObject.export({ type: "pkcs8", format: "der" }), EC_KEY, false, ["sign"]),
      catch: () => caInvalid(`${keyPath} is not an ECDSA P-256 key; create a new CA with \`mcp ca init\``)
    })
    return { cert, key }
  })

/** A leaf about to be signed: its names and validity checked, and the CA loaded. */
interface LeafPlan {
  readonly name: string
  readonly usage: CertificateUsage
  readonly sans: ReadonlyArray<x509.JsonGeneralName>
  readonly days: number
  readonly ca: LoadedCa
}

const planLeaf = (caDir: string, name: string, options: LeafOptions, target: string): Effect.Effect<LeafPlan, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const sans = yield* validateRequest(name, options, target)
    const days = yield* validDays(options.days ?? DEFAULT_LEAF_DAYS, target)
    const ca = yield* loadCa(caDir)
    yield* withinConstraints(ca.cert, options, target)
    return { name, usage: options.usage, sans, days, ca }
  })

/** The one place a leaf is built: for a key made here (issueCertificate) or one from a CSR (signRequest). */
const signLeaf = (
  caDir: string,
  plan: LeafPlan,
  publicKey: CryptoKey | x509.PublicKey,
  target: string
): Effect.Effect<x509.X509Certificate, PkiError> =>
  Effect.gen(function* () {
    const { ca } = plan
    const now = yield* Clock.currentTimeMillis
    const notAfter = Math.min(now + plan.days * DAY_MS, ca.cert.notAfter.getTime())
    const cert = yield* cryptoOp(target, "sign the certificate", async () =>
      x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: [{ CN: [plan.name] }],
        issuer: ca.cert.subjectName,
        notBefore: new Date(now - CLOCK_SKEW_MS),
        notAfter: new Date(notAfter),
        publicKey,
        signingKey: ca.key,
        signingAlgorithm: SIGNING,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension(extendedKeyUsages(plan.usage)),
          ...(plan.sans.length > 0 ? [new x509.SubjectAlternativeNameExtension([...plan.sans])] : []),
          await x509.SubjectKeyIdentifierExtension.create(publicKey),
          await x509.AuthorityKeyIdentifierExtension.create(ca.cert.publicKey)
        ]
      }))

    // Belt and braces: never hand out a chain that does not verify against the CA.
    const verified = yield* cryptoOp(target, "verify the certificate", () =>
      cert.verify({ publicKey: ca.cert.publicKey, signatureOnly: true }))
    if (!verified) {
      return yield* new PkiError({
        reason: "CaInvalid",
        path: path.resolve(caDir, CA_KEY_FILE),
        message: `the certificate signed with ${path.resolve(caDir, CA_KEY_FILE)} does not verify against ${path.resolve(caDir, CA_CERT_FILE)}; restore the matching pair or create a new CA`
      })
    }
    return cert
  })

const validName = (name: string, target: string): Effect.Effect<void, PkiError> =>
  !LEAF_NAME.test(name) || name === "ca"
    ? invalidRequest(target, `invalid certificate name ${JSON.stringify(name)}: use letters, digits, '.', '_' or '-' (at most 64, not "ca")`)
    : Effect.void

/** Only an unencrypted PKCS#8 EC P-256 key, readable by its owner alone, is reused for a CSR. */
const loadNodeKey = (keyPath: string): Effect.Effect<CryptoKeyPair, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const keyInvalid = (message: string) => new PkiError({ reason: "KeyInvalid", path: keyPath, message })
    const info = yield* fs.stat(keyPath).pipe(Effect.mapError(fsError(keyPath, "inspect")))
    if (info.type !== "File") {
      return yield* keyInvalid(`${keyPath} is not a regular file; pass the path of the node's key file`)
    }
    if ((info.mode & 0o077) !== 0) {
      return yield* keyInvalid(
        `${keyPath} is open to group or others (mode 0${(info.mode & 0o777).toString(8)}); run \`chmod 600 ${keyPath}\`, or replace the key if others may have read it`
      )
    }
    const text = yield* fs.readFileString(keyPath).pipe(Effect.mapError(fsError(keyPath, "read")))
    const notP256 = keyInvalid(
      `${keyPath} is not a PKCS#8 EC P-256 private key PEM (-----BEGIN PRIVATE KEY-----); move it away to have a new key made, or convert it with \`openssl pkcs8 -topk8 -nocrypt\``
    )
    if (!text.trimStart().startsWith("-----BEGIN PRIVATE KEY-----")) return yield* notP256
    // No cause attached: errors from parsing a key could echo parts of it.
    const keyObject = yield* Effect.try({ try: () => createPrivateKey(text), catch: () => notP256 })
    if (keyObject.asymmetricKeyType !== "ec" || keyObject.asymmetricKeyDetails?.namedCurve !== "prime256v1") return yield* notP256
    const spki = createPublicKey(keyObject).export({ type: "spki", format: "der" })
    return yield* Effect.tryPromise({
      try: async () => ({
        privateKey: await crypto.subtle.importKey("pkcs8", keyObject.export({ type: "pkcs8", format: "der" }), EC_KEY, false, ["sign"]),
        publicKey: await crypto.subtle.importKey("spki", spki, EC_KEY, true, ["verify"])
      }),
      catch: () => notP256
    })
  })

type CryptoKeyPair = webcrypto.CryptoKeyPair

// "NEW CERTIFICATE REQUEST" is what older openssl writes.
const REQUEST_PEM_TYPES = new Set(["CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST"])

/** Exactly one PEM CSR; what is wrong with anything else is said, never its content. */
const parseRequest = (csrPem: string, source: string): Effect.Effect<x509.Pkcs10CertificateRequest, PkiError> =>
  Effect.gen(function* () {
    const blocks = yield* Effect.try(() => x509.PemConverter.decodeWithHeaders(csrPem)).pipe(Effect.orElseSucceed(() => []))
    const fix = "pass the file `mcp ca request` printed"
    if (blocks.length === 0) {
      return yield* invalidRequest(source, `${source} holds no PEM block; ${fix} (-----BEGIN CERTIFICATE REQUEST-----)`)
    }
    if (blocks.length > 1) {
      return yield* invalidRequest(source, `${source} holds ${blocks.length} PEM blocks; ${fix}, which holds one`)
    }
    const block = blocks[0]!
    if (!REQUEST_PEM_TYPES.has(block.type)) {
      return yield* invalidRequest(source, `${source} is a PEM ${block.type}, not a CERTIFICATE REQUEST; ${fix}`)
    }
    return yield* Effect.try({
      try: () => new x509.Pkcs10CertificateRequest(block.rawData),
      catch: () => new PkiError({ reason: "InvalidRequest", path: source, message: `${source} is not a valid PKCS#10 certificate request (its DER does not parse); ${fix}` })
    })
  })

/** Leaves are EC P-256, whoever made the key. */
const requireP256 = (publicKey: x509.PublicKey, source: string): Effect.Effect<void, PkiError> => {
  const details = (() => {
    try {
      const key = createPublicKey({ key: Buffer.from(publicKey.rawData), format: "der", type: "spki" })
      return { type: key.asymmetricKeyType, curve: key.asymmetricKeyDetails?.namedCurve }
    } catch {
      return undefined
    }
  })()
  return details?.type === "ec" && details.curve === "prime256v1"
    ? Effect.void
    : invalidRequest(
        source,
        `${source} is for a ${details === undefined ? "unreadable" : details.curve ?? details.type ?? "unknown"} key, not EC P-256; make the request with \`mcp ca request\``
      )
}

const parseFirstCertificate = (
  text: string,
  what: string,
  reason: "CertificateInvalid" | "CaInvalid"
): Effect.Effect<x509.X509Certificate, PkiError> =>
  Effect.try({
    try: () => {
      const first = x509.PemConverter.decodeWithHeaders(text)[0]
      if (first === undefined || first.type !== "CERTIFICATE") throw new Error("no certificate")
      return new x509.X509Certificate(first.rawData)
    },
    catch: () => new PkiError({ reason, path: what, message: `the ${what} is not a PEM certificate (-----BEGIN CERTIFICATE-----); pass the .crt file` })
  })

const spkiSha256 = (publicKey: x509.PublicKey): string =>
  createHash("sha256").update(Buffer.from(publicKey.rawData)).digest("hex")

const validateRequest = (
  name: string,
  options: LeafOptions,
  certPath: string
): Effect.Effect<Array<x509.JsonGeneralName>, PkiError> =>
  Effect.gen(function* () {
    yield* validName(name, certPath)
    const badIp = options.ips.find((ip) => isIP(ip) === 0)
    if (badIp !== undefined) {
      return yield* invalidRequest(certPath, `${JSON.stringify(badIp)} is not an IPv4 or IPv6 address; fix the --ip value`)
    }
    const badDns = options.dns.find((dns) => !DNS_NAME.test(dns))
    if (badDns !== undefined) {
      return yield* invalidRequest(certPath, `${JSON.stringify(badDns)} is not a DNS name; fix the --dns value`)
    }
    const sans: Array<x509.JsonGeneralName> = [
      ...options.ips.map((value) => ({ type: "ip" as const, value })),
      ...options.dns.map((value) => ({ type: "dns" as const, value }))
    ]
    if (sans.length === 0 && options.usage !== "client") {
      return yield* invalidRequest(
        certPath,
        `a ${options.usage} certificate needs at least one subject alternative name; pass --ip and/or --dns`
      )
    }
    return sans
  })

const validPermittedDns = (domains: ReadonlyArray<string>, certPath: string): Effect.Effect<Array<string>, PkiError> =>
  Effect.gen(function* () {
    const normalized = [...new Set(domains.map((d) => d.trim().toLowerCase()))]
    if (normalized.length === 0) {
      return yield* invalidRequest(certPath, "a routes CA needs at least one permitted name; pass the internal zone (--internal-zone)")
    }
    const bad = normalized.find((d) => !DNS_NAME.test(d) || d.startsWith("*."))
    if (bad !== undefined) {
      return yield* invalidRequest(certPath, `${JSON.stringify(bad)} is not a DNS suffix such as "example.com"; fix --internal-zone or --domain`)
    }
    return normalized
  })

/**
 * A constrained CA's leaves must stay inside its constraints: such a certificate would fail every
 * verifier anyway, so it is refused here, where the message can say how to widen the CA.
 */
const withinConstraints = (ca: x509.X509Certificate, options: LeafOptions, certPath: string): Effect.Effect<void, PkiError> =>
  Effect.gen(function* () {
    const extension = ca.getExtension(NAME_CONSTRAINTS_OID)
    if (extension === null) return
    const constraints = yield* Effect.try({
      try: () => decodeNameConstraints(new Uint8Array(extension.value)),
      catch: () => new PkiError({ reason: "CaInvalid", path: certPath, message: `the CA's NameConstraints extension cannot be read; create a new routes CA with \`mcp ca init-routes\`` })
    })
    const permitted = constraints.permittedDns.map((d) => `"${d}"`).join(", ")
    if (options.ips.length > 0 && constraints.excludedIps.length > 0) {
      return yield* invalidRequest(certPath, `this CA is name-constrained to DNS names under ${permitted} and signs no IP address; drop --ip`)
    }
    const outside = options.dns.find((d) => !constraints.permittedDns.some((p) => dnsWithin(d.replace(/^\*\./, ""), p)))
    if (outside !== undefined) {
      return yield* invalidRequest(
        certPath,
        `${JSON.stringify(outside)} is outside this CA's name constraints (${permitted}); use a name under one of them, or create a new routes CA that permits its domain with \`mcp ca init-routes --domain\``
      )
    }
  })

const extendedKeyUsages = (usage: CertificateUsage): Array<string> => {
  switch (usage) {
    case "server":
      return [x509.ExtendedKeyUsage.serverAuth]
    case "client":
      return [x509.ExtendedKeyUsage.clientAuth]
    case "both":
      return [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]
  }
}

const validDays = (days: number, target: string): Effect.Effect<number, PkiError> =>
  Number.isInteger(days) && days >= 1 && days <= 36500
    ? Effect.succeed(days)
    : invalidRequest(target, `validity of ${days} days is not a whole number between 1 and 36500; fix --days`)

const invalidRequest = (target: string, message: string) =>
  Effect.fail(new PkiError({ reason: "InvalidRequest", path: target, message }))

// 16 random bytes; @peculiar/x509 strips leading zeros and keeps the INTEGER positive.
const randomSerial = (): string => randomBytes(16).toString("hex")

const privateKeyPem = (key: CryptoKey): string =>
  KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString()

const pem = (cert: x509.X509Certificate): string => `${cert.toString("pem").trim()}\n`

const parseCertificate = (certPath: string, text: string): Effect.Effect<x509.X509Certificate, PkiError> =>
  Effect.try({
    try: () => new x509.X509Certificate(text),
    catch: () =>
      new PkiError({
        reason: "CaInvalid",
        path: certPath,
        message: `${certPath} is not a PEM certificate; restore it from backup or create a new CA`
      })
  })

// No cause attached: the failing call had a private key in hand.
const cryptoOp = <A>(target: string, what: string, run: () => Promise<A>): Effect.Effect<A, PkiError> =>
  Effect.tryPromise({
    try: run,
    catch: () =>
      new PkiError({ reason: "Crypto", path: target, message: `could not ${what} for ${target}; this is a bug, please report it` })
  })

// ---------------------------------------------------------------------------------------------
// File system

// The platform error keeps Node's own error as its cause, and with it the errno code (EACCES, ENOSPC, ...).
const errorCode = (error: PlatformError.PlatformError): string | undefined => {
  const cause: unknown = error.cause
  return typeof cause === "object" && cause !== null && "code" in cause && typeof cause.code === "string" ? cause.code : undefined
}

const fsError = (target: string, action: string) => (cause: PlatformError.PlatformError) =>
  new PkiError({
    reason: "FileSystem",
    path: target,
    // A full disk says which and how much is free: the fix is space, not permissions.
    message: DiskSpace.fullDiskReason(cause, target) ?? `cannot ${action} ${target} (${errorCode(cause) ?? cause.message}); check the path and its permissions`,
    cause
  })

const caExists = (target: string) =>
  new PkiError({
    reason: "CaExists",
    path: target,
    message: `${target} already exists; refusing to overwrite a CA. Remove it or choose another directory`
  })

// FileSystem has no lstat, so a dangling symlink counts as absent here; initCa's "wx" writes still refuse it.
const exists = (target: string): Effect.Effect<boolean, PkiError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.exists(target)).pipe(Effect.mapError(fsError(target, "inspect")))

const readCaFile = (target: string): Effect.Effect<string, PkiError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(target)).pipe(
    Effect.mapError((cause) =>
      cause._tag === "SystemError" && cause.reason === "NotFound"
        ? new PkiError({
            reason: "CaMissing",
            path: target,
            message: `${target} does not exist; create the CA with \`mcp ca init <dir>\` or pass the right CA directory`
          })
        : fsError(target, "read")(cause)
    )
  )

// Mode applies only to directories created here; an existing directory keeps its permissions.
const mkdirPrivate = (dir: string): Effect.Effect<void, PkiError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeDirectory(dir, { recursive: true, mode: 0o700 })).pipe(
    Effect.mapError(fsError(dir, "create directory"))
  )

/** Removes what a failed write left; its own failure is logged and counted, the write's error stands. */
const removeAfterFailure = (target: string): Effect.Effect<void, never, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => bestEffort(`remove ${target} after a failed write`)(fs.remove(target, { force: true })))

const requireDirectory = (dir: string): Effect.Effect<void, PkiError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const info = yield* fs.stat(dir).pipe(Effect.option)
    if (info._tag === "None" || info.value.type !== "Directory") {
      return yield* new PkiError({
        reason: "FileSystem",
        path: dir,
        message: `${dir} is not an existing directory; create it first (\`install -d -m 0700 ${dir}\`) or pass another --key path`
      })
    }
  })

/**
 * Like writeFileAtomic, but never replaces: the temp file is hard-linked to `target`, which fails
 * if a file appeared there meanwhile (a key another run just made stays).
 */
const writeNewFileAtomic = (target: string, data: string, mode: number): Effect.Effect<void, PkiError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`
    return fs.writeFileString(temp, data, { mode, flag: "wx" }).pipe(
      Effect.mapError(fsError(temp, "write")),
      Effect.zipRight(
        fs.link(temp, target).pipe(
          Effect.mapError((e) =>
            e._tag === "SystemError" && e.reason === "AlreadyExists"
              ? new PkiError({ reason: "FileSystem", path: target, message: `${target} appeared while its key was being made; run the command again to reuse it` })
              : fsError(target, "write")(e)
          )
        )
      ),
      Effect.ensuring(removeAfterFailure(temp))
    )
  })

// A fresh temp file gets `mode` at creation, so a re-issued key is never readable with an old file's mode.
const writeFileAtomic = (target: string, data: string, mode: number): Effect.Effect<void, PkiError, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const temp = `${target}.${randomBytes(6).toString("hex")}.tmp`
    return fs.writeFileString(temp, data, { mode, flag: "wx" }).pipe(
      Effect.mapError(fsError(temp, "write")),
      Effect.zipRight(fs.rename(temp, target).pipe(Effect.mapError(fsError(target, "write")))),
      Effect.tapError(() => removeAfterFailure(temp))
    )
  })
