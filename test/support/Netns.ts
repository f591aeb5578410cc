/**
 * A network namespace the test makes and removes: a second "host" on this machine, joined to
 * the test's own namespace by a veth pair on a private /30. Processes started with `prefix`
 * run inside it and see only its loopback and its end of the pair.
 */
import { spawnSync } from "node:child_process"
import { randomBytes } from "node:crypto"

export interface Netns {
  readonly name: string
  /** This namespace's end of the pair: where the other host reaches processes outside. */
  readonly hostIp: string
  /** The namespace's end: where processes inside it are reached from outside. */
  readonly innerIp: string
  /** Prepend to a command line to run it inside the namespace. */
  readonly prefix: ReadonlyArray<string>
  readonly dispose: () => void
}

const ip = (args: ReadonlyArray<string>) => {
  const r = spawnSync("ip", args, { encoding: "utf8" })
  if (r.error !== undefined) {
    throw new Error(`cannot run "ip" (${r.error.message}); network namespace tests need iproute2 and root. Fix: apt-get install iproute2, run as root`)
  }
  if (r.status !== 0) throw new Error(`ip ${args.join(" ")} failed: ${r.stderr.trim()}`)
}

export const makeNetns = (): Netns => {
  const tag = randomBytes(3).toString("hex")
  const name = `mcp-${tag}`
  const outer = `mo${tag}`
  const inner = `mi${tag}`
  // 10.213.<n>.0/30, n from the tag: distinct enough for the few namespaces a run makes.
  const n = parseInt(tag.slice(0, 2), 16)
  const hostIp = `10.213.${n}.1`
  const innerIp = `10.213.${n}.2`
  ip(["netns", "add", name])
  try {
    ip(["link", "add", outer, "type", "veth", "peer", "name", inner])
    ip(["link", "set", inner, "netns", name])
    ip(["addr", "add", `${hostIp}/30`, "dev", outer])
    ip(["link", "set", outer, "up"])
    ip(["netns", "exec", name, "ip", "addr", "add", `${innerIp}/30`, "dev", inner])
    ip(["netns", "exec", name, "ip", "link", "set", inner, "up"])
    ip(["netns", "exec", name, "ip", "link", "set", "lo", "up"])
  } catch (e) {
    spawnSync("ip", ["link", "del", outer])
    spawnSync("ip", ["netns", "del", name])
    throw e
  }
  return {
    name,
    hostIp,
    innerIp,
    prefix: ["ip", "netns", "exec", name],
    dispose: () => {
      // Deleting one end of a veth pair deletes both.
      spawnSync("ip", ["link", "del", outer])
      spawnSync("ip", ["netns", "del", name])
    }
  }
}
