/**
 * `mcp token create|list|revoke --file <path>`: manages the token file the embedded authenticator
 * reads. `create` prints the new token on stdout and nothing else; the file keeps only its digest.
 * Failures are printed by Report.ts.
 */
import { Command, Options } from "@effect/cli"
import * as TokenFile from "@mcp/rpc/TokenFile"
import { DateTime, Effect, Option, Redacted } from "effect"
import { print, printError } from "../Output.js"

const file = Options.file("file").pipe(Options.withDescription("the token file (TOML, mode 0600)"))
const name = Options.text("name").pipe(Options.withDescription("the token's name, shown as the caller in logs and errors"))

const create = Command.make(
  "create",
  {
    file,
    name,
    kind: Options.choice("kind", ["human", "system"]).pipe(
      Options.withDescription("human for operators, system for daemons")
    ),
    role: Options.choice("role", ["admin", "user", "guest"]).pipe(
      Options.withDescription("guest reads, user and admin change things")
    ),
    expiresInDays: Options.integer("expires-in-days").pipe(
      Options.withDescription("days until the token stops working; without it, it never expires"),
      Options.optional
    )
  },
  ({ expiresInDays, file, kind, name, role }) =>
    Effect.gen(function* () {
      const days = Option.getOrUndefined(expiresInDays)
      const token = yield* TokenFile.createToken(file, { name, kind, role, expiresInDays: days })
      yield* print(Redacted.value(token))
      yield* printError(
        `created ${kind} token "${name}" with role ${role}` +
          (days === undefined ? ", no expiry" : `, expiring in ${days} days`) +
          `; it cannot be shown again (${file} keeps only its SHA-256 digest)`
      )
    })
).pipe(Command.withDescription("create a token, print it once on stdout, and store its digest"))

export interface TokenListing {
  readonly name: string
  readonly kind: string
  readonly role: string
  readonly created: string
  readonly expires?: string
}

/** What list shows of an entry: everything except the digest. */
export const listing = (entry: TokenFile.TokenEntry): TokenListing => ({
  name: entry.name,
  kind: entry.kind,
  role: entry.role,
  created: DateTime.formatIso(entry.created),
  ...(entry.expires === undefined ? {} : { expires: DateTime.formatIso(entry.expires) })
})

export const formatTable = (rows: ReadonlyArray<TokenListing>, now: DateTime.Utc): Array<string> => {
  const header = ["NAME", "KIND", "ROLE", "CREATED", "EXPIRES"]
  const cells = rows.map((r) => [
    r.name,
    r.kind,
    r.role,
    r.created,
    r.expires === undefined
      ? "never"
      : DateTime.lessThan(now, DateTime.unsafeMake(r.expires))
        ? r.expires
        : `${r.expires} (expired)`
  ])
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)))
  return [header, ...cells].map((row) => row.map((c, i) => c.padEnd(widths[i]!)).join("  ").trimEnd())
}

const list = Command.make(
  "list",
  { file, json: Options.boolean("json").pipe(Options.withDescription("print the tokens as JSON")) },
  ({ file, json }) =>
    Effect.gen(function* () {
      const loaded = yield* TokenFile.loadTokenFile(file)
      const rows = loaded.tokens.map(listing)
      if (json) return yield* print(JSON.stringify(rows, null, 2))
      if (rows.length === 0) return yield* printError(`no tokens in ${file}; create one with mcp token create`)
      const now = yield* DateTime.now
      for (const line of formatTable(rows, now)) yield* print(line)
    })
).pipe(Command.withDescription("list the tokens in a token file (names, kinds, roles, dates; never digests)"))

const revoke = Command.make("revoke", { file, name }, ({ file, name }) =>
  Effect.gen(function* () {
    yield* TokenFile.revokeToken(file, name)
    yield* printError(`revoked token "${name}"; servers reading ${file} stop accepting it within a second`)
  })
).pipe(Command.withDescription("remove a token from a token file"))

export const token = Command.make("token").pipe(
  Command.withDescription("manage API tokens in a token file"),
  Command.withSubcommands([create, list, revoke])
)
