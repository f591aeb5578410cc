/**
 * The CLI's own config (`~/.config/mcp/mcp.toml`, or --config / $MCP_CONFIG): where the master
 * is, which CA to pin, the token to present and where service definitions live.
 */
import * as Node from "@mcp/domain/Node"
import { formatPath } from "@mcp/domain/Problem"
import { parseToml } from "@mcp/domain/Toml"
import { Data, Effect, Either, ParseResult, Redacted, Schema } from "effect"
import { readFileSync, statSync } from "node:fs"
import { homedir } from "node:os"
import { dirname, isAbsolute, join, resolve } from "node:path"

export const CliConfig = Schema.Struct({
  /** Master addresses (`host:port`), tried in order. */
  master: Schema.optionalWith(Schema.Array(Node.NodeAddress), { exact: true, default: () => [] }),
  ca: Schema.String,
  /** A file holding the operator's token (mode 0600). */
  token_file: Schema.String,
  services_dir: Schema.optionalWith(Schema.String, { exact: true, default: () => "~/.config/mcp/services" }),
  internal_zone: Schema.optionalWith(Schema.String, { exact: true, default: () => "svc.mcp.internal" }),
  client_cert: Schema.optionalWith(Schema.Struct({ cert: Schema.String, key: Schema.String }), { exact: true }),
  /** What `mcp node provision` needs on the operator's machine; paths relative to this file. */
  provision: Schema.optionalWith(
    Schema.Struct({
      /** The platform CA (ca.crt, ca.key): node certificates are signed here; the key never leaves. */
      ca_dir: Schema.String,
      /** The master's token file: each node's system token is added to it (the master rereads it). */
      tokens_file: Schema.String,
      /** Where the fleet's `mcp` UID is kept; default fleet.toml beside ca_dir. */
      fleet_file: Schema.optionalWith(Schema.String, { exact: true }),
      /** Release archives (npm run release), found by version and architecture; default releases/ beside ca_dir. */
      releases_dir: Schema.optionalWith(Schema.String, { exact: true }),
      /** The SSH private key; default the first of ~/.ssh/id_ed25519, id_ecdsa, id_rsa. */
      identity: Schema.optionalWith(Schema.String, { exact: true }),
      /** Host keys accepted for nodes; default known_hosts beside this file. */
      known_hosts: Schema.optionalWith(Schema.String, { exact: true })
    }),
    { exact: true }
  )
})
export type CliConfig = typeof CliConfig.Type

export class CliConfigError extends Data.TaggedError("CliConfigError")<{ readonly path: string; readonly problems: ReadonlyArray<string> }> {
  override get message() {
    return `${this.path}:\n` + this.problems.map((p) => `  ${p}`).join("\n")
  }
}

export const defaultPath = (env: Readonly<Record<string, string | undefined>>) => env["MCP_CONFIG"] ?? join(homedir(), ".config", "mcp", "mcp.toml")

const expand = (p: string, base: string) => {
  const home = p.startsWith("~/") ? join(homedir(), p.slice(2)) : p
  return isAbsolute(home) ? home : resolve(base, home)
}

/** The [provision] section with every path resolved and every default filled in. */
export interface ProvisionSettings {
  readonly ca_dir: string
  readonly tokens_file: string
  readonly fleet_file: string
  readonly releases_dir: string
  readonly identity?: string
  readonly known_hosts: string
}

export interface LoadedConfig extends Omit<CliConfig, "provision"> {
  readonly provision?: ProvisionSettings
  readonly path: string
  readonly caPem: string
  readonly token: Redacted.Redacted<string>
  readonly clientCertPem: { readonly cert: string; readonly key: Redacted.Redacted<string> } | undefined
}

export const load = (path: string): Effect.Effect<LoadedConfig, CliConfigError> =>
  Effect.gen(function* () {
    const fail = (...problems: Array<string>) => Effect.fail(new CliConfigError({ path, problems }))
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      return yield* fail(`cannot read the CLI config (${(e as Error).message}); create it with master, ca and token_file, or pass --config`)
    }
    const decoded = Either.flatMap(parseToml(text), (raw) =>
      Either.mapLeft(Schema.decodeUnknownEither(CliConfig, { errors: "all", onExcessProperty: "error" })(raw), (e) =>
        ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => ({ path: formatPath(i.path), message: i._tag === "Unexpected" ? "unknown setting" : i.message }))
      )
    )
    if (Either.isLeft(decoded)) return yield* fail(...decoded.left.map((p) => `${p.path}: ${p.message}`))
    const config = decoded.right
    const base = dirname(path)
    const read = (file: string, what: string) => {
      try {
        return Either.right(readFileSync(expand(file, base), "utf8"))
      } catch (e) {
        return Either.left(`${what}: cannot read ${file}: ${(e as Error).message}`)
      }
    }
    const tokenPath = expand(config.token_file, base)
    const problems: Array<string> = []
    try {
      if ((statSync(tokenPath).mode & 0o077) !== 0) problems.push(`token_file: ${tokenPath} is readable by others; run: chmod 600 ${tokenPath}`)
    } catch {
      // reported by read below
    }
    const ca = read(config.ca, "ca")
    const token = read(config.token_file, "token_file")
    const cert = config.client_cert === undefined ? undefined : [read(config.client_cert.cert, "client_cert.cert"), read(config.client_cert.key, "client_cert.key")] as const
    for (const r of [ca, token, ...(cert ?? [])]) if (Either.isLeft(r)) problems.push(r.left)
    if (problems.length > 0) return yield* fail(...problems)
    const { provision, ...settings } = config
    return {
      ...settings,
      path,
      services_dir: expand(config.services_dir, base),
      ...(provision === undefined ? {} : {
        provision: {
          ca_dir: expand(provision.ca_dir, base),
          tokens_file: expand(provision.tokens_file, base),
          fleet_file: expand(provision.fleet_file ?? join(provision.ca_dir, "..", "fleet.toml"), base),
          releases_dir: expand(provision.releases_dir ?? join(provision.ca_dir, "..", "releases"), base),
          ...(provision.identity === undefined ? {} : { identity: expand(provision.identity, base) }),
          known_hosts: expand(provision.known_hosts ?? "known_hosts", base)
        }
      }),
      caPem: Either.getOrThrow(ca),
      token: Redacted.make(Either.getOrThrow(token).trim()),
      clientCertPem: cert === undefined ? undefined : { cert: Either.getOrThrow(cert[0]), key: Redacted.make(Either.getOrThrow(cert[1])) }
    }
  })
