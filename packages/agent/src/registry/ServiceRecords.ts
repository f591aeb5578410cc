/**
 * What should run on this node: each deployed service with its components (the container specs
 * recover recreates), the ports it holds, its proxy routes, certificates and DNS names. A deploy
 * commits all of them at once, replacing the service's previous rows in one transaction.
 */
import { SqlClient } from "@effect/sql"
import { ServiceDefinition } from "@mcp/domain"
import { SqlRows } from "@mcp/rpc"
import { Effect, Schema } from "effect"
import { ContainerSpec } from "../engine/ContainerRuntime.js"
import { StoredDefinition } from "./StoredDefinition.js"

const ServiceRow = Schema.Struct({
  name: Schema.String,
  definition: StoredDefinition,
  active: SqlRows.IntBoolean,
  deployId: SqlRows.column("deploy_id", Schema.String),
  deployedAt: SqlRows.column("deployed_at", Schema.String)
})
export interface ServiceRow extends Schema.Schema.Type<typeof ServiceRow> {}

const ServiceState = Schema.Struct({ name: Schema.String, active: SqlRows.IntBoolean })

const ComponentRow = Schema.Struct({
  service: Schema.String,
  name: Schema.String,
  image: Schema.String,
  spec: SqlRows.JsonText(ContainerSpec),
  containerId: SqlRows.column("container_id", SqlRows.Nullable(Schema.String)),
  restarts: Schema.Number
})
export interface ComponentRow extends Schema.Schema.Type<typeof ComponentRow> {}

const PortRow = Schema.Struct({
  port: Schema.Number,
  service: Schema.String,
  component: Schema.String,
  route: SqlRows.Nullable(Schema.String),
  /** Set while a saga holds the port and has not committed it. */
  sagaId: SqlRows.column("saga_id", SqlRows.Nullable(Schema.String))
})
export interface PortRow extends Schema.Schema.Type<typeof PortRow> {}

const RouteRow = Schema.Struct({
  listener: Schema.Number,
  hostname: Schema.String,
  service: Schema.String,
  component: Schema.String,
  route: SqlRows.Nullable(Schema.String),
  mode: ServiceDefinition.RouteMode,
  hostPort: SqlRows.column("host_port", Schema.Number),
  backendTls: SqlRows.column("backend_tls", SqlRows.IntBoolean)
})
export interface RouteRow extends Schema.Schema.Type<typeof RouteRow> {}

const CertificateRow = Schema.Struct({
  hostname: Schema.String,
  service: Schema.String,
  certPath: SqlRows.column("cert_path", Schema.String),
  keyPath: SqlRows.column("key_path", Schema.String),
  serial: Schema.String,
  notAfter: SqlRows.column("not_after", Schema.String)
})
export interface CertificateRow extends Schema.Schema.Type<typeof CertificateRow> {}

const DnsRow = Schema.Struct({ name: Schema.String, service: Schema.String, address: Schema.String })
export interface DnsRow extends Schema.Schema.Type<typeof DnsRow> {}

/** Everything a committed deploy writes, replacing the service's previous rows in one transaction. */
export interface DeployCommit {
  /** A deploy writes the definition it decoded. */
  readonly service: ServiceRow & { readonly definition: ServiceDefinition.ServiceDefinition }
  readonly components: ReadonlyArray<ComponentRow>
  readonly routes: ReadonlyArray<RouteRow>
  readonly dns: ReadonlyArray<DnsRow>
  /** Ports the new deploy uses; others owned by the service are released. */
  readonly ports: ReadonlyArray<number>
}

const All = Schema.Void
const ByService = Schema.String

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient

  const services = SqlRows.findAll("services", { Request: All, Result: ServiceRow, execute: () => sql`SELECT * FROM services ORDER BY name` })
  // For ps: what status needs of every service, without decoding each definition.
  const serviceStates = SqlRows.findAll("services", { Request: All, Result: ServiceState, execute: () => sql`SELECT name, active FROM services ORDER BY name` })
  const service = SqlRows.findOne("services", { Request: ByService, Result: ServiceRow, execute: (name) => sql`SELECT * FROM services WHERE name = ${name}` })
  const components = SqlRows.findAll("components", {
    Request: ByService,
    Result: ComponentRow,
    execute: (service) => sql`SELECT * FROM components WHERE service = ${service} ORDER BY name`
  })
  const allComponents = SqlRows.findAll("components", { Request: All, Result: ComponentRow, execute: () => sql`SELECT * FROM components ORDER BY service, name` })
  const ports = SqlRows.findAll("ports", { Request: All, Result: PortRow, execute: () => sql`SELECT * FROM ports ORDER BY port` })
  const servicePorts = SqlRows.findAll("ports", { Request: ByService, Result: PortRow, execute: (service) => sql`SELECT * FROM ports WHERE service = ${service} ORDER BY port` })
  const routes = SqlRows.findAll("routes", { Request: All, Result: RouteRow, execute: () => sql`SELECT * FROM routes ORDER BY listener, hostname` })
  // In table order: the order a `WHERE service = ?` scan (no index on service) gives each service's routes.
  const routesByRowid = SqlRows.findAll("routes", { Request: All, Result: RouteRow, execute: () => sql`SELECT * FROM routes ORDER BY rowid` })
  const serviceRoutes = SqlRows.findAll("routes", { Request: ByService, Result: RouteRow, execute: (service) => sql`SELECT * FROM routes WHERE service = ${service}` })
  const certificates = SqlRows.findAll("certificates", { Request: All, Result: CertificateRow, execute: () => sql`SELECT * FROM certificates ORDER BY hostname` })
  const dnsRecords = SqlRows.findAll("dns_records", { Request: All, Result: DnsRow, execute: () => sql`SELECT * FROM dns_records ORDER BY name` })

  const putService = SqlRows.write("services", {
    Request: ServiceRow,
    execute: (s) =>
      sql`INSERT INTO services (name, definition, active, deploy_id, deployed_at)
        VALUES (${s.name}, ${s.definition}, ${s.active}, ${s.deploy_id}, ${s.deployed_at})
        ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, active = excluded.active,
          deploy_id = excluded.deploy_id, deployed_at = excluded.deployed_at`
  })
  // A new deploy's containers have restarted no times yet.
  const insertComponent = SqlRows.write("components", {
    Request: ComponentRow,
    execute: (c) =>
      sql`INSERT INTO components (service, name, image, spec, container_id, restarts)
        VALUES (${c.service}, ${c.name}, ${c.image}, ${c.spec}, ${c.container_id}, 0)`
  })
  const insertRoute = SqlRows.write("routes", {
    Request: RouteRow,
    execute: (r) =>
      sql`INSERT INTO routes (listener, hostname, service, component, route, mode, host_port, backend_tls)
        VALUES (${r.listener}, ${r.hostname}, ${r.service}, ${r.component}, ${r.route}, ${r.mode}, ${r.host_port}, ${r.backend_tls})`
  })
  const insertDns = SqlRows.write("dns_records", {
    Request: DnsRow,
    execute: (d) => sql`INSERT INTO dns_records (name, service, address) VALUES (${d.name}, ${d.service}, ${d.address})`
  })
  const reservePort = SqlRows.write("ports", {
    Request: PortRow,
    execute: (p) => sql`INSERT INTO ports (port, service, component, route, saga_id) VALUES (${p.port}, ${p.service}, ${p.component}, ${p.route}, ${p.saga_id})`
  })
  const putCertificate = SqlRows.write("certificates", {
    Request: CertificateRow,
    execute: (c) =>
      sql`INSERT INTO certificates (hostname, service, cert_path, key_path, serial, not_after)
        VALUES (${c.hostname}, ${c.service}, ${c.cert_path}, ${c.key_path}, ${c.serial}, ${c.not_after})
        ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, cert_path = excluded.cert_path,
          key_path = excluded.key_path, serial = excluded.serial, not_after = excluded.not_after`
  })

  return {
    // services and components --------------------------------------------------------------
    services: services(undefined),
    /** Every service's name and whether it is active, by name (ps needs no definitions). */
    serviceStates: serviceStates(undefined),
    service,
    components,
    allComponents: allComponents(undefined),
    setActive: (service: string, active: boolean) => sql`UPDATE services SET active = ${active ? 1 : 0} WHERE name = ${service}`.pipe(Effect.asVoid),
    setContainer: (service: string, component: string, containerId: string) =>
      sql`UPDATE components SET container_id = ${containerId} WHERE service = ${service} AND name = ${component}`.pipe(Effect.asVoid),
    countRestart: (service: string, component: string) =>
      sql`UPDATE components SET restarts = restarts + 1 WHERE service = ${service} AND name = ${component}`.pipe(Effect.asVoid),

    /** Replaces everything recorded for the service with what the deploy produced. */
    commitDeploy: (c: DeployCommit) =>
      sql.withTransaction(
        Effect.gen(function* () {
          const name = c.service.name
          yield* putService(c.service)
          yield* sql`DELETE FROM components WHERE service = ${name}`
          for (const component of c.components) yield* insertComponent(component)
          yield* sql`DELETE FROM routes WHERE service = ${name}`
          for (const route of c.routes) yield* insertRoute(route)
          yield* sql`DELETE FROM dns_records WHERE service = ${name}`
          for (const record of c.dns) yield* insertDns(record)
          // The deploy's ports become the service's; any other port it held is released.
          yield* sql`DELETE FROM ports WHERE service = ${name} AND saga_id IS NULL AND NOT ${sql.in("port", c.ports.length ? [...c.ports] : [-1])}`
          if (c.ports.length > 0) yield* sql`UPDATE ports SET saga_id = NULL WHERE ${sql.in("port", [...c.ports])}`
        })
      ),

    deleteService: (service: string) =>
      sql.withTransaction(
        Effect.gen(function* () {
          yield* sql`DELETE FROM routes WHERE service = ${service}`
          yield* sql`DELETE FROM dns_records WHERE service = ${service}`
          yield* sql`DELETE FROM certificates WHERE service = ${service}`
          yield* sql`DELETE FROM ports WHERE service = ${service}`
          yield* sql`DELETE FROM services WHERE name = ${service}`
        })
      ),

    // ports ----------------------------------------------------------------------------------
    ports: ports(undefined),
    servicePorts,
    reservePort,
    /** Releases what a saga reserved and never committed. */
    releaseSagaPorts: (sagaId: string) => sql`DELETE FROM ports WHERE saga_id = ${sagaId}`.pipe(Effect.asVoid),

    // routes, certificates, DNS --------------------------------------------------------------
    routes: routes(undefined),
    serviceRoutes,
    /** Every route, each service's in the order serviceRoutes gives them. */
    routesByRowid: routesByRowid(undefined),
    certificates: certificates(undefined),
    putCertificate,
    deleteCertificate: (hostname: string) => sql`DELETE FROM certificates WHERE hostname = ${hostname}`.pipe(Effect.asVoid),
    dnsRecords: dnsRecords(undefined)
  }
})
