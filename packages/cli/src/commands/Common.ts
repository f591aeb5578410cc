/**
 * Options every fleet command shares and the connection they open: to the master by default,
 * or straight to one agent with --direct --node <host:port> (works with no master at all).
 */
import { Options } from "@effect/cli"
import { AgentRpcs, MasterRpcs, Transport } from "@mcp/rpc"
import { Effect, Option } from "effect"
import * as CliConfig from "../CliConfig.js"

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

const clientOptions = (cfg: CliConfig.LoadedConfig, url: string): Transport.ClientOptions => ({
  url,
  ca: cfg.caPem,
  token: cfg.token,
  ...(cfg.clientCertPem === undefined ? {} : { clientCert: cfg.clientCertPem })
})

export class UsageError extends Error {}

/** A client for the agent at `--node`. */
export const agentClient = (cfg: CliConfig.LoadedConfig, nodeAddress: Option.Option<string>) =>
  Option.match(nodeAddress, {
    onNone: () => Effect.fail(new UsageError("--direct needs --node <host:port> of the agent")),
    onSome: (address) => Transport.makeClient(AgentRpcs, clientOptions(cfg, `https://${address}/agent`))
  })

/** A client for the first configured master address. */
export const masterClient = (cfg: CliConfig.LoadedConfig) =>
  cfg.master.length === 0
    ? Effect.fail(new UsageError(`no master address in ${cfg.path}; add master = ["host:port"], or use --direct --node`))
    : Transport.makeClient(MasterRpcs, clientOptions(cfg, `https://${cfg.master[0]}/master`))

/** The agent behind --node: a node name looked up through the master, or with --direct its host:port. */
export const agentFor = (config: Option.Option<string>, node: string, isDirect: boolean) =>
  Effect.gen(function* () {
    const cfg = yield* loadConfig(config)
    if (isDirect) return yield* agentClient(cfg, Option.some(node))
    const nodes = yield* (yield* masterClient(cfg)).NodesList()
    const found = nodes.find((n) => n.info.name === node)
    if (found === undefined) return yield* Effect.fail(new UsageError(`the master knows no node "${node}"; see mcp node list`))
    return yield* agentClient(cfg, Option.some(found.info.addresses[0]!))
  })
