/**
 * The agent's SQLite registry: the source of truth for recover and the boot sequencer, so it
 * survives engine resets. It holds three things, each its own module over the one SQL client:
 * what should run here (ServiceRecords: services with their components, ports, routes,
 * certificates and DNS names; EdgeRouteRecords: the edge routes served here), the saga journal
 * (SagaJournal, shared with the master) and the event log (EventLog, shared with the master).
 *
 * They stay one service because they share one SQLite connection and its transactions: a
 * service operation writes its journal entry and the active flag it stands for in one
 * transaction, and a deploy's commit ends its saga in the transaction that writes its rows.
 * Separate services would only move that coupling into every caller's requirements.
 */
import { SqlClient } from "@effect/sql"
import { Audit, EventLog, SagaJournal, SqliteFile } from "@mcp/rpc"
import { Effect, Layer, Schema } from "effect"
import * as EdgeRouteRecords from "./EdgeRouteRecords.js"
import * as ServiceRecords from "./ServiceRecords.js"

export type { EdgeRouteRow, EdgeRouteState, EdgeTarget } from "./EdgeRouteRecords.js"
export type { CertificateRow, ComponentRow, DeployCommit, DnsRow, PortRow, RouteRow, ServiceRow } from "./ServiceRecords.js"
export { UnreadableDefinition } from "./StoredDefinition.js"

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
    yield* SagaJournal.createTables
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
    // SagaJournal.createTables makes this index since a registry's first migration uses it.
    yield* sql`CREATE INDEX IF NOT EXISTS sagas_state ON sagas(state)`
    yield* sql`CREATE INDEX events_service ON events(service, id)`
  }),
  // Edge routes are set up in steps (record, certificate, proxy): the state says how far one got,
  // so a start-up after a crash knows which rows to compensate or finish.
  "0003_edge_route_state": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE edge_routes ADD COLUMN state TEXT NOT NULL DEFAULT 'active'`
  }),
  /** Who caused an event: the audit trail's entries are events naming their caller. */
  "0004_event_who": EventLog.addWhoColumn
}

/** The registry file, migrated. `upTo` is for migration tests. */
export const layerSqlite = (filename: string, upTo?: number) =>
  SqliteFile.layer({ filename, migrations, synchronous: "NORMAL", ...(upTo === undefined ? {} : { upTo }) })

/**
 * A deploy and a certificate renewal ("renew") are sagas with steps, compensated when cut short;
 * stop, start, undeploy and the revoking of certificates the registry no longer records
 * ("revoke") are journaled as one entry each and finished when cut short.
 */
export const SagaKind = Schema.Literal("deploy", "stop", "start", "undeploy", "renew", "revoke")
export type SagaKind = typeof SagaKind.Type

export class Registry extends Effect.Service<Registry>()("@mcp/agent/Registry", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const events = yield* EventLog.make(EventLog.Event)
    return {
      sql,
      withTransaction: sql.withTransaction,
      ...(yield* ServiceRecords.make),
      ...(yield* EdgeRouteRecords.make),
      ...(yield* SagaJournal.make(SagaKind)),
      addEvent: (kind: EventLog.EventRow["kind"], service: string | undefined, message: string) => events.append({ kind, service, message }),
      events: events.events,
      /** An audit entry, as an `audit` event in this node's log. */
      audit: (entry: Audit.AuditEntry) => events.append(Audit.toEvent(entry)).pipe(Effect.mapError((cause) => new Audit.AuditWriteFailed({ cause })))
    }
  })
}) {}

/** The agent's audit trail is its event log. */
export const layerAuditLog = Layer.effect(Audit.AuditLog, Effect.map(Registry, (registry) => ({ record: registry.audit })))
