/**
 * The RPC contracts: what each daemon serves. Declared once and implemented by the agent and the
 * master with `Group.toLayer`; every payload, result and error is a Schema. In two modules, so
 * that a client loads only the groups it calls: FleetContracts (MasterRpcs, AgentRpcs: what
 * operators and the master call) and ControlContracts (ControlRpcs: what agents call).
 */
export * from "./ControlContracts.js"
export * from "./FleetContracts.js"
