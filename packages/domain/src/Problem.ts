/**
 * A problem found in a file (a service definition, a config), naming where it is. Its own module
 * (re-exported by Validation) so that Errors and config readers load without the service definition.
 */
import { Schema } from "effect"

export interface Problem {
  /** Where in the file: `components[0].routes[1].mode`, or `toml` for a syntax error. */
  readonly path: string
  readonly message: string
}

export const Problem = Schema.Struct({ path: Schema.String, message: Schema.String })

/** A decode issue's path as a file's reader writes it: `components[0].routes[1].mode`. */
export const formatPath = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (acc, key) => (typeof key === "number" ? `${acc}[${key}]` : acc === "" ? String(key) : `${acc}.${String(key)}`),
    ""
  )
