import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { type Accounts, decide, parseAccounts, SYSTEM_IDS } from "../src/provision/SystemUser.js"

const accounts = (users: Array<[string, number]>, groups: Array<[string, number]> = users): Accounts => ({
  users: users.map(([name, uid]) => ({ name, uid, gid: uid })),
  groups: groups.map(([name, gid]) => ({ name, gid }))
})
const base = accounts([["root", 0], ["daemon", 1], ["systemd-network", 998], ["messagebus", 100]])

describe("the mcp system user's UID", () => {
  it("reads getent's passwd and group lines", () => {
    expect(parseAccounts("root:x:0:0:root:/root:/bin/bash\nmcp:x:990:990:MCP agent:/var/lib/mcp-agent:/usr/sbin/nologin\n", "root:x:0:\nmcp:x:990:\n")).toEqual({
      users: [{ name: "root", uid: 0, gid: 0 }, { name: "mcp", uid: 990, gid: 990 }],
      groups: [{ name: "root", gid: 0 }, { name: "mcp", gid: 990 }]
    })
  })

  it.effect("an existing mcp user keeps its UID, whatever the fleet's", () =>
    Effect.gen(function* () {
      const withMcp = accounts([["root", 0], ["mcp", 500]])
      expect(yield* decide("n1", withMcp, 990)).toEqual({ _tag: "exists", uid: 500, gid: 500 })
      expect(yield* decide("n1", withMcp, undefined)).toEqual({ _tag: "exists", uid: 500, gid: 500 })
    }))

  it.effect("the fleet's UID when it is free as a UID and a GID; a collision names who holds it", () =>
    Effect.gen(function* () {
      expect(yield* decide("n1", base, 990)).toEqual({ _tag: "create", uid: 990 })
      const byUser = yield* Effect.flip(decide("n1", base, 998))
      expect(byUser._tag).toBe("UidCollision")
      expect(byUser.message).toContain("taken there by user systemd-network and group systemd-network; nothing was changed")
      const byGroup = yield* Effect.flip(decide("n1", accounts([["root", 0]], [["root", 0], ["docker", 990]]), 990))
      expect(byGroup.message).toContain("taken there by group docker")
    }))

  it.effect("the first node takes the highest free system UID that is also a free GID", () =>
    Effect.gen(function* () {
      expect(yield* decide("n1", base, undefined)).toEqual({ _tag: "create", uid: 999 })
      expect(yield* decide("n1", accounts([["a", 999]], [["a", 999], ["b", 998]]), undefined)).toEqual({ _tag: "create", uid: 997 })
      const full = accounts(Array.from({ length: SYSTEM_IDS.last - SYSTEM_IDS.first + 1 }, (_, i): [string, number] => [`u${i}`, SYSTEM_IDS.first + i]))
      expect((yield* Effect.flip(decide("n1", full, undefined)))._tag).toBe("NoFreeSystemUid")
    }))

  it.effect("a leftover mcp group is kept when its GID is the one the user gets, and stops provisioning otherwise", () =>
    Effect.gen(function* () {
      const leftover = accounts([["root", 0]], [["root", 0], ["mcp", 995]])
      expect(yield* decide("n1", leftover, undefined)).toEqual({ _tag: "create", uid: 995 })
      expect(yield* decide("n1", leftover, 995)).toEqual({ _tag: "create", uid: 995 })
      const mismatch = yield* Effect.flip(decide("n1", leftover, 990))
      expect(mismatch._tag).toBe("GroupMismatch")
      expect(mismatch.message).toContain("a group mcp already exists there with GID 995, not 990; nothing was changed")
    }))
})
