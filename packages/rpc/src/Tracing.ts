/**
 * Traces over OTLP/HTTP: with `[tracing] otlp_url` in a daemon's config (or, for the CLI, the
 * standard OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), the process's spans (RPC client and server
 * spans, which @effect/rpc links across processes, and the saga's step and compensation spans)
 * are sent as OTLP JSON to that collector every second, and at exit. Without it, spans still
 * exist (they give log lines their trace ids) and go nowhere.
 */
import * as OtlpSerialization from "@effect/opentelemetry/OtlpSerialization"
import * as OtlpTracer from "@effect/opentelemetry/OtlpTracer"
import { NodeHttpClient } from "@effect/platform-node"
import { Effect, Layer, Schema } from "effect"

const OtlpUrl = Schema.String.pipe(Schema.filter((url) => {
  try {
    const parsed = new URL(url)
    return parsed.protocol === "http:" || parsed.protocol === "https:"
      ? true
      : `must be an http:// or https:// URL; got ${parsed.protocol}//`
  } catch {
    return `must be the collector's OTLP/HTTP traces URL, e.g. "http://127.0.0.1:4318/v1/traces"; got ${JSON.stringify(url)}`
  }
}))

export const TracingSection = Schema.Struct({
  /** The collector's OTLP/HTTP traces endpoint, e.g. "http://127.0.0.1:4318/v1/traces". */
  otlp_url: OtlpUrl
})
export type TracingSection = typeof TracingSection.Type

/** The OTLP exporter for this process's spans. */
export const layerOtlp = (service: { readonly name: string; readonly version: string }, url: string): Layer.Layer<never> =>
  OtlpTracer.layer({
    url,
    resource: { serviceName: service.name, serviceVersion: service.version },
    exportInterval: "1 second",
    shutdownTimeout: "3 seconds"
  }).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(NodeHttpClient.layer))

/** The exporter when the config has `[tracing]`, else nothing (spans stay in the process). */
export const layer = (service: { readonly name: string; readonly version: string }, section: TracingSection | undefined): Layer.Layer<never> =>
  section === undefined ? Layer.empty : layerOtlp(service, section.otlp_url)

/**
 * A port's implementation whose every call (a method that returns an Effect, or an Effect member)
 * runs in a span named `<port>.<member>`: what the agent asks of its container engine, proxy, DNS
 * server and certificate issuer shows in a deploy's trace. Other members pass through unchanged.
 */
export const traced = <S extends object>(port: string, implementation: S): S => {
  const wrapped: Record<string, unknown> = {}
  for (const [member, value] of Object.entries(implementation)) {
    const name = `${port}.${member}`
    wrapped[member] = typeof value === "function"
      ? (...args: Array<unknown>) => {
        const result = (value as (...a: Array<unknown>) => unknown)(...args)
        return Effect.isEffect(result) ? Effect.withSpan(result, name) : result
      }
      : Effect.isEffect(value)
      ? Effect.withSpan(value, name)
      : value
  }
  return wrapped as S
}
