/**
 * Host ports for routes, from a range (10000-60000 by default): never one the registry holds,
 * and only one that can actually be bound right now. Allocation is serialized so two sagas
 * never pick the same port.
 *
 * The search starts at a random offset in the range and then walks every port of it once,
 * wrapping around. Starting at random spreads allocations over the range, so a port released a
 * moment ago (still in TIME_WAIT, or still named in some client's cache) is not the next one
 * handed out, and agents that share a host's port space with separate registries (tests, a
 * second agent) do not all race for the lowest free port between the bind probe and the
 * container's own bind. Walking the whole range makes the answer exact: `PortsExhausted` means
 * every port was examined and none was free, never that a random sampler was unlucky.
 */
import { Context, Data, Effect, Layer, Random } from "effect"
import * as net from "node:net"
import { type PortRow, Registry } from "../registry/Registry.js"

export class PortsExhausted extends Data.TaggedError("PortsExhausted")<{
  readonly wanted: number
  readonly range: readonly [number, number]
  /** Ports of the range examined before giving up: all of them. */
  readonly tried: number
}> {
  override get message() {
    return `no free host port in ${this.range[0]}-${this.range[1]}: all ${this.tried} ports are held by services, reserved by deploys in progress or bound by other processes (wanted ${this.wanted}); widen [ports] in the agent config or undeploy unused services`
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
   * already holds in `keep` gets that port back (it is already recorded, so it is not reserved
   * again), so redeploys keep their ports when possible. Fails with `PortsExhausted`, reserving
   * nothing, only when every port of the range was examined and too few were free.
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
          const kept = requests.map((req) => keep.get(portKey(req.component, req.route)))
          // Ports no request may be given: held in the registry, kept by this call, or chosen by it.
          const taken = new Set((yield* registry.ports).map((p) => p.port))
          for (const port of kept) if (port !== undefined) taken.add(port)
          const span = range.max - range.min + 1
          const start = yield* Random.nextIntBetween(0, span)
          // One walk serves every request: a port passed over (taken, chosen, or refused by the
          // probe) is never free later in the same call, so it is never examined twice.
          let examined = 0
          const chosen: Array<number> = []
          const fresh: Array<PortRow> = []
          for (const [i, req] of requests.entries()) {
            const keptPort = kept[i]
            if (keptPort !== undefined) {
              chosen.push(keptPort)
              continue
            }
            let port: number | undefined
            while (port === undefined && examined < span) {
              const candidate = range.min + ((start + examined) % span)
              examined++
              if (taken.has(candidate)) continue
              if (yield* probe(candidate)) port = candidate
            }
            if (port === undefined) {
              return yield* new PortsExhausted({ wanted: requests.length, range: [range.min, range.max], tried: examined })
            }
            chosen.push(port)
            taken.add(port)
            fresh.push({ port, service, component: req.component, route: req.route, sagaId })
          }
          // All or nothing: a call that runs out reserves none of the ports it had found.
          yield* registry.withTransaction(Effect.forEach(fresh, registry.reservePort))
          return chosen
        })
      )
  }))

export const PortAllocator = Context.GenericTag<PortAllocator>("@mcp/agent/PortAllocator")

export const layer = (range: PortRange, probe?: (port: number) => Effect.Effect<boolean>) =>
  Layer.effect(PortAllocator, Effect.flatMap(Registry, (registry) => make(registry, range, probe)))
