/**
 * How a failure of the engine, the proxy, the CA, DNS or the registry is told to the user:
 * its message, whether trying again may help, and which system it came from.
 */

/** The failure's own message. */
export const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

/** Failures that come from a peer (engine, proxy, CA, DNS) name it, and may be retried. */
export const isRetryable = (e: unknown): boolean =>
  typeof e === "object" && e !== null && "retryable" in e ? Boolean(e.retryable) : typeof e === "object" && e !== null && "_tag" in e && e._tag !== "Unhealthy" && e._tag !== "PortsExhausted" && e._tag !== "ImageNotFound"

/** Names the external system behind an adapter error, for PeerFailed. */
export const peerOf = (e: unknown): string => {
  if (typeof e !== "object" || e === null || !("_tag" in e)) return "agent"
  const fields = e as { _tag: string; proxy?: string; server?: string; issuer?: string }
  switch (fields._tag) {
    case "ProxyError": return fields.proxy ?? "proxy"
    case "DnsError": return fields.server ?? "DNS server"
    case "CertError": return fields.issuer ?? "certificate issuer"
    case "RuntimeError": case "ContainerNotFound": case "ImageNotFound": return "container engine"
    case "SqlError": return "registry"
    default: return "agent"
  }
}
