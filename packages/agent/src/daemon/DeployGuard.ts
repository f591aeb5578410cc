/**
 * The agent's enforcement of the deploy policy, with what only the node knows: its bind address,
 * its own data dir and engine socket, and where each host path really leads. A host path is
 * resolved through every symlink on its way (dangling ones too, since the engine would create
 * the directory they point at), so `/srv/app/data -> /etc` is refused like `/etc` itself.
 */
import { Policy } from "@mcp/domain"
import { lstatSync, readlinkSync } from "node:fs"
import { posix } from "node:path"

export interface NodeFacts {
  /** Where this node publishes container ports (`[ports] bind`). */
  readonly bindAddress: string
  /** Forbidden here besides the policy's: the agent's data dir, the engine's socket(s). */
  readonly forbidden: ReadonlyArray<string>
}

/** How a path is looked at; the real file system unless a test says otherwise. */
export interface Inspect {
  readonly lstat: (p: string) => { isSymbolicLink(): boolean }
  readonly readlink: (p: string) => string
}

const realFs: Inspect = { lstat: (p) => lstatSync(p), readlink: (p) => readlinkSync(p, "utf8") }

/** Same bound as Linux's (ELOOP after 40 links): a symlink loop is refused, not followed forever. */
const MAX_LINKS = 40

const missing = (e: unknown) => {
  const code = (e as { code?: unknown }).code
  return code === "ENOENT" || code === "ENOTDIR"
}

/**
 * Where `path` leads on this host: each existing segment with its symlinks followed, the rest
 * (not created yet) appended as written. Fails with the reason when it cannot be looked at.
 */
export const resolveHostPath = (path: string, fs: Inspect = realFs): { readonly ok: true; readonly path: string } | { readonly ok: false; readonly reason: string } => {
  let links = 0
  const walk = (p: string): string => {
    let resolved = "/"
    const segments = Policy.normalizePath(p).split("/").filter((s) => s !== "")
    for (let i = 0; i < segments.length; i++) {
      const next = posix.join(resolved, segments[i]!)
      let isLink: boolean
      try {
        isLink = fs.lstat(next).isSymbolicLink()
      } catch (e) {
        if (missing(e)) return posix.join(next, ...segments.slice(i + 1))
        throw e
      }
      if (!isLink) {
        resolved = next
        continue
      }
      if (++links > MAX_LINKS) throw Object.assign(new Error(`more than ${MAX_LINKS} symlinks (a loop?)`), { code: "ELOOP" })
      const target = fs.readlink(next)
      // `resolved` has no symlinks left, so a relative target's ".." is lexical from here on.
      resolved = walk(target.startsWith("/") ? target : posix.join(resolved, target))
    }
    return resolved
  }
  try {
    return { ok: true, path: walk(path) }
  } catch (e) {
    return { ok: false, reason: e instanceof Error ? e.message : String(e) }
  }
}

/** A path and where it leads, both: a rule written for either form must catch the other. */
const bothForms = (paths: ReadonlyArray<string>, fs: Inspect): ReadonlyArray<string> =>
  [...new Set(paths.flatMap((p) => {
    const r = resolveHostPath(p, fs)
    return r.ok ? [Policy.normalizePath(p), r.path] : [Policy.normalizePath(p)]
  }))]

/**
 * Every violation of the policy for this caller on this node: the policy's own check (with the
 * bind address and this node's forbidden paths), then each host path where it resolves to.
 */
export const check = (def: Policy.Checked, policy: Policy.DeployPolicy, role: Policy.Role, node: NodeFacts, fs: Inspect = realFs): Array<Policy.Violation> => {
  const violations = Policy.check(def, policy, { role, bindAddress: node.bindAddress, extraForbidden: node.forbidden })
  const reported = new Set(violations.map((v) => `${v.path} ${v.rule}`))
  const roots = bothForms(Policy.rootsFor(policy, def.name), fs)
  const forbidden = bothForms(Policy.forbiddenFor(policy, node.forbidden), fs)
  def.components.forEach((c, i) => {
    ;(c.volumes ?? []).forEach((v, j) => {
      const at = `components[${i}].volumes[${j}]`
      const { host } = Policy.volumeParts(v)
      const resolved = resolveHostPath(host, fs)
      if (!resolved.ok) {
        violations.push({
          path: at,
          rule: "host_path_roots",
          message: `host path "${host}" cannot be resolved on this node (${resolved.reason}), so it cannot be checked against [policy] host_path_roots; ` +
            `fix the path on the node or mount another one`
        })
        return
      }
      const found = Policy.checkHostPath(resolved.path, { policy, role, service: def.name, at, written: host, roots, forbidden })
      if (found !== undefined && !reported.has(`${found.path} ${found.rule}`)) {
        reported.add(`${found.path} ${found.rule}`)
        violations.push(found)
      }
    })
  })
  return violations
}
