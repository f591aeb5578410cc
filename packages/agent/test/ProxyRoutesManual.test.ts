/**
 * Manual routes (ProxyRoutesAdd) as the agent checks them: certificates only as PEM (written
 * 0600 into <data_dir>/certs) or as files already in that directory; backends only this node's
 * ports in the agent's range or configured networks. Every refusal is typed, names the field,
 * says the same thing whatever a path points at, and leaves no file and no route behind.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors, Routes } from "@mcp/domain"
import { Pki } from "@mcp/rpc"
import { Effect, Either, Schema } from "effect"
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as AgentConfig from "../src/daemon/AgentConfig.js"
import { makeFaults } from "../src/Faults.js"
import { networks } from "../src/proxy/BackendAddress.js"
import * as ManualRoutes from "../src/proxy/ManualRoutes.js"
import * as ProxyRoutes from "../src/proxy/ProxyRoutes.js"
import { settings } from "./Harness.js"
import { layerPlatform } from "./Platform.js"

const RULES: ManualRoutes.ManualRouteRules = { ports: { min: 20000, max: 30000 }, rpcPort: 25000, backendNetworks: networks([]) }

/** A data dir, and a certificate pair for `hostname` issued outside it (where a user keeps theirs). */
const fixture = (hostname = "manual.example.com") =>
  Effect.gen(function* () {
    const root = yield* Effect.acquireRelease(
      Effect.sync(() => mkdtempSync(join(tmpdir(), "mcp-manual-"))),
      (d) => Effect.sync(() => rmSync(d, { recursive: true, force: true }))
    )
    const caDir = join(root, "ca")
    yield* Pki.initCa(caDir, { commonName: "manual route test CA" })
    const issue = (name: string, dns: string) => Pki.issueCertificate(caDir, name, { ips: [], dns: [dns], usage: "server", outDir: join(root, "elsewhere") })
    const cert = yield* issue("leaf", hostname)
    const other = yield* issue("other", "other.example.com")
    const dataDir = join(root, "data")
    mkdirSync(dataDir, { mode: 0o700 })
    const proxy = yield* ProxyRoutes.makeMemory({ switchesTraffic: true, faults: yield* makeFaults })
    return { root, dataDir, certDir: join(dataDir, "certs"), cert, other, proxy }
  }).pipe(Effect.orDie, Effect.provide(layerPlatform))

type Fixture = Effect.Effect.Success<ReturnType<typeof fixture>>

const route = (fields: Partial<typeof Routes.ProxyRoute.Encoded> = {}): Routes.ProxyRoute =>
  Schema.decodeUnknownSync(Routes.ProxyRoute)({ listener: 8443, hostname: "manual.example.com", backend: "127.0.0.1:20080", mode: "l7", backendTls: false, ...fields })

const pem = (f: Fixture, which: "cert" | "other" = "cert") => ({
  tlsCertPem: readFileSync(f[which].certPath, "utf8"),
  tlsKeyPem: readFileSync(f[which].keyPath, "utf8")
})

const add = (f: Fixture, r: Routes.ProxyRoute, rules: ManualRoutes.ManualRouteRules = RULES) =>
  ManualRoutes.add(r, { proxy: f.proxy, settings, dataDir: f.dataDir }).pipe(Effect.provide(ManualRoutes.layerRules(rules)))

/** The refusal's problems as `path: message`, or a line saying it was something else. */
const refusal = (f: Fixture, r: Routes.ProxyRoute, rules?: ManualRoutes.ManualRouteRules) =>
  Effect.map(Effect.flip(add(f, r, rules)), (e) => (e instanceof Errors.InvalidRequest ? e.problems.map((p) => `${p.path}: ${p.message}`) : [`not InvalidRequest: ${e._tag}`]))

const files = (dir: string) => (existsSync(dir) ? readdirSync(dir).sort() : [])

/** Refused, and nothing changed: no route, no certificate file. */
const refusedLeavingNothing = (f: Fixture, r: Routes.ProxyRoute, rules?: ManualRoutes.ManualRouteRules) =>
  Effect.gen(function* () {
    const before = { routes: yield* f.proxy.list, files: files(f.certDir) }
    const problems = yield* refusal(f, r, rules)
    expect(yield* f.proxy.list).toEqual(before.routes)
    expect(files(f.certDir)).toEqual(before.files)
    return problems
  })

describe("manual route certificates", () => {
  it.scoped("PEM is checked, written 0600 into the certificate directory, and the route names those files", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      yield* add(f, route(pem(f)))
      const [put] = yield* f.proxy.list
      expect(put?.tlsCert?.startsWith(join(f.certDir, "manual-8443-manual.example.com-"))).toBe(true)
      expect(put?.tlsKey?.startsWith(join(f.certDir, "manual-8443-manual.example.com-"))).toBe(true)
      expect(put).not.toHaveProperty("tlsCertPem")
      expect(put).not.toHaveProperty("tlsKeyPem")
      expect(readFileSync(put!.tlsCert!, "utf8")).toBe(readFileSync(f.cert.certPath, "utf8"))
      expect(readFileSync(put!.tlsKey!, "utf8")).toBe(readFileSync(f.cert.keyPath, "utf8"))
      for (const file of [put!.tlsCert!, put!.tlsKey!]) expect(statSync(file).mode & 0o777).toBe(0o600)
    }))

  it.scoped("replacing a PEM route removes the files it no longer serves; a put that fails removes what it wrote", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      yield* add(f, route(pem(f)))
      const first = files(f.certDir)
      yield* add(f, route(pem(f)))
      expect(files(f.certDir)).toHaveLength(2)
      expect(files(f.certDir)).not.toEqual(first)
      // A proxy that refuses the put: the route and the files stay as they were.
      const faults = yield* makeFaults
      const failing = yield* ProxyRoutes.makeMemory({ switchesTraffic: true, faults })
      yield* faults.arm("proxy.put")
      const before = files(f.certDir)
      const error = yield* Effect.flip(ManualRoutes.add(route(pem(f)), { proxy: failing, settings, dataDir: f.dataDir }))
      expect(error).toBeInstanceOf(Errors.PeerFailed)
      expect(files(f.certDir)).toEqual(before)
    }))

  it.scoped("removing a PEM route removes the route and the files the agent wrote for it", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      yield* add(f, route(pem(f)))
      expect(files(f.certDir)).toHaveLength(2)
      yield* ManualRoutes.remove(8443, "manual.example.com", { proxy: f.proxy, dataDir: f.dataDir })
      expect(yield* f.proxy.list).toEqual([])
      expect(files(f.certDir)).toEqual([])
    }))

  it.scoped("a path outside the certificate directory is refused with one message, whatever is there", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      mkdirSync(f.certDir, { mode: 0o700 })
      // A link inside the directory that leads out of it counts as outside.
      symlinkSync(f.cert.keyPath, join(f.certDir, "escape.key"))
      const message = (field: string) =>
        `${field}: must name a file in the agent's certificate directory ${f.certDir}; send a certificate from elsewhere as PEM instead (${field}Pem; \`mcp route add --tls-cert <file> --tls-key <file>\` reads local files and does this)`
      const cases = [
        { tlsCert: f.cert.certPath, tlsKey: f.cert.keyPath }, // a real pair, elsewhere
        { tlsCert: "/etc/shadow", tlsKey: "/root/.ssh/id_ed25519" }, // what a probe would try
        { tlsCert: "/no/such/file", tlsKey: "/no/such/key" },
        { tlsCert: "/etc", tlsKey: "/" }, // directories
        { tlsCert: "../../elsewhere/leaf.crt", tlsKey: "escape.key" }, // relative climb, symlink out
        { tlsCert: "missing.crt", tlsKey: "missing.key" } // inside, but not there
      ]
      for (const c of cases) {
        expect(yield* refusedLeavingNothing(f, route(c)), JSON.stringify(c)).toEqual([message("tlsCert"), message("tlsKey")])
      }
    }))

  it.scoped("a file already in the certificate directory may be named, by name or path; a pair that does not match is refused", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      mkdirSync(f.certDir, { mode: 0o700 })
      writeFileSync(join(f.certDir, "mine.crt"), readFileSync(f.cert.certPath))
      writeFileSync(join(f.certDir, "mine.key"), readFileSync(f.cert.keyPath), { mode: 0o600 })
      writeFileSync(join(f.certDir, "other.key"), readFileSync(f.other.keyPath), { mode: 0o600 })
      yield* add(f, route({ tlsCert: "mine.crt", tlsKey: join(f.certDir, "mine.key") }))
      const [put] = yield* f.proxy.list
      expect(put).toMatchObject({ tlsCert: join(f.certDir, "mine.crt"), tlsKey: join(f.certDir, "mine.key") })
      expect((yield* refusedLeavingNothing(f, route({ tlsCert: "mine.crt", tlsKey: "other.key" }))).map((p) => p.split(":")[0])).toEqual(["tlsCert", "tlsKey"])
    }))

  it.scoped("PEM that does not match, names another host, or comes half is refused naming the field", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      const mine = pem(f)
      const other = pem(f, "other")
      expect(yield* refusedLeavingNothing(f, route({ tlsCertPem: mine.tlsCertPem, tlsKeyPem: other.tlsKeyPem }))).toEqual([
        `tlsKeyPem: is not the key of tlsCertPem's certificate; send the key the certificate was issued for`
      ])
      const [wrongHost] = yield* refusedLeavingNothing(f, route(other))
      expect(wrongHost).toMatch(/^tlsCertPem: the certificate does not name manual\.example\.com/)
      expect(yield* refusedLeavingNothing(f, route({ tlsCertPem: mine.tlsCertPem }))).toEqual([
        `tlsKeyPem: the certificate and its key go together; send both tlsCertPem and tlsKeyPem`
      ])
      expect((yield* refusedLeavingNothing(f, route({ ...mine, tlsCert: "x.crt", tlsKey: "x.key" }))).map((p) => p.split(":")[0])).toEqual(["tlsCert"])
      expect((yield* refusedLeavingNothing(f, route({ ...mine, mode: "l4" }))).map((p) => p.split(":")[0])).toEqual(["tlsCertPem"])
    }))

  it("the wire schema takes only PEM in the PEM fields, and keeps the key redacted", () => {
    const decode = Schema.decodeUnknownEither(Routes.ProxyRoute)
    const base = { listener: 8443, hostname: "a.example.com", backend: "127.0.0.1:20080", mode: "l7", backendTls: false }
    expect(decode({ ...base, tlsCertPem: "/etc/passwd" })._tag).toBe("Left")
    expect(decode({ ...base, tlsKeyPem: "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n" })._tag).toBe("Left")
    expect(decode({ ...base, tlsCertPem: `-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\nextra` })._tag).toBe("Left")
    expect(decode({ ...base, tlsCertPem: "x".repeat(Routes.MAX_PEM_LENGTH + 1) })._tag).toBe("Left")
    const ok = decode({ ...base, tlsKeyPem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n" })
    expect(ok._tag).toBe("Right")
    expect(String(ok._tag === "Right" ? ok.right.tlsKeyPem : "")).not.toContain("AAAA")
  })
})

describe("manual route backends", () => {
  it.scoped("this node: only ports of the agent's range, never its RPC port", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      for (const backend of ["127.0.0.1:20000", "127.0.0.1:30000", "127.0.0.2:25001", "10.0.0.5:21000"]) {
        yield* add(f, route({ backend, mode: "l4" }))
      }
      expect(yield* refusedLeavingNothing(f, route({ backend: "127.0.0.1:22", mode: "l4" }))).toEqual([
        `backend: port 22 on this node is outside the agent's port range 20000-30000 ([ports] in mcp-agent.toml); a route to this node forwards only to ports of that range: run the backend on one`
      ])
      expect(yield* refusedLeavingNothing(f, route({ backend: "10.0.0.5:30001", mode: "l4" }))).toHaveLength(1)
      expect(yield* refusedLeavingNothing(f, route({ backend: "127.0.0.1:25000", mode: "l4" }))).toEqual([
        `backend: port 25000 on this node is the agent's RPC port; a route never forwards to it: use the port your backend listens on (20000-30000)`
      ])
    }))

  it.scoped("elsewhere: only inside backend_networks, never link-local, unroutable or a name", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      const withNetworks = { ...RULES, backendNetworks: networks(["10.1.0.0/16", "0.0.0.0/0"]) }
      expect(yield* refusedLeavingNothing(f, route({ backend: "10.1.2.3:5432", mode: "l4" }))).toEqual([
        `backend: "10.1.2.3" is neither this node nor inside [proxy] backend_networks (none configured); add the backend's network to backend_networks in mcp-agent.toml, or forward to this node`
      ])
      yield* add(f, route({ backend: "10.1.2.3:5432", mode: "l4" }), withNetworks)
      // Even inside a configured network: cloud metadata and unroutable addresses stay refused.
      for (const backend of ["169.254.169.254:80", "169.254.0.1:30000"]) {
        expect((yield* refusedLeavingNothing(f, route({ backend, mode: "l4" }), withNetworks))[0]).toMatch(/^backend: "169\.254\.[0-9.]+" is link-local/)
      }
      for (const backend of ["0.0.0.0:20000", "224.0.0.1:20000", "255.255.255.255:20000", "metadata.google.internal:80", "localhost:20000"]) {
        expect((yield* refusedLeavingNothing(f, route({ backend, mode: "l4" }), withNetworks))[0], backend).toMatch(/^backend: ".*" is not a usable IPv4 address/)
      }
      expect((yield* refusedLeavingNothing(f, route({ backend: "10.1.2.3:5432", mode: "l4", service: "web" }), withNetworks))[0]).toMatch(/^service: /)
    }))

  it.scoped("without the rules provided, the config's defaults apply (range 10000-60000, no networks)", () =>
    Effect.gen(function* () {
      const f = yield* fixture()
      const bare = (backend: string) => ManualRoutes.add(route({ backend, mode: "l4" }), { proxy: f.proxy, settings, dataDir: f.dataDir })
      yield* bare("127.0.0.1:10000")
      expect(yield* Effect.flip(bare("127.0.0.1:9999"))).toBeInstanceOf(Errors.InvalidRequest)
      expect(yield* Effect.flip(bare("192.168.1.1:10000"))).toBeInstanceOf(Errors.InvalidRequest)
    }))
})


describe("[proxy] backend_networks", () => {
  const base = `node = "rift"\nlisten = "127.0.0.1:9444"\nnode_address = "10.0.0.5"\ndata_dir = "/srv/mcp"\n[tls]\ncert = "a"\nkey = "b"\nca = "c"\n[auth]\ntoken_file = "/srv/mcp/tokens.toml"\n`
  const proxy = (networksLine: string) => `${base}[proxy]\nkind = "caddy"\nadmin_url = "http://127.0.0.1:2019"\n${networksLine}\n`

  it("takes CIDR networks, defaults to none, and refuses anything else naming the entry", () => {
    const ok = Either.getOrThrow(AgentConfig.decode(proxy(`backend_networks = ["10.0.0.0/8", "fd00::/8"]`)))
    expect(ok.proxy.backend_networks).toEqual(["10.0.0.0/8", "fd00::/8"])
    expect(Either.getOrThrow(AgentConfig.decode(proxy(""))).proxy.backend_networks).toBeUndefined()
    for (const bad of [`"10.0.0.0/33"`, `"10.0.0.0"`, `"example.com/8"`, `"fd00::/129"`]) {
      const problems = Either.getLeft(AgentConfig.decode(proxy(`backend_networks = [${bad}]`)))
      expect(problems._tag === "Some" ? problems.value.map((p) => p.path) : [], bad).toEqual(["proxy.backend_networks[0]"])
    }
  })

  it("networks match by prefix, for IPv4 and IPv6", () => {
    const n = networks(["10.1.0.0/16", "fd00::/8"])
    expect([n.contains("10.1.255.1"), n.contains("10.2.0.1"), n.contains("fd12::1"), n.contains("fe80::1"), n.contains("not-an-ip")]).toEqual([true, false, true, false, false])
  })
})
