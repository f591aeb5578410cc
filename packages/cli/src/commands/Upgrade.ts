/**
 * `mcp agent upgrade [node...]`: the command line. The work is in provision/UpgradeRun.ts,
 * loaded only when this command runs (it brings the SSH client).
 */
import * as Args from "@effect/cli/Args"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import { Effect } from "effect"
import * as Common from "./Common.js"

export const upgrade = Command.make(
  "upgrade",
  {
    nodes: Args.text({ name: "node" }).pipe(Args.repeated, Args.withDescription("nodes to upgrade (default: every node provisioned from here)")),
    artifact: Options.file("artifact").pipe(
      Options.withDescription("the release archive (mcp-<version>-linux-<arch>.tar.gz, its .sha256 beside it; default: this CLI's version from provision.releases_dir)"),
      Options.optional
    ),
    identity: Options.file("identity").pipe(Options.withDescription("the SSH private key (default: provision.identity, or ~/.ssh/id_ed25519, id_ecdsa, id_rsa)"), Options.optional),
    timeout: Options.integer("timeout").pipe(Options.withDefault(60), Options.withDescription("seconds a restarted agent has to answer with the new version before it is rolled back")),
    config: Common.config,
    json: Common.json
  },
  (o) => Effect.flatMap(Effect.promise(() => import("../provision/UpgradeRun.js")), (run) => run.upgradeCommand(o))
).pipe(Command.withDescription("upgrade agents over SSH to a release, workers first; a node whose new agent does not answer is rolled back"))
