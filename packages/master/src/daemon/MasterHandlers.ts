/**
 * The master's RPC handlers, composed from one module per concept (in handlers/): MasterRpcs for
 * the CLI from ServiceOperations (deploy, undeploy, lifecycle, sync), FleetViews (ps, status,
 * logs, events, edge routes, tree), NodeManagement (node registry, agent recover) and
 * InternalZone (the zone's records); ControlRpcs for agents from Control (register, heartbeat)
 * and InternalZone (records set and removed by nodes).
 */
import { ControlRpcs, MasterRpcs } from "@mcp/rpc/Contracts"
import { Effect, Layer } from "effect"
import type { MasterSettings } from "./handlers/Common.js"
import * as Control from "./handlers/Control.js"
import * as FleetViews from "./handlers/FleetViews.js"
import * as InternalZone from "./handlers/InternalZone.js"
import * as NodeManagement from "./handlers/NodeManagement.js"
import * as ServiceOperations from "./handlers/ServiceOperations.js"

export type { MasterSettings } from "./handlers/Common.js"
export { supervisionTree } from "./handlers/FleetViews.js"

export const layer = (settings: MasterSettings) => {
  const master = MasterRpcs.toLayer(
    Effect.gen(function* () {
      return {
        ...(yield* ServiceOperations.handlers(settings)),
        ...(yield* FleetViews.handlers(settings)),
        ...(yield* NodeManagement.handlers),
        ...(yield* InternalZone.handlers(settings)).master
      }
    })
  )
  const control = ControlRpcs.toLayer(
    Effect.gen(function* () {
      return { ...(yield* Control.handlers(settings)), ...(yield* InternalZone.handlers(settings)).control }
    })
  )
  return Layer.merge(master, control)
}
