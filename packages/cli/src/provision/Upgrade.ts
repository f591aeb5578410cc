/**
 * One node's agent upgraded to a release, or put back on the one it ran. The new release is
 * uploaded and checked while the agent keeps running; only then is `current` repointed and the
 * agent restarted. If the new agent does not answer with the new version in time, `current`
 * goes back to the previous release (kept for this), its units too if the release changed them,
 * and the agent is restarted on it. Containers live in the engine, not in the agent's unit, so
 * they keep serving throughout.
 */
import { Data, Effect, type Scope } from "effect"
import * as Layout from "./Layout.js"
import * as Preflight from "./Preflight.js"
import { type Artifact, releaseState, switchCurrent, unpackRelease } from "./Releases.js"
import { type RootShell, rootShell } from "./RootShell.js"
import type { SshSession } from "./Ssh.js"

export type UpgradeResult = "upgraded" | "already current" | "rolled back"

export interface NodeUpgrade {
  readonly node: string
  readonly from: string
  readonly to: string
  readonly result: UpgradeResult
  /** From the restart until the agent answered (the new one, or the old one again); 0 when not restarted. */
  readonly restartMs: number
  readonly detail: string
}

/** The node could not be upgraded, nor put back where it was: the operator must look. */
export class UpgradeFailed extends Data.TaggedError("UpgradeFailed")<{
  readonly node: string
  readonly step: string
  readonly reason: string
  /** What the node runs now, as far as is known. */
  readonly state: string
}> {
  override get message() {
    return `upgrading ${this.node} failed at "${this.step}": ${this.reason}\n${this.state}`
  }
}

/** Why an agent did not come up; carries what to show the operator. */
export class AgentDidNotAnswer extends Data.TaggedError("AgentDidNotAnswer")<{ readonly reason: string }> {}

export interface UpgradeHooks {
  readonly onUpload: (what: string, bytes: number) => Effect.Effect<void>
  /**
   * Waits until the agent answers at `version` and was started after `before` (its start time
   * as it reported before the restart: a new process). Succeeds with the agent's start time.
   */
  readonly awaitAgent: (version: string, before: string | undefined) => Effect.Effect<string, AgentDidNotAnswer>
  /** The agent's start time as it reports it now, if it answers. */
  readonly agentStart: () => Effect.Effect<string | undefined>
}

/** The version in a release's name (mcp-<version>-linux-<arch>). */
export const versionOf = (release: string): string | undefined => /^mcp-(.+)-linux-[^-]+$/.exec(release)?.[1]

const journal = (shell: RootShell) =>
  Effect.map(
    Effect.catchAll(shell.test(`journalctl -u ${Layout.AGENT_UNIT} -n 15 --no-pager -o cat 2>&1`), () => Effect.succeed({ code: 1, stdout: "(the journal could not be read)" })),
    (r) => r.stdout.trim()
  )

const restart = (shell: RootShell) =>
  shell.run(`restarting ${Layout.AGENT_UNIT}`, `systemctl reset-failed ${Layout.AGENT_UNIT} 2>/dev/null || true\nsystemctl restart ${Layout.AGENT_UNIT}`)

/** Upgrades the agent on `session`'s node to `artifact` (see the module's comment). */
export const upgradeNode = (
  session: SshSession,
  node: string,
  /** The release for the node's architecture (`x64`, `arm64`, or its `uname -m`). */
  artifactFor: (arch: string) => Effect.Effect<Artifact, { readonly message: string }>,
  hooks: UpgradeHooks
): Effect.Effect<NodeUpgrade, UpgradeFailed, Scope.Scope> =>
  Effect.gen(function* () {
    const failed = (step: string, state: string) => (e: { readonly message: string }) => new UpgradeFailed({ node, step, reason: e.message, state })
    const untouched = (from: string) => `It still runs ${from || "what it ran"}; nothing was switched.`

    const facts = yield* Effect.mapError(Preflight.probe(session), failed("checking the node", untouched("")))
    const artifact = yield* Effect.mapError(artifactFor(Preflight.releaseArch(facts.machine) ?? facts.machine), failed("finding the release", untouched("")))
    const problems = Preflight.problems(facts, artifact.arch).filter((p) => p.check === "architecture" || p.check === "privileges" || p.check === "disk")
    if (problems.length > 0) {
      return yield* new UpgradeFailed({ node, step: "checking the node", reason: problems.map((p) => `${p.check}: ${p.found}; ${p.fix}`).join("; "), state: untouched("") })
    }
    const shell = yield* Effect.mapError(rootShell(session, facts.root), failed("opening a root shell", untouched("")))
    const state = yield* Effect.mapError(releaseState(shell, artifact), failed("reading the releases", untouched("")))
    const from = state.current
    if (from === "") {
      return yield* new UpgradeFailed({ node, step: "reading the releases", reason: `${Layout.CURRENT} does not exist`, state: `The node was not provisioned: run mcp node provision ${node} --ssh ...` })
    }
    const before = yield* hooks.agentStart()
    if (state.present && state.linked && before !== undefined) {
      return { node, from, to: artifact.release, result: "already current", restartMs: 0, detail: `${artifact.release} runs` }
    }

    // 1. The new release beside the old one; nothing that runs changes yet.
    if (!state.present) yield* Effect.mapError(unpackRelease(shell, artifact, hooks.onUpload), failed("uploading the release", untouched(from)))

    // 2. The units: each replaced only if the release changed it, the installed one kept for a
    // rollback. Only the agent restarts: the proxy's unit takes effect at its next start (the
    // proxy serves throughout), and a node provisioned before it had one gets none here.
    const units = [
      { unit: Layout.AGENT_UNIT, path: Layout.UNIT_PATH },
      { unit: Layout.PROXY_UNIT, path: Layout.PROXY_UNIT_PATH }
    ]
    const replaced: Array<string> = []
    for (const { unit, path } of units) {
      const shipped = `${Layout.OPT}/${artifact.release}/systemd/${unit}`
      const differs = `[ -f ${path} ] && [ -f ${shipped} ] && ! cmp -s ${shipped} ${path}`
      if ((yield* Effect.mapError(shell.test(differs), failed(`comparing ${unit}`, untouched(from)))).code !== 0) continue
      yield* Effect.mapError(shell.run(`installing the new ${unit}`, [
        `cp -p ${path} ${path}.previous`,
        `install -m 0644 ${shipped} ${path}.mcp-new && mv -f ${path}.mcp-new ${path}`,
        `systemctl daemon-reload`
      ].join("\n")), failed(`installing ${unit}`, untouched(from)))
      replaced.push(path)
    }

    // 3. Switch and restart; wait for the new agent.
    const started = Date.now()
    const upgrade = Effect.gen(function* () {
      yield* Effect.mapError(switchCurrent(shell, artifact.release), (e) => new AgentDidNotAnswer({ reason: e.message }))
      yield* Effect.mapError(restart(shell), (e) => new AgentDidNotAnswer({ reason: e.message }))
      return yield* hooks.awaitAgent(artifact.version, before)
    })
    const outcome = yield* Effect.either(upgrade)
    if (outcome._tag === "Right") {
      return { node, from, to: artifact.release, result: "upgraded", restartMs: Date.now() - started, detail: `answers with ${artifact.version}` }
    }

    // 4. Back to the previous release (and unit), restarted; it must answer again.
    const why = outcome.left.reason
    const lines = yield* journal(shell)
    const back = Effect.gen(function* () {
      yield* switchCurrent(shell, from)
      for (const path of replaced) yield* shell.run(`restoring the previous ${path}`, `mv -f ${path}.previous ${path}\nsystemctl daemon-reload`)
      yield* restart(shell)
    })
    const rolledBack = Date.now()
    yield* Effect.mapError(back, failed("rolling back", `It was being put back on ${from}; check ${Layout.CURRENT} and systemctl status ${Layout.AGENT_UNIT} there.`))
    const oldVersion = versionOf(from) ?? from
    yield* Effect.mapError(hooks.awaitAgent(oldVersion, undefined), (e) =>
      new UpgradeFailed({ node, step: "rolling back", reason: `the previous release ${from} did not answer either: ${e.reason}`, state: `${Layout.CURRENT} is ${from} again. Journal:\n${lines}` }))
    return {
      node,
      from,
      to: artifact.release,
      result: "rolled back",
      restartMs: Date.now() - rolledBack,
      detail: `${artifact.release} did not answer (${why}); back on ${from}. Its journal:\n${lines}`
    }
  })
