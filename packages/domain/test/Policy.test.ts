/**
 * The deploy policy's pure check: each rule refuses a user, passes an admin unless the policy
 * says "deny", and each message names the field, the rule and who may do it.
 */
import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import * as Policy from "../src/Policy.js"

const def = (component: Record<string, unknown>, extra: Record<string, unknown> = {}): Policy.Checked =>
  ({ name: "app", tier: "worker", components: [{ name: "web", ...component }], ...extra }) as unknown as Policy.Checked

const strict = Policy.defaults
const denyAll = Schema.decodeUnknownSync(Policy.DeployPolicy)({
  host_path_outside_roots: "deny", other_volume_options: "deny", host_network: "deny", root_user: "deny", ports_off_bind_address: "deny", core_tier: "deny"
})

describe("DeployPolicy schema", () => {
  it("an empty [policy] is the strict defaults", () => {
    expect(strict.host_path_roots).toEqual(["/srv/{service}"])
    expect(strict.volume_options).toEqual(["ro", "rw", "z", "Z", "U"])
    expect(strict.forbidden_paths).toEqual([])
    for (const key of ["host_path_outside_roots", "other_volume_options", "host_network", "root_user", "ports_off_bind_address", "core_tier"] as const) {
      expect(strict[key]).toBe("admin")
    }
  })

  it("refuses relative roots, unknown options and other values than admin/deny, naming the key", () => {
    const decode = Schema.decodeUnknownEither(Policy.DeployPolicy)
    const message = (input: unknown) => {
      const r = decode(input)
      return r._tag === "Left" ? r.left.message : "decoded"
    }
    expect(message({ host_path_roots: ["srv"] })).toMatch(/host_path_roots[\s\S]*relative/)
    expect(message({ forbidden_paths: ["/a/../b"] })).toMatch(/forbidden_paths[\s\S]*\.\./)
    expect(message({ volume_options: ["readonly"] })).toMatch(/volume_options[\s\S]*not a volume option/)
    expect(message({ host_network: "user" })).toMatch(/host_network[\s\S]*"admin" \(only admins may\) or "deny"/)
  })
})

describe("normalizePath", () => {
  it("collapses //, /./ and trailing /", () => {
    expect(Policy.normalizePath("//etc/./x/")).toBe("/etc/x")
    expect(Policy.normalizePath("/")).toBe("/")
    expect(Policy.normalizePath("/srv/x/./../")).toBe("/srv")
  })
})

describe("Policy.check", () => {
  it("passes what stays under /srv/<service> with plain options, for a user", () => {
    expect(Policy.check(def({ volumes: ["/srv/app:/data", "/srv/app/config/:/etc/app:ro,Z"], user: "1000:1000", network: "bridge" }), strict, { role: "user" })).toEqual([])
  })

  it("host_path_roots: outside the roots only an admin may, and {service} is the service name", () => {
    const d = def({ volumes: ["/srv/app:/a", "/srv/other:/b", "/srv/application:/c", "/home/x:/d"] })
    const v = Policy.check(d, strict, { role: "user" })
    expect(v.map((x) => [x.path, x.rule])).toEqual([
      ["components[0].volumes[1]", "host_path_roots"],
      ["components[0].volumes[2]", "host_path_roots"],
      ["components[0].volumes[3]", "host_path_roots"]
    ])
    expect(v[0]!.message).toContain(`host path "/srv/other" is outside the allowed roots ("/srv/app"`)
    expect(v[0]!.message).toContain("only an admin may mount a host path outside the roots")
    expect(Policy.check(d, strict, { role: "admin" })).toEqual([])
    expect(Policy.check(d, denyAll, { role: "admin" })[0]!.message).toContain("denied by policy for everyone; change [policy] host_path_outside_roots on the master")
  })

  it("forbidden_paths: system paths, engine sockets, their parents and any spelling of them, for everyone", () => {
    const hostile = ["/", "//etc", "/etc/", "/proc/1", "/var/run/docker.sock", "/run/podman/podman.sock", "/var", "/sys/./kernel", "/root"]
    const d = def({ volumes: hostile.map((h, i) => `${h}:/m${i}`) })
    for (const role of ["admin", "user", "guest"] as const) {
      const v = Policy.check(d, strict, { role })
      expect(v.filter((x) => x.rule === "forbidden_paths").map((x) => x.path)).toEqual(hostile.map((_, i) => `components[0].volumes[${i}]`))
    }
    const [var_] = Policy.check(def({ volumes: ["/var:/v"] }), strict, { role: "admin" })
    expect(var_!.message).toContain(`host path "/var" contains the forbidden path "/var/run"`)
    expect(var_!.message).toContain("denied by policy for everyone")
  })

  it("forbidden_paths: the config and the node add to the built-in list, even under a root", () => {
    const policy = Schema.decodeUnknownSync(Policy.DeployPolicy)({ host_path_roots: ["/data"], forbidden_paths: ["/data/secrets"] })
    const d = def({ volumes: ["/data/secrets/k:/k", "/data/agent:/a", "/data/ok:/o"] })
    const v = Policy.check(d, policy, { role: "admin", extraForbidden: ["/data/agent"] })
    expect(v.map((x) => [x.path, x.rule])).toEqual([["components[0].volumes[0]", "forbidden_paths"], ["components[0].volumes[1]", "forbidden_paths"]])
  })

  it("volume_options: propagation options only for admins", () => {
    const d = def({ volumes: ["/srv/app:/a:rw,z", "/srv/app:/b:ro,rslave"] })
    const [v] = Policy.check(d, strict, { role: "user" })
    expect(v).toMatchObject({ path: "components[0].volumes[1]", rule: "volume_options" })
    expect(v!.message).toContain(`uses "rslave", not among [policy] volume_options`)
    expect(v!.message).toContain("only an admin may use other volume options")
    expect(Policy.check(d, strict, { role: "admin" })).toEqual([])
    expect(Policy.check(d, denyAll, { role: "admin" })).toHaveLength(1)
  })

  it("host_network, root_user, core_tier: only admins by default, no one with deny", () => {
    const d = def({ network: "host", user: "0:0" }, { tier: "core" })
    for (const role of ["user", "guest"] as const) {
      const v = Policy.check(d, strict, { role })
      expect(v.map((x) => [x.path, x.rule])).toEqual([["tier", "core_tier"], ["components[0].network", "host_network"], ["components[0].user", "root_user"]])
      for (const x of v) expect(x.message).toContain("only an admin may")
    }
    expect(Policy.check(d, strict, { role: "admin" })).toEqual([])
    const denied = Policy.check(d, denyAll, { role: "admin" })
    expect(denied.map((x) => x.rule)).toEqual(["core_tier", "host_network", "root_user"])
    expect(denied[2]!.message).toContain(`user = "0:0" runs the container as root`)
    expect(denied[2]!.message).toContain("denied by policy for everyone; change [policy] root_user on the master")
  })

  it("root_user: uid 0 however written, not a non-zero uid with gid 0", () => {
    for (const user of ["0", "0:0", "00", "root", "root:root", "0:1000"]) expect(Policy.isRootUser(user), user).toBe(true)
    for (const user of ["1000", "1000:0", "www-data", "rooty", "10"]) expect(Policy.isRootUser(user), user).toBe(false)
  })

  it("ports_off_bind_address: only with a bind address (the agent's), omitted host IP counts as 0.0.0.0", () => {
    const d = def({ ports: ["127.0.0.1:8080:80", "8081:81", "10.0.0.9:8082:82/udp", "[::1]:8083:83"] })
    expect(Policy.check(d, strict, { role: "user" })).toEqual([])
    const v = Policy.check(d, strict, { role: "user", bindAddress: "127.0.0.1" })
    expect(v.map((x) => x.path)).toEqual(["components[0].ports[1]", "components[0].ports[2]", "components[0].ports[3]"])
    expect(v[0]!.message).toContain("publishes on every interface (0.0.0.0, no host IP given), not on the node's bind address 127.0.0.1")
    expect(v[0]!.message).toContain(`write "127.0.0.1:<host-port>:<container-port>"`)
    expect(Policy.check(d, strict, { role: "admin", bindAddress: "127.0.0.1" })).toEqual([])
  })
})
