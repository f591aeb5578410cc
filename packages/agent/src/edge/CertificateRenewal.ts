/**
 * Renewing an edge route's certificate: the setup saga again, with the row's own target and a
 * fresh certificate, so a renewal that fails is undone like a setup. The renewal fiber
 * (daemon/Agent.ts) decides when, from `certificates` (Queries.ts).
 */
import { Effect, Option } from "effect"
import { Registry } from "../registry/Registry.js"
import { install } from "./Install.js"
import { inActor, targetOf } from "./Model.js"
import { event, peerFailed } from "./Peers.js"

export const renewCertificate = (hostname: string) =>
  inActor(hostname, Effect.gen(function* () {
    const registry = yield* Registry
    const found = yield* registry.edgeRoute(hostname).pipe(Effect.mapError((e) => peerFailed(`renew the certificate of edge route ${hostname}`, e)))
    if (Option.isNone(found) || found.value.state !== "active") return
    const { cert: _, ...target } = targetOf(found.value)
    const { active } = yield* install(hostname, target, true, `renew the certificate of edge route ${hostname}`).pipe(
      // The renewal keeps the row's own service: a conflict here is a bug, not a request problem.
      Effect.catchTag("InvalidRequest", (e) => Effect.die(e))
    )
    yield* event("cert", active.service, `renewed the certificate of edge route ${hostname} (serial ${active.cert?.serial}, valid until ${active.cert?.notAfter})`)
  }))
