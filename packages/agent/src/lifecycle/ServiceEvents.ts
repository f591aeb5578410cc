/**
 * The agent's event log entries for services (deployed, stopped, rolled back, ...). The log is
 * the operator's record of what happened, so an entry that cannot be written is fatal.
 */
import { Failures } from "@mcp/rpc"
import { Effect } from "effect"
import { Registry } from "../registry/Registry.js"

export const record = (kind: "deploy" | "recover" | "cert", service: string, message: string) =>
  Effect.flatMap(Registry, (registry) => registry.addEvent(kind, service, message).pipe(Failures.fatal("the agent registry")))
