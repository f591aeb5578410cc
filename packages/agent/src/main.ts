/** `mcp-agent --config <file>`: runs one node's agent until SIGINT/SIGTERM. */
import { Daemon } from "@mcp/rpc"
import * as Agent from "./daemon/Agent.js"
import * as AgentConfig from "./daemon/AgentConfig.js"

Daemon.main({ name: "mcp-agent", version: Agent.VERSION, path: "/agent", decode: AgentConfig.decode, layer: Agent.layer })
