/**
 * The pure deploy plan: what each container is created with (name, image, env, volumes, published
 * ports and the labels recovery finds it by), the routes and DNS names the node sets up, which
 * hostnames need a certificate, and where the proxy reaches a published port.
 */
import { describe, expect, it } from "@effect/vitest"
import * as ContainerPlan from "../src/lifecycle/ContainerPlan.js"
import { LABEL_COMPONENT, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE } from "../src/engine/ContainerRuntime.js"
import { definition, settings } from "./Harness.js"

const DEPLOY = "0123456789abcdef-deploy"

/** A shop: a web component with an unnamed l7 route and a named l4 one, an api with one named route and explicit ports, a worker with nothing. */
const shop = definition(`name = "shop"
version = "v2.1.0"
[[components]]
name = "web"
env = ["MODE=prod"]
volumes = ["/srv/shop:/data"]
[[components.routes]]
port = 443
mode = "l7"
[[components.routes]]
name = "admin-ui"
port = 9443
mode = "l4"
[[components]]
name = "api"
image = "registry.example/shop-api:v7"
ports = ["9000:9000", "127.0.0.1:5353:53/udp", "[::1]:8081:81/tcp"]
[[components.routes]]
name = "grpc"
port = 50051
mode = "l7"
hostname = "grpc.shop.example"
[[components]]
name = "worker"
ports = ["10.1.2.3:7000:7000"]
`)

const planned = ContainerPlan.plan(shop, [21001, 21002, 21003], DEPLOY, settings)
const component = (name: string) => planned.components.find((c) => c.name === name)!.spec

describe("ContainerPlan.plan", () => {
  it("each route's port reaches the app as $PORT / $PORT_<NAME>, after the component's own env; no route, no port variables", () => {
    expect(component("web").env).toEqual(["MODE=prod", "PORT=21001", "PORT_ADMIN_UI=21002"])
    expect(component("api").env).toEqual(["PORT_GRPC=21003"])
    expect(component("worker").env).toEqual([])
  })

  it("route ports are published on the bind address under the same number; explicit mappings as written, each on its own component", () => {
    expect(component("web").ports).toEqual([
      { hostIp: "127.0.0.1", hostPort: 21001, containerPort: 21001, protocol: "tcp" },
      { hostIp: "127.0.0.1", hostPort: 21002, containerPort: 21002, protocol: "tcp" }
    ])
    // No host IP means all interfaces; an IPv6 host IP loses its brackets (the engine wants a bare address).
    expect(component("api").ports).toEqual([
      { hostIp: "127.0.0.1", hostPort: 21003, containerPort: 21003, protocol: "tcp" },
      { hostIp: "0.0.0.0", hostPort: 9000, containerPort: 9000, protocol: "tcp" },
      { hostIp: "127.0.0.1", hostPort: 5353, containerPort: 53, protocol: "udp" },
      { hostIp: "::1", hostPort: 8081, containerPort: 81, protocol: "tcp" }
    ])
    expect(component("worker").ports).toEqual([{ hostIp: "10.1.2.3", hostPort: 7000, containerPort: 7000, protocol: "tcp" }])
  })

  it("explicitPorts parses every mapping form, keeping which component it belongs to", () => {
    expect(ContainerPlan.explicitPorts(shop)).toEqual([
      { component: "api", mapping: "9000:9000", hostIp: "0.0.0.0", hostPort: 9000, containerPort: 9000, protocol: "tcp" },
      { component: "api", mapping: "127.0.0.1:5353:53/udp", hostIp: "127.0.0.1", hostPort: 5353, containerPort: 53, protocol: "udp" },
      { component: "api", mapping: "[::1]:8081:81/tcp", hostIp: "::1", hostPort: 8081, containerPort: 81, protocol: "tcp" },
      { component: "worker", mapping: "10.1.2.3:7000:7000", hostIp: "10.1.2.3", hostPort: 7000, containerPort: 7000, protocol: "tcp" }
    ])
  })

  it("containers are named per deploy and labelled with service, component, deploy and node (recovery finds them by these)", () => {
    expect(planned.components.map((c) => c.spec.name)).toEqual(["shop-web-01234567", "shop-api-01234567", "shop-worker-01234567"])
    expect(component("api").labels).toEqual({ [LABEL_SERVICE]: "shop", [LABEL_COMPONENT]: "api", [LABEL_DEPLOY]: DEPLOY, [LABEL_NODE]: "test-node" })
  })

  it("images: the one written, else <registry>/<service>:<version> for the first component and <registry>/<service>-<component>:<version> for others", () => {
    expect(planned.components.map((c) => [c.name, c.image, c.spec.image])).toEqual([
      ["web", "localhost/shop:v2.1.0", "localhost/shop:v2.1.0"],
      ["api", "registry.example/shop-api:v7", "registry.example/shop-api:v7"],
      ["worker", "localhost/shop-worker:v2.1.0", "localhost/shop-worker:v2.1.0"]
    ])
  })

  it("volumes are passed through; a component without any mounts nothing", () => {
    expect(component("web").volumes).toEqual(["/srv/shop:/data"])
    expect(component("api").volumes).toEqual([])
  })

  it("routes carry their component, listener, mode, hostname (default <service>.<internal zone>) and the allocated port, in order", () => {
    expect(planned.routes).toEqual([
      { component: "web", route: undefined, hostname: "shop.svc.mcp.internal", listener: 443, mode: "l7", backendTls: false, public: false, hostPort: 21001 },
      { component: "web", route: "admin-ui", hostname: "shop.svc.mcp.internal", listener: 9443, mode: "l4", backendTls: false, public: false, hostPort: 21002 },
      { component: "api", route: "grpc", hostname: "grpc.shop.example", listener: 50051, mode: "l7", backendTls: false, public: false, hostPort: 21003 }
    ])
    expect(ContainerPlan.portRequests(shop)).toEqual([
      { component: "web", route: undefined },
      { component: "web", route: "admin-ui" },
      { component: "api", route: "grpc" }
    ])
  })

  it("a service with routes gets its internal A record; certificates only for l7 hostnames, each once", () => {
    expect(planned.dnsNames).toEqual(["shop.svc.mcp.internal"])
    // The l4 route shares the default hostname with an l7 one; an l4-only hostname must not get one.
    expect(planned.certHostnames).toEqual(["shop.svc.mcp.internal", "grpc.shop.example"])
    const l4only = definition(`name = "db"
[[components]]
name = "pg"
image = "localhost/pg:16"
[[components.routes]]
port = 5432
mode = "l4"
hostname = "db.example"
`)
    const dbPlan = ContainerPlan.plan(l4only, [22000], DEPLOY, settings)
    expect(dbPlan.certHostnames).toEqual([])
    expect(dbPlan.dnsNames).toEqual(["db.svc.mcp.internal"])
  })

  it("a service without routes gets no DNS name, no routes and no certificates", () => {
    const batch = definition(`name = "batch"
[[components]]
name = "job"
image = "localhost/job:v1"
`)
    const p = ContainerPlan.plan(batch, [], DEPLOY, settings)
    expect(p.dnsNames).toEqual([])
    expect(p.routes).toEqual([])
    expect(p.certHostnames).toEqual([])
    expect(p.components[0]!.spec.env).toEqual([])
    expect(p.components[0]!.spec.volumes).toEqual([])
    expect(p.components[0]!.spec.ports).toEqual([])
  })
})

describe("ContainerPlan.backendHost", () => {
  it("ports published on all interfaces are reached over loopback; a specific bind address is reached there", () => {
    expect(ContainerPlan.backendHost({ ...settings, bindAddress: "0.0.0.0" })).toBe("127.0.0.1")
    expect(ContainerPlan.backendHost({ ...settings, bindAddress: "10.0.0.5" })).toBe("10.0.0.5")
    expect(ContainerPlan.backendHost({ ...settings, bindAddress: "127.0.0.1" })).toBe("127.0.0.1")
  })
})
