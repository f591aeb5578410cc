/**
 * The master's SQLite database: the nodes it knows (from config, `mcp node add` and
 * self-registration), where each service was placed, stored definitions, edge routes and the
 * master's event log, and the journal of its cross-node sagas. Agents stay the truth about what
 * runs; this is rebuilt from them on start.
 */
import { Migrator, SqlClient } from "@effect/sql"
import { SqliteClient } from "@effect/sql-sqlite-node"
import type { Health, Node, Routes } from "@mcp/domain"
import { SagaJournal } from "@mcp/rpc"
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
  "0004_saga_journal": SagaJournal.createTables
}

export const layerSqlite = (filename: string) => {
  const pragmas = Layer.effectDiscard(
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      yield* sql`PRAGMA foreign_keys = ON`
      yield* sql`PRAGMA busy_timeout = 5000`
    })
  )
  const migrated = Layer.effectDiscard(Migrator.make({})({ loader: Migrator.fromRecord(migrations) }))
  return Layer.provideMerge(migrated, Layer.provideMerge(pragmas, SqliteClient.layer({ filename })))
}

export interface NodeRow {
  readonly info: Node.NodeInfo
  readonly resources: Node.Resources | undefined
  readonly health: Health.HealthStatus
  readonly lastHeartbeat: string | undefined
  /** How the master learned of it: "config", "cli" or "register". */
  readonly source: string
}

/** The master journals its cross-node deploys and undeploys (services/CrossNodeSaga.ts). */
export const SagaKind = Schema.Literal("deploy", "undeploy")
export type SagaKind = typeof SagaKind.Type

export type EdgeRouteState = "active" | "removing"

export interface EdgeRouteRow {
  readonly route: Routes.EdgeRoute
  readonly state: EdgeRouteState
}

const toEdgeRoute = (r: Record<string, unknown>): EdgeRouteRow => ({
  route: JSON.parse(r["data"] as string) as Routes.EdgeRoute,
  state: r["state"] as EdgeRouteState
})

export interface EventRow {
  readonly id: number
  readonly at: string
  readonly node: string
  readonly service: string | undefined
  readonly kind: string
  readonly message: string
}

const toNode = (r: Record<string, unknown>): NodeRow => ({
  info: {
    name: r["name"] as Node.NodeInfo["name"],
    role: r["role"] as Node.NodeRole,
    addresses: JSON.parse(r["addresses"] as string),
    arch: r["arch"] as string,
    version: r["version"] as string,
    ...(typeof r["node_address"] === "string" ? { nodeAddress: r["node_address"] } : {})
  },
  resources: r["resources"] === null ? undefined : JSON.parse(r["resources"] as string),
  health: r["health"] as Health.HealthStatus,
  lastHeartbeat: (r["last_heartbeat"] as string | null) ?? undefined,
  source: r["source"] as string
})

export class MasterDb extends Effect.Service<MasterDb>()("@mcp/master/MasterDb", {
  effect: Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const now = () => new Date().toISOString()
    const sagas = yield* SagaJournal.make(SagaKind)
    return {
      /** The saga journal's two tables (shared with the agent's registry). */
      ...sagas,
      nodes: sql`SELECT * FROM nodes ORDER BY name`.pipe(Effect.map((rows) => rows.map(toNode))),
      node: (name: string) => sql`SELECT * FROM nodes WHERE name = ${name}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map(toNode)))),
      upsertNode: (info: Node.NodeInfo, source: string, resources?: Node.Resources) =>
        sql`INSERT INTO nodes (name, role, addresses, arch, version, resources, source, node_address)
          VALUES (${info.name}, ${info.role}, ${JSON.stringify(info.addresses)}, ${info.arch}, ${info.version}, ${resources === undefined ? null : JSON.stringify(resources)}, ${source}, ${info.nodeAddress ?? null})
          ON CONFLICT (name) DO UPDATE SET role = excluded.role, addresses = excluded.addresses, arch = excluded.arch,
            version = excluded.version, resources = COALESCE(excluded.resources, nodes.resources),
            node_address = COALESCE(excluded.node_address, nodes.node_address)`.pipe(Effect.asVoid),
      heartbeat: (name: string, resources: Node.Resources) =>
        sql`UPDATE nodes SET resources = ${JSON.stringify(resources)}, last_heartbeat = ${now()} WHERE name = ${name}`.pipe(Effect.asVoid),
      setHealth: (name: string, health: Health.HealthStatus) => sql`UPDATE nodes SET health = ${health} WHERE name = ${name}`.pipe(Effect.asVoid),
      removeNode: (name: string) => sql`DELETE FROM nodes WHERE name = ${name}`.pipe(Effect.asVoid),

      placements: sql`SELECT * FROM placements ORDER BY service`.pipe(
        Effect.map((rows) => rows.map((r) => ({ service: r["service"] as string, node: r["node"] as string })))
      ),
      placement: (service: string) =>
        sql`SELECT node FROM placements WHERE service = ${service}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map((r) => r["node"] as string)))),
      place: (service: string, node: string) =>
        sql`INSERT INTO placements (service, node, placed_at) VALUES (${service}, ${node}, ${now()})
          ON CONFLICT (service) DO UPDATE SET node = excluded.node, placed_at = excluded.placed_at`.pipe(Effect.asVoid),
      unplace: (service: string) => sql`DELETE FROM placements WHERE service = ${service}`.pipe(Effect.asVoid),

      storeDefinition: (service: string, definition: unknown) =>
        sql`INSERT INTO definitions (service, definition, stored_at) VALUES (${service}, ${JSON.stringify(definition)}, ${now()})
          ON CONFLICT (service) DO UPDATE SET definition = excluded.definition, stored_at = excluded.stored_at`.pipe(Effect.asVoid),
      definition: (service: string) =>
        sql`SELECT definition FROM definitions WHERE service = ${service}`.pipe(
          Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map((r) => JSON.parse(r["definition"] as string) as unknown)))
        ),
      withTransaction: sql.withTransaction,

      edgeRoutes: sql`SELECT * FROM edge_routes ORDER BY hostname`.pipe(Effect.map((rows) => rows.map(toEdgeRoute))),
      edgeRoutesOf: (service: string) =>
        sql`SELECT * FROM edge_routes WHERE service = ${service} ORDER BY hostname`.pipe(Effect.map((rows) => rows.map(toEdgeRoute))),
      edgeRoute: (hostname: string) =>
        sql`SELECT * FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.map((rows) => Option.fromNullable(rows[0]).pipe(Option.map(toEdgeRoute)))),
      /** Records the route (one row per public hostname) in the given state. */
      putEdgeRoute: (route: Routes.EdgeRoute, state: EdgeRouteState) =>
        sql`INSERT INTO edge_routes (hostname, service, edge_node, data, state)
          VALUES (${route.hostname}, ${route.service}, ${route.edgeNode}, ${JSON.stringify(route)}, ${state})
          ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, edge_node = excluded.edge_node, data = excluded.data, state = excluded.state`.pipe(Effect.asVoid),
      staleCopies: sql`SELECT service, node FROM stale_copies ORDER BY service, node`.pipe(
        Effect.map((rows) => rows.map((r) => ({ service: r["service"] as string, node: r["node"] as string })))
      ),
      addStaleCopy: (service: string, node: string) =>
        sql`INSERT INTO stale_copies (service, node, since) VALUES (${service}, ${node}, ${now()}) ON CONFLICT DO NOTHING`.pipe(Effect.asVoid),
      deleteStaleCopy: (service: string, node: string) => sql`DELETE FROM stale_copies WHERE service = ${service} AND node = ${node}`.pipe(Effect.asVoid),
      deleteEdgeRoute: (hostname: string) => sql`DELETE FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.asVoid),

      addEvent: (node: string, kind: string, service: string | undefined, message: string) =>
        sql`INSERT INTO events (at, node, service, kind, message) VALUES (${now()}, ${node}, ${service ?? null}, ${kind}, ${message})`.pipe(Effect.asVoid),
      events: (limit: number, afterId = 0) =>
        sql`SELECT * FROM (SELECT * FROM events WHERE id > ${afterId} ORDER BY id DESC LIMIT ${limit}) ORDER BY id`.pipe(
          Effect.map((rows) => rows.map((r): EventRow => ({
            id: Number(r["id"]), at: r["at"] as string, node: r["node"] as string,
            service: (r["service"] as string | null) ?? undefined, kind: r["kind"] as string, message: r["message"] as string
          })))
        )
    }
  })
}) {}
