/**
 * How long calls take and how they end, as Prometheus histograms: RPCs by method and result (the
 * auth middleware times every call, a stream until it ends), saga steps by step and outcome.
 * Results are bounded label values: "ok", the error's tag (a schema-declared name such as
 * "Forbidden"), "interrupted" or "defect", never a message.
 */
import { Cause, Clock, Effect, Exit, Metric, MetricBoundaries, MetricLabel } from "effect"

/** 1 ms to about 65 s, doubling: a heartbeat answers in milliseconds, a deploy's stream in tens of seconds. */
const boundaries = MetricBoundaries.exponential({ start: 0.001, factor: 2, count: 17 })

/** Saga steps (agent deploys and renewals, master deploys, undeploys, stops and starts), by step and result. */
export const sagaStepDuration = Metric.histogram("mcp_saga_step_duration_seconds", boundaries, "time a saga step took, by step (its name up to the first space or colon) and result")

export const rpcDuration = Metric.histogram("mcp_rpc_duration_seconds", boundaries, "time from a call's arrival to its answer (for a stream, its end), by rpc and result")

/** The result label of an exit: "ok", the tag of a typed error, "interrupted" or "defect". */
export const resultOf = (exit: Exit.Exit<unknown, unknown>): string => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = Cause.failureOption(exit.cause)
  if (failure._tag === "Some") {
    const error = failure.value
    return typeof error === "object" && error !== null && "_tag" in error && typeof error._tag === "string" ? error._tag : "error"
  }
  return Cause.isInterruptedOnly(exit.cause) ? "interrupted" : "defect"
}

/**
 * Each histogram's series by their labels, made once: tagging a metric builds its key and hashes
 * its labels, which every call (every heartbeat) would otherwise pay for. The label values are
 * bounded (rpc names, steps, results), so these maps stay small.
 */
const series = new WeakMap<Metric.Metric.Histogram<number>, Map<string, Metric.Metric.Histogram<number>>>()

const seriesOf = (histogram: Metric.Metric.Histogram<number>, labels: ReadonlyArray<readonly [string, string]>) => {
  let known = series.get(histogram)
  if (known === undefined) series.set(histogram, (known = new Map()))
  const key = labels.map(([k, v]) => `${k}=${v}`).join("\u0000")
  let tagged = known.get(key)
  if (tagged === undefined) known.set(key, (tagged = Metric.taggedWithLabels(histogram, labels.map(([k, v]) => MetricLabel.make(k, v)))))
  return tagged
}

const NO_EXTRA_TAGS: ReadonlyArray<MetricLabel.MetricLabel> = []

/**
 * Records calls' durations in seconds in `histogram` with `tags` and each call's result, outside
 * any fiber (DirectCall's immediate path): the series of each result is found once, not built
 * from the labels at every heartbeat.
 */
export const recorderNow = (histogram: Metric.Metric.Histogram<number>, tags: Readonly<Record<string, string>>) => {
  const byResult = new Map<string, Metric.Metric.Histogram<number>>()
  return (result: string, seconds: number): void => {
    let tagged = byResult.get(result)
    if (tagged === undefined) byResult.set(result, (tagged = seriesOf(histogram, [...Object.entries(tags), ["result", result]])))
    tagged.unsafeUpdate(seconds, NO_EXTRA_TAGS)
  }
}

/** Runs `effect`, recording its duration in seconds in `histogram` with `tags` and the result. */
export const timed = (histogram: Metric.Metric.Histogram<number>, tags: Readonly<Record<string, string>>) =>
  <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
    Effect.flatMap(Clock.currentTimeMillis, (start) =>
      Effect.onExit(effect, (exit) =>
        Effect.flatMap(Clock.currentTimeMillis, (end) =>
          Metric.update(seriesOf(histogram, [...Object.entries(tags), ["result", resultOf(exit)]]), (end - start) / 1000)
        )
      )
    )
