/**
 * What the deploy policy refuses in a definition. Its own module (re-exported by Policy) so that
 * Errors loads without the policy's schemas.
 */
import { Schema } from "effect"

export type Rule =
  | "host_path_roots" | "forbidden_paths" | "volume_options"
  | "host_network" | "root_user" | "ports_off_bind_address" | "core_tier"

export const Violation = Schema.Struct({
  /** Where in the definition: `components[0].volumes[1]`. */
  path: Schema.String,
  /** The `[policy]` key that refuses it. */
  rule: Schema.String,
  message: Schema.String
})
export interface Violation {
  readonly path: string
  readonly rule: Rule | string
  readonly message: string
}
