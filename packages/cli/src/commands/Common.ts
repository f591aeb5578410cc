/**
 * Options every fleet command shares and the connection they open: to the master by default,
 * or straight to one agent with --direct --node <host:port> (works with no master at all).
 */
// Modules by their own paths, not packages' index: in the CLI's bundle importing an index
// initialises every module it re-exports (see scripts/build.mjs, cjsOptions), on every command.
import * as Options from "@effect/cli/Options"
import type { Rpc, RpcGroup } from "@effect/rpc"
import { RpcClientError } from "@effect/rpc/RpcClientError"
import * as Names from "@mcp/domain/Names"
import * as Node from "@mcp/domain/Node"
import { AgentRpcs, MasterRpcs } from "@mcp/rpc/FleetContracts"
import { NoResponse } from "@mcp/rpc/HttpProtocol"
import * as Transport from "@mcp/rpc/TransportClient"
import { Effect, Option, Stream } from "effect"
import * as Arguments from "../Arguments.js"
import * as CliConfig from "../CliConfig.js"
import { CommandFailed, Unreachable, UsageError } from "../Report.js"

export const config = Options.file("config").pipe(
  Options.withDescription("the CLI config file (default: $MCP_CONFIG or ~/.config/mcp/mcp.toml)"),
  Options.optional
)
export const direct = Options.boolean("direct").pipe(Options.withDescription("talk to an agent directly, without the master"))
export const node = Options.text("node").pipe(
  Options.withDescription("with --direct: the agent's address, host:port"),
  Options.optional
)
export const json = Options.boolean("json").pipe(Options.withDescription("print JSON for scripts"))

export const loadConfig = (path: Option.Option<string>) => CliConfig.load(Option.getOrElse(path, () => CliConfig.defaultPath(process.env)))

/** Where a service command goes: the master, or with --direct the agent at --node. */
export type Target = { readonly _tag: "Master" } | { readonly _tag: "Agent"; readonly address: typeof Node.NodeAddress.Type }

/** Checks --direct and --node before anything is read or contacted. */
export const target = (isDirect: boolean, nodeAddress: Option.Option<string>): Effect.Effect<Target, UsageError> =>
  !isDirect
    ? Effect.succeed({ _tag: "Master" })
    : Option.match(nodeAddress, {
        onNone: () => Effect.fail(new UsageError({ message: "--direct needs --node <host:port> of the agent" })),
        onSome: (address) => Effect.map(Arguments.decode(Node.NodeAddress, "--node")(address), (address) => ({ _tag: "Agent", address }))
      })

/**
 * A server reached through one or more addresses. `call` and `stream` try the addresses in
 * order and move to the next only when an address cannot be reached (connection refused, timed
 * out, TLS failure: the request never got an answer); whatever a server answers, a typed error
 * included, is the result. A stream moves on only before its first element, so a deploy that
 * started is never sent twice.
 */
export interface Peer<Client> {
  readonly call: <A, E, R>(f: (client: Client) => Effect.Effect<A, E, R>) => Effect.Effect<A, E | Unreachable, R>
  readonly stream: <A, E, R>(f: (client: Client) => Stream.Stream<A, E, R>) => Stream.Stream<A, E | Unreachable, R>
}

/** Why an address could not be reached, or undefined when the failure is anything else. */
const unreachableReason = (e: unknown): string | undefined => {
  // NoResponse means no response ever arrived (refused, timed out, TLS handshake failed), so the
  // server cannot have acted on the call.
  if (!(e instanceof RpcClientError) || !(e.cause instanceof NoResponse)) return undefined
  return e.cause.message
}

const peer = <Client>(
  server: "master" | "agent",
  clients: ReadonlyArray<{ readonly address: string; readonly client: Client }>,
  hint: string
): Peer<Client> => {
  type Attempts = ReadonlyArray<{ readonly address: string; readonly reason: string }>
  const exhausted = (attempts: Attempts) => new Unreachable({ server, attempts, hint })
  return {
    call: <A, E, R>(f: (client: Client) => Effect.Effect<A, E, R>) => {
      const attempt = (i: number, attempts: Attempts): Effect.Effect<A, E | Unreachable, R> => {
        const next = clients[i]
        if (next === undefined) return Effect.fail(exhausted(attempts))
        return Effect.catchAll(f(next.client), (e) => {
          const reason = unreachableReason(e)
          return reason === undefined ? Effect.fail(e) : attempt(i + 1, [...attempts, { address: next.address, reason }])
        })
      }
      return attempt(0, [])
    },
    stream: <A, E, R>(f: (client: Client) => Stream.Stream<A, E, R>) => {
      const attempt = (i: number, attempts: Attempts): Stream.Stream<A, E | Unreachable, R> => {
        const next = clients[i]
        if (next === undefined) return Stream.fail(exhausted(attempts))
        return Stream.suspend(() => {
          let started = false
          return f(next.client).pipe(
            Stream.tap(() => Effect.sync(() => { started = true })),
            Stream.catchAll((e) => {
              const reason = started ? undefined : unreachableReason(e)
              return reason === undefined ? Stream.fail(e) : attempt(i + 1, [...attempts, { address: next.address, reason }])
            })
          )
        })
      }
      return attempt(0, [])
    }
  }
}

const clientOptions = (cfg: CliConfig.LoadedConfig, url: string): Transport.ClientOptions => ({
  url,
  ca: cfg.caPem,
  token: cfg.token,
  ...(cfg.clientCertPem === undefined ? {} : { clientCert: cfg.clientCertPem })
})

const connect = <Rpcs extends Rpc.Any>(
  cfg: CliConfig.LoadedConfig,
  group: RpcGroup.RpcGroup<Rpcs>,
  server: "master" | "agent",
  addresses: ReadonlyArray<string>,
  hint: string
) =>
  Effect.map(
    Effect.forEach(addresses, (address) =>
      Effect.map(Transport.makeClient(group, clientOptions(cfg, `https://${address}/${server}`)), (client) => ({ address, client }))
    ),
    (clients) => peer(server, clients, hint)
  )

/** An agent, through its addresses (host:port) in order of preference. */
export const agentClient = (cfg: CliConfig.LoadedConfig, addresses: ReadonlyArray<string>) =>
  connect(cfg, AgentRpcs, "agent", addresses, "check the address and that mcp-agent runs there")

/** The master, through every address in the config, in order. */
export const masterClient = (cfg: CliConfig.LoadedConfig) =>
  cfg.master.length === 0
    ? Effect.fail(new CommandFailed({ message: `no master address in ${cfg.path}; add master = ["host:port"], or use --direct --node` }))
    : connect(cfg, MasterRpcs, "master", cfg.master, `check that mcp-master runs and that master in ${cfg.path} lists its address`)

/** The agent behind --node: a node name looked up through the master, or with --direct its host:port. */
export const agentFor = (config: Option.Option<string>, nodeArgument: string, isDirect: boolean) =>
  Effect.gen(function* () {
    if (isDirect) {
      const address = yield* Arguments.decode(Node.NodeAddress, "--node")(nodeArgument)
      return yield* agentClient(yield* loadConfig(config), [address])
    }
    const name = yield* Arguments.decode(Names.NodeName, "--node")(nodeArgument)
    const cfg = yield* loadConfig(config)
    const nodes = yield* (yield* masterClient(cfg)).call((master) => master.NodesList())
    const found = nodes.find((n) => n.info.name === name)
    if (found === undefined) return yield* Effect.fail(new CommandFailed({ message: `the master knows no node "${name}"; see mcp node list` }))
    return yield* agentClient(cfg, found.info.addresses)
  })
