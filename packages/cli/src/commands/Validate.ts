/**
 * `mcp validate <file>…`: decodes service definition files and reports every problem as
 * `FILE: path: message` (or JSON with --json). Writes nothing; exit 1 when any file is invalid.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Validation } from "@mcp/domain"
import { Effect, Either } from "effect"
import { print, printError } from "../Output.js"

export interface FileReport {
  readonly file: string
  readonly ok: boolean
  readonly service?: string
  readonly problems: ReadonlyArray<Validation.Problem>
}

export const validateFile = (file: string, internalZone: string) =>
  Effect.gen(function* () {
    const fs = yield* FileSystem.FileSystem
    const text = yield* Effect.either(fs.readFileString(file))
    if (Either.isLeft(text)) {
      return { file, ok: false, problems: [{ path: "file", message: `cannot read: ${text.left.message}` }] } satisfies FileReport
    }
    const decoded = Validation.decodeDefinitionToml(text.right, { internalZone })
    return Either.match(decoded, {
      onLeft: (problems): FileReport => ({ file, ok: false, problems }),
      onRight: (def): FileReport => ({ file, ok: true, service: def.name, problems: [] })
    })
  })

export const formatReport = (r: FileReport): Array<string> =>
  r.ok ? [`${r.file}: ok (service ${r.service})`] : r.problems.map((p) => `${r.file}: ${p.path}: ${p.message}`)

const files = Args.file({ name: "file", exists: "either" }).pipe(Args.atLeast(1))
const json = Options.boolean("json").pipe(Options.withDescription("print the reports as JSON"))
const internalZone = Options.text("internal-zone").pipe(
  Options.withDescription("the zone internal hostnames live under"),
  Options.withDefault("svc.mcp.internal")
)

export const validate = Command.make("validate", { files, json, internalZone }, ({ files, json, internalZone }) =>
  Effect.gen(function* () {
    const reports = yield* Effect.forEach(files, (f) => validateFile(f, internalZone))
    if (json) yield* print(JSON.stringify(reports, null, 2))
    else for (const r of reports) for (const line of formatReport(r)) yield* (r.ok ? print(line) : printError(line))
    if (reports.some((r) => !r.ok)) process.exitCode = 1
  })
).pipe(Command.withDescription("check service definition files without deploying anything"))
