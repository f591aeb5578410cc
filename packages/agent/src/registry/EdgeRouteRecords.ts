/**
 * Edge routes this node serves: one row per public hostname, replaced as the route's setup or
 * removal moves on. The row is its own journal (EdgeRoutes.ts): its state says how far a setup
 * or removal got, and its data holds what compensation needs (the route it replaces, the
 * certificates still to delete).
 */
import { SqlClient } from "@effect/sql"
import { SqlRows } from "@mcp/rpc"
import { Effect, Schema } from "effect"
import { IssuedCertificate } from "../certs/CertIssuer.js"

/**
 * "setting-up": recorded before the certificate and the proxy route, so a crash leaves a row to
 * compensate; "active": serving; "removing": the removal started and is finished at the next try.
 */
const EdgeRouteState = Schema.Literal("setting-up", "active", "removing")
export type EdgeRouteState = typeof EdgeRouteState.Type

/** Where an edge route forwards and the certificate it serves. */
const EdgeTarget = Schema.Struct({
  service: Schema.String,
  workerNode: Schema.String,
  backendHostname: Schema.String,
  backendPort: Schema.Number,
  /** `ip:port` the proxy forwards to: backendHostname as resolved when the route was set up. */
  backend: Schema.String,
  /** The proxy listener the public route is on. */
  listener: Schema.Number,
  /** Undefined only while setting up, before the certificate is issued. */
  cert: Schema.UndefinedOr(IssuedCertificate)
})
export interface EdgeTarget extends Schema.Schema.Type<typeof EdgeTarget> {}

/** The `data` column: everything but the hostname, the service and the state, which have columns. */
const { service: _, ...targetData } = EdgeTarget.fields
const EdgeRouteData = Schema.Struct({
  ...targetData,
  /** While setting up: the active route this one replaces, put back if the setup fails. */
  previous: Schema.UndefinedOr(EdgeTarget),
  /** Certificates replaced by a newer one whose deletion is still to be done (or retried). */
  retired: Schema.Array(IssuedCertificate)
})

const Columns = Schema.Struct({
  hostname: Schema.String,
  service: Schema.String,
  state: EdgeRouteState,
  data: SqlRows.JsonText(EdgeRouteData)
})

/** The row with its data's fields beside the columns. */
const EdgeRouteRow = Schema.transform(
  Columns,
  Schema.Struct({ hostname: Schema.String, service: Schema.String, state: EdgeRouteState, ...EdgeRouteData.fields }).pipe(Schema.typeSchema),
  {
    strict: true,
    decode: ({ data, ...columns }) => ({ ...columns, ...data }),
    encode: ({ hostname, service, state, ...data }) => ({ hostname, service, state, data })
  }
)
export interface EdgeRouteRow extends Schema.Schema.Type<typeof EdgeRouteRow> {}

export const make = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  const edgeRoutes = SqlRows.findAll("edge_routes", {
    Request: Schema.Void,
    Result: EdgeRouteRow,
    execute: () => sql`SELECT * FROM edge_routes ORDER BY hostname`
  })
  const edgeRoute = SqlRows.findOne("edge_routes", {
    Request: Schema.String,
    Result: EdgeRouteRow,
    execute: (hostname) => sql`SELECT * FROM edge_routes WHERE hostname = ${hostname}`
  })
  /** Inserts or replaces the row for the route's hostname. */
  const putEdgeRoute = SqlRows.write("edge_routes", {
    Request: EdgeRouteRow,
    execute: (r) =>
      sql`INSERT INTO edge_routes (hostname, service, state, data) VALUES (${r.hostname}, ${r.service}, ${r.state}, ${r.data})
        ON CONFLICT (hostname) DO UPDATE SET service = excluded.service, state = excluded.state, data = excluded.data`
  })
  return {
    edgeRoutes: edgeRoutes(undefined),
    edgeRoute,
    putEdgeRoute,
    deleteEdgeRoute: (hostname: string) => sql`DELETE FROM edge_routes WHERE hostname = ${hostname}`.pipe(Effect.asVoid)
  }
})
