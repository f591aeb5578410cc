/**
 * The token file: a TOML list of `[[tokens]]` holding each API token's name, kind, role and
 * SHA-256 digest (never the token). Owns its format, loading (refusing group/other-readable files)
 * and the create/revoke edits, which rewrite the file atomically with mode 0600.
 */
import { type Error as PlatformError, FileSystem } from "@effect/platform"
import { Clock, Data, DateTime, Duration, Effect, Either, ParseResult, Redacted, Schema } from "effect"
import { randomBytes } from "node:crypto"
import { stat } from "node:fs/promises"
import * as nodePath from "node:path"
import * as TOML from "smol-toml"
import { tokenDigest } from "./Authenticator.js"
import { bestEffort } from "./Failures.js"
import { Role, TokenKind } from "./Principal.js"
import * as SecretFile from "./SecretFile.js"

// ---------------------------------------------------------------------------------------------
// Format

/** An instant written as an ISO 8601 string with a zone, or as a TOML offset date-time literal. */
export const Instant = Schema.transformOrFail(
  Schema.Union(Schema.String, Schema.DateFromSelf),
  Schema.DateTimeUtcFromSelf,
  {
    strict: true,
    decode: (input, _, ast) => {
      const fail = (why: string) => ParseResult.fail(new ParseResult.Type(ast, input, why))
      if (input instanceof Date) {
        // smol-toml's TomlDate: a local date-time has no offset and would shift with the machine's zone.
        const local = "isLocal" in input && typeof input.isLocal === "function" && input.isLocal() === true
        if (local || Number.isNaN(input.getTime())) return fail(`expected a time with a zone, such as 2025-01-31T12:00:00Z`)
        return ParseResult.succeed(DateTime.unsafeFromDate(input))
      }
      if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/i.test(input)) {
        return fail(`expected an ISO 8601 time with a zone, such as 2025-01-31T12:00:00Z, got ${JSON.stringify(input)}`)
      }
      const parsed = DateTime.make(input)
      return parsed._tag === "Some" ? ParseResult.succeed(DateTime.toUtc(parsed.value)) : fail(`not a valid time: ${JSON.stringify(input)}`)
    },
    encode: (dt) => ParseResult.succeed(DateTime.formatIso(dt))
  }
)

export const TokenName = Schema.String.pipe(
  Schema.pattern(/^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/, {
    message: () => `a token name is 1-64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit`
  })
)

export const Sha256Hex = Schema.String.pipe(
  Schema.pattern(/^[0-9a-f]{64}$/, { message: () => `expected the token's SHA-256 digest as 64 lowercase hex digits` })
)

export const TokenEntry = Schema.Struct({
  name: TokenName,
  kind: TokenKind,
  role: Role,
  sha256: Sha256Hex,
  created: Instant,
  expires: Schema.optional(Instant)
})
export type TokenEntry = typeof TokenEntry.Type

export const TokenFileSchema = Schema.Struct({
  tokens: Schema.optionalWith(Schema.Array(TokenEntry), { default: () => [] })
})

export interface TokenFile {
  readonly tokens: ReadonlyArray<TokenEntry>
}

export interface Problem {
  /** Where in the file, e.g. `tokens[1].role`; `toml` for a syntax error. */
  readonly path: string
  readonly message: string
}

// ---------------------------------------------------------------------------------------------
// Errors (adapter-internal: the Authenticator maps nothing of these onto the wire)

/** The file's mode lets group or others read it (or, for a daemon, another user owns it); tokens are refused until it is fixed. */
export class TokenFileInsecure extends Data.TaggedError("TokenFileInsecure")<{
  readonly path: string
  readonly mode: number
  /** From SecretFile.exposure: the mode or owner found and the fix. */
  readonly problem: string
}> {
  override get message() {
    return `token file ${this.path} ${this.problem}`
  }
}

export class TokenFileInvalid extends Data.TaggedError("TokenFileInvalid")<{
  readonly path: string
  readonly problems: ReadonlyArray<Problem>
}> {
  override get message() {
    return `token file ${this.path} is invalid:\n` + this.problems.map((p) => `  ${p.path}: ${p.message}`).join("\n")
  }
}

/** The file (or its directory) cannot be read or written. */
export class TokenFileUnavailable extends Data.TaggedError("TokenFileUnavailable")<{
  readonly path: string
  readonly reason: string
}> {
  override get message() {
    return `token file ${this.path}: ${this.reason}`
  }
}

export class TokenNameTaken extends Data.TaggedError("TokenNameTaken")<{
  readonly path: string
  readonly name: string
}> {
  override get message() {
    return `token file ${this.path} already has a token named "${this.name}"; revoke it first or pick another name`
  }
}

export class TokenNameUnknown extends Data.TaggedError("TokenNameUnknown")<{
  readonly path: string
  readonly name: string
}> {
  override get message() {
    return `token file ${this.path} has no token named "${this.name}"; list them with mcp token list --file ${this.path}`
  }
}

/** A createToken request that cannot be satisfied as given (bad name, non-positive expiry). */
export class InvalidTokenRequest extends Data.TaggedError("InvalidTokenRequest")<{
  readonly problems: ReadonlyArray<Problem>
}> {
  override get message() {
    return `invalid token request: ` + this.problems.map((p) => `${p.path}: ${p.message}`).join("; ")
  }
}

export type TokenFileError = TokenFileInsecure | TokenFileInvalid | TokenFileUnavailable

// ---------------------------------------------------------------------------------------------
// Decoding

const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    ""
  )

const ENTRY_FIELDS = Object.keys(TokenEntry.fields)
const FILE_FIELDS = Object.keys(TokenFileSchema.fields)

const decodeAll = Schema.decodeUnknownEither(TokenFileSchema, { errors: "all", onExcessProperty: "error" })

const schemaProblems = (error: ParseResult.ParseError): Array<Problem> =>
  ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) => {
    const known = issue.path.length <= 1 ? FILE_FIELDS : ENTRY_FIELDS
    const message =
      issue._tag === "Missing"
        ? "is missing; this field is required"
        : issue._tag === "Unexpected"
          ? `unknown field; known fields here: ${known.join(", ")}`
          : issue.message
    return { path: formatPath(issue.path), message }
  })

const duplicateProblems = (file: TokenFile): Array<Problem> => {
  const problems: Array<Problem> = []
  const names = new Map<string, number>()
  const digests = new Map<string, number>()
  file.tokens.forEach((t, i) => {
    const sameName = names.get(t.name)
    if (sameName !== undefined) problems.push({ path: formatPath(["tokens", i, "name"]), message: `duplicate name "${t.name}" (also tokens[${sameName}])` })
    else names.set(t.name, i)
    const sameDigest = digests.get(t.sha256)
    if (sameDigest !== undefined) problems.push({ path: formatPath(["tokens", i, "sha256"]), message: `the same token as tokens[${sameDigest}]; remove one of them` })
    else digests.set(t.sha256, i)
  })
  return problems
}

/** Decodes the text of a token file into its entries or every problem in it. Pure. */
export const decodeTokenFile = (text: string): Either.Either<TokenFile, Array<Problem>> => {
  let raw: unknown
  try {
    raw = TOML.parse(text)
  } catch (e) {
    return Either.left([{ path: "toml", message: e instanceof Error ? e.message : String(e) }])
  }
  return Either.match(decodeAll(raw), {
    onLeft: (error) => Either.left(schemaProblems(error)),
    onRight: (file) => {
      const problems = duplicateProblems(file)
      return problems.length === 0 ? Either.right(file) : Either.left(problems)
    }
  })
}

const HEADER =
  "# MCP API tokens, managed with `mcp token create|list|revoke`.\n" +
  "# Holds SHA-256 digests only; the tokens themselves were shown once when created.\n\n"

/** The file's text for these entries. Pure. */
export const encodeTokenFile = (file: TokenFile): string =>
  HEADER + TOML.stringify(Schema.encodeSync(TokenFileSchema)({ tokens: file.tokens })) + "\n"

// ---------------------------------------------------------------------------------------------
// IO

const errnoCode = (e: unknown): string | undefined =>
  typeof e === "object" && e !== null && "code" in e && typeof e.code === "string" ? e.code : undefined

const describe = (e: unknown): string => (e instanceof Error ? e.message : String(e))

/** The system's own words (e.g. "EACCES: permission denied, open '…'"), without the platform's prefix. */
const platformText = (e: PlatformError.PlatformError): string => e.description ?? e.message

/** What the authenticator compares to decide whether the file changed since it was read. */
export interface FileStamp {
  readonly mtimeMs: number
  readonly ctimeMs: number
  readonly ino: number
  readonly size: number
}

export const sameStamp = (a: FileStamp, b: FileStamp): boolean =>
  a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino && a.size === b.size

// Node's stat, not FileSystem.stat: File.Info has no ctime and rounds mtime to the millisecond, and
// the stamp needs both to see a same-size rewrite in place whose mtime was kept or fell in the same millisecond.
export const statTokenFile = (path: string): Effect.Effect<FileStamp & SecretFile.Access, TokenFileUnavailable> =>
  Effect.tryPromise({
    try: () => stat(path),
    catch: (e) =>
      new TokenFileUnavailable({
        path,
        reason: errnoCode(e) === "ENOENT" ? `does not exist; create it with mcp token create --file ${path}` : `cannot stat: ${describe(e)}`
      })
  }).pipe(Effect.map((s) => ({ mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, ino: s.ino, size: s.size, mode: s.mode, uid: s.uid })))

export interface LoadedTokenFile extends TokenFile {
  readonly stamp: FileStamp
}

/**
 * Reads and decodes the file, refusing it when group or others may access it (mode & 0o077) and,
 * with `requireOwner` (the daemons), when another user owns it. The CLI does not require the owner:
 * an operator may edit a daemon's file as another user.
 */
export const loadTokenFile = (
  path: string,
  options: { readonly requireOwner?: boolean } = {}
): Effect.Effect<LoadedTokenFile, TokenFileError, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const before = yield* statTokenFile(path)
    const problem = SecretFile.exposure(path, before, options.requireOwner === true ? SecretFile.daemonUid() : "any owner")
    if (problem !== undefined) return yield* new TokenFileInsecure({ path, mode: before.mode, problem })
    const text = yield* fs.readFileString(path).pipe(
      Effect.mapError((e) => new TokenFileUnavailable({ path, reason: `cannot read: ${platformText(e)}` }))
    )
    const file = decodeTokenFile(text)
    if (Either.isLeft(file)) return yield* new TokenFileInvalid({ path, problems: file.left })
    const { mode: _mode, uid: _uid, ...stamp } = before
    return { tokens: file.right.tokens, stamp }
  })

/** Like loadTokenFile, but a missing file is an empty one (for edits that may create it). */
const loadOrEmpty = (path: string): Effect.Effect<TokenFile, TokenFileError, FileSystem.FileSystem> =>
  Effect.catchIf(
    loadTokenFile(path),
    (e) => e._tag === "TokenFileUnavailable" && e.reason.startsWith("does not exist"),
    () => Effect.succeed<TokenFile>({ tokens: [] })
  )

/**
 * Writes a temp file with mode 0600 next to `path`, syncs it and renames it over `path`. The new
 * file keeps the old one's owner: a daemon refuses a token file it does not own, and root editing
 * the master's file (owned by its user) must not take it away from the master.
 */
export const writeTokenFile = (path: string, file: TokenFile): Effect.Effect<void, TokenFileUnavailable, FileSystem.FileSystem> =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => {
    const temp = nodePath.join(nodePath.dirname(path), `.${nodePath.basename(path)}.${randomBytes(6).toString("hex")}.tmp`)
    const write = Effect.scoped(
      Effect.gen(function* () {
        const previous = yield* Effect.option(fs.stat(path))
        const handle = yield* fs.open(temp, { flag: "wx", mode: 0o600 })
        yield* handle.writeAll(new TextEncoder().encode(encodeTokenFile(file)))
        yield* handle.sync
        if (previous._tag === "Some" && previous.value.uid._tag === "Some" && previous.value.gid._tag === "Some") {
          const [uid, gid] = [previous.value.uid.value, previous.value.gid.value]
          if (uid !== process.getuid?.() || gid !== process.getgid?.()) yield* fs.chown(temp, uid, gid)
        }
      })
    )
    return Effect.zipRight(write, fs.rename(temp, path)).pipe(
      Effect.mapError((e) =>
        new TokenFileUnavailable({
          path,
          reason: e._tag === "SystemError" && e.reason === "NotFound"
            ? `directory ${nodePath.dirname(path)} does not exist`
            : `cannot write: ${platformText(e)}`
        })
      ),
      Effect.tapError(() => bestEffort(`remove the temporary file ${temp}`)(fs.remove(temp, { force: true })))
    )
  })

// ---------------------------------------------------------------------------------------------
// Edits

export interface CreateTokenOptions {
  readonly name: string
  readonly kind: TokenKind
  readonly role: Role
  /** Days until the token expires; without it the token does not expire. */
  readonly expiresInDays?: number | undefined
}

/** A new token: `mcp_` + 32 random bytes as base64url. */
export const generateToken = (): Redacted.Redacted<string> => Redacted.make(`mcp_${randomBytes(32).toString("base64url")}`)

/**
 * Generates a token, appends its digest entry (creating the file with mode 0600 if absent) and
 * returns the token. This is the only time the token exists in the clear.
 */
export const createToken = (
  path: string,
  options: CreateTokenOptions
): Effect.Effect<Redacted.Redacted<string>, TokenFileError | TokenNameTaken | InvalidTokenRequest, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const problems: Array<Problem> = []
    if (Either.isLeft(Schema.decodeUnknownEither(TokenName)(options.name))) {
      problems.push({ path: "name", message: `a token name is 1-64 letters, digits, ".", "_", "@" or "-", starting with a letter or digit; got ${JSON.stringify(options.name)}` })
    }
    const days = options.expiresInDays
    if (days !== undefined && !(Number.isFinite(days) && days > 0)) {
      problems.push({ path: "expiresInDays", message: `must be a positive number of days, got ${days}` })
    }
    if (problems.length > 0) return yield* new InvalidTokenRequest({ problems })

    const file = yield* loadOrEmpty(path)
    if (file.tokens.some((t) => t.name === options.name)) return yield* new TokenNameTaken({ path, name: options.name })

    const token = generateToken()
    const now = DateTime.unsafeMake(yield* Clock.currentTimeMillis)
    const entry: TokenEntry = {
      name: options.name,
      kind: options.kind,
      role: options.role,
      sha256: tokenDigest(token),
      created: now,
      ...(days === undefined ? {} : { expires: DateTime.addDuration(now, Duration.millis(Math.round(days * 86_400_000))) })
    }
    yield* writeTokenFile(path, { tokens: [...file.tokens, entry] })
    return token
  })

/** Removes the named token's entry; the token stops working at the authenticator's next reload. */
export const revokeToken = (path: string, name: string): Effect.Effect<void, TokenFileError | TokenNameUnknown, FileSystem.FileSystem> =>
  Effect.gen(function* () {
    const file = yield* loadTokenFile(path)
    if (!file.tokens.some((t) => t.name === name)) return yield* new TokenNameUnknown({ path, name })
    yield* writeTokenFile(path, { tokens: file.tokens.filter((t) => t.name !== name) })
  })
