/**
 * Where provisioning puts things on a node (the layout of docs/INSTALL.md, so a provisioned node
 * and one set up by hand are the same), and the agent config it writes there.
 */
import type { NodeRole } from "@mcp/domain/Node"

/** Releases side by side, and `current` pointing at the one that runs. */
export const OPT = "/opt/mcp"
export const CURRENT = `${OPT}/current`
/** The CLI on the node's PATH. */
export const CLI_LINK = "/usr/local/bin/mcp"
/** Configs, certificates and token files: root:mcp, 0750. */
export const ETC = "/etc/mcp"
export const AGENT_CONFIG = `${ETC}/mcp-agent.toml`
export const AGENT_TOKENS = `${ETC}/agent-tokens.toml`
export const CA_CERT = `${ETC}/ca.crt`
export const AGENT_DATA = "/var/lib/mcp-agent"
export const AGENT_UNIT = "mcp-agent.service"
export const UNIT_PATH = `/etc/systemd/system/${AGENT_UNIT}`
/** The home of the `mcp` user (the master's data dir, should the node ever run the master). */
export const MCP_HOME = "/var/lib/mcp-master"
export const ENGINE_SOCKET = "/run/podman/podman.sock"
/** The node's proxy: HAProxy run by its own unit on the files the agent owns (packaging/systemd/mcp-proxy.service). */
export const PROXY_UNIT = "mcp-proxy.service"
export const PROXY_UNIT_PATH = `/etc/systemd/system/${PROXY_UNIT}`
export const PROXY_DIR = `${AGENT_DATA}/haproxy`
export const DEFAULT_AGENT_PORT = 9444

export const keyPath = (node: string) => `${ETC}/${node}.key`
export const certPath = (node: string) => `${ETC}/${node}.crt`
export const tokenPath = (node: string) => `${ETC}/${node}.token`
/** The checksum of the archive a release directory was unpacked from, beside it. */
export const releaseChecksumPath = (release: string) => `${OPT}/${release}.sha256`

export interface AgentSettings {
  readonly node: string
  readonly role: NodeRole
  readonly address: string
  readonly port: number
  readonly masters: ReadonlyArray<string>
  readonly internalZone: string
}

/** An address as `host:port` (IPv6 in brackets). */
export const hostPort = (host: string, port: number) => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

// JSON strings are TOML basic strings for everything these values can hold (they are decoded
// names and addresses: no control characters).
const str = (s: string) => JSON.stringify(s)

/** The agent's config file, as provisioning writes it (docs/INSTALL.md, step 6). */
export const agentConfig = (s: AgentSettings): string =>
  [
    `# Written by mcp node provision; a new provision rewrites it (local changes: a drop-in for the unit, or provision's options).`,
    `node = ${str(s.node)}`,
    `role = ${str(s.role)}`,
    `listen = ${str(hostPort(s.address, s.port))}`,
    `node_address = ${str(s.address)}`,
    `data_dir = ${str(AGENT_DATA)}`,
    `internal_zone = ${str(s.internalZone)}`,
    ``,
    `[tls]`,
    `cert = ${str(certPath(s.node))}`,
    `key = ${str(keyPath(s.node))}`,
    `ca = ${str(CA_CERT)}`,
    ``,
    `[auth]`,
    `token_file = ${str(AGENT_TOKENS)}`,
    ``,
    `[runtime]`,
    `socket = ${str(ENGINE_SOCKET)}`,
    ``,
    `[proxy]`,
    `kind = "haproxy"`,
    `dir = ${str(PROXY_DIR)}`,
    `master_socket = ${str(`${PROXY_DIR}/master.sock`)}`,
    `stats_socket = ${str(`${PROXY_DIR}/stats.sock`)}`,
    `bind = ${str(s.address)}`,
    ``,
    `[master]`,
    `addresses = [${s.masters.map(str).join(", ")}]`,
    `token_file = ${str(tokenPath(s.node))}`,
    ``
  ].join("\n")
