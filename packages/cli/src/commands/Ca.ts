/**
 * `mcp ca init <dir>`, `mcp ca init-routes <dir>` and `mcp ca issue <name>`: the operator's front end
 * to the platform CA and the name-constrained routes CA in @mcp/rpc/Pki. For a CA kept offline,
 * `mcp ca request <name>` (on the node: its key stays there) and `mcp ca sign <csr-file>` (where
 * the CA is) issue a certificate without any private key travelling.
 * Prints what was written (paths, serial, expiry) or JSON with --json; a refusal (PkiError, whose
 * message says what to do) is printed by Report.ts.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import * as Pki from "@mcp/rpc/Pki"
import { Effect, Option } from "effect"
import { print, printError } from "../Output.js"

const json = Options.boolean("json").pipe(Options.withDescription("print what was written as JSON"))
const days = Options.integer("days").pipe(Options.withDescription("validity in days"), Options.optional)

const toJson = (written: Pki.WrittenCertificate, extra: Record<string, unknown>) =>
  JSON.stringify({ ...extra, ...written, notAfter: written.notAfter.toISOString() }, null, 2)

const printWritten = (headline: string, written: Pki.WrittenCertificate, keyNote: string, certNote: string) =>
  print(
    [
      headline,
      `  key      ${written.keyPath}  (${keyNote})`,
      `  cert     ${written.certPath}  (${certNote})`,
      `  serial   ${written.serial}`,
      `  expires  ${written.notAfter.toISOString()}`
    ].join("\n")
  )

const init = Command.make(
  "init",
  {
    dir: Args.text({ name: "dir" }).pipe(Args.withDescription("directory for ca.key and ca.crt (created with mode 0700)")),
    cn: Options.text("cn").pipe(Options.withDescription(`CA common name (default "${Pki.DEFAULT_CA_COMMON_NAME}")`), Options.optional),
    days,
    json
  },
  ({ cn, days, dir, json }) =>
    Pki.initCa(dir, {
      ...Option.match(cn, { onNone: () => ({}), onSome: (commonName) => ({ commonName }) }),
      ...Option.match(days, { onNone: () => ({}), onSome: (days) => ({ days }) })
    }).pipe(
      Effect.flatMap((written) =>
        json
          ? print(toJson(written, { kind: "ca" }))
          : printWritten(`created CA in ${dir}`, written, "mode 0600; keep it secret and backed up", "pin this on every client and server")
      )
    )
).pipe(Command.withDescription("create a new platform CA; refuses if the directory already holds one"))

// A separate CA for route certificates ([certs] ca_dir): the platform CA is trusted by the CLI and
// every daemon, so a route certificate from it for the master's name would impersonate the master.
const initRoutes = Command.make(
  "init-routes",
  {
    dir: Args.text({ name: "dir" }).pipe(Args.withDescription("directory for ca.key and ca.crt (created with mode 0700); not the platform CA's")),
    internalZone: Options.text("internal-zone").pipe(
      Options.withDescription("the fleet's internal zone (internal_zone in mcp-agent.toml), e.g. svc.mcp.internal")
    ),
    domain: Options.text("domain").pipe(
      Options.withDescription("a public domain routes may use, as in [edge] allowed_domains (repeatable)"),
      Options.repeated
    ),
    cn: Options.text("cn").pipe(Options.withDescription(`CA common name (default "${Pki.DEFAULT_ROUTES_CA_COMMON_NAME}")`), Options.optional),
    days,
    json
  },
  ({ cn, days, dir, domain, internalZone, json }) => {
    const permittedDns = [internalZone, ...domain]
    return Pki.initCa(dir, {
      commonName: Option.getOrElse(cn, () => Pki.DEFAULT_ROUTES_CA_COMMON_NAME),
      permittedDns,
      ...Option.match(days, { onNone: () => ({}), onSome: (days) => ({ days }) })
    }).pipe(
      Effect.flatMap((written) =>
        json
          ? print(toJson(written, { kind: "routes-ca", permittedDns }))
          : printWritten(
              `created routes CA in ${dir}, name-constrained to ${permittedDns.join(", ")}`,
              written,
              "mode 0600; only the agents' [certs] ca_dir needs it",
              "trust it as the proxies' backend_ca, never as [tls] ca"
            ).pipe(
              Effect.zipRight(print(`  a new allowed domain needs a new routes CA: the constraints are part of the certificate`))
            )
      )
    )
  }
).pipe(Command.withDescription("create a CA for route certificates, limited to the internal zone and the given domains"))

const caDir = Options.text("ca-dir").pipe(Options.withDescription("directory holding ca.key and ca.crt"))
const ip = Options.text("ip").pipe(Options.withDescription("IP address SAN (repeatable)"), Options.repeated)
const dns = Options.text("dns").pipe(Options.withDescription("DNS name SAN (repeatable)"), Options.repeated)
const usage = Options.choice("usage", ["server", "client", "both"]).pipe(
  Options.withDescription("what the certificate authenticates: TLS server, TLS client, or both")
)

const describeLeaf = (name: string, usage: Pki.CertificateUsage, ips: ReadonlyArray<string>, dnsNames: ReadonlyArray<string>) => {
  const sans = [...ips.map((a) => `IP:${a}`), ...dnsNames.map((d) => `DNS:${d}`)]
  return `${usage === "both" ? "server+client" : usage} certificate ${name}${sans.length > 0 ? ` for ${sans.join(", ")}` : ""}`
}

const issue = Command.make(
  "issue",
  {
    name: Args.text({ name: "name" }).pipe(Args.withDescription("certificate name: the CN and the <name>.key/<name>.crt file names")),
    caDir,
    ip,
    dns,
    usage,
    outDir: Options.text("out-dir").pipe(Options.withDescription("where to write the files (default: the CA directory)"), Options.optional),
    days,
    json
  },
  ({ caDir, days, dns, ip, json, name, outDir, usage }) =>
    Pki.issueCertificate(caDir, name, {
      ips: ip,
      dns,
      usage,
      ...Option.match(outDir, { onNone: () => ({}), onSome: (outDir) => ({ outDir }) }),
      ...Option.match(days, { onNone: () => ({}), onSome: (days) => ({ days }) })
    }).pipe(
      Effect.flatMap((written) =>
        json
          ? print(toJson(written, { kind: "leaf", name, usage, ips: ip, dns }))
          : printWritten(`issued ${describeLeaf(name, usage, ip, dns)}`, written, "mode 0600", "leaf followed by the CA certificate")
      )
    )
).pipe(Command.withDescription("issue a certificate signed by the platform CA"))

// For a CA kept offline: the node makes its key and a CSR, and only the CSR travels.
const request = Command.make(
  "request",
  {
    name: Args.text({ name: "name" }).pipe(Args.withDescription("the node's name, put in the request's CN (the signer decides the certificate's names)")),
    key: Options.text("key").pipe(
      Options.withDescription("the node's private key file: made (EC P-256, mode 0600) if missing, else reused; it never leaves this machine")
    )
  },
  ({ key, name }) =>
    Pki.requestCertificate(key, name).pipe(
      Effect.flatMap(({ csrPem, keyCreated }) =>
        printError(
          keyCreated
            ? `created key ${key} (mode 0600); the certificate request follows on stdout`
            : `reusing key ${key}; the certificate request follows on stdout`
        ).pipe(Effect.zipRight(print(csrPem.trimEnd())))
      )
    )
).pipe(Command.withDescription("on a node: make or reuse its key and print a certificate request (CSR) for `mcp ca sign`"))

const readRequest = (file: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(file)).pipe(
    Effect.mapError(
      (cause) =>
        new Pki.PkiError({
          reason: "FileSystem",
          path: file,
          message: `cannot read ${file} (${cause.message}); pass the file \`mcp ca request\` printed`,
          cause
        })
    )
  )

const sign = Command.make(
  "sign",
  {
    csrFile: Args.text({ name: "csr-file" }).pipe(Args.withDescription("the certificate request `mcp ca request` printed on the node")),
    caDir,
    name: Options.text("name").pipe(Options.withDescription("certificate name (the CN); the request's own names are ignored")),
    ip,
    dns,
    usage: Options.choice("usage", ["server", "client", "both"]).pipe(
      Options.withDescription("what the certificate authenticates: TLS server, TLS client, or both (default: both, as a node needs)"),
      Options.withDefault("both" as const)
    ),
    out: Options.text("out").pipe(
      Options.withDescription("write the chain to this file (mode 0644) instead of printing it"),
      Options.optional
    ),
    days
  },
  ({ caDir, csrFile, days, dns, ip, name, out, usage }) =>
    Effect.gen(function* () {
      const csrPem = yield* readRequest(csrFile)
      const signed = yield* Pki.signRequest(caDir, csrPem, {
        name,
        ips: ip,
        dns,
        usage,
        requestPath: csrFile,
        ...Option.match(days, { onNone: () => ({}), onSome: (days) => ({ days }) })
      })
      const summary = [
        `signed ${describeLeaf(name, usage, ip, dns)}`,
        `  serial   ${signed.serial}`,
        `  expires  ${signed.notAfter.toISOString()}`
      ]
      if (Option.isNone(out)) {
        yield* printError(summary.join("\n"))
        return yield* print(signed.certPem.trimEnd())
      }
      yield* Pki.writeCertificateFile(out.value, signed.certPem)
      yield* print([summary[0]!, `  cert     ${out.value}  (leaf followed by the CA certificate)`, ...summary.slice(1)].join("\n"))
    })
).pipe(Command.withDescription("sign a node's certificate request with the CA; prints the chain (leaf, then CA) or writes it with --out"))

export const ca = Command.make("ca").pipe(
  Command.withDescription("manage the platform CA that secures RPC (HTTPS with a pinned CA, optional mTLS) and the routes CA"),
  Command.withSubcommands([init, initRoutes, issue, request, sign])
)
