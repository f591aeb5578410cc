/**
 * Host ports for routes: random in a range (10000-60000 by default), never one the registry
 * holds, and only one that can actually be bound right now. Allocation is serialized so two
 * sagas never pick the same port.
 */
import { Context, Data, Effect, Layer, Random } from "effect"
import * as net from "node:net"
import { Registry } from "./Registry.js"

export class PortsExhausted extends Data.TaggedError("PortsExhausted")<{
  readonly wanted: number
  readonly range: readonly [number, number]
  readonly tried: number
}> {
  override get message() {
    return `no free host port in ${this.range[0]}-${this.range[1]} after ${this.tried} tries (wanted ${this.wanted}); widen [ports] in the agent config or undeploy unused services`
  }
}

export interface PortRange {
  readonly min: number
  readonly max: number
}

/** Whether the port can be bound on all interfaces now (nothing else listens on it). */
export const canBind = (port: number): Effect.Effect<boolean> =>
  Effect.async<boolean>((resume) => {
    const server = net.createServer()
    server.once("error", () => resume(Effect.succeed(false)))
    server.listen({ port, host: "0.0.0.0", exclusive: true }, () => server.close(() => resume(Effect.succeed(true))))
  })

export interface PortRequest {
  readonly component: string
  readonly route: string | undefined
}

export interface PortAllocator {
  /**
   * Reserves one port per request for `sagaId`. A request whose (component, route) the service
   * already holds in `keep` gets that port back, so redeploys keep their ports when possible.
   */
  readonly allocate: (
    sagaId: string,
    service: string,
    requests: ReadonlyArray<PortRequest>,
    keep: ReadonlyMap<string, number>
  ) => Effect.Effect<ReadonlyArray<number>, PortsExhausted | import("@effect/sql").SqlError.SqlError>
}

export const portKey = (component: string, route: string | undefined) => `${component}/${route ?? ""}`

export const make = (
  registry: Registry,
  range: PortRange,
  probe: (port: number) => Effect.Effect<boolean> = canBind
): Effect.Effect<PortAllocator> =>
  Effect.map(Effect.makeSemaphore(1), (lock) => ({
    allocate: (sagaId, service, requests, keep) =>
      lock.withPermits(1)(
        Effect.gen(function* () {
          const taken = new Set((yield* registry.ports).map((p) => p.port))
          const chosen: Array<number> = []
          const span = range.max - range.min + 1
          const maxTries = Math.min(span * 2, 2000)
          for (const req of requests) {
            const kept = keep.get(portKey(req.component, req.route))
            if (kept !== undefined) {
              chosen.push(kept)
              continue
            }
            let port: number | undefined
            for (let tries = 0; tries < maxTries && port === undefined; tries++) {
              const candidate = range.min + (yield* Random.nextIntBetween(0, span))
              if (taken.has(candidate) || chosen.includes(candidate)) continue
              if (yield* probe(candidate)) port = candidate
            }
            if (port === undefined) return yield* new PortsExhausted({ wanted: requests.length, range: [range.min, range.max], tried: maxTries })
            chosen.push(port)
            taken.add(port)
            yield* registry.reservePort({ port, service, component: req.component, route: req.route, sagaId })
          }
          return chosen
        })
      )
  }))

export const PortAllocator = Context.GenericTag<PortAllocator>("@mcp/agent/PortAllocator")

export const layer = (range: PortRange, probe?: (port: number) => Effect.Effect<boolean>) =>
  Layer.effect(PortAllocator, Effect.flatMap(Registry, (registry) => make(registry, range, probe)))
