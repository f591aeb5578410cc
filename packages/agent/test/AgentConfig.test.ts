import { describe, expect, it } from "@effect/vitest"
import { Either } from "effect"
import * as fs from "node:fs"
import * as os from "node:os"
import * as nodePath from "node:path"
import * as Agent from "../src/daemon/Agent.js"
import * as AgentConfig from "../src/daemon/AgentConfig.js"

const base = `node = "rift"\nlisten = "127.0.0.1:9444"\nnode_address = "10.0.0.5"\ndata_dir = "/srv/mcp"\n[tls]\ncert = "a"\nkey = "b"\nca = "c"\n[auth]\ntoken_file = "/srv/mcp/tokens.toml"\n`

describe("agent config", () => {
  it("decodes a minimal config with the embedded defaults", () => {
    const config = Either.getOrThrow(AgentConfig.decode(base))
    expect(config.role).toBe("worker")
    expect(config.proxy).toEqual({ kind: "none" })
    expect(config.certs).toEqual({ kind: "local-ca" })
    expect(config.dns).toEqual({ kind: "none" })
    expect(config.ports).toEqual({ min: 10000, max: 60000, bind: "127.0.0.1" })
    expect(config.edge).toEqual({ listener: 443 })
  })

  it("takes the edge listener from [edge] and refuses one out of range or unknown keys", () => {
    expect(Either.getOrThrow(AgentConfig.decode(base + `[edge]\nlistener = 8443\n`)).edge).toEqual({ listener: 8443 })
    expect(Either.getOrThrow(AgentConfig.decode(base + `[edge]\n`)).edge).toEqual({ listener: 443 })
    for (const bad of [`[edge]\nlistener = 0\n`, `[edge]\nlistener = 70000\n`, `[edge]\nlistener = "443"\n`]) {
      const problems = Either.getLeft(AgentConfig.decode(base + bad))
      expect(problems._tag === "Some" ? problems.value.map((p) => p.path) : [], bad).toEqual(["edge.listener"])
    }
    const unknown = Either.getLeft(AgentConfig.decode(base + `[edge]\nlistenr = 443\n`))
    expect(unknown._tag === "Some" ? unknown.value.map((p) => p.path) : []).toEqual(["edge.listenr"])
  })

  it("runs HAProxy for the operator only with [proxy] managed = true, and not for Caddy", () => {
    const haproxy = `[proxy]\nkind = "haproxy"\ndir = "/srv/mcp/haproxy"\nmaster_socket = "/srv/mcp/m.sock"\nstats_socket = "/srv/mcp/s.sock"\n`
    expect(Either.getOrThrow(AgentConfig.decode(base + haproxy)).proxy).toMatchObject({ kind: "haproxy", managed: false })
    expect(Either.getOrThrow(AgentConfig.decode(base + haproxy + `managed = true\n`)).proxy).toMatchObject({ kind: "haproxy", managed: true })
    const notBoolean = Either.getLeft(AgentConfig.decode(base + haproxy + `managed = "yes"\n`))
    expect(notBoolean._tag === "Some" ? notBoolean.value.map((p) => p.path) : []).toEqual(["proxy.managed"])
    const caddy = Either.getLeft(AgentConfig.decode(base + `[proxy]\nkind = "caddy"\nadmin_url = "http://127.0.0.1:2019"\nmanaged = true\n`))
    expect(caddy._tag).toBe("Some")
  })

  it("lets the local CA issue from an existing CA directory", () => {
    const withDir = Either.getOrThrow(AgentConfig.decode(base + `[certs]\nkind = "local-ca"\nca_dir = "/etc/mcp/ca"\n`))
    expect(withDir.certs).toEqual({ kind: "local-ca", ca_dir: "/etc/mcp/ca" })
    expect(Either.getOrThrow(AgentConfig.decode(base + `[certs]\nkind = "local-ca"\n`)).certs).toEqual({ kind: "local-ca" })
    // ca_dir belongs to the local CA only.
    const acme = Either.getLeft(AgentConfig.decode(base + `[certs]\nkind = "acme"\ndirectory_url = "https://acme.example/dir"\nca_dir = "/etc/mcp/ca"\n`))
    expect(acme._tag).toBe("Some")
  })

  it("names every problem with its path and writes nothing", () => {
    const problems = Either.getLeft(AgentConfig.decode(`colour = "blue"\n` + base.replace('node_address = "10.0.0.5"', 'node_address = "rift.lan"') + `[ports]\nmin = 5000\nmax = 4000\n`))
    expect(problems._tag).toBe("Some")
    const paths = problems._tag === "Some" ? problems.value.map((p) => p.path) : []
    expect(paths).toEqual(expect.arrayContaining(["node_address", "colour", "ports.max"]))
  })

  it("takes an https identity_url; http only to a loopback host and with identity_allow_http_loopback", () => {
    const withAuth = (auth: string) => base.replace(`[auth]\ntoken_file = "/srv/mcp/tokens.toml"\n`, `[auth]\n${auth}`)
    const problems = (auth: string) => {
      const left = Either.getLeft(AgentConfig.decode(withAuth(auth)))
      return left._tag === "Some" ? left.value : []
    }
    expect(Either.getOrThrow(AgentConfig.decode(withAuth(`identity_url = "https://mcias.example/v1/token/validate"\n`))).auth)
      .toEqual({ identity_url: "https://mcias.example/v1/token/validate" })
    for (const url of ["http://127.0.0.1:8080/validate", "http://127.8.0.1/v", "http://localhost:9/v", "http://[::1]:9/v"]) {
      const auth = `identity_url = "${url}"\nidentity_allow_http_loopback = true\n`
      expect(Either.getOrThrow(AgentConfig.decode(withAuth(auth))).auth.identity_url, url).toBe(url)
    }
    // Plain http elsewhere is refused, even with the opt-in; the problem names the field and the fix.
    for (const auth of [`identity_url = "http://mcias.example/validate"\n`, `identity_url = "http://10.0.0.2/validate"\nidentity_allow_http_loopback = true\n`]) {
      const found = problems(auth)
      expect(found.map((p) => p.path), auth).toEqual(["auth.identity_url"])
      expect(found[0]!.message).toContain("change http:// to https://")
      expect(found[0]!.message).toContain("identity_allow_http_loopback = true")
    }
    // Loopback without the opt-in is refused too, saying which key allows it.
    const loopback = problems(`identity_url = "http://127.0.0.1:8080/validate"\n`)
    expect(loopback.map((p) => p.path)).toEqual(["auth.identity_url"])
    expect(loopback[0]!.message).toContain("set identity_allow_http_loopback = true in [auth]")
    expect(problems(`identity_url = "mcias.example"\n`).map((p) => p.path)).toEqual(["auth.identity_url"])
    expect(problems(`identity_url = "ftp://mcias.example/v"\n`).map((p) => p.path)).toEqual(["auth.identity_url"])
  })

  it("refuses ACME dns-01 without PowerDNS to write the TXT records", () => {
    const text = base + `[certs]\nkind = "acme"\ndirectory_url = "https://acme.example/dir"\nchallenge = "dns-01"\n`
    const problems = Either.getLeft(AgentConfig.decode(text))
    expect(problems._tag === "Some" ? problems.value.map((p) => p.path) : []).toEqual(["certs.challenge"])
    const withDns = text + `[dns]\nkind = "powerdns"\napi_url = "http://127.0.0.1:8081"\napi_key_file = "/srv/mcp/pdns.key"\n`
    expect(Either.isRight(AgentConfig.decode(withDns))).toBe(true)
  })

  it("refuses to start when a secret file it reads is readable by group or others, naming it and the fix", () => {
    const dir = fs.mkdtempSync(nodePath.join(os.tmpdir(), "mcp-agent-secrets-"))
    try {
      const file = (name: string, mode: number) => {
        const path = nodePath.join(dir, name)
        fs.writeFileSync(path, `secret-${name}`, { mode })
        fs.chmodSync(path, mode)
        return path
      }
      const text = (key: string, extra = "") => `node = "rift"\nlisten = "127.0.0.1:9444"\nnode_address = "10.0.0.5"\ndata_dir = ${JSON.stringify(nodePath.join(dir, "data"))}\n` +
        extra + `[tls]\ncert = ${JSON.stringify(file("tls.crt", 0o644))}\nkey = ${JSON.stringify(key)}\nca = ${JSON.stringify(file("ca.crt", 0o644))}\n` +
        `[auth]\ntoken_file = ${JSON.stringify(nodePath.join(dir, "tokens.toml"))}\n`
      const failure = (build: () => unknown): string => {
        try {
          build()
        } catch (e) {
          return (e as Error).message
        }
        return "started"
      }

      const openKey = file("tls.key", 0o644)
      const message = failure(() => Agent.layerServer(Either.getOrThrow(AgentConfig.decode(text(openKey)))))
      expect(message).toBe(`TLS private key ([tls] key) ${openKey} has mode 0644, which lets group or others read it; run: chmod 600 ${openKey}`)

      const key = file("tls-ok.key", 0o600)
      expect(failure(() => Agent.layerServer(Either.getOrThrow(AgentConfig.decode(text(key)))))).toBe("started")

      const apiKey = file("pdns.key", 0o640)
      const dns = Either.getOrThrow(AgentConfig.decode(text(key, `[dns]\nkind = "powerdns"\napi_url = "http://127.0.0.1:8081"\napi_key_file = ${JSON.stringify(apiKey)}\n`)))
      expect(failure(() => Agent.layerDns(dns))).toContain(`PowerDNS API key file (api_key_file) ${apiKey} has mode 0640`)

      const tsig = file("tsig.secret", 0o604)
      const rfc2136 = Either.getOrThrow(AgentConfig.decode(text(key, `[dns]\nkind = "rfc2136"\nserver = "127.0.0.1:53"\nkey_name = "mcp"\nkey_secret_file = ${JSON.stringify(tsig)}\n`)))
      expect(failure(() => Agent.layerDns(rfc2136))).toContain(`chmod 600 ${tsig}`)

      const systemToken = file("system.token", 0o644)
      const linked = Either.getOrThrow(AgentConfig.decode(text(key) + `[master]\naddresses = ["127.0.0.1:9443"]\ntoken_file = ${JSON.stringify(systemToken)}\n`))
      const linkFailure = failure(() => Agent.layerMasterLink(linked))
      expect(linkFailure).toContain(`system token file ([master] token_file) ${systemToken} has mode 0644`)
      expect(linkFailure).not.toContain("secret-")
    } finally {
      fs.rmSync(dir, { recursive: true, force: true })
    }
  })
})
