/**
 * The agent's event log entries for services (deployed, stopped, rolled back, ...). The log is
 * the operator's record of what happened, so an entry that cannot be written is fatal, except
 * the entry of an operation already done (`recordDone`): its caller must hear that it is done.
 */
import { Failures } from "@mcp/rpc"
import { Effect, Metric } from "effect"
import { Registry } from "../registry/Registry.js"

export const record = (kind: "deploy" | "recover" | "cert", service: string, message: string) =>
  Effect.flatMap(Registry, (registry) => registry.addEvent(kind, service, message).pipe(Failures.fatal("the agent registry")))

export const eventsUnwritten = Metric.counter("mcp_agent_events_unwritten", {
  incremental: true,
  description: "Event log entries of operations already done that could not be written (a full disk), logged instead"
})

/**
 * The entry of an operation that is already done (and journaled): one that cannot be written is
 * logged and counted, not fatal. Failing the request would tell its caller (the master) that a
 * stop or undeploy that happened did not.
 */
export const recordDone = (kind: "deploy" | "recover" | "cert", service: string, message: string) =>
  Effect.flatMap(Registry, (registry) => registry.addEvent(kind, service, message)).pipe(
    Effect.catchAll((e) =>
      Effect.zipRight(
        Effect.logWarning(`${service}: ${message}, but its event could not be written to the agent registry: ${e.message}`),
        Metric.increment(eventsUnwritten)
      ))
  )
