/**
 * Who may call what. Every RPC's access level is written out here by hand and compared with the
 * `Access` annotation the contract gives it, so opening an RPC to users or guests (or adding one)
 * is a decision a reviewer sees in this file. Then `authorize` for every role × access × policy.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Exit } from "effect"
import { authorize, operateOnAgentRule } from "../src/AuthMiddleware.js"
import { AgentRpcs, ControlRpcs, MasterRpcs } from "../src/Contracts.js"
import { Principal, type Role } from "../src/Principal.js"
import { Access, type AccessLevel } from "../src/Protocol.js"

type Level = AccessLevel

/** The master's RPCs for the CLI: guests may call the "read" ones. */
const masterAccess: Record<string, Level> = {
  Deploy: "operate",
  Undeploy: "operate",
  Stop: "operate",
  Start: "operate",
  Restart: "operate",
  Ps: "read",
  Status: "read",
  Sync: "operate",
  NodesList: "read",
  NodesAdd: "admin",
  NodesRemove: "admin",
  EdgeRoutesList: "read",
  DnsCheck: "read",
  Logs: "operate",
  Events: "read",
  AgentRecover: "admin",
  AgentStatus: "read",
  ZoneList: "read",
  Tree: "read"
}

/**
 * The agent's RPCs (guests are refused outright there, but the levels still say what changes
 * things). On an agent `operate` needs an admin (usersMayOperate: false): changes, and logs,
 * come through the master, which calls with its admin system token.
 */
const agentAccess: Record<string, Level> = {
  Deploy: "operate",
  Stop: "operate",
  Start: "operate",
  Restart: "operate",
  Undeploy: "operate",
  Ps: "read",
  Status: "read",
  Logs: "operate",
  SetupEdgeRoute: "admin",
  RemoveEdgeRoute: "admin",
  ListEdgeRoutes: "read",
  ProxyRoutesAdd: "admin",
  ProxyRoutesRemove: "admin",
  ProxyRoutesList: "read",
  Recover: "admin",
  BootStatus: "read",
  Health: "read",
  NodeInfo: "read",
  Events: "read"
}

/** The master's RPCs for agents: each is a node speaking for itself, so only its own system token may call it. */
const controlAccess: Record<string, Level> = {
  Register: "node",
  Heartbeat: "node",
  ZonePut: "node",
  ZoneRemove: "node",
  ZoneRecords: "node"
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
        `${name} has RPCs this table lacks: add each to the table in Access.test.ts with "read" (guests may call it on the master), "operate" (users) or "admin"`
      ).toEqual([])
      expect(stale, `the table lists RPCs ${name} no longer has: remove them`).toEqual([])
    })

    it(`${name}: each RPC's Access annotation matches the table`, () => {
      expect(levels(group)).toEqual(expected)
    })
  }

  it("the annotation defaults to admin, so an RPC nobody marked is closed to users and guests", () => {
    expect(Context.get(Context.empty(), Access)).toBe("admin")
  })
})

describe("authorize: a node RPC is the node itself, whatever the token's role", () => {
  const policy = { guestMayRead: true }
  for (const role of ["guest", "user", "admin"] as const) {
    it.effect(`the node's own system token (role ${role}) may; another node's, or a human's, may not`, () =>
      Effect.gen(function* () {
        const own = new Principal({ name: "w1", kind: "system", role })
        expect(yield* authorize(own, "node", "Register", policy, "w1")).toBe(own)

        const other = yield* Effect.flip(authorize(new Principal({ name: "w2", kind: "system", role }), "node", "Register", policy, "w1"))
        expect(other).toBeInstanceOf(Errors.Forbidden)
        expect(other.rule).toContain("may not speak for node w1")
        expect(other.message).toContain("mcp token create --file <token file> --kind system --role guest --name w1")

        // A human admin too: the master would take an operator's word for what runs where.
        const human = yield* Effect.flip(authorize(new Principal({ name: "w1", kind: "human", role }), "node", "Register", policy, "w1"))
        expect(human.rule).toContain("Register is for agents only")
      }))
  }

  it.effect("a node RPC whose payload names no node refuses everyone", () =>
    Effect.gen(function* () {
      const error = yield* Effect.flip(authorize(new Principal({ name: "w1", kind: "system", role: "admin" }), "node", "Register", { guestMayRead: true }, undefined))
      expect(error.rule).toBe("Register names no node, so no token may speak for it")
    }))

  it.effect("the system token of a node is only a guest elsewhere: role levels ignore the name", () =>
    Effect.gen(function* () {
      const node = new Principal({ name: "w1", kind: "system", role: "guest" })
      expect((yield* Effect.flip(authorize(node, "operate", "Deploy", { guestMayRead: true }))).needs).toBe("user")
      expect((yield* Effect.flip(authorize(node, "admin", "NodesAdd", { guestMayRead: true }))).needs).toBe("admin")
    }))
})

describe("authorize: each role × access level × policy", () => {
  const principals: Record<Role, Principal> = {
    admin: new Principal({ name: "alice", kind: "human", role: "admin" }),
    user: new Principal({ name: "bob", kind: "human", role: "user" }),
    guest: new Principal({ name: "eve", kind: "human", role: "guest" })
  }
  // The two daemons' policies: the master lets guests read and users operate; the agent neither.
  const master = { guestMayRead: true, usersMayOperate: true }
  const agent = { guestMayRead: false, usersMayOperate: false }
  const policies = { master, agent } as const
  // [role, access, policy, the role the RPC needs when the caller is refused (undefined: allowed), and whether a rule is named]
  const cases: ReadonlyArray<readonly [Role, Level, keyof typeof policies, string | undefined, "rule"?]> = [
    ["admin", "read", "master", undefined],
    ["admin", "operate", "master", undefined],
    ["admin", "admin", "master", undefined],
    ["admin", "read", "agent", undefined],
    ["admin", "operate", "agent", undefined],
    ["admin", "admin", "agent", undefined],
    ["user", "read", "master", undefined],
    ["user", "operate", "master", undefined],
    ["user", "admin", "master", "admin"],
    ["user", "read", "agent", undefined],
    // On an agent, changes come from the master: a user is refused naming that rule.
    ["user", "operate", "agent", "admin", "rule"],
    ["user", "admin", "agent", "admin"],
    ["guest", "read", "master", undefined],
    ["guest", "operate", "master", "user"],
    ["guest", "admin", "master", "admin"],
    ["guest", "read", "agent", "user"],
    ["guest", "operate", "agent", "admin", "rule"],
    ["guest", "admin", "agent", "admin"]
  ]
  for (const [role, access, policyName, needs, rule] of cases) {
    const policy = policies[policyName]
    it.effect(`${role} calling a ${access} RPC on the ${policyName}: ${needs === undefined ? "allowed" : `forbidden, needs ${needs}`}`, () =>
      Effect.gen(function* () {
        const principal = principals[role]
        const exit = yield* Effect.exit(authorize(principal, access, "SomeRpc", policy))
        expect(exit).toEqual(
          needs === undefined
            ? Exit.succeed(principal)
            : Exit.fail(new Errors.Forbidden({ principal: principal.name, role, rpc: "SomeRpc", needs, ...(rule === undefined ? {} : { rule: operateOnAgentRule }) }))
        )
        if (Exit.isFailure(exit)) {
          const error = yield* Effect.flip(authorize(principal, access, "SomeRpc", policy))
          expect(error).toBeInstanceOf(Errors.Forbidden)
          expect(error.message).toBe(
            rule === undefined
              ? `${principal.name} (role ${role}) may not call SomeRpc: it needs the ${needs} role${needs === "admin" ? "" : " or above"}; ask an admin for such a token`
              : `${principal.name} (role ${role}) may not call SomeRpc: on an agent, changes come from the master (which calls with its admin system token); deploy through the master (mcp without --direct), or use an admin token`
          )
        }
      }))
  }

  it.effect("guestMayRead and usersMayOperate each act alone; usersMayOperate left out is the master's (users operate)", () =>
    Effect.gen(function* () {
      const { guest, user } = principals
      expect(yield* authorize(user, "operate", "Deploy", { guestMayRead: false })).toBe(user)
      expect(yield* authorize(guest, "read", "Ps", { guestMayRead: true, usersMayOperate: false })).toBe(guest)
      expect((yield* Effect.flip(authorize(guest, "read", "Ps", { guestMayRead: false, usersMayOperate: true }))).needs).toBe("user")
      expect(yield* authorize(user, "operate", "Deploy", { guestMayRead: false, usersMayOperate: true })).toBe(user)
    }))
})
