/**
 * Who may call what. Every RPC's access level is written out here by hand and compared with the
 * `Access` annotation the contract gives it, so making an RPC readable by guests (or adding one)
 * is a decision a reviewer sees in this file. Then `authorize` for every role × access × policy.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Exit } from "effect"
import { authorize } from "../src/AuthMiddleware.js"
import { AgentRpcs, ControlRpcs, MasterRpcs } from "../src/Contracts.js"
import { Principal, type Role } from "../src/Principal.js"
import { Access } from "../src/Protocol.js"

type Level = "read" | "write"

/** The master's RPCs for the CLI: guests may call the "read" ones. */
const masterAccess: Record<string, Level> = {
  Deploy: "write",
  Undeploy: "write",
  Stop: "write",
  Start: "write",
  Restart: "write",
  Ps: "read",
  Status: "read",
  Sync: "write",
  NodesList: "read",
  NodesAdd: "write",
  NodesRemove: "write",
  EdgeRoutesList: "read",
  DnsCheck: "read",
  Logs: "read",
  Events: "read",
  AgentRecover: "write",
  Tree: "read"
}

/** The agent's RPCs (guests are refused outright there, but the levels still say what changes things). */
const agentAccess: Record<string, Level> = {
  Deploy: "write",
  Stop: "write",
  Start: "write",
  Restart: "write",
  Undeploy: "write",
  Ps: "read",
  Status: "read",
  Logs: "read",
  SetupEdgeRoute: "write",
  RemoveEdgeRoute: "write",
  ListEdgeRoutes: "read",
  ProxyRoutesAdd: "write",
  ProxyRoutesRemove: "write",
  ProxyRoutesList: "read",
  Recover: "write",
  BootStatus: "read",
  Health: "read",
  NodeInfo: "read",
  Events: "read"
}

/** The master's RPCs for agents: both change the master's view of the fleet. */
const controlAccess: Record<string, Level> = {
  Register: "write",
  Heartbeat: "write"
}

type Group = { readonly requests: ReadonlyMap<string, { readonly _tag: string; readonly annotations: Context.Context<never> }> }

const levels = (group: Group): Record<string, Level> =>
  Object.fromEntries([...group.requests.values()].map((rpc) => [rpc._tag, Context.get(rpc.annotations, Access)]))

describe("every RPC's access level is the one written here", () => {
  for (const [name, group, expected] of [
    ["MasterRpcs", MasterRpcs, masterAccess],
    ["AgentRpcs", AgentRpcs, agentAccess],
    ["ControlRpcs", ControlRpcs, controlAccess]
  ] as ReadonlyArray<readonly [string, Group, Record<string, Level>]>) {
    it(`${name}: the table names exactly the group's RPCs`, () => {
      const inGroup = [...group.requests.keys()].sort()
      const inTable = Object.keys(expected).sort()
      const missing = inGroup.filter((tag) => !(tag in expected))
      const stale = inTable.filter((tag) => !group.requests.has(tag))
      expect(
        missing,
        `${name} has RPCs this table lacks: add each to the table in Access.test.ts with "read" (guests may call it on the master) or "write"`
      ).toEqual([])
      expect(stale, `the table lists RPCs ${name} no longer has: remove them`).toEqual([])
    })

    it(`${name}: each RPC's Access annotation matches the table`, () => {
      expect(levels(group)).toEqual(expected)
    })
  }

  it("the annotation defaults to write, so an RPC nobody marked is closed to guests", () => {
    expect(Context.get(Context.empty(), Access)).toBe("write")
  })
})

describe("authorize: each role × access level × policy", () => {
  const principals: Record<Role, Principal> = {
    admin: new Principal({ name: "alice", kind: "human", role: "admin" }),
    user: new Principal({ name: "bob", kind: "human", role: "user" }),
    guest: new Principal({ name: "eve", kind: "human", role: "guest" })
  }
  const cases: ReadonlyArray<readonly [Role, Level, boolean, "allowed" | "forbidden"]> = [
    ["admin", "read", true, "allowed"],
    ["admin", "write", true, "allowed"],
    ["admin", "read", false, "allowed"],
    ["admin", "write", false, "allowed"],
    ["user", "read", true, "allowed"],
    ["user", "write", true, "allowed"],
    ["user", "read", false, "allowed"],
    ["user", "write", false, "allowed"],
    ["guest", "read", true, "allowed"],
    ["guest", "write", true, "forbidden"],
    ["guest", "read", false, "forbidden"],
    ["guest", "write", false, "forbidden"]
  ]
  for (const [role, access, guestMayRead, outcome] of cases) {
    it.effect(`${role} calling a ${access} RPC with guestMayRead ${guestMayRead}: ${outcome}`, () =>
      Effect.gen(function* () {
        const principal = principals[role]
        const exit = yield* Effect.exit(authorize(principal, access, "SomeRpc", { guestMayRead }))
        expect(exit).toEqual(
          outcome === "allowed"
            ? Exit.succeed(principal)
            : Exit.fail(new Errors.Forbidden({ principal: principal.name, role, rpc: "SomeRpc" }))
        )
        if (Exit.isFailure(exit)) {
          const error = yield* Effect.flip(authorize(principal, access, "SomeRpc", { guestMayRead }))
          expect(error).toBeInstanceOf(Errors.Forbidden)
          expect({ principal: error.principal, role: error.role, rpc: error.rpc }).toEqual({ principal: "eve", role: "guest", rpc: "SomeRpc" })
          expect(error.message).toBe("eve (role guest) may not call SomeRpc; ask an admin for a token with the user or admin role")
        }
      }))
  }
})
