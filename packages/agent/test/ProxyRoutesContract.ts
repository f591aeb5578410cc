/**
 * The ProxyRoutes contract: put / list / replace / remove semantics every adapter must keep
 * (memory layer here, HAProxy and Caddy in the top-level integration tests). Each test works on
 * listeners of its own and looks only at them, so one proxy instance serves the whole suite.
 */
import { NodeFileSystem } from "@effect/platform-node"
import { assert, expect, layer } from "@effect/vitest"
import { Routes } from "@mcp/domain"
import { Pki } from "@mcp/rpc"
import { Context, Effect, Layer, Schema } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { type ProxyRoute, ProxyError, ProxyRoutes } from "../src/proxy/ProxyRoutes.js"
import { freePort } from "./ContainerRuntimeContract.js"

export interface Capabilities {
  /** The proxy can pass TLS through (mode "l4"); when false, an L4 put must fail with ProxyError. */
  readonly l4: boolean
}

/** Two certificates for `*.contract.test` from a throwaway CA, so real proxies can load them. */
export class ContractCerts extends Context.Tag("ContractCerts")<ContractCerts, {
  readonly caCert: string
  readonly a: { readonly certPath: string; readonly keyPath: string }
  readonly b: { readonly certPath: string; readonly keyPath: string }
}>() {}

export const contractCertsLayer = Layer.scoped(
  ContractCerts,
  Effect.gen(function*() {
    const dir = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(path.join(tmpdir(), "mcp-proxy-contract-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    const caDir = path.join(dir, "ca")
    const ca = yield* Pki.initCa(caDir, { commonName: "MCP proxy contract CA" })
    const issue = (name: string) => Pki.issueCertificate(caDir, name, { ips: [], dns: ["*.contract.test"], usage: "server", outDir: dir })
    const a = yield* issue("contract-a")
    const b = yield* issue("contract-b")
    return {
      caCert: ca.certPath,
      a: { certPath: a.certPath, keyPath: a.keyPath },
      b: { certPath: b.certPath, keyPath: b.keyPath }
    }
  }).pipe(Effect.orDie)
).pipe(Layer.provide(NodeFileSystem.layer))

/** A validated route (the hostname is a branded Hostname). */
export const makeRoute = (fields: {
  readonly listener: number
  readonly hostname: string
  readonly backend: string
  readonly mode: "l4" | "l7"
  readonly backendTls?: boolean
  readonly tlsCert?: string
  readonly tlsKey?: string
  readonly service?: string
}): ProxyRoute => Schema.decodeUnknownSync(Routes.ProxyRoute)({ backendTls: false, ...fields })

const byKey = (a: ProxyRoute, b: ProxyRoute) => a.listener - b.listener || a.hostname.localeCompare(b.hostname)

/** The routes on these listeners, in a stable order. */
const routesOn = (...listeners: ReadonlyArray<number>) =>
  Effect.map(ProxyRoutes, (p) => p.list).pipe(
    Effect.flatten,
    Effect.map((all) => all.filter((r) => listeners.includes(r.listener)).sort(byKey))
  )

const l7 = (listener: number, hostname: string, backend: string, cert: { readonly certPath: string; readonly keyPath: string }, extra: { readonly backendTls?: boolean; readonly service?: string } = {}) =>
  makeRoute({ listener, hostname, backend, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath, ...extra })

export const proxyRoutesContract = (
  name: string,
  makeLayer: () => Layer.Layer<ProxyRoutes, unknown>,
  capabilities: Capabilities
): void =>
  layer(Layer.merge(Layer.suspend(makeLayer), contractCertsLayer), { excludeTestServices: true, timeout: "60 seconds" })(
    `ProxyRoutes contract: ${name}`,
    (it) => {
      it.effect("put then list gives the route back as it was put", () =>
        Effect.gen(function*() {
          const proxy = yield* ProxyRoutes
          const certs = yield* ContractCerts
          const listener = yield* freePort
          expect(proxy.name).not.toBe("")
          const route = l7(listener, "app.contract.test", "127.0.0.1:9001", certs.a, { service: "web" })
          yield* proxy.put(route)
          expect(yield* routesOn(listener)).toEqual([route])
          yield* proxy.remove(listener, "app.contract.test")
        }))

      it.effect("a put on an existing (listener, hostname) replaces the route, leaving no old fields", () =>
        Effect.gen(function*() {
          const proxy = yield* ProxyRoutes
          const certs = yield* ContractCerts
          const listener = yield* freePort
          yield* proxy.put(l7(listener, "swap.contract.test", "127.0.0.1:9001", certs.a, { service: "web" }))
          const next = l7(listener, "swap.contract.test", "127.0.0.1:9002", certs.b, { backendTls: true })
          yield* proxy.put(next)
          expect(yield* routesOn(listener)).toEqual([next])
          yield* proxy.put(next) // putting the same route again changes nothing
          expect(yield* routesOn(listener)).toEqual([next])
          yield* proxy.remove(listener, "swap.contract.test")
        }))

      it.effect("several hostnames on a listener: remove takes out only the one named", () =>
        Effect.gen(function*() {
          const proxy = yield* ProxyRoutes
          const certs = yield* ContractCerts
          const listener = yield* freePort
          const routes = ["a", "b", "c"].map((h, i) => l7(listener, `${h}.contract.test`, `127.0.0.1:${9101 + i}`, certs.a))
          for (const r of routes) yield* proxy.put(r)
          expect(yield* routesOn(listener)).toEqual(routes)
          yield* proxy.remove(listener, "b.contract.test")
          expect(yield* routesOn(listener)).toEqual([routes[0], routes[2]])
          for (const h of ["a", "c"]) yield* proxy.remove(listener, `${h}.contract.test`)
          expect(yield* routesOn(listener)).toEqual([])
        }))

      it.effect("the same hostname on two listeners is two routes", () =>
        Effect.gen(function*() {
          const proxy = yield* ProxyRoutes
          const certs = yield* ContractCerts
          const first = yield* freePort
          const second = yield* freePort
          const a = l7(first, "both.contract.test", "127.0.0.1:9201", certs.a)
          const b = l7(second, "both.contract.test", "127.0.0.1:9202", certs.b)
          yield* proxy.put(a)
          yield* proxy.put(b)
          expect(yield* routesOn(first, second)).toEqual([a, b].sort(byKey))
          yield* proxy.remove(first, "both.contract.test")
          expect(yield* routesOn(first, second)).toEqual([b])
          yield* proxy.remove(second, "both.contract.test")
        }))

      it.effect("removing a missing route succeeds and changes nothing", () =>
        Effect.gen(function*() {
          const proxy = yield* ProxyRoutes
          const certs = yield* ContractCerts
          const listener = yield* freePort
          const unused = yield* freePort
          yield* proxy.remove(unused, "never.contract.test")
          const kept = l7(listener, "kept.contract.test", "127.0.0.1:9301", certs.a)
          yield* proxy.put(kept)
          yield* proxy.remove(listener, "other.contract.test")
          yield* proxy.remove(listener, "kept.contract.test")
          yield* proxy.remove(listener, "kept.contract.test")
          expect(yield* routesOn(listener, unused)).toEqual([])
        }))

      if (capabilities.l4) {
        it.effect("L4 routes are put, listed, and switch modes with L7 on the same name", () =>
          Effect.gen(function*() {
            const proxy = yield* ProxyRoutes
            const certs = yield* ContractCerts
            const listener = yield* freePort
            const pass = makeRoute({ listener, hostname: "pass.contract.test", backend: "127.0.0.1:9401", mode: "l4", service: "db" })
            yield* proxy.put(pass)
            expect(yield* routesOn(listener)).toEqual([pass])
            const terminated = l7(listener, "pass.contract.test", "127.0.0.1:9402", certs.a)
            yield* proxy.put(terminated)
            expect(yield* routesOn(listener)).toEqual([terminated])
            yield* proxy.put(pass)
            expect(yield* routesOn(listener)).toEqual([pass])
            yield* proxy.remove(listener, "pass.contract.test")
            expect(yield* routesOn(listener)).toEqual([])
          }))
      } else {
        it.effect("an L4 route fails with ProxyError and leaves the routes as they were", () =>
          Effect.gen(function*() {
            const proxy = yield* ProxyRoutes
            const certs = yield* ContractCerts
            const listener = yield* freePort
            const kept = l7(listener, "pass.contract.test", "127.0.0.1:9501", certs.a)
            yield* proxy.put(kept)
            const error = yield* Effect.flip(
              proxy.put(makeRoute({ listener, hostname: "pass.contract.test", backend: "127.0.0.1:9502", mode: "l4" }))
            )
            assert.instanceOf(error, ProxyError)
            expect(error.reason).toMatch(/HAProxy/)
            expect(yield* routesOn(listener)).toEqual([kept])
            yield* proxy.remove(listener, "pass.contract.test")
          }))
      }
    }
  )
