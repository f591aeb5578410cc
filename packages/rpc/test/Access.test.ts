/**
 * Who may call what. Every RPC's access level is written out here by hand and compared with the
 * `Access` annotation the contract gives it, so opening an RPC to users or guests (or adding one)
 * is a decision a reviewer sees in this file. Then `authorize` for every role × access × policy.
 */
import { describe, expect, it } from "@effect/vitest"
import { Errors } from "@mcp/domain"
import { Context, Effect, Exit } from "effect"
import { authorize } from "../src/AuthMiddleware.js"
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
  Tree: "read"
}

/** The agent's RPCs (guests are refused outright there, but the levels still say what changes things). */
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
  Heartbeat: "node"
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
  // [role, access, guestMayRead, the role the RPC needs when the caller is refused (undefined: allowed)]
  const cases: ReadonlyArray<readonly [Role, Level, boolean, string | undefined]> = [
    ["admin", "read", true, undefined],
    ["admin", "operate", true, undefined],
    ["admin", "admin", true, undefined],
    ["admin", "read", false, undefined],
    ["admin", "operate", false, undefined],
    ["admin", "admin", false, undefined],
    ["user", "read", true, undefined],
    ["user", "operate", true, undefined],
    ["user", "admin", true, "admin"],
    ["user", "read", false, undefined],
    ["user", "operate", false, undefined],
    ["user", "admin", false, "admin"],
    ["guest", "read", true, undefined],
    ["guest", "operate", true, "user"],
    ["guest", "admin", true, "admin"],
    ["guest", "read", false, "user"],
    ["guest", "operate", false, "user"],
    ["guest", "admin", false, "admin"]
  ]
  for (const [role, access, guestMayRead, needs] of cases) {
    it.effect(`${role} calling a ${access} RPC with guestMayRead ${guestMayRead}: ${needs === undefined ? "allowed" : `forbidden, needs ${needs}`}`, () =>
      Effect.gen(function* () {
        const principal = principals[role]
        const exit = yield* Effect.exit(authorize(principal, access, "SomeRpc", { guestMayRead }))
        expect(exit).toEqual(
          needs === undefined
            ? Exit.succeed(principal)
            : Exit.fail(new Errors.Forbidden({ principal: principal.name, role, rpc: "SomeRpc", needs }))
        )
        if (Exit.isFailure(exit)) {
          const error = yield* Effect.flip(authorize(principal, access, "SomeRpc", { guestMayRead }))
          expect(error).toBeInstanceOf(Errors.Forbidden)
          expect(error.message).toBe(
            `${principal.name} (role ${role}) may not call SomeRpc: it needs the ${needs} role${needs === "admin" ? "" : " or above"}; ask an admin for such a token`
          )
        }
      }))
  }
})
