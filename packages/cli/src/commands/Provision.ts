/**
 * `mcp node provision <name> --ssh user@host[:port]`: the command line. The work (SSH, the
 * steps) is in provision/, loaded only when this command runs: `mcp node list` and the other
 * node commands never load the SSH client.
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect } from "effect"
import * as Common from "./Common.js"

export const provision = Command.make(
  "provision",
  {
    name: Args.text({ name: "name" }).pipe(Args.withDescription("the node's name: its certificate's and its token's name")),
    ssh: Options.text("ssh").pipe(Options.withDescription("how to log in to the node: user@host[:port] (root, or a user with sudo without a password)")),
    role: Options.choice("role", ["worker", "edge", "master"]).pipe(Options.withDefault("worker" as const), Options.withDescription("the node's role")),
    address: Options.text("address").pipe(
      Options.withDescription("the node's IP address the master and other nodes reach it at (default: the SSH host, when it is an IP)"),
      Options.optional
    ),
    port: Options.integer("port").pipe(Options.withDefault(9444), Options.withDescription("the agent's RPC port")),
    acceptHostKey: Options.text("accept-host-key").pipe(
      Options.withDescription("the node's SSH host key fingerprint (SHA256:...) to trust on first contact, as its console shows it (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub)"),
      Options.optional
    ),
    identity: Options.file("identity").pipe(Options.withDescription("the SSH private key (default: provision.identity, or ~/.ssh/id_ed25519, id_ecdsa, id_rsa)"), Options.optional),
    artifact: Options.file("artifact").pipe(
      Options.withDescription("the release archive to install (mcp-<version>-linux-<arch>.tar.gz, its .sha256 beside it; default: from provision.releases_dir)"),
      Options.optional
    ),
    wait: Options.integer("wait").pipe(Options.withDefault(90), Options.withDescription("seconds to wait for the agent to register and answer")),
    dryRun: Options.boolean("dry-run").pipe(Options.withDescription("check the node and print what would change; write nothing")),
    config: Common.config,
    json: Common.json
  },
  (o) => Effect.flatMap(Effect.promise(() => import("../provision/Run.js")), (run) => run.provisionCommand(o))
).pipe(Command.withDescription("install and start an agent on a node over SSH, and register it; again: changes nothing"))
