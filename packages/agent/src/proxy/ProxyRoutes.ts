/**
 * The ProxyRoutes port: routes in the node's TLS proxy (hostname on a listener -> backend).
 * Real layers (HAProxy, Caddy) come with the integrations; `layerRecordOnly` is the embedded
 * default when no proxy is configured, and `layerMemory` serves tests.
 */
import type { Routes } from "@mcp/domain"
import { Context, Data, Effect, Layer, Ref } from "effect"
import { type Faults, noFaults } from "../Faults.js"

export type ProxyRoute = Routes.ProxyRoute

export class ProxyError extends Data.TaggedError("ProxyError")<{
  readonly proxy: string
  readonly operation: string
  readonly reason: string
}> {
  override get message() {
    return `${this.proxy}: ${this.operation} failed: ${this.reason}`
  }
}

export interface ProxyRoutes {
  /** Names the proxy in errors and status, e.g. "haproxy at /run/haproxy.sock". */
  readonly name: string
  /**
   * True when routes really steer traffic: a redeploy then starts the new containers on fresh
   * ports and switches the routes before stopping the old ones. False when routes are only
   * recorded, and a redeploy recreates containers on the same ports.
   */
  readonly switchesTraffic: boolean
  /** Adds or replaces the route for (listener, hostname). */
  readonly put: (route: ProxyRoute) => Effect.Effect<void, ProxyError>
  /** Removes the route; removing a missing route succeeds. */
  readonly remove: (listener: number, hostname: string) => Effect.Effect<void, ProxyError>
  readonly list: Effect.Effect<ReadonlyArray<ProxyRoute>, ProxyError>
}

export const ProxyRoutes = Context.GenericTag<ProxyRoutes>("@mcp/agent/ProxyRoutes")

const key = (listener: number, hostname: string) => `${listener} ${hostname}`

/** In memory; `faults` lets tests fail "proxy.put" / "proxy.remove". */
export const makeMemory = (options: { readonly switchesTraffic: boolean; readonly faults?: Faults; readonly name?: string }) =>
  Effect.gen(function* () {
    const routes = yield* Ref.make(new Map<string, ProxyRoute>())
    const faults = options.faults ?? noFaults
    const name = options.name ?? "memory proxy"
    const fail = (operation: string) => new ProxyError({ proxy: name, operation, reason: "injected fault" })
    const proxy: ProxyRoutes = {
      name,
      switchesTraffic: options.switchesTraffic,
      put: (route) =>
        Effect.flatMap(faults.take("proxy.put"), (f) =>
          f ? Effect.fail(fail("put")) : Ref.update(routes, (m) => new Map(m).set(key(route.listener, route.hostname), route))
        ),
      remove: (listener, hostname) =>
        Effect.flatMap(faults.take("proxy.remove"), (f) =>
          f ? Effect.fail(fail("remove")) : Ref.update(routes, (m) => {
            const next = new Map(m)
            next.delete(key(listener, hostname))
            return next
          })
        ),
      list: Effect.map(Ref.get(routes), (m) => [...m.values()])
    }
    return proxy
  })

export const layerMemory = (options: { readonly switchesTraffic: boolean; readonly faults?: Faults }) =>
  Layer.effect(ProxyRoutes, makeMemory(options))

/** No proxy configured: routes are kept in memory for listing and never steer traffic. */
export const layerRecordOnly = Layer.effect(ProxyRoutes, makeMemory({ switchesTraffic: false, name: "no proxy (routes recorded only)" }))
