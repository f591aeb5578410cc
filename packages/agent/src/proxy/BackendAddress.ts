/**
 * Which addresses a proxy route may forward to. A route makes the node's proxy connect wherever
 * its backend says, with the proxy's network position: without these rules a caller could reach
 * cloud metadata (169.254.169.254), other hosts' SSH, or the agent's own admin ports through it.
 *
 * The networks an operator allows (`[proxy] backend_networks`) are parsed once, at config
 * decoding, and checked with node's BlockList (exact CIDR matching for IPv4 and IPv6).
 */
import { BlockList, isIP, isIPv4 } from "node:net"

/** `a.b.c.d/n` or `x::y/n`; the message names the rule and an example. */
export const cidrProblem = (text: string): string | undefined => {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text)
  const family = m === null ? 0 : isIP(m[1]!)
  if (m === null || family === 0) return `"${text}" must be a network in CIDR form, e.g. "10.0.0.0/8" or "fd00::/8"`
  const bits = Number(m[2])
  const max = family === 4 ? 32 : 128
  if (bits > max) return `"${text}" has a prefix length above ${max}`
  return undefined
}

/** A set of networks, for `contains` checks. */
export interface Networks {
  readonly list: ReadonlyArray<string>
  readonly contains: (address: string) => boolean
}

/** Networks from CIDR strings already checked by `cidrProblem`. */
export const networks = (cidrs: ReadonlyArray<string>): Networks => {
  const blocks = new BlockList()
  for (const cidr of cidrs) {
    const [net = "", bits = "0"] = cidr.split("/")
    blocks.addSubnet(net, Number(bits), isIPv4(net) ? "ipv4" : "ipv6")
  }
  return {
    list: cidrs,
    contains: (address) => {
      const family = isIP(address)
      return family !== 0 && blocks.check(address, family === 4 ? "ipv4" : "ipv6")
    }
  }
}

const special = (() => {
  const linkLocal = new BlockList()
  linkLocal.addSubnet("169.254.0.0", 16, "ipv4")
  linkLocal.addSubnet("fe80::", 10, "ipv6")
  const loopback = new BlockList()
  loopback.addSubnet("127.0.0.0", 8, "ipv4")
  loopback.addAddress("::1", "ipv6")
  const unroutable = new BlockList()
  // "This network" (0.0.0.0 connects to the local host), multicast, broadcast, the unspecified v6 address, v6 multicast.
  unroutable.addSubnet("0.0.0.0", 8, "ipv4")
  unroutable.addSubnet("224.0.0.0", 4, "ipv4")
  unroutable.addAddress("255.255.255.255", "ipv4")
  unroutable.addAddress("::", "ipv6")
  unroutable.addSubnet("ff00::", 8, "ipv6")
  return { linkLocal, loopback, unroutable }
})()

export type AddressClass = "link-local" | "loopback" | "unroutable" | "other"

/** What kind of address an IP literal is; IPv4-mapped IPv6 addresses count as their IPv4 address. */
export const classify = (address: string): AddressClass => {
  const mapped = /^::ffff:(\d{1,3}(\.\d{1,3}){3})$/i.exec(address)
  const ip = mapped === null ? address : mapped[1]!
  const type = isIPv4(ip) ? "ipv4" : "ipv6"
  if (special.linkLocal.check(ip, type)) return "link-local"
  if (special.loopback.check(ip, type)) return "loopback"
  if (special.unroutable.check(ip, type)) return "unroutable"
  return "other"
}
