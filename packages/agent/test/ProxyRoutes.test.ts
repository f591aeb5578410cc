// The ProxyRoutes contract on the memory layers, and the proxy adapters' generated data
// (HAProxy config, maps, crt-lists; Caddy JSON) checked as plain values.
import { describe, expect, it } from "@effect/vitest"
import * as CaddyRoutes from "../src/proxy/CaddyRoutes.js"
import * as HaproxyRoutes from "../src/proxy/HaproxyRoutes.js"
import * as ProxyRoutes from "../src/proxy/ProxyRoutes.js"
import { makeRoute, proxyRoutesContract } from "./ProxyRoutesContract.js"

proxyRoutesContract("memory", () => ProxyRoutes.layerMemory({ switchesTraffic: true }), { l4: true })
proxyRoutesContract("record only", () => ProxyRoutes.layerRecordOnly, { l4: true })

const haproxy: HaproxyRoutes.Options = {
  dir: "/var/lib/mcp/haproxy",
  masterSocket: "/run/mcp/haproxy-master.sock",
  statsSocket: "/run/mcp/haproxy.sock",
  abnsPrefix: "mcp-t",
  backendCaFile: "/var/lib/mcp/ca/ca.crt"
}

describe("HaproxyRoutes generated files", () => {
  it("haproxyCommand runs master-worker in the foreground with the agent's config", () => {
    expect(HaproxyRoutes.haproxyCommand(haproxy)).toEqual([
      "haproxy", "-W", "-db", "-S", "/run/mcp/haproxy-master.sock,mode,600", "-f", "/var/lib/mcp/haproxy/haproxy.cfg"
    ])
  })

  it("the config has one SNI frontend per listener and an abns hop to the TLS-terminating frontend", () => {
    const cfg = HaproxyRoutes.renderConfig(haproxy, [8443, 9443])
    expect(cfg).toContain("stats socket /run/mcp/haproxy.sock mode 600 level admin")
    expect(cfg).toContain("bind 0.0.0.0:8443")
    expect(cfg).toContain("bind 0.0.0.0:9443")
    expect(cfg).toContain("req.ssl_sni,lower,map(/var/lib/mcp/haproxy/maps/l4-8443.map)")
    expect(cfg).toContain("server l7 abns@mcp-t-8443 send-proxy-v2")
    expect(cfg).toContain("bind abns@mcp-t-8443 accept-proxy ssl crt-list /var/lib/mcp/haproxy/crt-lists/8443.list strict-sni")
    expect(cfg).toContain("ssl verify required ca-file /var/lib/mcp/ca/ca.crt")
    expect(cfg).toContain("http-request return status 404")
    // No listeners: only the runtime API socket, so HAProxy can start before the first route.
    expect(HaproxyRoutes.renderConfig(haproxy, [])).not.toContain("frontend")
  })

  it("routes land in the map of their mode and the crt-list of their listener", () => {
    const files = HaproxyRoutes.layout(haproxy.dir)
    const routes = [
      makeRoute({ listener: 8443, hostname: "db.example.test", backend: "10.0.0.5:5432", mode: "l4" }),
      makeRoute({ listener: 8443, hostname: "web.example.test", backend: "10.0.0.5:8080", mode: "l7", tlsCert: "/c.crt", tlsKey: "/c.key" }),
      makeRoute({ listener: 8443, hostname: "api.example.test", backend: "10.0.0.5:8443", mode: "l7", backendTls: true, tlsCert: "/a.crt", tlsKey: "/a.key" }),
      makeRoute({ listener: 9443, hostname: "other.example.test", backend: "10.0.0.6:80", mode: "l7", tlsCert: "/o.crt", tlsKey: "/o.key" })
    ]
    expect(HaproxyRoutes.renderListenerFiles(files, routes, 8443)).toEqual({
      l4: "db.example.test 10.0.0.5:5432\n",
      http: "web.example.test 10.0.0.5:8080\n",
      https: "api.example.test 10.0.0.5:8443\n",
      crtList: "/var/lib/mcp/haproxy/certs/8443-api.example.test.pem api.example.test\n" +
        "/var/lib/mcp/haproxy/certs/8443-web.example.test.pem web.example.test\n"
    })
  })
})

describe("CaddyRoutes generated JSON", () => {
  const options: CaddyRoutes.Options = { adminUrl: "http://127.0.0.1:2019", listenerBind: "127.0.0.1", backendCaFile: "/ca.crt" }
  const route = makeRoute({ listener: 8443, hostname: "web.example.test", backend: "10.0.0.5:8443", mode: "l7", backendTls: true, tlsCert: "/c.crt", tlsKey: "/c.key", service: "web" })

  it("a route matches its host, records its service and verifies a TLS backend by the route's name", () => {
    expect(CaddyRoutes.routeJson(options, route)).toEqual({
      "@id": "mcp-8443-web.example.test",
      match: [{ host: ["web.example.test"] }],
      handle: [
        { handler: "vars", mcp_service: "web" },
        {
          handler: "reverse_proxy",
          upstreams: [{ dial: "10.0.0.5:8443" }],
          transport: { protocol: "http", tls: { server_name: "web.example.test", root_ca_pem_files: ["/ca.crt"] } }
        }
      ],
      terminal: true
    })
  })

  it("a new listener's server speaks h1/h2 only, uses loaded certificates and ends with a 404", () => {
    const server = CaddyRoutes.serverJson(options, route)
    expect(server.listen).toEqual(["127.0.0.1:8443"])
    expect(server.protocols).toEqual(["h1", "h2"])
    expect(server.automatic_https).toEqual({ disable: true })
    expect(server.routes.at(-1)).toMatchObject({ "@id": "mcp-8443-404", handle: [{ handler: "static_response", status_code: 404 }] })
  })
})
