/** `mcp-master --config <file>`: runs the master until SIGINT/SIGTERM. */
import { Daemon } from "@mcp/rpc"
import * as Master from "./daemon/Master.js"
import * as MasterConfig from "./daemon/MasterConfig.js"

Daemon.main({ name: "mcp-master", version: Master.VERSION, path: "/master", decode: MasterConfig.decode, layer: Master.layer })
