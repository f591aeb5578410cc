/**
 * How the daemons write their log: `[log] format = "logfmt"` (the default, one `key=value` line
 * per entry, easy to read in a terminal or journalctl) or `"json"` (one JSON object per line,
 * for a log shipper). JSON lines carry the trace and span ids of the span they were written in,
 * so the lines of one deploy on the master and on its agent can be found together.
 */
import { Cause, Context, FiberRef, FiberRefs, HashMap, Inspectable, Layer, List, Logger, LogLevel, Option, Schema, Tracer } from "effect"

export const LogFormat = Schema.Literal("logfmt", "json")
export type LogFormat = typeof LogFormat.Type

export const LogSection = Schema.Struct({
  format: Schema.optionalWith(LogFormat, { exact: true, default: () => "logfmt" as const })
})

/** The `[log]` table of a daemon's config, absent meaning the defaults. */
export const logSection = Schema.optionalWith(LogSection, { exact: true, default: () => ({ format: "logfmt" as const }) })

/** An Error as its name and message (JSON.stringify would give `{}`); other values as Effect renders them for JSON. */
const part = (value: unknown): unknown => (value instanceof Error ? `${value.name}: ${value.message}` : Inspectable.toJSON(value))

/** The logged values: one string when they are all strings (joined by spaces), else their list. */
const messageOf = (message: unknown): unknown => {
  const parts = (Array.isArray(message) ? message : [message]).map(part)
  return parts.every((p) => typeof p === "string") ? parts.join(" ") : parts
}

/** One entry as a JSON object: time, level, message, the cause if any, annotations, log spans and the tracing span's ids. */
export const jsonEntry = (options: Logger.Logger.Options<unknown>): Record<string, unknown> => {
  const entry: Record<string, unknown> = {
    time: options.date.toISOString(),
    level: options.logLevel.label,
    fiber: `#${(options.fiberId as { id?: number }).id ?? "?"}`,
    message: messageOf(options.message)
  }
  if (!Cause.isEmpty(options.cause)) entry["cause"] = Cause.pretty(options.cause)
  for (const [key, value] of HashMap.toEntries(options.annotations)) entry[key] = value
  const now = options.date.getTime()
  for (const span of List.toArray(options.spans)) entry[`span.${span.label}`] = `${now - span.startTime}ms`
  const current = Context.getOption(FiberRefs.getOrDefault(options.context, FiberRef.currentContext), Tracer.ParentSpan)
  if (Option.isSome(current)) {
    entry["trace_id"] = current.value.traceId
    entry["span_id"] = current.value.spanId
  }
  return entry
}

const jsonLogger = Logger.make((options) => {
  globalThis.console.log(Inspectable.stringifyCircular(jsonEntry(options)))
})

/** The daemon's logger for `format`, at Info and above. */
export const layer = (format: LogFormat) =>
  Layer.merge(
    format === "json" ? Logger.replace(Logger.defaultLogger, jsonLogger) : Logger.logFmt,
    Logger.minimumLogLevel(LogLevel.Info)
  )
