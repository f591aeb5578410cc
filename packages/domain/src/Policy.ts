/**
 * The deploy policy (`[policy]` in the master's config, pushed to every agent): what a service
 * definition may ask of the node it lands on. Without it, anyone allowed to deploy could mount `/`
 * or the engine socket, join the host network or run as root, and so own the node.
 *
 * `check` is pure: the master runs it on what it is sent; the agent runs it too, with what only
 * the node knows (its bind address, its data dir, its engine socket), and resolves host paths
 * through symlinks itself before calling `checkHostPath` on the result.
 */
import { Schema } from "effect"
import { Violation } from "./Violation.js"
import { VOLUME_OPTIONS } from "./VolumeOptions.js"

/** The caller's role (as in @mcp/rpc's Principal; restated here so the domain needs no RPC). */
export type Role = "admin" | "user" | "guest"

/** Who may go past a rule: only admins (the default for each), or no one. */
export const Who = Schema.Literal("admin", "deny").annotations({
  message: (issue) => ({ message: `must be "admin" (only admins may) or "deny" (no one may), got ${JSON.stringify(issue.actual)}`, override: true })
})
export type Who = typeof Who.Type

const PolicyPath = Schema.String.pipe(
  Schema.filter((p) =>
    !p.startsWith("/")
      ? `"${p}" is relative; give an absolute path such as "/srv/{service}"`
      : p.split("/").includes("..")
      ? `"${p}" climbs out with ".."; name the directory directly`
      : true
  )
)

const ALL_VOLUME_OPTIONS: ReadonlyArray<string> = Object.values(VOLUME_OPTIONS).flat()
const VolumeOption = Schema.String.pipe(
  Schema.filter((o) => ALL_VOLUME_OPTIONS.includes(o) ? true : `"${o}" is not a volume option; use some of ${ALL_VOLUME_OPTIONS.map((x) => `"${x}"`).join(", ")}`)
)

/**
 * Paths no container may mount, nor any directory above them, whatever the roots say: the host's
 * system directories and the container engines' sockets. `[policy] forbidden_paths` adds to them.
 */
export const ALWAYS_FORBIDDEN: ReadonlyArray<string> = [
  "/", "/etc", "/proc", "/sys", "/dev", "/run", "/var/run", "/boot", "/root",
  "/var/run/docker.sock", "/run/podman/podman.sock", "/run/docker.sock"
]

export const DEFAULT_ROOTS: ReadonlyArray<string> = ["/srv/{service}"]
// "U" chowns the host directory, which is harmless under the roots a user may mount (their own
// /srv/<service>) and is what makes it writable under the user namespace containers run in.
export const DEFAULT_VOLUME_OPTIONS: ReadonlyArray<string> = ["ro", "rw", "z", "Z", "U"]

const who = Schema.optionalWith(Who, { exact: true, default: () => "admin" as const })

export const DeployPolicy = Schema.Struct({
  /** A volume's host path must be one of these or under one; `{service}` is the service's name. */
  host_path_roots: Schema.optionalWith(Schema.Array(PolicyPath), { exact: true, default: () => DEFAULT_ROOTS }),
  /** Who may mount a host path outside the roots (still never a forbidden one). */
  host_path_outside_roots: who,
  /** Added to ALWAYS_FORBIDDEN; the built-in list cannot be shortened. */
  forbidden_paths: Schema.optionalWith(Schema.Array(PolicyPath), { exact: true, default: () => [] }),
  /** The volume options anyone may use (default: no mount propagation). */
  volume_options: Schema.optionalWith(Schema.Array(VolumeOption), { exact: true, default: () => DEFAULT_VOLUME_OPTIONS }),
  /** Who may use the other volume options. */
  other_volume_options: who,
  /** Who may set network = "host". */
  host_network: who,
  /** Who may run a component as uid 0 (user = "0", "0:0", "root"). */
  root_user: who,
  /** Who may publish an explicit port on an address other than the node's bind address. */
  ports_off_bind_address: who,
  /** Who may deploy with tier = "core" (on the master node). */
  core_tier: who
})
export type DeployPolicy = typeof DeployPolicy.Type

/** The policy of a master with no `[policy]` table, and of an agent no master has told one. */
export const defaults: DeployPolicy = Schema.decodeUnknownSync(DeployPolicy)({})

export { type Rule, Violation } from "./Violation.js"


export interface CheckContext {
  readonly role: Role
  /** The node's bind address; absent on the master, which does not know it (the agent checks). */
  readonly bindAddress?: string | undefined
  /** Paths forbidden on this node in addition to the policy's (the agent's data dir, its engine socket). */
  readonly extraForbidden?: ReadonlyArray<string> | undefined
}

// ---------------------------------------------------------------------------------------------
// Paths

/** `//etc/./x/` -> `/etc/x`; `..` pops (the schema refuses it, but a resolved path is still safe). */
export const normalizePath = (p: string): string => {
  const out: Array<string> = []
  for (const segment of p.split("/")) {
    if (segment === "" || segment === ".") continue
    if (segment === "..") out.pop()
    else out.push(segment)
  }
  return "/" + out.join("/")
}

/** Whether `p` is `dir` or inside it (both normalized). */
export const isUnder = (p: string, dir: string): boolean => dir === "/" || p === dir || p.startsWith(dir + "/")

export const rootsFor = (policy: DeployPolicy, service: string): ReadonlyArray<string> =>
  policy.host_path_roots.map((r) => normalizePath(r.replaceAll("{service}", service)))

export const forbiddenFor = (policy: DeployPolicy, extra: ReadonlyArray<string> = []): ReadonlyArray<string> =>
  [...new Set([...ALWAYS_FORBIDDEN, ...policy.forbidden_paths, ...extra].map(normalizePath))]

/** The parts of a volume that passed the definition schema. */
export const volumeParts = (v: string) => {
  const [host, container, options] = v.split(":") as [string, string, string | undefined]
  return { host, container, options: options === undefined ? [] : options.split(",") }
}

const mayPass = (who: Who, role: Role) => who === "admin" && role === "admin"

/** The second half of every message: who may do it, and how the rule is changed. */
const whoMay = (who: Who, key: string, action: string) =>
  who === "admin"
    ? `only an admin may ${action}; ask an admin to deploy it, or set [policy] ${key} = "deny" on the master to refuse it to admins too`
    : `${action} is denied by policy for everyone; change [policy] ${key} on the master to allow it`

export interface HostPathCheck {
  readonly policy: DeployPolicy
  readonly role: Role
  readonly service: string
  /** Where in the definition, e.g. `components[0].volumes[1]`. */
  readonly at: string
  /** The path as written, for the message when `path` is what it resolved to. */
  readonly written: string
  /** Roots and forbidden paths, already normalized (and on the agent, also resolved). */
  readonly roots: ReadonlyArray<string>
  readonly forbidden: ReadonlyArray<string>
}

/**
 * One host path against the forbidden list (for everyone) and the roots. A path above a
 * forbidden one is refused too: mounting `/var` hands over `/var/run/docker.sock`.
 */
export const checkHostPath = (path: string, c: HostPathCheck): Violation | undefined => {
  const p = normalizePath(path)
  const shown = p === normalizePath(c.written) ? `host path "${c.written}"` : `host path "${c.written}" (which resolves to "${p}")`
  // "/" forbids itself, not everything under it; any other entry forbids its whole subtree.
  const hit = c.forbidden.find((f) => p === f || (f !== "/" && isUnder(p, f)) || isUnder(f, p))
  if (hit !== undefined) {
    return {
      path: c.at,
      rule: "forbidden_paths",
      message: `${shown} ${hit === p ? "is" : isUnder(p, hit) ? "is under" : "contains"} the forbidden path "${hit}"; ` +
        `mounting it is denied by policy for everyone (the built-in forbidden paths cannot be allowed); mount a directory under ${c.roots.map((r) => `"${r}"`).join(" or ")} instead`
    }
  }
  if (c.roots.some((r) => isUnder(p, r)) || mayPass(c.policy.host_path_outside_roots, c.role)) return undefined
  return {
    path: c.at,
    rule: "host_path_roots",
    message: `${shown} is outside the allowed roots (${c.roots.map((r) => `"${r}"`).join(", ")}, from [policy] host_path_roots); ` +
      whoMay(c.policy.host_path_outside_roots, "host_path_outside_roots", `mount a host path outside the roots`) +
      `, or mount a directory under a root`
  }
}

/** Whether a `user` value runs as uid 0: "0", "0:<gid>", "root", "root:<group>". */
export const isRootUser = (user: string): boolean => {
  const uid = user.split(":")[0]!
  return uid === "root" || /^0+$/.test(uid)
}

/** The host IP of an explicit port mapping; an omitted one publishes on every interface. */
export const portHostIp = (mapping: string): string => {
  const m = /^(?:(.+):)?\d+:\d+(?:\/(?:tcp|udp))?$/.exec(mapping)
  return (m?.[1] ?? "0.0.0.0").replace(/^\[|\]$/g, "")
}

/** The shape `check` reads; a decoded ServiceDefinition is one. */
export interface Checked {
  readonly name: string
  readonly tier: string
  readonly components: ReadonlyArray<{
    readonly volumes?: ReadonlyArray<string> | undefined
    readonly network?: string | undefined
    readonly user?: string | undefined
    readonly ports?: ReadonlyArray<string> | undefined
  }>
}

/**
 * Every way the definition breaks the policy for this caller, in definition order; none means it
 * may be deployed. Host paths are checked as written (normalized); the agent also checks where
 * they resolve to.
 */
export const check = (def: Checked, policy: DeployPolicy, context: CheckContext): Array<Violation> => {
  const { role } = context
  const violations: Array<Violation> = []
  const roots = rootsFor(policy, def.name)
  const forbidden = forbiddenFor(policy, context.extraForbidden)
  if (def.tier === "core" && !mayPass(policy.core_tier, role)) {
    violations.push({ path: "tier", rule: "core_tier", message: `tier = "core" places the service on the master node; ` + whoMay(policy.core_tier, "core_tier", `deploy to the core tier`) + `; use tier = "worker"` })
  }
  def.components.forEach((c, i) => {
    const at = `components[${i}]`
    ;(c.volumes ?? []).forEach((v, j) => {
      const { host, options } = volumeParts(v)
      const where = `${at}.volumes[${j}]`
      const pathProblem = checkHostPath(host, { policy, role, service: def.name, at: where, written: host, roots, forbidden })
      if (pathProblem !== undefined) violations.push(pathProblem)
      const other = options.filter((o) => !policy.volume_options.includes(o))
      if (other.length > 0 && !mayPass(policy.other_volume_options, role)) {
        violations.push({
          path: where,
          rule: "volume_options",
          message: `volume "${v}" uses ${other.map((o) => `"${o}"`).join(", ")}, not among [policy] volume_options (${policy.volume_options.map((o) => `"${o}"`).join(", ")}); ` +
            whoMay(policy.other_volume_options, "other_volume_options", `use other volume options`) + `, or drop ${other.length === 1 ? "it" : "them"}`
        })
      }
    })
    if (c.network === "host" && !mayPass(policy.host_network, role)) {
      violations.push({ path: `${at}.network`, rule: "host_network", message: `network = "host" shares the node's network stack with the container; ` + whoMay(policy.host_network, "host_network", `use the host network`) + `; use routes or ports instead` })
    }
    if (c.user !== undefined && isRootUser(c.user) && !mayPass(policy.root_user, role)) {
      violations.push({ path: `${at}.user`, rule: "root_user", message: `user = "${c.user}" runs the container as root (uid 0); ` + whoMay(policy.root_user, "root_user", `run a container as root`) + `; give a non-zero uid such as "1000:1000"` })
    }
    const bind = context.bindAddress
    if (bind !== undefined) {
      ;(c.ports ?? []).forEach((mapping, j) => {
        const ip = portHostIp(mapping)
        if (ip === bind || mayPass(policy.ports_off_bind_address, role)) return
        violations.push({
          path: `${at}.ports[${j}]`,
          rule: "ports_off_bind_address",
          message: `port mapping "${mapping}" publishes on ${ip === "0.0.0.0" ? "every interface (0.0.0.0, no host IP given)" : ip}, not on the node's bind address ${bind}; ` +
            whoMay(policy.ports_off_bind_address, "ports_off_bind_address", `publish a port off the bind address`) + `; write "${bind.includes(":") ? `[${bind}]` : bind}:<host-port>:<container-port>"`
        })
      })
    }
  })
  return violations
}
