// The real proxy adapters: the ProxyRoutes contract on HAProxy 2.6 and Caddy 2.6 (started by the
// harness), plus real TLS traffic through them to tiny node backends on loopback.
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Either, Fiber, Layer } from "effect"
import { spawnSync } from "node:child_process"
import * as http from "node:http"
import type * as net from "node:net"
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as CaddyRoutes from "../packages/agent/src/proxy/CaddyRoutes.js"
import * as HaproxyRoutes from "../packages/agent/src/proxy/HaproxyRoutes.js"
import { ProxyError } from "../packages/agent/src/proxy/ProxyRoutes.js"
import { freePort } from "../packages/agent/test/ContainerRuntimeContract.js"
import { layerPlatform } from "../packages/agent/test/Platform.js"
import { makeRoute, proxyRoutesContract } from "../packages/agent/test/ProxyRoutesContract.js"
import { scopedCaddy } from "./support/Caddy.js"
import { scopedHaproxy } from "./support/Haproxy.js"
import { CA_NAME, get, notServed, scopedBackend, scopedPki } from "./support/ProxyTraffic.js"

proxyRoutesContract(
  "HAProxy",
  () => Layer.unwrapScoped(Effect.map(scopedHaproxy(), (h) => HaproxyRoutes.layer(h.options))).pipe(Layer.provide(layerPlatform)),
  { l4: true }
)

proxyRoutesContract(
  "Caddy",
  () =>
    Layer.unwrapScoped(Effect.map(scopedCaddy, (c) => CaddyRoutes.layer({ adminUrl: c.adminUrl, listenerBind: "127.0.0.1" }))).pipe(
      Layer.provide(layerPlatform)
    ),
  { l4: false }
)

describe("HAProxy routes with real traffic", () => {
  it.scopedLive("an L7 route reaches the backend with a certificate from our CA; other Hosts get 404", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app1.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "app1.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))

      const answer = yield* get(listener, "app1.test", pki.caPem)
      expect(answer).toMatchObject({ status: 200, body: `one app1.test:${listener}`, issuer: CA_NAME, serial: cert.serial })
      const wrongHost = yield* get(listener, "app1.test", pki.caPem, "nobody.test")
      expect(wrongHost.status).toBe(404)
      // An unknown SNI name gets no certificate at all (strict-sni).
      expect(Either.isLeft(yield* Effect.either(get(listener, "nobody.test", pki.caPem)))).toBe(true)

      // A new certificate for the route is served at once (runtime API: set + commit ssl cert).
      const renewed = yield* Effect.orDie(pki.issue("app1.test", "app1-renewed"))
      yield* proxy.put(makeRoute({ listener, hostname: "app1.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: renewed.certPath, tlsKey: renewed.keyPath }))
      expect(yield* get(listener, "app1.test", pki.caPem)).toMatchObject({ status: 200, serial: renewed.serial })
    }))

  it.scopedLive("an L4 route passes TLS through to the backend's own certificate", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backendCert = yield* Effect.orDie(pki.issue("pass.test"))
      const backend = yield* scopedBackend("tls-backend", backendCert)
      const plain = yield* scopedBackend("plain")
      const listener = yield* freePort
      const l7Cert = yield* Effect.orDie(pki.issue("web.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "web.test", backend: `127.0.0.1:${plain.port}`, mode: "l7", tlsCert: l7Cert.certPath, tlsKey: l7Cert.keyPath }))
      yield* proxy.put(makeRoute({ listener, hostname: "pass.test", backend: `127.0.0.1:${backend.port}`, mode: "l4" }))

      // The certificate is the backend's own: HAProxy did not terminate TLS.
      expect(yield* get(listener, "pass.test", pki.caPem)).toMatchObject({ status: 200, body: `tls-backend pass.test:${listener}`, serial: backendCert.serial })
      expect(yield* get(listener, "web.test", pki.caPem)).toMatchObject({ status: 200, body: `plain web.test:${listener}`, serial: l7Cert.serial })
    }))

  it.scopedLive("an L7 route to a TLS backend re-encrypts and verifies it against the configured CA", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy({ backendCaFile: pki.caPath })
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backendCert = yield* Effect.orDie(pki.issue("secure.test"))
      const backend = yield* scopedBackend("reencrypted", backendCert)
      const listener = yield* freePort
      const frontCert = yield* Effect.orDie(pki.issue("secure.test", "secure-front"))
      yield* proxy.put(makeRoute({ listener, hostname: "secure.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", backendTls: true, tlsCert: frontCert.certPath, tlsKey: frontCert.keyPath }))
      expect(yield* get(listener, "secure.test", pki.caPem)).toMatchObject({ status: 200, body: `reencrypted secure.test:${listener}`, serial: frontCert.serial })
    }))

  it.scopedLive("after remove the host is no longer served; the last route closes the listener", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      for (const name of ["gone.test", "stays.test"]) {
        const cert = yield* Effect.orDie(pki.issue(name))
        yield* proxy.put(makeRoute({ listener, hostname: name, backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      }
      expect((yield* get(listener, "gone.test", pki.caPem)).status).toBe(200)
      yield* proxy.remove(listener, "gone.test")
      expect(yield* notServed(listener, "gone.test", pki.caPem)).toBe(true)
      expect((yield* get(listener, "stays.test", pki.caPem)).status).toBe(200)
      yield* proxy.remove(listener, "stays.test")
      expect(yield* notServed(listener, "stays.test", pki.caPem)).toBe(true)
      expect(yield* proxy.list).toEqual([])
    }))

  it.scopedLive("routes survive an HAProxy restart (killed by pid, started again from the same directory)", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const plain = yield* scopedBackend("plain")
      const passCert = yield* Effect.orDie(pki.issue("pass.test"))
      const passBackend = yield* scopedBackend("tls-backend", passCert)
      const listener = yield* freePort
      const webCert = yield* Effect.orDie(pki.issue("web.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "web.test", backend: `127.0.0.1:${plain.port}`, mode: "l7", tlsCert: webCert.certPath, tlsKey: webCert.keyPath }))
      yield* proxy.put(makeRoute({ listener, hostname: "pass.test", backend: `127.0.0.1:${passBackend.port}`, mode: "l4" }))
      const before = [yield* get(listener, "web.test", pki.caPem), yield* get(listener, "pass.test", pki.caPem)]

      const oldPid = h.pid()
      yield* Effect.promise(() => h.stop())
      expect(Either.isLeft(yield* Effect.either(get(listener, "web.test", pki.caPem)))).toBe(true)
      yield* Effect.promise(() => h.start())
      expect(h.pid()).not.toBe(oldPid)

      const after = [yield* get(listener, "web.test", pki.caPem), yield* get(listener, "pass.test", pki.caPem)]
      expect(after).toEqual(before)
      // The runtime API of the new process takes changes too.
      yield* proxy.remove(listener, "pass.test")
      expect(yield* notServed(listener, "pass.test", pki.caPem)).toBe(true)
    }))

  it.scopedLive("switching the backend (and a reload for a new listener) under a steady request loop fails no request", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const one = yield* scopedBackend("one")
      const two = yield* scopedBackend("two")
      const listener = yield* freePort
      const other = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      const route = (port: number, on = listener) =>
        makeRoute({ listener: on, hostname: "app.test", backend: `127.0.0.1:${port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath })
      yield* proxy.put(route(one.port))

      // 200 requests, one new TLS connection each, about 10 ms apart.
      const loop = yield* Effect.fork(
        Effect.forEach(Array.from({ length: 200 }, (_, i) => i), () =>
          get(listener, "app.test", pki.caPem).pipe(
            Effect.map((a) => (a.status === 200 ? a.body.split(" ")[0]! : `status ${a.status}`)),
            Effect.catchAll((e) => Effect.succeed(`error ${e.message}`)),
            Effect.zipLeft(Effect.sleep("10 millis"))
          ))
      )
      yield* Effect.sleep("600 millis")
      yield* proxy.put(route(one.port, other)) // a new listener: config rewrite + reload
      yield* Effect.sleep("600 millis")
      yield* proxy.put(route(two.port))
      const results = yield* Fiber.join(loop)

      const failures = results.filter((r) => r !== "one" && r !== "two")
      expect(failures).toEqual([])
      expect(results[0]).toBe("one")
      expect(results.at(-1)).toBe("two")
      const switchedAt = results.indexOf("two")
      expect(results.slice(switchedAt).every((r) => r === "two")).toBe(true)
    }), { timeout: 30_000 })

  it.scopedLive("a listener port held by another process fails the put and HAProxy keeps serving", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      const route = (on: number) =>
        makeRoute({ listener: on, hostname: "app.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath })
      yield* proxy.put(route(listener))
      const squatter = yield* scopedBackend("squatter")

      const error = yield* Effect.flip(proxy.put(route(squatter.port)))
      assert.instanceOf(error, ProxyError)
      expect(error.reason).toMatch(/already in use/)
      expect((yield* get(listener, "app.test", pki.caPem)).status).toBe(200)
      expect((yield* proxy.list).map((r) => r.listener)).toEqual([listener])
    }))

  it.scopedLive("a file that cannot be written fails the put, which leaves no temporary file behind and the routes as they were", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("kept")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("kept.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "kept.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      // The certificate directory fills up (a tmpfs of one page, holding one page): the new
      // route's certificate file is created, and writing it fails with ENOSPC.
      const files = HaproxyRoutes.layout(h.options.dir)
      const mounted = spawnSync("mount", ["-t", "tmpfs", "-o", "size=4k,mode=0700", "tmpfs", files.certs], { encoding: "utf8" })
      if (mounted.status !== 0) throw new Error(`this test mounts a tmpfs, which needs root: ${mounted.stderr}`)
      yield* Effect.addFinalizer(() => Effect.sync(() => spawnSync("umount", ["-l", files.certs])))
      writeFileSync(join(files.certs, "filler"), Buffer.alloc(4096))
      const newCert = yield* Effect.orDie(pki.issue("new.test"))
      const error = yield* Effect.flip(
        proxy.put(makeRoute({ listener, hostname: "new.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: newCert.certPath, tlsKey: newCert.keyPath }))
      )
      assert.instanceOf(error, ProxyError)
      expect(error.reason).toContain(files.pem(listener, "new.test"))
      expect(error.reason).toMatch(/disk .*full \(\d+(\.\d+)? ?(B|KiB|MiB) free of/i)
      const temporary = readdirSync(h.options.dir, { recursive: true }).map(String).filter((f) => f.endsWith(".tmp"))
      expect(temporary).toEqual([])
      expect((yield* proxy.list).map((r) => r.hostname)).toEqual(["kept.test"])
      expect((yield* get(listener, "kept.test", pki.caPem)).status).toBe(200)
    }))

  it.scopedLive("removing a route whose put was cut short (files written, route not recorded) leaves none of its files, and the other routes serve", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("kept")
      const listener = yield* freePort
      const otherListener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("kept.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "kept.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      const files = HaproxyRoutes.layout(h.options.dir)
      const recordedCrtList = readFileSync(files.crtList(listener), "utf8")
      // What a put killed before recording its route leaves: its certificate and its line in the
      // listener's crt-list, on a live listener and on one HAProxy never opened.
      const pem = readFileSync(cert.certPath, "utf8") + readFileSync(cert.keyPath, "utf8")
      writeFileSync(files.pem(listener, "cut.test"), pem, { mode: 0o600 })
      writeFileSync(files.crtList(listener), `${recordedCrtList}${files.pem(listener, "cut.test")} cut.test\n`)
      writeFileSync(files.pem(otherListener, "new.test"), pem, { mode: 0o600 })
      writeFileSync(files.crtList(otherListener), `${files.pem(otherListener, "new.test")} new.test\n`)

      yield* proxy.remove(listener, "cut.test")
      yield* proxy.remove(otherListener, "new.test")
      expect(existsSync(files.pem(listener, "cut.test"))).toBe(false)
      expect(readFileSync(files.crtList(listener), "utf8")).toBe(recordedCrtList)
      expect(existsSync(files.pem(otherListener, "new.test"))).toBe(false)
      expect(existsSync(files.crtList(otherListener))).toBe(false)
      expect((yield* proxy.list).map((r) => r.hostname)).toEqual(["kept.test"])
      expect((yield* get(listener, "kept.test", pki.caPem)).status).toBe(200)
      // Nothing left: removing again touches nothing, with HAProxy stopped too.
      yield* Effect.promise(() => h.stop())
      yield* proxy.remove(listener, "cut.test")
    }))

  it.scopedLive("with HAProxy down, put fails with a ProxyError naming haproxy", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const h = yield* scopedHaproxy()
      const proxy = yield* HaproxyRoutes.make(h.options).pipe(Effect.provide(layerPlatform))
      yield* Effect.promise(() => h.stop())
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      const listener = yield* freePort
      const error = yield* Effect.flip(
        proxy.put(makeRoute({ listener, hostname: "app.test", backend: "127.0.0.1:9001", mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      )
      assert.instanceOf(error, ProxyError)
      expect(error.proxy).toBe(`haproxy (${h.options.statsSocket})`)
      expect(error.reason).toMatch(/^HAProxy is not running: connect (ENOENT|ECONNREFUSED)/)
      expect(error.message).toContain("haproxy")
      // Nothing was recorded: the route is not listed as if it were live.
      expect(yield* proxy.list).toEqual([])
    }))
})

describe("Caddy routes with real traffic", () => {
  it.scopedLive("an L7 route reaches the backend with our CA's certificate; other Hosts get 404; remove takes it away", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const caddy = yield* scopedCaddy
      const proxy = yield* CaddyRoutes.make({ adminUrl: caddy.adminUrl, listenerBind: "127.0.0.1" }).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("one")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("app1.test"))
      yield* proxy.put(makeRoute({ listener, hostname: "app1.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath, service: "web" }))

      expect(yield* get(listener, "app1.test", pki.caPem)).toMatchObject({ status: 200, body: `one app1.test:${listener}`, issuer: CA_NAME, serial: cert.serial })
      expect((yield* get(listener, "app1.test", pki.caPem, "nobody.test")).status).toBe(404)
      // Renewal in place (same file paths, new contents) is picked up by the next put.
      const renewed = yield* Effect.orDie(pki.issue("app1.test"))
      expect(renewed.serial).not.toBe(cert.serial)
      yield* proxy.put(makeRoute({ listener, hostname: "app1.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath, service: "web" }))
      expect(yield* get(listener, "app1.test", pki.caPem)).toMatchObject({ status: 200, serial: renewed.serial })
      yield* proxy.remove(listener, "app1.test")
      expect(yield* notServed(listener, "app1.test", pki.caPem)).toBe(true)
    }))

  it.scopedLive("a connection the admin endpoint resets before answering (Caddy restarting it after a change) is sent again", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const caddy = yield* scopedCaddy
      // The admin API through a relay that resets the next `reset` requests' connections unanswered
      // (it forwards the rest with Caddy's own Host, which its admin endpoint checks).
      const admin = new URL(caddy.adminUrl)
      const state = { reset: 0, resets: 0 }
      const relay = http.createServer((req, res) => {
        if (state.reset > 0) {
          state.reset--
          state.resets++
          req.socket.resetAndDestroy()
          return
        }
        const upstream = http.request({ host: admin.hostname, port: admin.port, path: req.url, method: req.method, headers: { ...req.headers, host: admin.host } }, (answer) => {
          res.writeHead(answer.statusCode ?? 502, answer.headers)
          answer.pipe(res)
        })
        upstream.on("error", (e) => res.destroy(e))
        req.pipe(upstream)
      })
      yield* Effect.acquireRelease(
        Effect.async<void>((resume) => void relay.listen(0, "127.0.0.1", () => resume(Effect.void))),
        () => Effect.sync(() => relay.close())
      )
      const proxy = yield* CaddyRoutes.make({ adminUrl: `http://127.0.0.1:${(relay.address() as net.AddressInfo).port}`, listenerBind: "127.0.0.1" }).pipe(Effect.provide(layerPlatform))
      const backend = yield* scopedBackend("reset")
      const listener = yield* freePort
      const cert = yield* Effect.orDie(pki.issue("reset.test"))
      state.reset = 2
      yield* proxy.put(makeRoute({ listener, hostname: "reset.test", backend: `127.0.0.1:${backend.port}`, mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      expect(state.resets).toBe(2)
      expect((yield* proxy.list).map((r) => r.hostname)).toEqual(["reset.test"])
      expect((yield* get(listener, "reset.test", pki.caPem)).status).toBe(200)
    }))

  it.scopedLive("an L4 route is a typed error that points to HAProxy", () =>
    Effect.gen(function*() {
      const caddy = yield* scopedCaddy
      const proxy = yield* CaddyRoutes.make({ adminUrl: caddy.adminUrl, listenerBind: "127.0.0.1" }).pipe(Effect.provide(layerPlatform))
      const listener = yield* freePort
      const error = yield* Effect.flip(proxy.put(makeRoute({ listener, hostname: "pass.test", backend: "127.0.0.1:9001", mode: "l4" })))
      assert.instanceOf(error, ProxyError)
      expect(error.proxy).toBe(`caddy (${caddy.adminUrl})`)
      expect(error.reason).toContain("Caddy cannot pass TLS through")
      expect(error.reason).toContain(`[proxy] kind = "haproxy"`)
    }))

  it.scopedLive("with Caddy down, put fails with a ProxyError naming caddy", () =>
    Effect.gen(function*() {
      const pki = yield* scopedPki
      const port = yield* freePort
      const proxy = yield* CaddyRoutes.make({ adminUrl: `http://127.0.0.1:${port}` }).pipe(Effect.provide(layerPlatform))
      const cert = yield* Effect.orDie(pki.issue("app.test"))
      const error = yield* Effect.flip(
        proxy.put(makeRoute({ listener: port, hostname: "app.test", backend: "127.0.0.1:9001", mode: "l7", tlsCert: cert.certPath, tlsKey: cert.keyPath }))
      )
      expect(error.reason).toMatch(/^Caddy is not running: connect ECONNREFUSED/)
      expect(error.message).toContain("caddy")
    }))
})
