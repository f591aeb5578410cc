/**
 * Deploy step "dns": the service's names in the internal zone point at this node; names the
 * new version no longer has are removed. Like the routes step, the compensation converges on
 * what the registry says now rather than on the journaled "previous" names, and never takes a
 * name the registry gives another service.
 */
import { Effect, Schema } from "effect"
import { Registry } from "../../registry/Registry.js"
import { isActive, switchDns } from "../Converge.js"
import { Saga } from "@mcp/rpc"

export const journaled = Saga.journaled({
  name: "dns",
  Intent: Schema.Struct({
    // Journals written before the intent named the service lack it: they are undone by putting
    // the previous names back.
    service: Schema.optional(Schema.String),
    previous: Schema.Array(Schema.String),
    next: Schema.Array(Schema.String)
  }),
  Result: Schema.Null,
  compensate: ({ intent: { service, previous, next } }) =>
    Effect.gen(function* () {
      if (service === undefined) return yield* switchDns(next, previous)
      const records = yield* (yield* Registry).dnsRecords
      const wanted = (yield* isActive(service)) ? records.filter((d) => d.service === service).map((d) => d.name) : []
      const others = new Set(records.filter((d) => d.service !== service).map((d) => d.name))
      yield* switchDns([...previous, ...next].filter((name) => !others.has(name)), wanted)
    })
})

export const step = (service: string, previous: ReadonlyArray<string>, next: ReadonlyArray<string>) =>
  Saga.step(journaled, { service, previous, next }, switchDns(previous, next), () => null)
