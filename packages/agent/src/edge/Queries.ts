/**
 * Reads of the edge route rows. Only active rows are reported: a row in any other state is work
 * an operation left open, not a route that serves.
 */
import { Effect } from "effect"
import { NodeSettings } from "../NodeSettings.js"
import { Registry } from "../registry/Registry.js"
import { type EdgeCertificate, toEdgeRoute } from "./Model.js"
import { peerFailed } from "./Peers.js"

export const rows = Effect.flatMap(Registry, (registry) => registry.edgeRoutes)

export const list = Effect.gen(function* () {
  const settings = yield* NodeSettings
  const all = yield* rows
  return all.filter((r) => r.state === "active").map((r) => toEdgeRoute(settings.node, r))
}).pipe(
  Effect.mapError((e) => peerFailed("list edge routes", e))
)

export const certificates = Effect.map(rows, (all) =>
  all.flatMap((r): ReadonlyArray<EdgeCertificate> =>
    r.state === "active" && r.cert !== undefined ? [{ hostname: r.hostname, serial: r.cert.serial, notAfter: r.cert.notAfter }] : []
  )
)
