/**
 * The operator's record of provisioned nodes (`fleet.toml` beside the CA by default): the `mcp`
 * user's UID, which every node gets (files carry it; it is never changed), and for each node how
 * it was reached and set up, so `mcp agent upgrade` can reach it again. Written whole (a
 * temporary file renamed over it).
 */
import * as Names from "@mcp/domain/Names"
import * as Node from "@mcp/domain/Node"
import { formatPath } from "@mcp/domain/Problem"
import { parseToml } from "@mcp/domain/Toml"
import { Effect, Either, ParseResult, Schema } from "effect"
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs"
import { dirname } from "node:path"
import * as TOML from "smol-toml"
import { CommandFailed } from "../Report.js"

export const NodeRecord = Schema.Struct({
  /** user@host[:port] */
  ssh: Schema.String,
  /** The IP the agent listens on and is reached at. */
  address: Schema.String,
  port: Schema.Int.pipe(Schema.between(1, 65535)),
  role: Node.NodeRole
})
export type NodeRecord = typeof NodeRecord.Type

export const FleetRecord = Schema.Struct({
  mcp_uid: Schema.optionalWith(Schema.Int.pipe(Schema.between(1, 65534)), { exact: true }),
  nodes: Schema.optionalWith(Schema.Record({ key: Names.NodeName, value: NodeRecord }), { exact: true, default: () => ({}) })
})
export type FleetRecord = typeof FleetRecord.Type

/** The record, or an empty one when the file does not exist yet (before the first node). */
export const readFleet = (file: string): Effect.Effect<FleetRecord, CommandFailed> =>
  Effect.gen(function* () {
    if (!existsSync(file)) return { nodes: {} }
    const text = yield* Effect.try({ try: () => readFileSync(file, "utf8"), catch: (e) => new CommandFailed({ message: `cannot read ${file}: ${(e as Error).message}` }) })
    const decoded = Either.flatMap(
      Either.mapLeft(parseToml(text), (problems) => problems.map((p) => `${p.path}: ${p.message}`)),
      (raw) =>
        Either.mapLeft(Schema.decodeUnknownEither(FleetRecord, { errors: "all", onExcessProperty: "error" })(raw), (e) =>
          ParseResult.ArrayFormatter.formatErrorSync(e).map((i) => `${formatPath(i.path)}: ${i._tag === "Unexpected" ? "unknown setting" : i.message}`)
        )
    )
    if (Either.isLeft(decoded)) return yield* new CommandFailed({ message: `${file} (the record of provisioned nodes):\n  ${decoded.left.join("\n  ")}` })
    return decoded.right
  })

export const writeFleet = (file: string, fleet: FleetRecord): Effect.Effect<void, CommandFailed> =>
  Effect.try({
    try: () => {
      mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
      const body = TOML.stringify({ ...(fleet.mcp_uid === undefined ? {} : { mcp_uid: fleet.mcp_uid }), nodes: fleet.nodes })
      writeFileSync(`${file}.new`, `# Written by mcp node provision: the mcp user's UID on every node (never change it: files carry it),\n# and how each node is reached (mcp agent upgrade uses it).\n${body}`, { mode: 0o644 })
      renameSync(`${file}.new`, file)
    },
    catch: (e) => new CommandFailed({ message: `cannot write ${file}: ${(e as Error).message}` })
  })

/** Reads, changes and writes the record. */
export const updateFleet = (file: string, f: (fleet: FleetRecord) => FleetRecord): Effect.Effect<void, CommandFailed> =>
  Effect.flatMap(readFleet(file), (fleet) => writeFleet(file, f(fleet)))
