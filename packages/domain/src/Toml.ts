/**
 * TOML text to a plain table. Its own module (re-exported by Validation) so that config readers
 * load without the service definition.
 */
import { Either } from "effect"
import * as TOML from "smol-toml"
import type { Problem } from "./Problem.js"

/** Parses TOML text, reporting syntax errors with their line and column. */
export const parseToml = (text: string): Either.Either<Record<string, unknown>, ReadonlyArray<Problem>> => {
  try {
    return Either.right(TOML.parse(text) as Record<string, unknown>)
  } catch (e) {
    if (e instanceof TOML.TomlError) {
      const first = e.message.split("\n")[0]!
      return Either.left([{ path: "toml", message: `syntax error at line ${e.line}, column ${e.column}: ${first}` }])
    }
    return Either.left([{ path: "toml", message: `cannot parse: ${String(e)}` }])
  }
}
