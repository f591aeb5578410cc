/**
 * Property: definitions from the ServiceDefinition Arbitrary with hostile values mixed in (system
 * paths however spelt, symlinks under an allowed root that lead out, dangling ones, the agent's
 * data dir and its parents, propagation options, host network, root users, ports off the bind
 * address, the core tier). For every role, what passes the agent's check never plans a container
 * (ContainerPlan.plan's specs) with a mount, option, network, user or port an oracle denies that
 * role; and for a user, every item the oracle denies is reported at its path.
 *
 * The oracle is written apart from DeployGuard: it resolves host paths with fs.realpath of the
 * longest existing prefix (DeployGuard walks the links itself, dangling ones too, so it refuses
 * at least what the oracle does).
 */
import { describe, expect, it } from "@effect/vitest"
import { Policy, ServiceDefinition } from "@mcp/domain"
import { Arbitrary, FastCheck as fc, Schema } from "effect"
import { existsSync, mkdirSync, mkdtempSync, realpathSync, symlinkSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import * as DeployGuard from "../src/daemon/DeployGuard.js"
import * as ContainerPlan from "../src/lifecycle/ContainerPlan.js"
import { settings } from "./Harness.js"

const tmp = realpathSync(mkdtempSync(join(tmpdir(), "mcp-policy-prop-")))
const root = join(tmp, "srv", "app")
const dataDir = join(tmp, "agent")
const socket = join(tmp, "engine", "podman.sock")
mkdirSync(join(root, "data", "sub"), { recursive: true })
mkdirSync(dataDir, { recursive: true })
mkdirSync(dirname(socket), { recursive: true })
symlinkSync("/etc", join(root, "to-etc"))
symlinkSync(join(root, "data"), join(root, "to-data"))
symlinkSync("../..", join(root, "to-tmp"))
symlinkSync(dataDir, join(root, "to-agent"))
symlinkSync("/proc/self", join(root, "to-proc"))
symlinkSync(join(root, "to-etc"), join(root, "chain"))

const node: DeployGuard.NodeFacts = { bindAddress: settings.bindAddress, forbidden: [dataDir, socket] }
const policy = Schema.decodeUnknownSync(Policy.DeployPolicy)({ host_path_roots: [join(tmp, "srv", "{service}")] })

const HOST_PATHS = [
  "/", "//etc", "/etc/", "/srv/x/./../", "/proc/1", "/var/run/docker.sock", "/run/podman/podman.sock", "/var", "/sys/./fs",
  root, `${root}/`, `${root}//data`, `${root}/data/sub`, `${root}/new/dir`, `${root}/to-data/sub`,
  `${root}/to-etc`, `${root}/to-etc/ssl`, `${root}/chain/x`, `${root}/to-tmp`, `${root}/to-agent/registry.db`, `${root}/to-proc/root`,
  `${root}/../other`, tmp, dataDir, `${dataDir}/x`, dirname(socket), socket, "/home/someone", "/srv/app"
]
const OPTIONS = ["", ":ro", ":rw,Z", ":z", ":rslave", ":ro,shared", ":private"]

const hostileComponent = fc.record({
  volumes: fc.array(fc.tuple(fc.constantFrom(...HOST_PATHS), fc.constantFrom(...OPTIONS)).map(([h, o]) => `${h}:/mnt${o}`), { maxLength: 3 }),
  network: fc.constantFrom(undefined, "bridge", "host"),
  user: fc.constantFrom(undefined, "0", "root", "0:0", "00:1", "1000", "1000:0", "root:root"),
  ports: fc.array(fc.constantFrom("8080:80", "127.0.0.1:8081:81", "10.1.2.3:8082:82/udp", "[::1]:8083:83", "0.0.0.0:8084:84"), { maxLength: 2 })
}, { requiredKeys: [] })

type Def = ServiceDefinition.ServiceDefinition
const definitionArb = fc.tuple(
  Arbitrary.make(ServiceDefinition.ServiceDefinition),
  fc.array(hostileComponent, { minLength: 1, maxLength: 3 }),
  fc.constantFrom("core", "worker")
).map(([def, hostile, tier]): Def => ({
  ...def,
  name: "app" as Def["name"],
  tier: tier as Def["tier"],
  components: def.components.map((c, i) => {
    const h = hostile[i % hostile.length]!
    // Hostile values mixed into (not instead of) what the Arbitrary generated.
    return {
      ...c,
      ...(h.volumes === undefined ? {} : { volumes: [...(c.volumes ?? []), ...h.volumes] }),
      ...(h.ports === undefined ? {} : { ports: [...(c.ports ?? []), ...h.ports] }),
      ...(h.network === undefined ? {} : { network: h.network }),
      ...(h.user === undefined ? {} : { user: h.user })
    }
  })
}))

// ---------------------------------------------------------------------------------------------
// The oracle

/** fs.realpath of the longest existing prefix, the rest appended. */
const realpathPrefix = (p: string): string => {
  let head = resolve(p)
  const tail: Array<string> = []
  while (!existsSync(head) && head !== "/") {
    tail.unshift(head.slice(head.lastIndexOf("/") + 1))
    head = dirname(head)
  }
  let real: string
  try {
    real = realpathSync(head)
  } catch {
    real = head
  }
  return resolve(real, ...tail)
}
const within = (p: string, dir: string) => p === dir || (dir !== "/" && p.startsWith(`${dir}/`))
const FORBIDDEN = [...Policy.ALWAYS_FORBIDDEN, dataDir, socket].flatMap((f) => [resolve(f), realpathPrefix(f)])
const ROOTS = [root, realpathPrefix(root)]
const SAFE_OPTIONS = ["ro", "rw", "z", "Z", "U"]

/** The items of a spec (or component) the role may not have, by the definition path they came from. */
const deniedItems = (c: { volumes?: ReadonlyArray<string> | undefined; network?: string | undefined; user?: string | undefined; ports?: ReadonlyArray<string> | undefined }, i: number, role: Policy.Role) => {
  const admin = role === "admin"
  const denied: Array<string> = []
  ;(c.volumes ?? []).forEach((v, j) => {
    const [host, , options] = v.split(":")
    const real = realpathPrefix(host!)
    const forbidden = FORBIDDEN.some((f) => within(real, f) || within(f, real) || real === "/")
    const outside = !ROOTS.some((r) => within(real, r))
    const badOption = (options ?? "").split(",").some((o) => o !== "" && !SAFE_OPTIONS.includes(o))
    if (forbidden || (!admin && (outside || badOption))) denied.push(`components[${i}].volumes[${j}]`)
  })
  if (!admin && c.network === "host") denied.push(`components[${i}].network`)
  if (!admin && c.user !== undefined && /^(root|0+)(:|$)/.test(c.user)) denied.push(`components[${i}].user`)
  ;(c.ports ?? []).forEach((p, j) => {
    const ip = /^(?:\[?([0-9a-f.:]+?)\]?:)?\d+:\d+/.exec(p)?.[1] ?? "0.0.0.0"
    if (!admin && ip !== settings.bindAddress) denied.push(`components[${i}].ports[${j}]`)
  })
  return denied
}

describe("deploy policy on the agent (property)", () => {
  it.prop(
    "what passes the check plans no denied mount, option, network, user or port; a user is told every denied item",
    [definitionArb, fc.constantFrom<Policy.Role>("admin", "user", "guest")],
    ([def, role]) => {
      const violations = DeployGuard.check(def, policy, role, node)
      const reported = new Set(violations.map((v) => v.path))
      const expected = [
        ...(def.tier === "core" && role !== "admin" ? ["tier"] : []),
        ...def.components.flatMap((c, i) => deniedItems(c, i, role))
      ]
      // Every item the oracle denies is reported (for every role, so for a user).
      for (const path of expected) expect(reported, `${role}: ${path} not reported; got ${JSON.stringify(violations)}`).toContain(path)
      if (violations.length > 0) return
      // Nothing reported: the container specs the agent would create hold nothing denied.
      const routes = ContainerPlan.portRequests(def).length
      const plan = ContainerPlan.plan(def, Array.from({ length: routes }, (_, i) => 20000 + i), "0123456789abcdef", settings)
      plan.components.forEach((pc, i) => {
        const spec = pc.spec
        const ports = spec.ports.slice((def.components[i]!.routes ?? []).length).map((p) => `${p.hostIp.includes(":") ? `[${p.hostIp}]` : p.hostIp}:${p.hostPort}:${p.containerPort}`)
        expect(deniedItems({ volumes: spec.volumes, network: spec.network, user: spec.user, ports }, i, role)).toEqual([])
      })
      expect(def.tier === "core" && role !== "admin").toBe(false)
    },
    { timeout: 60_000, fastCheck: { numRuns: 200 } }
  )
})
