/**
 * How a failure of the engine, the proxy, the CA, DNS or the registry is told to the user:
 * its message, whether trying again may help, and which system it came from. Both are decided
 * by the error's type: a new error type in a step does not compile until it is placed here.
 */
import type { SqlError } from "@effect/sql/SqlError"
import * as DiskSpace from "@mcp/rpc/DiskSpace"
import type { Errors } from "@mcp/domain"
import type { CertError } from "../certs/CertIssuer.js"
import type { DnsError } from "../dns/DnsRecords.js"
import type { ContainerNotFound, ImageNotFound, RuntimeError } from "../engine/ContainerRuntime.js"
import type { ProxyError } from "../proxy/ProxyRoutes.js"
import type { Unhealthy } from "./HealthGate.js"
import type { PortsExhausted } from "./PortAllocator.js"

/** A failure of one of the systems the agent drives. */
export type PeerError = RuntimeError | ImageNotFound | ContainerNotFound | ProxyError | DnsError | CertError | SqlError

/** What a deploy step or a service operation can fail with. */
export type StepError = PeerError | Unhealthy | PortsExhausted | Errors.DeployFailed

/** The failure's own message. */
export const describe = (e: unknown): string =>
  e instanceof Error ? e.message : typeof e === "object" && e !== null && "message" in e ? String(e.message) : String(e)

/**
 * The failure as the user is told it: a full disk names the directory (the file it failed on,
 * else the agent's data directory) and its free space, rather than SQLite's "Failed to execute
 * statement"; any other failure its own message.
 */
export const explain = (e: unknown, dataDir: string): string =>
  DiskSpace.isDiskFull(e) ? DiskSpace.diskFullReason(e, dataDir, e !== null && typeof e === "object" && (e as { _tag?: unknown })._tag === "SqlError" ? "the agent's registry" : "a file") : describe(e)

/**
 * Whether trying the same thing again may succeed: a peer that failed may answer next time; a
 * service that is never healthy, a full port range or a missing image need a change first.
 */
export const isRetryable = (e: StepError): boolean => {
  switch (e._tag) {
    case "RuntimeError":
    case "DeployFailed":
      return e.retryable
    case "ContainerNotFound":
    case "ProxyError":
    case "DnsError":
    case "CertError":
    case "SqlError":
      return true
    case "Unhealthy":
    case "PortsExhausted":
    case "ImageNotFound":
      return false
  }
}

/** Names the system behind a failure, for PeerFailed. */
export const peerOf = (e: PeerError): string => {
  switch (e._tag) {
    case "ProxyError": return e.proxy
    case "DnsError": return e.server
    case "CertError": return e.issuer
    case "RuntimeError": case "ContainerNotFound": case "ImageNotFound": return "container engine"
    case "SqlError": return "registry"
  }
}
