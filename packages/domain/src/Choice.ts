/**
 * A literal choice whose failure message says what to write, shared by the definition's schemas.
 * Its own module so that schemas built with it (RouteMode) load without ServiceDefinition.
 */
import { Schema } from "effect"

/** The value a field was given, as a message quotes it. */
export const formatActual = (actual: unknown): string =>
  actual === undefined ? "nothing" : typeof actual === "string" ? JSON.stringify(actual) : String(actual)

/** A literal choice whose message replaces the per-member "Expected ..." lines. */
export const choice = <const L extends ReadonlyArray<string>>(literals: L, explain: string) =>
  Schema.Literal(...literals).annotations({
    message: (issue) => ({ message: `must be ${explain}, got ${formatActual(issue.actual)}`, override: true })
  })
