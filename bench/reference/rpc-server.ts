/**
 * A reference for bench/footprint and bench/heartbeats: the smallest server built the way the
 * daemons are, an @effect/rpc group (a Ping, and a Heartbeat that only decodes its payload) served
 * over HTTPS (ndjson, @effect/platform-node) and nothing else: no database, no engine client, no
 * supervision, no authentication. Its idle RSS and its CPU per request are what the stack itself
 * costs, set beside the daemons' and a plain node:https server's.
 *
 * Environment: PORT, CERT and KEY (PEM files). Prints "listening" when it serves.
 */
import * as HttpLayerRouter from "@effect/platform/HttpLayerRouter"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import * as Rpc from "@effect/rpc/Rpc"
import * as RpcGroup from "@effect/rpc/RpcGroup"
import * as RpcSerialization from "@effect/rpc/RpcSerialization"
import * as RpcServer from "@effect/rpc/RpcServer"
import { Effect, Layer, Schema } from "effect"
import { readFileSync } from "node:fs"
import { createServer } from "node:https"
import * as v8 from "node:v8"

// As the daemons do (packages/*/src/main.ts).
v8.setFlagsFromString("--optimize-for-size")

const Reference = RpcGroup.make(
  Rpc.make("Ping", { success: Schema.Struct({ at: Schema.Number }) }),
  // A heartbeat's shape (bench/heartbeats): what decoding and answering one costs in the stack alone.
  Rpc.make("Heartbeat", {
    payload: { node: Schema.String, resources: Schema.Record({ key: Schema.String, value: Schema.Number }), services: Schema.Array(Schema.Unknown) },
    success: Schema.Struct({ known: Schema.Boolean })
  })
)

const rpc = RpcServer.layerHttpRouter({ group: Reference, path: "/rpc", protocol: "http" }).pipe(
  Layer.provide(Reference.toLayer({ Ping: () => Effect.sync(() => ({ at: Date.now() })), Heartbeat: () => Effect.succeed({ known: true }) })),
  Layer.provide(RpcSerialization.layerNdjson)
)
const https = NodeHttpServer.layer(() => createServer({ cert: readFileSync(process.env.CERT!), key: readFileSync(process.env.KEY!) }), {
  port: Number(process.env.PORT)
})

// Built after the server it is provided with, so the line comes once the port is open.
const ready = Layer.effectDiscard(Effect.sync(() => console.log("listening")))

ready.pipe(Layer.provide(HttpLayerRouter.serve(rpc).pipe(Layer.provide(https))), Layer.launch, NodeRuntime.runMain({ disablePrettyLogger: true }))
