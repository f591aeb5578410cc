/**
 * `/metrics`: the daemon's metrics in Prometheus's text format. Every Effect metric any module
 * declares (Metric.counter, gauge, histogram: the registry is the process's) is read through
 * @effect/opentelemetry's producer and written by OpenTelemetry's Prometheus serializer, so no
 * exposition is hand-written here. Gauges of state are read at each scrape into a second
 * producer: the process's CPU time, memory and event-loop delay, and the gauges the daemon passes
 * (node health on the master, certificate expiry on an agent), so what went away leaves no
 * stale series.
 *
 * Served on the daemon's HTTPS listener to any caller with a valid token (a guest token reads
 * it), and, with `[metrics] listen`, without a token on a plain listener that must be loopback,
 * for a scraper on the same host.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import { NodeHttpServer } from "@effect/platform-node"
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { type HrTime, ValueType } from "@opentelemetry/api"
import { AggregationTemporality, DataPointType, type MetricData, type MetricProducer, type ResourceMetrics } from "@opentelemetry/sdk-metrics"
import { Clock, Context, Effect, Layer, Metric } from "effect"
import * as http from "node:http"
import { createHistogram, performance } from "node:perf_hooks"
import * as Audit from "./Audit.js"
import { bearer } from "./AuthMiddleware.js"
import { Authenticator } from "./Authenticator.js"
import * as Failures from "./Failures.js"
import { ioTurn } from "./IoTurn.js"
import type { RpcRoute } from "./Transport.js"

/** The text Prometheus reads, rendered afresh for each scrape. */
export class Exposition extends Context.Tag("@mcp/rpc/Exposition")<Exposition, { readonly text: Effect.Effect<string> }>() {}

/** Prometheus's text format (0.0.4), as it asks for it. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

const scrapeErrors = Metric.counter("mcp_metrics_collection_errors", { incremental: true, description: "errors while collecting metrics, by what failed" })

/** One labelled value of a gauge read at scrape time. */
export interface Observation {
  readonly value: number
  readonly labels: Readonly<Record<string, string>>
}

/**
 * A gauge of state the daemon holds (a node's health, a certificate's expiry), read at each
 * scrape: it lists what exists now, so a node or certificate that went away leaves no series.
 */
export interface StateGauge<R> {
  readonly name: string
  readonly description: string
  /** A count that only grows for as long as what it counts exists (heartbeats of a node): written as a counter, with _total. */
  readonly counter?: boolean
  readonly read: Effect.Effect<ReadonlyArray<Observation>, unknown, R>
}

/** A gauge (or, `monotonic`, a counter) as OpenTelemetry's data model has it, from this scrape's observations. */
const metricData = (name: string, description: string, observations: ReadonlyArray<Observation>, now: HrTime, monotonic = false): MetricData => {
  const dataPoints = observations.map((o) => ({ startTime: now, endTime: now, attributes: o.labels, value: o.value }))
  const descriptor = { name, description, unit: "", valueType: ValueType.DOUBLE }
  return monotonic
    ? { descriptor: descriptor, dataPointType: DataPointType.SUM, isMonotonic: true, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPoints }
    : { descriptor: descriptor, dataPointType: DataPointType.GAUGE, aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPoints }
}

/** How often the event loop's delay is sampled: a timer this often, and how late it fires. */
const LOOP_RESOLUTION_MS = 10

/**
 * The event loop's delay, as a histogram of how late a timer set every LOOP_RESOLUTION_MS fires
 * (ns). Not Node's monitorEventLoopDelay: on Node 20 it misses a stall in a timer or setImmediate
 * callback or in the microtasks after one, and Effect's scheduler runs fibers in microtasks (a
 * setTimeout now and then): a 300 ms busy loop there read as a 10 ms maximum, while every
 * request waited the whole 300 ms.
 */
const loopDelay = Effect.acquireRelease(
  Effect.sync(() => {
    const delay = createHistogram()
    let due = performance.now() + LOOP_RESOLUTION_MS
    const tick = setInterval(() => {
      const now = performance.now()
      // The histogram takes integers from 1: a timer on time records 1 ns.
      delay.record(Math.max(1, Math.round((now - due) * 1e6)))
      due = now + LOOP_RESOLUTION_MS
    }, LOOP_RESOLUTION_MS)
    // It measures the loop; it must not keep the process alive.
    tick.unref()
    return { delay, tick }
  }),
  ({ tick }) => Effect.sync(() => clearInterval(tick))
)

/** The process's CPU time, memory and event-loop delay (since the previous scrape), read at each scrape. */
const processSampler = Effect.gen(function* () {
  const { delay } = yield* loopDelay
  return (now: HrTime): ReadonlyArray<MetricData> => {
    const cpu = process.cpuUsage()
    const memory = process.memoryUsage()
    // With no sample yet (a scrape right after start) the histogram reads 0.
    const seconds = (ns: number) => (Number.isFinite(ns) ? ns / 1e9 : 0)
    const loop = [
      { value: seconds(delay.percentile(50)), labels: { quantile: "0.5" } },
      { value: seconds(delay.percentile(99)), labels: { quantile: "0.99" } },
      { value: seconds(delay.max), labels: { quantile: "1" } }
    ]
    delay.reset()
    return [
      metricData("mcp_process_cpu_seconds", "CPU time the process used (user and system), in seconds", [{ value: (cpu.user + cpu.system) / 1e6, labels: {} }], now, true),
      metricData("mcp_process_resident_memory_bytes", "resident set size of the process, in bytes", [{ value: memory.rss, labels: {} }], now),
      metricData("mcp_process_heap_used_bytes", "V8 heap in use, in bytes", [{ value: memory.heapUsed, labels: {} }], now),
      metricData("mcp_process_event_loop_delay_seconds", "event-loop delay since the previous scrape, in seconds, by quantile (1 is the largest)", loop, now)
    ]
  }
})

const hrTime = (millis: number): HrTime => [Math.floor(millis / 1000), (millis % 1000) * 1e6]

/**
 * How many data points (a series each, but a histogram's writes a line per bucket) a scrape
 * writes before it gives the event loop back. A master with 10,000 nodes
 * exposes about 60,000 series (3 MiB of text); read and serialized in one go, they held every
 * heartbeat back 190-330 ms at each scrape (bench/heartbeats.ts); a piece of this size takes a
 * few ms.
 */
const SERIES_PER_TURN = 2000

/** A piece of a metric after its first: its data points without the HELP and TYPE lines the first piece wrote. */
const withoutHeader = (piece: string) => piece.replace(/^(#[^\n]*\n)+/, "")

/**
 * The text of `resourceMetrics`, the same as one `serialize` of it, written a metric or a slice of
 * SERIES_PER_TURN data points at a time with an I/O turn between pieces. `first` writes
 * target_info before the first piece; `rest` writes the others.
 */
const serializeInTurns = (first: PrometheusSerializer, rest: PrometheusSerializer, resourceMetrics: ResourceMetrics) =>
  Effect.gen(function* () {
    const text: Array<string> = []
    let sinceTurn = 0
    for (const { scope, metrics } of resourceMetrics.scopeMetrics) {
      for (const metric of metrics) {
        for (let from = 0; from === 0 || from < metric.dataPoints.length; from += SERIES_PER_TURN) {
          const dataPoints = metric.dataPoints.slice(from, from + SERIES_PER_TURN)
          if (sinceTurn > 0 && sinceTurn + dataPoints.length > SERIES_PER_TURN) {
            yield* ioTurn
            sinceTurn = 0
          }
          const slice = { ...metric, dataPoints } as MetricData
          const piece = (text.length === 0 ? first : rest).serialize({ resource: resourceMetrics.resource, scopeMetrics: [{ scope, metrics: [slice] }] })
          text.push(from === 0 ? piece : withoutHeader(piece))
          sinceTurn += dataPoints.length
        }
      }
    }
    return text.length === 0 ? first.serialize(resourceMetrics) : text.join("")
  })

/**
 * The exposition of this process's metrics: the Effect registry, the process figures and the
 * daemon's `gauges`. A gauge whose read fails is logged and counted and left out of that scrape.
 */
export const layer = <R = never>(service: { readonly name: string; readonly version: string }, gauges: ReadonlyArray<StateGauge<R>> = []) =>
  Layer.scoped(
    Exposition,
    Effect.gen(function* () {
      const context = yield* Effect.context<R>()
      const sampleProcess = yield* processSampler
      const resource = yield* OtelResource.Resource
      // What the daemon holds, read fresh for each scrape and handed over by a producer of its own,
      // so a series that is not read again is gone (instruments of an SDK meter would keep their
      // last value). Read before the registry's snapshot, so a failed read is counted in this scrape.
      const readState = Effect.gen(function* () {
        const now = hrTime(yield* Clock.currentTimeMillis)
        const metrics: Array<MetricData> = [...sampleProcess(now)]
        for (const [i, gauge] of gauges.entries()) {
          // A gauge may list every node: one at a time, with the event loop given back between two
          // (so two gauges of one scrape may disagree about a node watched or removed meanwhile).
          if (i > 0) yield* ioTurn
          const read = yield* Effect.either(gauge.read)
          if (read._tag === "Left") {
            yield* Failures.reported(`reading ${gauge.name} for /metrics`, read.left)
            yield* Metric.increment(Metric.tagged(scrapeErrors, "part", gauge.name))
          } else {
            metrics.push(metricData(gauge.name, gauge.description, read.right, now, gauge.counter === true))
          }
        }
        return metrics
      }).pipe(Effect.provide(context))
      let stateRead: ReadonlyArray<MetricData> = []
      const state: MetricProducer = {
        collect: () => Promise.resolve({ resourceMetrics: { resource, scopeMetrics: [{ scope: { name: service.name }, metrics: [...stateRead] }] }, errors: [] })
      }
      const exporter = new PrometheusExporter({ preventServerStart: true, metricProducers: [state] })
      // The Effect registry is the exporter's main producer.
      yield* OtelMetrics.registerProducer(yield* OtelMetrics.makeProducer, () => exporter)
      // No scope labels on every series: one process. target_info keeps the service name and version
      // (written once, before the first piece).
      const withTargetInfo = new PrometheusSerializer(undefined, false, undefined, false, true)
      const withoutTargetInfo = new PrometheusSerializer(undefined, false, undefined, true, true)
      // One scrape at a time: the state read above is handed to the collect that follows it.
      const turn = yield* Effect.makeSemaphore(1)
      const text = Effect.gen(function* () {
        stateRead = yield* readState
        yield* ioTurn
        const collected = yield* Effect.promise(() => exporter.collect())
        for (const error of collected.errors) {
          yield* Failures.reported("collecting metrics", error)
          yield* Metric.increment(Metric.tagged(scrapeErrors, "part", "collect"))
        }
        yield* ioTurn
        return yield* serializeInTurns(withTargetInfo, withoutTargetInfo, collected.resourceMetrics)
      }).pipe(turn.withPermits(1))
      return { text }
    })
  ).pipe(Layer.provide(OtelResource.layer({ serviceName: service.name, serviceVersion: service.version })))

/** Counted with the RPCs refused for want of a valid token (mcp_unauthenticated_calls). */
const refused = (reason: string) =>
  Effect.as(Metric.increment(Metric.tagged(Audit.unauthenticated, "rpc", "GET /metrics")), HttpServerResponse.text(`${reason}; scrape with a token this daemon accepts (a guest token is enough), e.g. Prometheus's authorization.credentials_file`, {
    status: 401,
    headers: { "www-authenticate": "Bearer" }
  }))

/** `GET /metrics` on the daemon's HTTPS listener: any valid token may read it. */
export const route: Effect.Effect<RpcRoute, never, Exposition | Authenticator> = Effect.gen(function* () {
  const exposition = yield* Exposition
  const authenticator = yield* Authenticator
  const app = Effect.gen(function* () {
    const request = yield* HttpServerRequest.HttpServerRequest
    const token = bearer(request.headers)
    if (token === undefined) return yield* refused("no bearer token")
    const principal = yield* Effect.either(authenticator.authenticate(token))
    if (principal._tag === "Left") return yield* refused(principal.left.reason)
    return HttpServerResponse.text(yield* exposition.text, { contentType: CONTENT_TYPE })
  })
  return { path: "/metrics", method: "GET", app }
})

/**
 * `[metrics] listen`: a plain HTTP listener on a loopback address serving only `GET /metrics`,
 * without a token (the config refuses any other address: the metrics name services and nodes).
 */
export const layerLoopback = (host: string, port: number) =>
  Layer.scopedDiscard(
    Effect.gen(function* () {
      const exposition = yield* Exposition
      const server = yield* NodeHttpServer.make(() => http.createServer(), { host, port })
      yield* server.serve(
        Effect.gen(function* () {
          const request = yield* HttpServerRequest.HttpServerRequest
          const path = request.url.split("?")[0]
          if (request.method !== "GET" || path !== "/metrics") {
            return HttpServerResponse.text("only GET /metrics is served here", { status: 404 })
          }
          return HttpServerResponse.text(yield* exposition.text, { contentType: CONTENT_TYPE })
        })
      )
      const address = server.address
      yield* Effect.logInfo(`metrics served without a token on http://${address._tag === "TcpAddress" ? `${address.hostname}:${address.port}` : host}/metrics`)
    })
  )
