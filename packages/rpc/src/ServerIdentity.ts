/**
 * Which peer a client reached, beyond "some server the platform CA signed": every daemon's
 * certificate comes from the same CA, so a CA check alone lets any node (or a node's stolen
 * certificate) answer for any other at an address it controls. A client that expects a
 * particular node checks that the certificate names it (its CN or a DNS SAN), before anything
 * (a token, a request) is sent.
 */
import * as tls from "node:tls"

/** The error a TLS handshake fails with when the certificate does not name the expected peer. */
export class ServerIdentityMismatch extends Error {
  readonly _tag = "ServerIdentityMismatch"
  constructor(
    readonly host: string,
    readonly expected: string,
    /** The names the certificate carries (CN, then DNS SANs). */
    readonly names: ReadonlyArray<string>
  ) {
    super(
      `the certificate at ${host} names ${names.length === 0 ? "nothing" : names.join(", ")}, not node ${expected}: ` +
        `a node is called only where its certificate names it; issue the node's certificate with its name ` +
        `(\`mcp ca issue ${expected} --ca-dir <ca dir> --usage both --ip <address>\` makes it the CN)`
    )
    this.name = "ServerIdentityMismatch"
  }
}

const commonNames = (cert: tls.PeerCertificate): ReadonlyArray<string> => {
  const cn: unknown = cert.subject?.CN
  return typeof cn === "string" ? [cn] : Array.isArray(cn) ? cn.filter((n): n is string => typeof n === "string") : []
}

// `subjectaltname` reads "DNS:a, DNS:b, IP Address:1.2.3.4"; a value Node had to quote (one with
// a comma) stays quoted and so matches no node name, which fails closed.
const dnsNames = (cert: tls.PeerCertificate): ReadonlyArray<string> =>
  (cert.subjectaltname ?? "").split(", ").filter((e) => e.startsWith("DNS:")).map((e) => e.slice(4))

/** The names a certificate carries: its CN(s), then its DNS SANs. */
export const namesOf = (cert: tls.PeerCertificate): ReadonlyArray<string> => [...commonNames(cert), ...dnsNames(cert)]

/**
 * A `checkServerIdentity` for https/tls options: Node's usual check (the certificate is valid
 * for the host connected to) and then that it names `expected`, exactly (no wildcards: a node is
 * one name, and `*.example` naming every node is what this check exists to refuse). DNS names
 * compare without case, as DNS does.
 */
export const expectName = (expected: string) => (host: string, cert: tls.PeerCertificate): Error | undefined => {
  const usual = tls.checkServerIdentity(host, cert)
  if (usual !== undefined) return usual
  const names = namesOf(cert)
  return names.some((n) => n.toLowerCase() === expected.toLowerCase()) ? undefined : new ServerIdentityMismatch(host, expected, names)
}

/** The ServerIdentityMismatch somewhere in an error's `cause` chain (a failed request wraps it). */
export const findMismatch = (error: unknown): ServerIdentityMismatch | undefined => {
  for (let e: unknown = error, depth = 0; e !== null && typeof e === "object" && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    if (e instanceof ServerIdentityMismatch) return e
  }
  return undefined
}
