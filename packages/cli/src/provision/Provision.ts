/**
 * `mcp node provision`: from SSH access to a registered agent, as a list of steps. Each step
 * first reads what the node has and changes it only when it differs from what it should be, so
 * a second run changes nothing; each step's writes are whole (a file renamed into place, a
 * directory unpacked aside and moved), so a failure leaves every step before it done, the
 * failing one as it was, and the rest for the next run, which the failure says.
 *
 * The node's TLS key is made on the node (`mcp ca request`, from the release just installed);
 * only its certificate request comes back, and the certificate is signed here with the
 * operator's CA, for the names the operator gave (never the ones the request asks for).
 */
import { FileSystem } from "@effect/platform"
import * as Pki from "@mcp/rpc/Pki"
import * as TokenFile from "@mcp/rpc/TokenFile"
import { Data, Effect, Redacted, type Scope } from "effect"
import * as Layout from "./Layout.js"
import * as Preflight from "./Preflight.js"
import * as Releases from "./Releases.js"
import { type FileSpec, type NodeCommandFailed, quote, rootShell, sha256 } from "./RootShell.js"
import type { SshError, SshSession } from "./Ssh.js"
import * as SystemUser from "./SystemUser.js"

export type Artifact = Releases.Artifact

export interface Request extends Layout.AgentSettings {
  /** The release archive for the node's architecture (`x64`, `arm64`, or its `uname -m` when unknown). */
  readonly artifactFor: (arch: string) => Effect.Effect<Artifact, StepRefused>
  /** The operator's platform CA: ca.crt and ca.key (the key is read here, never sent). */
  readonly caDir: string
  readonly caPem: string
  /** The master's token file: the node's system token is added to it. */
  readonly tokensFile: string
  /** The UID of `mcp` on the fleet's other nodes, when one has been provisioned. */
  readonly fleetUid: number | undefined
  readonly dryRun: boolean
}

export type StepStatus = "unchanged" | "changed" | "would change"

export interface StepResult {
  readonly step: string
  readonly status: StepStatus
  readonly detail: string
}

export interface Outcome {
  readonly node: string
  readonly steps: ReadonlyArray<StepResult>
  /** The UID the node's `mcp` user has (the fleet's, from now on). */
  readonly uid: number | undefined
}

/** Provisioning stopped at `step`; `done` are the steps before it, which stay done. */
export class ProvisionFailed extends Data.TaggedError("ProvisionFailed")<{
  readonly node: string
  readonly step: string
  readonly reason: string
  readonly done: ReadonlyArray<StepResult>
}> {
  override get message() {
    const changed = this.done.filter((s) => s.status === "changed").map((s) => s.step)
    return [
      `provisioning ${this.node} stopped at "${this.step}": ${this.reason}`,
      changed.length === 0
        ? `Nothing was changed on the node.`
        : `Done before it, and kept: ${changed.join(", ")}. Each step writes whole files, so nothing is left half-written; run the same command again to finish.`
    ].join("\n")
  }
}

/** What a step reports: its status and a line for the operator. */
type Report = { readonly status: StepStatus; readonly detail: string }
const unchanged = (detail: string): Report => ({ status: "unchanged", detail })

/** Renewed when less than this is left of the node's certificate. */
const RENEW_BEFORE_MS = 30 * 86_400_000

export interface Hooks {
  /** Called as each step ends (progress for the operator). */
  readonly onStep: (result: StepResult) => Effect.Effect<void>
  /** Called before a long transfer: what and how big. */
  readonly onUpload: (what: string, bytes: number) => Effect.Effect<void>
  /** Waits until the agent has registered with the master and answers over RPC at its version. */
  readonly awaitAgent: (version: string) => Effect.Effect<string, StepRefused>
  /** Called once the node's `mcp` UID is known, to keep it as the fleet's. */
  readonly onUserId: (uid: number) => Effect.Effect<void, StepRefused>
}

type StepError = SshError | NodeCommandFailed | Preflight.PreflightUnreadable | SystemUser.UidCollision | SystemUser.GroupMismatch | SystemUser.NoFreeSystemUid | SystemUser.UserCommandFailed | Pki.PkiError | TokenFile.TokenFileError | TokenFile.TokenNameTaken | TokenFile.TokenNameUnknown | TokenFile.InvalidTokenRequest | StepRefused

/** A step found something it must not change, or cannot do here; the reason says what to do. */
export class StepRefused extends Data.TaggedError("StepRefused")<{ readonly reason: string }> {
  override get message() {
    return this.reason
  }
}

/** Provisions the node behind `session` (see the module's comment). */
export const provision = (
  session: SshSession,
  request: Request,
  hooks: Hooks
): Effect.Effect<Outcome, ProvisionFailed, FileSystem.FileSystem | Scope.Scope> =>
  Effect.gen(function* () {
    const done: Array<StepResult> = []
    const node = request.node
    const step = <R>(name: string, body: Effect.Effect<Report, StepError, R>) =>
      body.pipe(
        Effect.mapError((e) => new ProvisionFailed({ node, step: name, reason: e.message, done: [...done] })),
        Effect.tap((r) => {
          const result = { step: name, ...r }
          done.push(result)
          return hooks.onStep(result)
        })
      )
    const dry = request.dryRun
    /** What a step does: nothing on a dry run, which reports what it would change. */
    const change = <E, R>(detail: string, apply: Effect.Effect<unknown, E, R>): Effect.Effect<Report, E, R> =>
      dry ? Effect.succeed({ status: "would change", detail }) : Effect.as(apply, { status: "changed", detail })

    // 1. Read-only checks before anything is written.
    let facts: Preflight.NodeFacts | undefined
    let artifact: Artifact | undefined
    yield* step("preflight", Effect.gen(function* () {
      facts = yield* Preflight.probe(session)
      artifact = yield* request.artifactFor(Preflight.releaseArch(facts.machine) ?? facts.machine)
      const found = Preflight.problems(facts, artifact.arch)
      if (found.length > 0) return yield* new StepRefused({ reason: found.map((p) => `${p.check}: ${p.found}; ${p.fix}`).join("; ") })
      return unchanged(`${facts.os}, ${facts.machine}, glibc ${facts.glibc}, systemd, ${Math.floor(facts.freeBytes / 1024 / 1024)} MiB free${facts.root ? "" : ", sudo"}`)
    }))
    const shell = yield* rootShell(session, facts!.root).pipe(
      Effect.mapError((e) => new ProvisionFailed({ node, step: "preflight", reason: e.message, done: [...done] }))
    )

    // 2. The mcp user, with the fleet's UID.
    let uid: number | undefined
    yield* step("mcp user", Effect.gen(function* () {
      if (dry) {
        const decision = yield* SystemUser.decide(session.name, yield* SystemUser.readAccounts(session), request.fleetUid)
        uid = decision.uid
        return decision._tag === "exists" ? unchanged(`mcp has UID ${decision.uid}`) : { status: "would change" as const, detail: `create mcp with UID ${decision.uid}` }
      }
      const decision = yield* SystemUser.ensureUser(session, { ...(request.fleetUid === undefined ? {} : { fleetUid: request.fleetUid }), home: Layout.MCP_HOME })
      uid = decision.uid
      yield* hooks.onUserId(decision.uid)
      return decision._tag === "exists" ? unchanged(`mcp has UID ${decision.uid}`) : { status: "changed" as const, detail: `created mcp with UID ${decision.uid}` }
    }))

    // 3. /etc/mcp: root's, readable by the mcp group only.
    yield* step("config directory", Effect.gen(function* () {
      const found = (yield* shell.test(`stat -c '%U:%G %a' ${Layout.ETC} 2>/dev/null`)).stdout.trim()
      if (found === "root:mcp 750") return unchanged(`${Layout.ETC} root:mcp 0750`)
      return yield* change(`${Layout.ETC} root:mcp 0750${found === "" ? "" : ` (was ${found})`}`, shell.run(`making ${Layout.ETC}`, `install -d -m 0750 -o root -g mcp ${Layout.ETC}`))
    }))

    // 4. The release, unpacked aside and moved into place, then `current` repointed atomically.
    const release = artifact as Artifact
    let releaseChanged = false
    yield* step("release", Effect.gen(function* () {
      const state = yield* Releases.releaseState(shell, release)
      if (state.present && state.linked) return unchanged(`${release.release} is current`)
      releaseChanged = true
      const was = state.current === "" ? "" : ` (was ${state.current})`
      return yield* change(`${state.present ? "switch to" : "install"} ${release.release}${was}`, Effect.gen(function* () {
        if (!state.present) yield* Releases.unpackRelease(shell, release, hooks.onUpload)
        yield* Releases.switchCurrent(shell, release.release)
      }))
    }))

    // 5. The container engine's API socket.
    yield* step("container engine", Effect.gen(function* () {
      const socket = (yield* shell.test(`[ -S ${Layout.ENGINE_SOCKET} ]`)).code === 0
      if (socket) return unchanged(`${Layout.ENGINE_SOCKET} is there`)
      const hasPodman = (yield* shell.test("command -v podman")).code === 0
      const hasApt = (yield* shell.test("command -v apt-get")).code === 0
      if (!hasPodman && !hasApt) {
        return yield* new StepRefused({ reason: `no ${Layout.ENGINE_SOCKET} and no apt-get to install Podman with; install Podman, run systemctl enable --now podman.socket, then run this again` })
      }
      return yield* change(`${hasPodman ? "" : "install Podman (apt-get), "}enable podman.socket`, shell.run("installing Podman", [
        ...(hasPodman ? [] : [`export DEBIAN_FRONTEND=noninteractive`, `apt-get update -q`, `apt-get install -y -q podman`]),
        `systemctl enable --now podman.socket`,
        `[ -S ${Layout.ENGINE_SOCKET} ]`
      ].join("\n")))
    }))

    // 5b. The proxy's program (the agent writes its configuration; its unit comes with the release).
    yield* step("proxy", Effect.gen(function* () {
      // HAProxy, and the system's CA bundle it verifies TLS backends against by default (@system-ca).
      const bundle = "/etc/ssl/certs/ca-certificates.crt"
      if ((yield* shell.test(`[ -x /usr/sbin/haproxy ] && [ -s ${bundle} ]`)).code === 0) return unchanged("HAProxy and the system CA bundle are installed")
      if ((yield* shell.test("command -v apt-get")).code !== 0) {
        return yield* new StepRefused({ reason: `no /usr/sbin/haproxy or ${bundle}, and no apt-get to install them with; install HAProxy 2.6 or newer and the system CA certificates, then run this again` })
      }
      // The distribution's own unit would run a second HAProxy on its sample configuration.
      return yield* change("install HAProxy and ca-certificates (apt-get); HAProxy's own unit disabled, mcp-proxy runs it", shell.run("installing HAProxy", [
        `export DEBIAN_FRONTEND=noninteractive`,
        `apt-get install -y -q haproxy ca-certificates || { apt-get update -q && apt-get install -y -q haproxy ca-certificates; }`,
        `systemctl disable --now haproxy.service 2>&1 || true`
      ].join("\n")))
    }))

    // 6. The platform CA's certificate (public), which the agent pins.
    const ca = Layout.CA_CERT
    let credentialsChanged = false
    const file = (name: string, spec: FileSpec, content: string, show: string) =>
      step(name, Effect.gen(function* () {
        if ((yield* shell.digest(spec.path)) === sha256(content)) {
          const mode = (yield* shell.test(`stat -c '%U:%G %a' ${quote(spec.path)}`)).stdout.trim()
          if (mode === `${spec.owner}:${spec.group} ${spec.mode.toString(8)}`) return unchanged(`${spec.path} is up to date`)
        }
        credentialsChanged = true
        return yield* change(`write ${spec.path} (${show})`, shell.write(`writing ${spec.path}`, spec, content))
      }))
    yield* file("CA certificate", { path: ca, mode: 0o644, owner: "root", group: "root" }, request.caPem, "the platform CA, public")

    // 7. The node's key (made on the node) and its certificate (signed here).
    yield* step("TLS certificate", Effect.gen(function* () {
      const key = Layout.keyPath(node)
      const cert = Layout.certPath(node)
      const hasKey = (yield* shell.test(`[ -f ${quote(key)} ]`)).code === 0
      const hasCli = (yield* shell.test(`[ -x ${Layout.CURRENT}/mcp ]`)).code === 0
      if (dry && (!hasKey || !hasCli)) return { status: "would change" as const, detail: `make ${key} on the node and sign its certificate for ${node}, ${request.address}` }
      if (!hasCli) return yield* new StepRefused({ reason: `${Layout.CURRENT}/mcp is missing after the release step; check ${Layout.OPT} on the node` })
      // Creates the key (0600, root) if missing, else reuses it; prints the request only.
      const csr = yield* shell.run(`making the node's key and certificate request`, `umask 077 && ${Layout.CURRENT}/mcp ca request ${quote(node)} --key ${quote(key)}`)
      const existing = (yield* shell.test(`cat ${quote(cert)} 2>/dev/null`)).stdout
      if (existing.includes("BEGIN CERTIFICATE")) {
        const current = yield* Pki.inspectCertificate(existing, request.caPem).pipe(Effect.option)
        const wanted = yield* Pki.requestPublicKeySha256(csr)
        if (current._tag === "Some") {
          const c = current.value
          const fits = c.signedByCa && c.commonName === node && c.ips.includes(request.address) && c.dnsNames.includes(node) &&
            c.publicKeySha256 === wanted && c.notAfter.getTime() - Date.now() > RENEW_BEFORE_MS
          if (fits) return unchanged(`${cert} is signed by the platform CA for ${node}, ${request.address}, until ${c.notAfter.toISOString().slice(0, 10)}`)
        }
      }
      credentialsChanged = true
      return yield* change(`sign ${cert} for ${node}, ${request.address}`, Effect.gen(function* () {
        const signed = yield* Pki.signRequest(request.caDir, csr, { name: node, ips: [request.address], dns: [node], usage: "both" })
        yield* shell.write(`writing ${cert}`, { path: cert, mode: 0o644, owner: "root", group: "root" }, signed.certPem)
      }))
    }))

    // 8. The node's system token: its digest in the master's token file, the token on the node.
    yield* step("node token", Effect.gen(function* () {
      const path = Layout.tokenPath(node)
      const file = yield* TokenFile.loadTokenFile(request.tokensFile)
      const entry = file.tokens.find((t) => t.name === node)
      const onNode = (yield* shell.test(`if [ -f ${quote(path)} ]; then tr -d '\\n' < ${quote(path)} | sha256sum; fi`)).stdout.slice(0, 64)
      const owner = (yield* shell.test(`stat -c '%U %a' ${quote(path)} 2>/dev/null`)).stdout.trim()
      if (entry !== undefined && entry.sha256 === onNode && entry.kind === "system" && entry.role === "guest" && owner === "root 600") {
        return unchanged(`${path} holds the token named ${node} in ${request.tokensFile}`)
      }
      credentialsChanged = true
      const why = entry === undefined ? "new" : "replaces the one the node does not hold"
      return yield* change(`a system token for ${node} (${why}) in ${request.tokensFile} and ${path}`, Effect.gen(function* () {
        if (entry !== undefined) yield* TokenFile.revokeToken(request.tokensFile, node)
        const token = yield* TokenFile.createToken(request.tokensFile, { name: node, kind: "system", role: "guest" })
        yield* shell.write(`writing ${path}`, { path, mode: 0o600, owner: "root", group: "root" }, `${Redacted.value(token)}\n`)
      }))
    }))

    // 9. Who may call the agent: the master's and the operators' tokens (digests), not other nodes'.
    const tokens = yield* TokenFile.loadTokenFile(request.tokensFile).pipe(
      Effect.mapError((e) => new ProvisionFailed({ node, step: "agent token file", reason: e.message, done: [...done] }))
    )
    const callers = TokenFile.encodeTokenFile({ tokens: tokens.tokens.filter((t) => !(t.kind === "system" && t.role === "guest")) })
    yield* file("agent token file", { path: Layout.AGENT_TOKENS, mode: 0o600, owner: "root", group: "root" }, callers, "digests of the tokens that may call the agent")

    // 10. The agent's config.
    yield* file("agent config", { path: Layout.AGENT_CONFIG, mode: 0o600, owner: "root", group: "root" }, Layout.agentConfig(request), `${request.role}, listening on ${Layout.hostPort(request.address, request.port)}`)

    // 11. The units, from the release, enabled.
    /** Installs `unit` from the release when it differs, enables it; whether the file changed. */
    const unitStep = (name: string, unit: string, path: string) => {
      let changed = false
      return Effect.as(step(name, Effect.gen(function* () {
        const shipped = `${Layout.CURRENT}/systemd/${unit}`
        const same = (yield* shell.test(`cmp -s ${shipped} ${path}`)).code === 0
        const enabled = (yield* shell.test(`systemctl is-enabled ${unit}`)).stdout.trim() === "enabled"
        if (same && enabled) return unchanged(`${path} is the release's, enabled`)
        changed = !same
        return yield* change(`${same ? "" : `install ${path} from the release, `}enable it`, shell.run(`installing ${unit}`, [
          ...(same ? [] : [`install -m 0644 ${shipped} ${path}.mcp-new`, `mv -f ${path}.mcp-new ${path}`, `systemctl daemon-reload`]),
          `systemctl enable ${unit} 2>&1`
        ].join("\n")))
      })), () => changed)
    }
    const unitChanged = (yield* unitStep("agent unit", Layout.AGENT_UNIT, Layout.UNIT_PATH))()
    const proxyUnitChanged = (yield* unitStep("proxy unit", Layout.PROXY_UNIT, Layout.PROXY_UNIT_PATH))()

    // 12. Running, on what was just written: restarted when anything it reads changed.
    yield* step("agent", Effect.gen(function* () {
      const active = (yield* shell.test(`systemctl is-active ${Layout.AGENT_UNIT}`)).stdout.trim() === "active"
      const stale = releaseChanged || credentialsChanged || unitChanged
      if (active && !stale) return unchanged(`${Layout.AGENT_UNIT} is running`)
      const verb = active ? "restart" : "start"
      return yield* change(`${verb} ${Layout.AGENT_UNIT}`, Effect.gen(function* () {
        yield* shell.run(`${verb}ing ${Layout.AGENT_UNIT}`, `systemctl reset-failed ${Layout.AGENT_UNIT} 2>/dev/null || true\nsystemctl ${verb} ${Layout.AGENT_UNIT}`)
        yield* hooks.awaitAgent(release.version).pipe(
          Effect.catchTag("StepRefused", ({ reason }) =>
            Effect.flatMap(shell.test(`journalctl -u ${Layout.AGENT_UNIT} -n 20 --no-pager -o cat 2>&1`), (j) =>
              Effect.fail(new StepRefused({ reason: `${reason}\nThe agent's last journal lines (journalctl -u ${Layout.AGENT_UNIT}):\n${j.stdout.trim()}` }))))
        )
      }))
    }))

    // 13. The proxy, on the configuration the agent has written by now; restarted only when its
    // unit changed (a restart drops connections; the agent reloads it for everything else).
    yield* step("proxy service", Effect.gen(function* () {
      const active = (yield* shell.test(`systemctl is-active ${Layout.PROXY_UNIT}`)).stdout.trim() === "active"
      if (active && !proxyUnitChanged) return unchanged(`${Layout.PROXY_UNIT} is running`)
      const verb = active ? "restart" : "start"
      return yield* change(`${verb} ${Layout.PROXY_UNIT}`, shell.run(`${verb}ing ${Layout.PROXY_UNIT}`, [
        `systemctl reset-failed ${Layout.PROXY_UNIT} 2>/dev/null || true`,
        `systemctl ${verb} ${Layout.PROXY_UNIT} || { journalctl -u ${Layout.PROXY_UNIT} -n 20 --no-pager -o cat; exit 1; }`
      ].join("\n")))
    }))

    if (!dry) {
      // A node whose agent was not restarted still proves it is registered and answering.
      if (done.find((d) => d.step === "agent")?.status === "unchanged") {
        yield* step("registered", Effect.map(hooks.awaitAgent(release.version), unchanged))
      }
    }
    return { node, steps: done, uid }
  })

