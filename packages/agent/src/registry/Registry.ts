/**
 * The agent's SQLite registry: what should run on this node (services, components, ports,
 * routes, certificates, DNS records, edge routes), the saga journal and the event log. It is
 * the source of truth for recover and the boot sequencer, so it survives engine resets.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { SagaJournal } from "@mcp/rpc"
import { Effect, Layer, Option, Schema } from "effect"
import type { IssuedCertificate } from "../certs/CertIssuer.js"
import type { ContainerSpec } from "../engine/ContainerRuntime.js"

// ---------------------------------------------------------------------------------------------
// Schema. Migrations only ever add: a registry written by an older agent migrates forward.

const migrations = {
  "0001_initial": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE services (
      name TEXT PRIMARY KEY,
      definition TEXT NOT NULL,
      active INTEGER NOT NULL,
      deploy_id TEXT NOT NULL,
      deployed_at TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE components (
      service TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
      name TEXT NOT NULL,
      image TEXT NOT NULL,
      spec TEXT NOT NULL,
      container_id TEXT,
      PRIMARY KEY (service, name)
    )`
    yield* sql`CREATE TABLE ports (
      port INTEGER PRIMARY KEY,
      service TEXT NOT NULL,
      component TEXT NOT NULL,
      route TEXT,
      saga_id TEXT
    )`
    yield* sql`CREATE TABLE routes (
      listener INTEGER NOT NULL,
      hostname TEXT NOT NULL,
      service TEXT NOT NULL,
      component TEXT NOT NULL,
      route TEXT,
      mode TEXT NOT NULL,
      host_port INTEGER NOT NULL,
      backend_tls INTEGER NOT NULL,
      PRIMARY KEY (listener, hostname)
    )`
    yield* sql`CREATE TABLE certificates (
      hostname TEXT PRIMARY KEY,
      service TEXT NOT NULL,
      cert_path TEXT NOT NULL,
      key_path TEXT NOT NULL,
      serial TEXT NOT NULL,
      not_after TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE dns_records (name TEXT PRIMARY KEY, service TEXT NOT NULL, address TEXT NOT NULL)`
    yield* sql`CREATE TABLE edge_routes (hostname TEXT PRIMARY KEY, service TEXT NOT NULL, data TEXT NOT NULL)`
    yield* sql`CREATE TABLE sagas (
      id TEXT PRIMARY KEY,
      service TEXT NOT NULL,
      kind TEXT NOT NULL,
      state TEXT NOT NULL,
      started_at TEXT NOT NULL,
      ended_at TEXT,
      error TEXT
    )`
    yield* sql`CREATE TABLE saga_steps (
      saga_id TEXT NOT NULL REFERENCES sagas(id) ON DELETE CASCADE,
      seq INTEGER NOT NULL,
      step TEXT NOT NULL,
      phase TEXT NOT NULL,
      data TEXT NOT NULL,
      at TEXT NOT NULL,
      PRIMARY KEY (saga_id, seq)
    )`
    yield* sql`CREATE TABLE events (
      id INTEGER PRIMARY KEY AUTOINCREMENT,
      at TEXT NOT NULL,
      service TEXT,
      kind TEXT NOT NULL,
      message TEXT NOT NULL
    )`
  }),
  "0002_restart_tracking": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE components ADD COLUMN restarts INTEGER NOT NULL DEFAULT 0`
    yield* sql`CREATE INDEX sagas_state ON sagas(state)`
    yield* sql`CREATE INDEX events_service ON events(service, id)`
  }),
  // Edge routes are set up in steps (record, certificate, proxy): the state says how far one got,
  // so a start-up after a crash knows which rows to compensate or finish.
  "0003_edge_route_state": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE edge_routes ADD COLUMN state TEXT NOT NULL DEFAULT 'active'`
  })
}

const migrate = (upTo?: number) =>
  Migrator.make({})({
    loader: Migrator.fromRecord(
      upTo === undefined ? migrations : Object.fromEntries(Object.entries(migrations).slice(0, upTo))
    )
  })

/** SQLite with the pragmas the registry relies on, then migrated. `upTo` is for migration tests. */
export const layerSqlite = (filename: string, upTo?: number) => {
  const pragmas = Layer.effectDiscard(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`PRAGMA foreign_keys = ON`
      yield* sql`PRAGMA busy_timeout = 5000`
      yield* sql`PRAGMA synchronous = NORMAL`
    })
  )
  const migrated = Layer.effectDiscard(migrate(upTo))
  return Layer.provideMerge(migrated, Layer.provideMerge(pragmas, SqliteClient.layer({ filename })))
}

// ---------------------------------------------------------------------------------------------
// Rows.

export interface ServiceRow {
  readonly name: string
  /** The definition as decoded JSON (the domain's encoded form). */
  readonly definition: unknown
  readonly active: boolean
  readonly deployId: string
  readonly deployedAt: string
}

export interface ComponentRow {
  readonly service: string
  readonly name: string
  readonly image: string
  readonly spec: ContainerSpec
  readonly containerId: string | undefined
  readonly restarts: number
}

export interface PortRow {
  readonly port: number
  readonly service: string
  readonly component: string
  readonly route: string | undefined
  /** Set while a saga holds the port and has not committed it. */
  readonly sagaId: string | undefined
}

export interface RouteRow {
  readonly listener: number
  readonly hostname: string
  readonly service: string
  readonly component: string
  readonly route: string | undefined
  readonly mode: "l4" | "l7"
  readonly hostPort: number
  readonly backendTls: boolean
}

export interface CertificateRow {
  readonly hostname: string
  readonly service: string
  readonly certPath: string
  readonly keyPath: string
  readonly serial: string
  readonly notAfter: string
}

export interface DnsRow {
  readonly name: string
  readonly service: string
  readonly address: string
}

/**
 * "setting-up": recorded before the certificate and the proxy route, so a crash leaves a row to
 * compensate; "active": serving; "removing": the removal started and is finished at the next try.
 */
export type EdgeRouteState = "setting-up" | "active" | "removing"

/** Where an edge route forwards and the certificate it serves. */
export interface EdgeTarget {
  readonly service: string
  readonly workerNode: string
  readonly backendHostname: string
  readonly backendPort: number
  /** `ip:port` the proxy forwards to: backendHostname as resolved when the route was set up. */
  readonly backend: string
  /** The proxy listener the public route is on. */
  readonly listener: number
  /** Undefined only while setting up, before the certificate is issued. */
  readonly cert: IssuedCertificate | undefined
}

export interface EdgeRouteRow extends EdgeTarget {
  readonly hostname: string
  readonly state: EdgeRouteState
  /** While setting up: the active route this one replaces, put back if the setup fails. */
  readonly previous: EdgeTarget | undefined
  /** Certificates replaced by a newer one whose deletion is still to be done (or retried). */
  readonly retired: ReadonlyArray<IssuedCertificate>
}

/** A deploy is a saga with steps; stop, start and undeploy are journaled as one entry each. */
export const SagaKind = Schema.Literal("deploy", "stop", "start", "undeploy")
export type SagaKind = typeof SagaKind.Type

export interface EventRow {
  readonly id: number
  readonly at: string
  readonly service: string | undefined
  readonly kind: string
  readonly message: string
}

/** Everything a committed deploy writes, replacing the service's previous rows in one transaction. */
export interface DeployCommit {
  readonly service: ServiceRow
  readonly components: ReadonlyArray<ComponentRow>
  readonly routes: ReadonlyArray<RouteRow>
  readonly dns: ReadonlyArray<DnsRow>
  /** Ports the new deploy uses; others owned by the service are released. */
  readonly ports: ReadonlyArray<number>
}

const json = Schema.parseJson()
const nullable = <A>(v: A | null | undefined): A | undefined => (v === null ? undefined : v)

// ---------------------------------------------------------------------------------------------

export class Registry extends Effect.Service<Registry>()("@mcp/agent/Registry", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = () => new Date().toISOString()
    const parse = (text: string) => Schema.decodeUnknownSync(json)(text)
    const sagas = yield* SagaJournal.make(SagaKind)

    const toComponent = (r: Record<string, unknown>): ComponentRow => ({
      service: r["service"] as string,
      name: r["name"] as string,
      image: r["image"] as string,
      spec: parse(r["spec"] as string) as ContainerSpec,
      containerId: nullable(r["container_id"] as string | null),
      restarts: Number(r["restarts"] ?? 0)
    })
    const toService = (r: Record<string, unknown>): ServiceRow => ({
      name: r["name"] as string,
      definition: parse(r["definition"] as string),
      active: Number(r["active"]) === 1,
      deployId: r["deploy_id"] as string,
      deployedAt: r["deployed_at"] as string
    })
    const toPort = (r: Record<string, unknown>): PortRow => ({
      port: Number(r["port"]),
      service: r["service"] as string,
      component: r["component"] as string,
      route: nullable(r["route"] as string | null),
      sagaId: nullable(r["saga_id"] as string | null)
    })
    const toRoute = (r: Record<string, unknown>): RouteRow => ({
      listener: Number(r["listener"]),
      hostname: r["hostname"] as string,
      service: r["service"] as string,
      component: r["component"] as string,
      route: nullable(r["route"] as string | null),
      mode: r["mode"] as "l4" | "l7",
      hostPort: Number(r["host_port"]),
      backendTls: Number(r["backend_tls"]) === 1
    })

    const toEdgeRoute = (r: Record<string, unknown>): EdgeRouteRow => {
      const data = parse(r["data"] as string) as Partial<Omit<EdgeRouteRow, "hostname" | "service" | "state">>
      return {
        hostname: r["hostname"] as string,
        service: r["service"] as string,
        state: r["state"] as EdgeRouteState,
        workerNode: data.workerNode ?? "",
        backendHostname: data.backendHostname ?? "",
        backendPort: Number(data.backendPort ?? 0),
        backend: data.backend ?? "",
        listener: Number(data.listener ?? 0),
        cert: nullable(data.cert),
        previous: nullable(data.previous),
        retired: data.retired ?? []
      }
    }

    return {
      sql,
      withTransaction: sql.withTransaction,

      // services and components --------------------------------------------------------------
      services: sql`SELECT * FROM services ORDER BY name`.pipe(Effect.map((rows) => rows.map(toService))),
      service: (name: string) =>
        sql`SELECT * FROM services WHERE name = ${name}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map(toService)))),
      components: (service: string) =>
        sql`SELECT * FROM components WHERE service = ${service} ORDER BY name`.pipe(Effect.map((rows) => rows.map(toComponent))),
      allComponents: sql`SELECT * FROM components ORDER BY service, name`.pipe(Effect.map((rows) => rows.map(toComponent))),
      setActive: (service: string, active: boolean) => sql`UPDATE services SET active = ${active ? 1 : 0} WHERE name = ${service}`.pipe(Effect.asVoid),
      setContainer: (service: string, component: string, containerId: string) =>
        sql`UPDATE components SET container_id = ${containerId} WHERE service = ${service} AND name = ${component}`.pipe(Effect.asVoid),
      countRestart: (service: string, component: string) =>
        sql`UPDATE components SET restarts = restarts + 1 WHERE service = ${service} AND name = ${component}`.pipe(Effect.asVoid),

      /** Replaces everything recorded for the service with what the deploy produced. */
      commitDeploy: (c: DeployCommit) =>
        sql.withTransaction(
          Effect.gen(function* () {
            const s = c.service
            yield* sql`INSERT INTO services (name, definition, active, deploy_id, deployed_at)
              VALUES (${s.name}, ${JSON.stringify(s.definition)}, ${s.active ? 1 : 0}, ${s.deployId}, ${s.deployedAt})
              ON CONFLICT (name) DO UPDATE SET definition = excluded.definition, active = excluded.active,
                deploy_id = excluded.deploy_id, deployed_at = excluded.deployed_at`
            yield* sql`DELETE FROM components WHERE service = ${s.name}`
            for (const comp of c.components) {
              yield* sql`INSERT INTO components (service, name, image, spec, container_id, restarts)
                VALUES (${comp.service}, ${comp.name}, ${comp.image}, ${JSON.stringify(comp.spec)}, ${comp.containerId ?? null}, 0)`
            }
            yield* sql`DELETE FROM routes WHERE service = ${s.name}`
            for (const r of c.routes) {
              yield* sql`INSERT INTO routes (listener, hostname, service, component, route, mode, host_port, backend_tls)
                VALUES (${r.listener}, ${r.hostname}, ${r.service}, ${r.component}, ${r.route ?? null}, ${r.mode}, ${r.hostPort}, ${r.backendTls ? 1 : 0})`
            }
            yield* sql`DELETE FROM dns_records WHERE service = ${s.name}`
            for (const d of c.dns) yield* sql`INSERT INTO dns_records (name, service, address) VALUES (${d.name}, ${d.service}, ${d.address})`
            // The deploy's ports become the service's; any other port it held is released.
            yield* sql`DELETE FROM ports WHERE service = ${s.name} AND saga_id IS NULL AND NOT ${sql.in("port", c.ports.length ? [...c.ports] : [-1])}`
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
      ports: sql`SELECT * FROM ports ORDER BY port`.pipe(Effect.map((rows) => rows.map(toPort))),
      servicePorts: (service: string) => sql`SELECT * FROM ports WHERE service = ${service} ORDER BY port`.pipe(Effect.map((rows) => rows.map(toPort))),
      reservePort: (row: PortRow) =>
        sql`INSERT INTO ports (port, service, component, route, saga_id) VALUES (${row.port}, ${row.service}, ${row.component}, ${row.route ?? null}, ${row.sagaId ?? null})`.pipe(Effect.asVoid),
      /** Releases what a saga reserved and never committed. */
      releaseSagaPorts: (sagaId: string) => sql`DELETE FROM ports WHERE saga_id = ${sagaId}`.pipe(Effect.asVoid),

      // routes, certificates, DNS --------------------------------------------------------------
      routes: sql`SELECT * FROM routes ORDER BY listener, hostname`.pipe(Effect.map((rows) => rows.map(toRoute))),
      serviceRoutes: (service: string) => sql`SELECT * FROM routes WHERE service = ${service}`.pipe(Effect.map((rows) => rows.map(toRoute))),
      certificates: sql`SELECT * FROM certificates ORDER BY hostname`.pipe(
        Effect.map((rows) => rows.map((r): CertificateRow => ({
          hostname: r["hostname"] as string, service: r["service"] as string, certPath: r["cert_path"] as string,
          keyPath: r["key_path"] as string, serial: r["serial"] as string, notAfter: r["not_after"] as string
        })))
      ),
      putCertificate: (c: CertificateRow) =>
        sql`INSERT INTO certificates (hostname, service, cert_path, key_path, serial, not_after)
          VALUES (${c.hostname}, ${c.service}, ${c.certPath}, ${c.keyPath}, ${c.serial}, ${c.notAfter})
          ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, cert_path = excluded.cert_path,
            key_path = excluded.key_path, serial = excluded.serial, not_after = excluded.not_after`.pipe(Effect.asVoid),
      deleteCertificate: (hostname: string) => sql`DELETE FROM certificates WHERE hostname = ${hostname}`.pipe(Effect.asVoid),
      dnsRecords: sql`SELECT * FROM dns_records ORDER BY name`.pipe(
        Effect.map((rows) => rows.map((r): DnsRow => ({ name: r["name"] as string, service: r["service"] as string, address: r["address"] as string })))
      ),

      // edge routes ----------------------------------------------------------------------------
      edgeRoutes: sql`SELECT * FROM edge_routes ORDER BY hostname`.pipe(Effect.map((rows) => rows.map(toEdgeRoute))),
      edgeRoute: (hostname: string) =>
        sql`SELECT * FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map(toEdgeRoute)))),
      /** Inserts or replaces the row for the route's hostname. */
      putEdgeRoute: (row: EdgeRouteRow) => {
        const { hostname, service, state, ...data } = row
        return sql`INSERT INTO edge_routes (hostname, service, state, data) VALUES (${hostname}, ${service}, ${state}, ${JSON.stringify(data)})
          ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, state = excluded.state, data = excluded.data`.pipe(Effect.asVoid)
      },
      deleteEdgeRoute: (hostname: string) => sql`DELETE FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.asVoid),

      // sagas: the shared journal's two tables ----------------------------------------------
      ...sagas,

      // events ---------------------------------------------------------------------------------
      addEvent: (kind: string, service: string | undefined, message: string) =>
        sql`INSERT INTO events (at, service, kind, message) VALUES (${now()}, ${service ?? null}, ${kind}, ${message})`.pipe(Effect.asVoid),
      events: (limit: number, afterId = 0) =>
        sql`SELECT * FROM (SELECT * FROM events WHERE id > ${afterId} ORDER BY id DESC LIMIT ${limit}) ORDER BY id`.pipe(
          Effect.map((rows) => rows.map((r): EventRow => ({
            id: Number(r["id"]), at: r["at"] as string, service: nullable(r["service"] as string | null),
            kind: r["kind"] as string, message: r["message"] as string
          })))
        )
    }
  })
}) {}
