/**
 * The master's SQLite database: the nodes it knows (from config, `mcp node add` and
 * self-registration), where each service was placed, stored definitions, edge routes and the
 * master's event log, and the journal of its cross-node sagas. Agents stay the truth about what
 * runs; this is rebuilt from them on start.
 */
import { SqlClient } from "@effect/sql"
import type { SqlError } from "@effect/sql/SqlError"
import { Health, InternalZone, Node, Routes } from "@mcp/domain"
import * as Audit from "@mcp/rpc/Audit"
import * as EventLog from "@mcp/rpc/EventLog"
import * as SagaJournal from "@mcp/rpc/SagaJournal"
import * as SqliteFile from "@mcp/rpc/SqliteFile"
import * as SqlRows from "@mcp/rpc/SqlRows"
import { Effect, Layer, Option, Schema } from "effect"

const migrations = {
  "0001_initial": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE nodes (
      name TEXT PRIMARY KEY,
      role TEXT NOT NULL,
      addresses TEXT NOT NULL,
      arch TEXT NOT NULL,
      version TEXT NOT NULL,
      resources TEXT,
      health TEXT NOT NULL DEFAULT 'unknown',
      last_heartbeat TEXT,
      source TEXT NOT NULL
    )`
    yield* sql`CREATE TABLE placements (service TEXT PRIMARY KEY, node TEXT NOT NULL, placed_at TEXT NOT NULL)`
    yield* sql`CREATE TABLE definitions (service TEXT PRIMARY KEY, definition TEXT NOT NULL, stored_at TEXT NOT NULL)`
    yield* sql`CREATE TABLE edge_routes (hostname TEXT PRIMARY KEY, service TEXT NOT NULL, edge_node TEXT NOT NULL, data TEXT NOT NULL)`
    yield* sql`CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, node TEXT NOT NULL, service TEXT, kind TEXT NOT NULL, message TEXT NOT NULL)`
  }),
  /**
   * An edge route row is the master's intent: `active` routes must exist on their edge node,
   * `removing` ones must not (kept until the edge confirms, so a failed removal is retried).
   */
  "0002_edge_route_state": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`ALTER TABLE edge_routes ADD COLUMN state TEXT NOT NULL DEFAULT 'active'`
    // The IP a node's proxy is reached at (agent `node_address`), which edge route resolution matches.
    yield* sql`ALTER TABLE nodes ADD COLUMN node_address TEXT`
  }),
  /** Copies of moved services left on their old node because it could not be reached: to remove. */
  "0003_stale_copies": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE stale_copies (service TEXT NOT NULL, node TEXT NOT NULL, since TEXT NOT NULL, PRIMARY KEY (service, node))`
  }),
  /** The journal of cross-node deploys and undeploys, so a master killed mid-way finishes or undoes them at start. */
  "0004_saga_journal": SagaJournal.createTables,
  /** Who caused an event: the audit trail's entries are events naming their caller. */
  "0005_event_who": EventLog.addWhoColumn,
  /** The internal zone the master answers for: A records the nodes register, and its serial. */
  "0006_internal_zone": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE TABLE dns_records (name TEXT PRIMARY KEY, address TEXT NOT NULL, node TEXT NOT NULL, updated_at TEXT NOT NULL)`
    yield* sql`CREATE TABLE dns_serial (id INTEGER PRIMARY KEY CHECK (id = 1), serial INTEGER NOT NULL)`
    yield* sql`INSERT INTO dns_serial (id, serial) VALUES (1, 1)`
  }),
  /** Heartbeats ask which of hundreds of services have a saga (SagaJournal.busyAmong): by service, not a scan. */
  "0007_sagas_by_service": Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql`CREATE INDEX sagas_service ON sagas(service)`
  })
}

/**
 * Heartbeats keep the master writing (HeartbeatRecords: every node's latest, once a second), so
 * its log reaches SQLite's default 1,000 pages every few seconds at 10,000 nodes, and the commit
 * that copies it back held the event loop 10-20 ms (CPU profile of bench/heartbeats.ts). At 250
 * pages, 200 rows' commits held it 4 ms at most against 10-11, for a tenth more time in all
 * (better-sqlite3 on this kind of machine: 30 s of 2,000 of 10,000 rows a second).
 */
export const WAL_AUTOCHECKPOINT_PAGES = 250

export const layerSqlite = (filename: string) => SqliteFile.layer({ filename, migrations, walAutocheckpointPages: WAL_AUTOCHECKPOINT_PAGES })

/** The `nodes` columns, the JSON ones decoded with the domain's schemas; a NodeRow gathers the identity into its NodeInfo. */
const NodeColumns = Schema.Struct({
  name: Node.NodeInfo.fields.name,
  role: Node.NodeRole,
  addresses: SqlRows.JsonText(Node.NodeInfo.fields.addresses),
  arch: Schema.String,
  version: Schema.String,
  nodeAddress: SqlRows.column("node_address", SqlRows.Nullable(Schema.String)),
  resources: SqlRows.Nullable(SqlRows.JsonText(Node.Resources)),
  health: Health.HealthStatus,
  lastHeartbeat: SqlRows.column("last_heartbeat", SqlRows.Nullable(Schema.String)),
  /** How the master learned of it: "config", "cli" or "register". */
  source: Schema.String
})

const NodeRow = Schema.transform(
  NodeColumns,
  Schema.typeSchema(Schema.Struct({
    info: Node.NodeInfo,
    resources: Schema.UndefinedOr(Node.Resources),
    health: Health.HealthStatus,
    lastHeartbeat: Schema.UndefinedOr(Schema.String),
    source: Schema.String
  })),
  {
    strict: true,
    decode: ({ arch, name, nodeAddress, role, version, addresses, ...rest }) => ({
      info: { name, role, addresses, arch, version, ...(nodeAddress === undefined ? {} : { nodeAddress }) },
      ...rest
    }),
    encode: ({ info: { nodeAddress, ...info }, ...rest }) => ({ ...info, nodeAddress, ...rest })
  }
)
export interface NodeRow extends Schema.Schema.Type<typeof NodeRow> {}

/** What registering or adding a node writes; its health and heartbeat are the supervisor's. */
const NodeRecord = NodeColumns.omit("health", "lastHeartbeat")

const Placement = Schema.Struct({ service: Schema.String, node: Schema.String })

/**
 * The definition as the operator wrote it (the TOML table as JSON), not decoded here: the master
 * sends it on to the worker, which decodes it with its own zone, and compares it as written.
 */
const DefinitionRow = Schema.Struct({ definition: SqlRows.JsonText(Schema.Unknown) })

/** The master journals its cross-node deploys, undeploys, stops and starts (services/CrossNodeSaga.ts). */
export const SagaKind = Schema.Literal("deploy", "undeploy", "stop", "start")
export type SagaKind = typeof SagaKind.Type

const EdgeRouteState = Schema.Literal("active", "removing")
export type EdgeRouteState = typeof EdgeRouteState.Type

/** An edge route's row: the route is the `data` column, decoded with the domain's schema. */
const EdgeRouteRow = Schema.Struct({
  route: SqlRows.column("data", SqlRows.JsonText(Routes.EdgeRoute)),
  state: EdgeRouteState
})
export interface EdgeRouteRow extends Schema.Schema.Type<typeof EdgeRouteRow> {}

/** What putting an edge route writes: the route's keys have their own columns, for lookups. */
const EdgeRouteRecord = Schema.Struct({
  ...EdgeRouteRow.fields,
  hostname: Schema.String,
  service: Schema.String,
  edgeNode: SqlRows.column("edge_node", Schema.String)
})

/**
 * A node's resources as the `resources` column holds them (what `NodeColumns` reads back): the
 * declared fields only. The type makes a field added to `Node.Resources` a compile error here.
 */
const resourcesJson = (r: Node.Resources): string => {
  const declared: { readonly [K in keyof Node.Resources]-?: Node.Resources[K] } = {
    cpuCores: r.cpuCores,
    load1: r.load1,
    memoryTotalBytes: r.memoryTotalBytes,
    memoryFreeBytes: r.memoryFreeBytes,
    diskTotalBytes: r.diskTotalBytes,
    diskFreeBytes: r.diskFreeBytes,
    containers: r.containers
  }
  return JSON.stringify(declared)
}

/** Rows written in one statement by the batched writes (SQLite bounds a statement's parameters). */
const WRITE_CHUNK = 500

export class MasterDb extends Effect.Service<MasterDb>()("@mcp/master/MasterDb", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = () => new Date().toISOString()
    const sagas = yield* SagaJournal.make(SagaKind)
    const events = yield* EventLog.make(EventLog.NodeEvent)

    const nodes = SqlRows.findAll("nodes", { Request: Schema.Void, Result: NodeRow, execute: () => sql`SELECT * FROM nodes ORDER BY name` })
    // The edge nodes are a handful among what may be thousands: read by role, not by decoding every row.
    const nodesOfRole = SqlRows.findAll("nodes", { Request: Node.NodeRole, Result: NodeRow, execute: (role) => sql`SELECT * FROM nodes WHERE role = ${role} ORDER BY name` })
    const node = SqlRows.findOne("nodes", { Request: Schema.String, Result: NodeRow, execute: (name) => sql`SELECT * FROM nodes WHERE name = ${name}` })
    // A node's resources and address, once known, outlive a write that lacks them.
    const upsertNode = SqlRows.write("nodes", {
      Request: NodeRecord,
      execute: (n) =>
        sql`INSERT INTO nodes (name, role, addresses, arch, version, resources, source, node_address)
          VALUES (${n.name}, ${n.role}, ${n.addresses}, ${n.arch}, ${n.version}, ${n.resources}, ${n.source}, ${n.node_address})
          ON CONFLICT (name) DO UPDATE SET role = excluded.role, addresses = excluded.addresses, arch = excluded.arch,
            version = excluded.version, resources = COALESCE(excluded.resources, nodes.resources),
            node_address = COALESCE(excluded.node_address, nodes.node_address)`
    })
    const lastHeartbeats = SqlRows.findAll("nodes", {
      Request: Schema.Void,
      Result: Schema.Struct({ name: Schema.String, lastHeartbeat: SqlRows.column("last_heartbeat", Schema.String) }),
      execute: () => sql`SELECT name, last_heartbeat FROM nodes WHERE last_heartbeat IS NOT NULL`
    })
    // Many nodes' latest heartbeats in one statement: an UPDATE from a VALUES list, so a node
    // removed since its heartbeat is skipped, as the one-row UPDATE skipped it. The statement is
    // written as text with a placeholder per value (no value goes into the text), and the
    // resources as their JSON: a template fragment per row and Schema's encoding of each row cost
    // a master with 10,000 nodes 0.05-0.09 ms of CPU per heartbeat at saturation, about a fifth
    // (bench/heartbeats.ts). The rows are the master's own, built from payloads their schema decoded.
    const heartbeatRows = (rows: ReadonlyArray<{ readonly name: string; readonly resources: Node.Resources; readonly at: Date }>) =>
      sql.unsafe(
        `WITH v(name, resources, last_heartbeat) AS (VALUES ${rows.map(() => "(?, ?, ?)").join(", ")})
          UPDATE nodes SET resources = v.resources, last_heartbeat = v.last_heartbeat FROM v WHERE nodes.name = v.name`,
        rows.flatMap((n) => [n.name, resourcesJson(n.resources), n.at.toISOString()])
      ).pipe(Effect.asVoid)

    const placedCache = makePlacedCache()
    const placements = SqlRows.findAll("placements", { Request: Schema.Void, Result: Placement, execute: () => sql`SELECT service, node FROM placements ORDER BY service` })
    const placement = SqlRows.findOne("placements", { Request: Schema.String, Result: Placement, execute: (service) => sql`SELECT service, node FROM placements WHERE service = ${service}` })

    const definition = SqlRows.findOne("definitions", {
      Request: Schema.String,
      Result: DefinitionRow,
      execute: (service) => sql`SELECT definition FROM definitions WHERE service = ${service}`
    })
    const definitions = SqlRows.findAll("definitions", {
      Request: Schema.Void,
      Result: Schema.Struct({ service: Schema.String, ...DefinitionRow.fields }),
      execute: () => sql`SELECT service, definition FROM definitions ORDER BY service`
    })
    const storeDefinition = SqlRows.write("definitions", {
      Request: Schema.Struct({ service: Schema.String, ...DefinitionRow.fields, storedAt: SqlRows.column("stored_at", Schema.String) }),
      execute: (d) =>
        sql`INSERT INTO definitions (service, definition, stored_at) VALUES (${d.service}, ${d.definition}, ${d.stored_at})
          ON CONFLICT (service) DO UPDATE SET definition = excluded.definition, stored_at = excluded.stored_at`
    })

    const edgeRoutes = SqlRows.findAll("edge_routes", { Request: Schema.Void, Result: EdgeRouteRow, execute: () => sql`SELECT * FROM edge_routes ORDER BY hostname` })
    const edgeRoutesOf = SqlRows.findAll("edge_routes", {
      Request: Schema.String,
      Result: EdgeRouteRow,
      execute: (service) => sql`SELECT * FROM edge_routes WHERE service = ${service} ORDER BY hostname`
    })
    const edgeRoute = SqlRows.findOne("edge_routes", { Request: Schema.String, Result: EdgeRouteRow, execute: (hostname) => sql`SELECT * FROM edge_routes WHERE hostname = ${hostname}` })
    const putEdgeRoute = SqlRows.write("edge_routes", {
      Request: EdgeRouteRecord,
      execute: (r) =>
        sql`INSERT INTO edge_routes (hostname, service, edge_node, data, state)
          VALUES (${r.hostname}, ${r.service}, ${r.edge_node}, ${r.data}, ${r.state})
          ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, edge_node = excluded.edge_node, data = excluded.data, state = excluded.state`
    })

    const zoneRecords = SqlRows.findAll("dns_records", {
      Request: Schema.Void,
      Result: Schema.Struct({ ...InternalZone.ZoneRecord.fields, updatedAt: SqlRows.column("updated_at", Schema.String) }),
      execute: () => sql`SELECT name, address, node, updated_at FROM dns_records ORDER BY name`
    })
    const zoneSerial = SqlRows.findOne("dns_serial", {
      Request: Schema.Void,
      Result: Schema.Struct({ serial: Schema.Int }),
      execute: () => sql`SELECT serial FROM dns_serial WHERE id = 1`
    })
    const serialNow = Effect.map(zoneSerial(undefined), Option.match({ onNone: () => 1, onSome: (r) => r.serial }))
    const bumpSerial = sql`UPDATE dns_serial SET serial = serial + 1 WHERE id = 1`

    const staleCopies = SqlRows.findAll("stale_copies", { Request: Schema.Void, Result: Placement, execute: () => sql`SELECT service, node FROM stale_copies ORDER BY service, node` })

    return {
      /** The saga journal's two tables (shared with the agent's registry). */
      ...sagas,
      nodes: nodes(undefined),
      /** The nodes of one role (the edge nodes, which routes and the reconciler ask for). */
      nodesOfRole,
      node,
      upsertNode: (info: Node.NodeInfo, source: string, resources?: Node.Resources) =>
        upsertNode({ ...info, nodeAddress: info.nodeAddress, resources, source }),
      /** Each node's latest resources and heartbeat time, in one transaction (HeartbeatRecords gives a chunk at a time). */
      heartbeats: (batch: ReadonlyArray<{ readonly name: string; readonly resources: Node.Resources; readonly at: Date }>) =>
        sql.withTransaction(Effect.forEach(
          Array.from({ length: Math.ceil(batch.length / WRITE_CHUNK) }, (_, i) => batch.slice(i * WRITE_CHUNK, (i + 1) * WRITE_CHUNK)),
          (chunk) => heartbeatRows(chunk),
          { discard: true }
        )),
      /** Each node's last heartbeat time as stored (ISO text), for the nodes that have one. */
      lastHeartbeats: Effect.map(lastHeartbeats(undefined), (rows) => new Map(rows.map((r) => [r.name, r.lastHeartbeat] as const))),
      setHealth: (name: string, health: Health.HealthStatus) => sql`UPDATE nodes SET health = ${health} WHERE name = ${name}`.pipe(Effect.asVoid),
      removeNode: (name: string) => sql`DELETE FROM nodes WHERE name = ${name}`.pipe(Effect.asVoid),

      /** The internal zone's records, by name. */
      zoneRecords: zoneRecords(undefined),
      zoneSerial: serialNow,
      /**
       * Sets `name`'s A record to `address`, registered by `node` (a service that moved takes its
       * name along); the serial goes up when anything changed. Whether it did, and the serial.
       */
      putZoneRecord: (name: string, address: string, node: string) =>
        sql.withTransaction(Effect.gen(function* () {
          const same = yield* sql`SELECT 1 FROM dns_records WHERE name = ${name} AND address = ${address} AND node = ${node}`
          if (same.length > 0) return { changed: false, serial: yield* serialNow }
          yield* sql`INSERT INTO dns_records (name, address, node, updated_at) VALUES (${name}, ${address}, ${node}, ${now()})
            ON CONFLICT (name) DO UPDATE SET address = excluded.address, node = excluded.node, updated_at = excluded.updated_at`
          yield* bumpSerial
          return { changed: true, serial: yield* serialNow }
        })),
      /**
       * Removes `name`'s record if `node` registered it: a node cleaning up after a service that
       * moved away must not take the name from the node that serves it now.
       */
      removeZoneRecord: (name: string, node: string) =>
        sql.withTransaction(Effect.gen(function* () {
          const rows = yield* sql<{ node: string }>`SELECT node FROM dns_records WHERE name = ${name}`
          const owner = rows[0]?.node
          if (owner !== node) return { removed: false, owner, serial: yield* serialNow }
          yield* sql`DELETE FROM dns_records WHERE name = ${name}`
          yield* bumpSerial
          return { removed: true, owner, serial: yield* serialNow }
        })),

      placements: placements(undefined),
      placement: (service: string) => Effect.map(placement(service), Option.map((p) => p.node)),
      /**
       * Which of `services` are placed (on any node). Every heartbeat asks this of the services
       * its node reports, so the answers are kept (PlacedCache) until a placement is written;
       * what is not known is looked up in one indexed query.
       */
      placedAmong: (services: ReadonlyArray<string>): Effect.Effect<ReadonlySet<string>, SqlError> =>
        Effect.suspend(() => {
          const known = placedCache.lookup(services)
          if (known.missing.length === 0) return Effect.succeed(known.placed)
          const generation = placedCache.generation()
          return Effect.map(sql<{ service: string }>`SELECT service FROM placements WHERE ${sql.in("service", known.missing)}`, (rows) => {
            const found = new Set(rows.map((r) => r.service))
            placedCache.fill(generation, known.missing, found)
            for (const service of found) known.placed.add(service)
            return known.placed
          })
        }),
      /** Whether `service` is known placed, without a query: false when it is not, or not known yet. */
      placedNow: (service: string): boolean => placedCache.placedNow(service),
      place: (service: string, node: string) =>
        placedCache.writing(service, sql`INSERT INTO placements (service, node, placed_at) VALUES (${service}, ${node}, ${now()})
          ON CONFLICT (service) DO UPDATE SET node = excluded.node, placed_at = excluded.placed_at`.pipe(Effect.asVoid)),
      /**
       * `place` for each entry, in one statement (keep a call under SQLite's parameter limit). It
       * returns the mark `rememberPlaced` takes once the transaction it ran in has committed, or
       * undefined when another write of placements started or ended while it ran (a write outside
       * a transaction shares the connection, so it may land inside this one).
       */
      placeAll: (entries: ReadonlyArray<{ readonly service: string; readonly node: string }>): Effect.Effect<number | undefined, SqlError> =>
        Effect.suspend(() => {
          if (entries.length === 0) return Effect.succeed(placedCache.generation())
          return placedCache.writingAll(entries.map((e) => e.service), Effect.suspend(() => {
            const at = now()
            return sql`INSERT INTO placements ${sql.insert(entries.map((e) => ({ service: e.service, node: e.node, placed_at: at })))}
              ON CONFLICT (service) DO UPDATE SET node = excluded.node, placed_at = excluded.placed_at`.pipe(Effect.asVoid)
          }))
        }),
      unplace: (service: string) => placedCache.writing(service, sql`DELETE FROM placements WHERE service = ${service}`.pipe(Effect.asVoid)),
      /**
       * Remembers `services` as placed, without a query, after the transaction whose `placeAll`
       * placed them committed; `mark` is what that `placeAll` returned. If it returned undefined,
       * or a write of placements started or ended since, nothing is remembered (the next
       * `placedAmong` reads them). Without it, a service learnt from a heartbeat was read back by
       * the next heartbeat that reported it: at 10,000 nodes a second round of lookups, and of
       * noted services, after every node's first heartbeat (bench/heartbeats.ts).
       */
      rememberPlaced: (mark: number | undefined, services: ReadonlyArray<string>): void => {
        if (mark !== undefined) placedCache.fill(mark, services, new Set(services))
      },

      storeDefinition: (service: string, definition: unknown) => storeDefinition({ service, definition, storedAt: now() }),
      definition: (service: string) => Effect.map(definition(service), Option.map((d) => d.definition)),
      /** Every stored definition, as written, with its service (which hostnames each claims). */
      definitions: definitions(undefined),
      withTransaction: sql.withTransaction,

      edgeRoutes: edgeRoutes(undefined),
      edgeRoutesOf,
      edgeRoute,
      /** Records the route (one row per public hostname) in the given state. */
      putEdgeRoute: (route: Routes.EdgeRoute, state: EdgeRouteState) =>
        putEdgeRoute({ route, state, hostname: route.hostname, service: route.service, edgeNode: route.edgeNode }),
      deleteEdgeRoute: (hostname: string) => sql`DELETE FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.asVoid),
      staleCopies: staleCopies(undefined),
      addStaleCopy: (service: string, node: string) =>
        sql`INSERT INTO stale_copies (service, node, since) VALUES (${service}, ${node}, ${now()}) ON CONFLICT DO NOTHING`.pipe(Effect.asVoid),
      deleteStaleCopy: (service: string, node: string) => sql`DELETE FROM stale_copies WHERE service = ${service} AND node = ${node}`.pipe(Effect.asVoid),

      addEvent: (node: string, kind: EventLog.EventRow["kind"], service: string | undefined, message: string) => events.append({ node, kind, service, message }),
      /** `addEvent` for each, in one statement (keep a call under SQLite's parameter limit). */
      addEvents: (rows: ReadonlyArray<{ readonly node: string; readonly kind: EventLog.EventRow["kind"]; readonly service: string | undefined; readonly message: string }>) => events.appendAll(rows),
      events: events.events,
      /** An audit entry, as an `audit` event on the master itself (the node the call was served on). */
      audit: (entry: Audit.AuditEntry) =>
        events.append({ node: "master", ...Audit.toEvent(entry) }).pipe(Effect.mapError((cause) => new Audit.AuditWriteFailed({ cause })))
    }
  })
}) {}

/**
 * Whether each service is placed, as last read from the placements table, for heartbeats (which
 * ask it of every service their node reports, hundreds of times a second in a large fleet). Only
 * `place`, `placeAll` and `unplace` write that table, each only its own services' rows, and each
 * write forgets what is known of those services, when it starts and again when it ends (committed,
 * failed or rolled back with its transaction); what is known of the others stays true. (Forgetting everything made a
 * master learning placements from heartbeats, one write per service, read the table again for
 * every heartbeat: 0.8 ms each at 10,000 nodes, bench/heartbeats.ts.) A lookup stores what it
 * read only if no write started or ended meanwhile (the generation is unchanged), so a read that
 * raced a write is never kept. The same rule lets a committed `placeAll` store what it wrote
 * (`rememberPlaced`): only if no other write ran from its start to the moment it is stored. The
 * map holds one boolean per service name heartbeats reported.
 */
const makePlacedCache = () => {
  let generation = 0
  const placed = new Map<string, boolean>()
  const forget = (service: string) => {
    generation++
    placed.delete(service)
  }
  return {
    generation: () => generation,
    placedNow: (service: string) => placed.get(service) === true,
    lookup: (services: ReadonlyArray<string>) => {
      const found = new Set<string>()
      const missing: Array<string> = []
      for (const service of services) {
        const known = placed.get(service)
        if (known === undefined) missing.push(service)
        else if (known) found.add(service)
      }
      return { placed: found, missing }
    },
    fill: (readAt: number, asked: ReadonlyArray<string>, found: ReadonlySet<string>) => {
      if (readAt !== generation) return
      for (const service of asked) placed.set(service, found.has(service))
    },
    /** Runs `write`, which writes `service`'s row and no other. */
    writing: <A, E, R>(service: string, write: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> =>
      Effect.suspend(() => {
        forget(service)
        return Effect.ensuring(write, Effect.sync(() => forget(service)))
      }),
    /**
     * Runs `write`, which writes the rows of `services` and no other. Once it succeeded, the
     * generation for `fill`, or undefined when another write started or ended while it ran (its
     * own forgetting moves the generation by two for each service, once at its start and once at
     * its end).
     */
    writingAll: <E, R>(services: ReadonlyArray<string>, write: Effect.Effect<void, E, R>): Effect.Effect<number | undefined, E, R> =>
      Effect.suspend(() => {
        const before = generation
        services.forEach(forget)
        return Effect.ensuring(write, Effect.sync(() => services.forEach(forget))).pipe(
          Effect.map(() => (generation - before === 2 * services.length ? generation : undefined))
        )
      })
  }
}

/** The master's audit trail is its event log. */
export const layerAuditLog = Layer.effect(Audit.AuditLog, Effect.map(MasterDb, (db) => ({ record: db.audit })))
