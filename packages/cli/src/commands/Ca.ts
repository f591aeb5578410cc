/**
 * `mcp ca init <dir>`, `mcp ca init-routes <dir>` and `mcp ca issue <name>`: the operator's front end
 * to the platform CA and the name-constrained routes CA in @mcp/rpc/Pki.
 * Prints what was written (paths, serial, expiry) or JSON with --json; a refusal (PkiError, whose
 * message says what to do) is printed by Report.ts.
 */
import { Args, Command, Options } from "@effect/cli"
import * as Pki from "@mcp/rpc/Pki"
import { Effect, Option } from "effect"
import { print } from "../Output.js"

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

const issue = Command.make(
  "issue",
  {
    name: Args.text({ name: "name" }).pipe(Args.withDescription("certificate name: the CN and the <name>.key/<name>.crt file names")),
    caDir: Options.text("ca-dir").pipe(Options.withDescription("directory holding ca.key and ca.crt")),
    ip: Options.text("ip").pipe(Options.withDescription("IP address SAN (repeatable)"), Options.repeated),
    dns: Options.text("dns").pipe(Options.withDescription("DNS name SAN (repeatable)"), Options.repeated),
    usage: Options.choice("usage", ["server", "client", "both"]).pipe(
      Options.withDescription("what the certificate authenticates: TLS server, TLS client, or both")
    ),
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
      Effect.flatMap((written) => {
        const sans = [...ip.map((a) => `IP:${a}`), ...dns.map((d) => `DNS:${d}`)]
        const kind = usage === "both" ? "server+client" : usage
        return json
          ? print(toJson(written, { kind: "leaf", name, usage, ips: ip, dns }))
          : printWritten(
              `issued ${kind} certificate ${name}${sans.length > 0 ? ` for ${sans.join(", ")}` : ""}`,
              written,
              "mode 0600",
              "leaf followed by the CA certificate"
            )
      })
    )
).pipe(Command.withDescription("issue a certificate signed by the platform CA"))

export const ca = Command.make("ca").pipe(
  Command.withDescription("manage the platform CA that secures RPC (HTTPS with a pinned CA, optional mTLS) and the routes CA"),
  Command.withSubcommands([init, initRoutes, issue])
)
