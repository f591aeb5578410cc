/**
 * `mcp route list|add|remove`: manual routes in a node's TLS proxy, for things MCP does not
 * deploy. `--node` takes a node name (looked up through the master) or, with --direct, the
 * agent's host:port.
 */
import { Args, Command, Options } from "@effect/cli"
import { FileSystem } from "@effect/platform"
import { Routes } from "@mcp/domain"
import { Effect, Option } from "effect"
import * as Arguments from "../Arguments.js"
import { print, table } from "../Output.js"
import { UsageError } from "../Report.js"
import * as Common from "./Common.js"

const nodeName = Options.text("node").pipe(Options.withAlias("n"), Options.withDescription("the node (a name; with --direct, host:port of its agent)"))

/** ":443" or "443" -> 443 */
const listenerOf = (text: string) => {
  const port = Number(text.replace(/^.*:/, ""))
  return Number.isInteger(port) && port >= 1 && port <= 65535 ? Effect.succeed(port) : Effect.fail(new UsageError({ message: `listener "${text}" must be a port such as :443` }))
}

/** A local file's text; a file that cannot be read is a usage error naming the option. */
const readLocal = (option: string) => (file: string) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) => fs.readFileString(file)).pipe(
    Effect.mapError((e) => new UsageError({ message: `${option}: cannot read ${file} (${e.message}); give a readable PEM file on this machine` }))
  )

const list = Command.make("list", { node: nodeName, config: Common.config, direct: Common.direct, json: Common.json }, (o) =>
  Effect.gen(function* () {
    const routes = yield* (yield* Common.agentFor(o.config, o.node, o.direct)).call((agent) => agent.ProxyRoutesList())
    if (o.json) return yield* print(JSON.stringify(routes, null, 2))
    yield* print(table(["LISTENER", "HOSTNAME", "BACKEND", "MODE", "BACKEND TLS", "SERVICE"],
      routes.map((r) => [String(r.listener), r.hostname, r.backend, r.mode, r.backendTls ? "yes" : "no", r.service ?? "(manual)"])))
  })
).pipe(Command.withDescription("list the routes in a node's proxy"))

const add = Command.make(
  "add",
  {
    listener: Args.text({ name: "listener" }),
    hostname: Args.text({ name: "hostname" }),
    backend: Args.text({ name: "backend" }),
    mode: Options.choice("mode", ["l4", "l7"]).pipe(Options.withDefault("l7" as const)),
    backendTls: Options.boolean("backend-tls"),
    tlsCert: Options.text("tls-cert").pipe(Options.withDescription("L7: the certificate file (full chain) here, sent to the agent as PEM"), Options.optional),
    tlsKey: Options.text("tls-key").pipe(Options.withDescription("L7: its unencrypted key file here, sent to the agent as PEM"), Options.optional),
    node: nodeName,
    config: Common.config,
    direct: Common.direct
  },
  (o) =>
    Effect.gen(function* () {
      // The files are read here and sent as PEM: the agent reads no path a caller names outside
      // its own certificate directory, and the files need not be on the node at all.
      const tlsCertPem = yield* Effect.transposeMapOption(o.tlsCert, readLocal("--tls-cert"))
      const tlsKeyPem = yield* Effect.transposeMapOption(o.tlsKey, readLocal("--tls-key"))
      const route = yield* Arguments.decodeFields(Routes.ProxyRoute, {
        listener: "<listener>", hostname: "<hostname>", backend: "<backend>", tlsCertPem: "--tls-cert", tlsKeyPem: "--tls-key"
      })({
        listener: yield* listenerOf(o.listener),
        hostname: o.hostname,
        backend: o.backend,
        mode: o.mode,
        backendTls: o.backendTls,
        ...Option.match(tlsCertPem, { onNone: () => ({}), onSome: (pem) => ({ tlsCertPem: pem }) }),
        ...Option.match(tlsKeyPem, { onNone: () => ({}), onSome: (pem) => ({ tlsKeyPem: pem }) })
      })
      const agent = yield* Common.agentFor(o.config, o.node, o.direct)
      yield* agent.call((a) => a.ProxyRoutesAdd({ route }))
      yield* print(`route ${route.hostname}:${route.listener} -> ${route.backend} (${route.mode}${route.backendTls ? ", backend TLS" : ""}) added on ${o.node}`)
    })
).pipe(Command.withDescription("add (or replace) a route: mcp route add -n rift :443 app.example.com 127.0.0.1:8080 --mode l7 --tls-cert .. --tls-key .."))

const remove = Command.make("remove", { listener: Args.text({ name: "listener" }), hostname: Args.text({ name: "hostname" }), node: nodeName, config: Common.config, direct: Common.direct }, (o) =>
  Effect.gen(function* () {
    const listener = yield* listenerOf(o.listener)
    yield* (yield* Common.agentFor(o.config, o.node, o.direct)).call((agent) => agent.ProxyRoutesRemove({ listener, hostname: o.hostname }))
    yield* print(`route ${o.hostname}:${listener} removed on ${o.node}`)
  })
).pipe(Command.withDescription("remove a route"))

export const route = Command.make("route").pipe(Command.withSubcommands([list, add, remove]), Command.withDescription("manual routes in a node's TLS proxy"))
