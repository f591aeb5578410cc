/**
 * Pure translation of a service definition into what the agent creates: container specs with
 * their ports and env, proxy routes and DNS names. No IO, so every rule is testable as data.
 */
import { Hostname, PortEnv, ServiceDefinition } from "@mcp/domain"
import { type ContainerSpec, LABEL_COMPONENT, LABEL_DEPLOY, LABEL_NODE, LABEL_SERVICE, type PortBinding } from "../engine/ContainerRuntime.js"
import type { NodeSettings } from "../NodeSettings.js"
import type { PortRequest } from "./PortAllocator.js"

/** One host port per route, in component order; explicit mappings are handled separately. */
export const portRequests = (def: ServiceDefinition.ServiceDefinition): Array<PortRequest> =>
  def.components.flatMap((c) => (c.routes ?? []).map((r) => ({ component: c.name, route: r.name })))

export interface ExplicitPort extends PortBinding {
  readonly component: string
  readonly mapping: string
}

export const explicitPorts = (def: ServiceDefinition.ServiceDefinition): Array<ExplicitPort> =>
  def.components.flatMap((c) =>
    (c.ports ?? []).map((mapping) => {
      const m = /^(?:(.+):)?(\d+):(\d+)(?:\/(tcp|udp))?$/.exec(mapping)!
      return {
        component: c.name,
        mapping,
        hostIp: (m[1] ?? "0.0.0.0").replace(/^\[|\]$/g, ""),
        hostPort: Number(m[2]),
        containerPort: Number(m[3]),
        protocol: (m[4] ?? "tcp") as "tcp" | "udp"
      }
    })
  )

export interface PlannedRoute {
  readonly component: string
  readonly route: string | undefined
  readonly hostname: string
  readonly listener: number
  readonly mode: "l4" | "l7"
  readonly backendTls: boolean
  readonly public: boolean
  readonly hostPort: number
}

export interface PlannedComponent {
  readonly name: string
  readonly image: string
  readonly spec: ContainerSpec
}

export interface ServicePlan {
  readonly components: ReadonlyArray<PlannedComponent>
  readonly routes: ReadonlyArray<PlannedRoute>
  /** A records: `<service>.<internal zone>` when the service has routes. */
  readonly dnsNames: ReadonlyArray<string>
  /** Hostnames that need a certificate on this node (L7 routes terminate TLS here). */
  readonly certHostnames: ReadonlyArray<string>
}

/** The container name for a component in one deploy: distinct per deploy so old and new can overlap. */
export const containerName = (service: string, component: string, deployId: string) => `${service}-${component}-${deployId.slice(0, 8)}`

export const plan = (
  def: ServiceDefinition.ServiceDefinition,
  routePorts: ReadonlyArray<number>,
  deployId: string,
  settings: NodeSettings
): ServicePlan => {
  let next = 0
  const routes: Array<PlannedRoute> = []
  const components = def.components.map((c, index): PlannedComponent => {
    const own = (c.routes ?? []).map((r) => {
      const hostPort = routePorts[next++]!
      const planned: PlannedRoute = {
        component: c.name,
        route: r.name,
        hostname: r.hostname ?? Hostname.defaultHostname(def.name, settings.internalZone),
        listener: r.port,
        mode: r.mode,
        backendTls: r.backend_tls,
        public: r.public,
        hostPort
      }
      routes.push(planned)
      return planned
    })
    const image = ServiceDefinition.resolveImage(def, index, settings.imageRegistry)
    const explicit = explicitPorts(def).filter((p) => p.component === c.name)
    const spec: ContainerSpec = {
      name: containerName(def.name, c.name, deployId),
      image,
      cmd: c.cmd,
      // The app listens on $PORT / $PORT_<NAME>; the same number is published on the host.
      env: [...(c.env ?? []), ...PortEnv.portEnv(own.map((r) => ({ route: r.route, hostPort: r.hostPort })))],
      volumes: c.volumes ?? [],
      ports: [
        ...own.map((r): PortBinding => ({ hostIp: settings.bindAddress, hostPort: r.hostPort, containerPort: r.hostPort, protocol: "tcp" })),
        ...explicit.map(({ hostIp, hostPort, containerPort, protocol }) => ({ hostIp, hostPort, containerPort, protocol }))
      ],
      network: c.network,
      user: c.user,
      restart: c.restart,
      labels: { [LABEL_SERVICE]: def.name, [LABEL_COMPONENT]: c.name, [LABEL_DEPLOY]: deployId, [LABEL_NODE]: settings.node }
    }
    return { name: c.name, image, spec }
  })
  const internalName = Hostname.defaultHostname(def.name, settings.internalZone)
  return {
    components,
    routes,
    dnsNames: routes.length > 0 ? [internalName] : [],
    certHostnames: [...new Set(routes.filter((r) => r.mode === "l7").map((r) => r.hostname))]
  }
}

/** Where the node's proxy reaches a published container port. */
export const backendHost = (settings: NodeSettings) => (settings.bindAddress === "0.0.0.0" ? "127.0.0.1" : settings.bindAddress)
