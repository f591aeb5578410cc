/**
 * The `mcp` system user (and its group) a node's agent runs as, made over SSH.
 *
 * Why this is careful: Podman keeps a user's containers under that user's UID. An earlier
 * system of this kind changed the UID of its service user on nodes where containers already
 * ran, and every container definition on them was lost. So:
 *   - a user that exists keeps its UID, whatever it is: it is reported, never changed;
 *   - a new user gets the fleet's UID (the one its other nodes use) when that UID and the same
 *     GID are free on the node, so files and volumes mean the same on every node;
 *   - when another user or group holds that UID or GID, provisioning stops there, naming them,
 *     and nothing is changed: the operator decides (free it, or choose another fleet UID);
 *   - with no fleet UID yet (the first node), the highest free system UID below 1000 is taken,
 *     and it becomes the fleet's.
 */
import { Data, Effect } from "effect"
import type { SshFailed, SshSession } from "./Ssh.js"

export const USER = "mcp"
/** Debian's range for system users created dynamically (adduser.conf FIRST_SYSTEM_UID..LAST_SYSTEM_UID). */
export const SYSTEM_IDS = { first: 100, last: 999 } as const

/** What the node has: its accounts' names and ids. */
export interface Accounts {
  readonly users: ReadonlyArray<{ readonly name: string; readonly uid: number; readonly gid: number }>
  readonly groups: ReadonlyArray<{ readonly name: string; readonly gid: number }>
}

export type Decision =
  | { readonly _tag: "exists"; readonly uid: number; readonly gid: number }
  | { readonly _tag: "create"; readonly uid: number }

export class UidCollision extends Data.TaggedError("UidCollision")<{ readonly host: string; readonly uid: number; readonly holders: ReadonlyArray<string> }> {
  override get message() {
    return `${this.host}: the fleet's UID/GID ${this.uid} for the ${USER} user is taken there by ${this.holders.join(" and ")}; nothing was changed. ` +
      `Free it on that node, or give the fleet another UID (--uid) that is free on every node`
  }
}

export class GroupMismatch extends Data.TaggedError("GroupMismatch")<{ readonly host: string; readonly gid: number; readonly wanted: number }> {
  override get message() {
    return `${this.host}: a group ${USER} already exists there with GID ${this.gid}, not ${this.wanted}; nothing was changed. ` +
      `Remove it if nothing uses it (groupdel ${USER}), or give the fleet UID ${this.gid} (--uid ${this.gid}) if it is free for a user on every node`
  }
}

export class NoFreeSystemUid extends Data.TaggedError("NoFreeSystemUid")<{ readonly host: string }> {
  override get message() {
    return `${this.host}: no UID between ${SYSTEM_IDS.first} and ${SYSTEM_IDS.last} is free for both a user and a group; give one with --uid`
  }
}

export class UserCommandFailed extends Data.TaggedError("UserCommandFailed")<{ readonly host: string; readonly step: string; readonly output: string }> {
  override get message() {
    return `${this.host}: ${this.step} failed: ${this.output.trim().slice(0, 400)}`
  }
}

/** Parses `getent passwd` and `getent group` output. */
export const parseAccounts = (passwd: string, group: string): Accounts => ({
  users: passwd.split("\n").flatMap((line) => {
    const [name, , uid, gid] = line.split(":")
    return name && uid !== undefined && gid !== undefined ? [{ name, uid: Number(uid), gid: Number(gid) }] : []
  }),
  groups: group.split("\n").flatMap((line) => {
    const [name, , gid] = line.split(":")
    return name && gid !== undefined ? [{ name, gid: Number(gid) }] : []
  })
})

/** What to do on a node with `accounts`, given the fleet's UID if it has one. */
export const decide = (host: string, accounts: Accounts, fleetUid: number | undefined): Effect.Effect<Decision, UidCollision | GroupMismatch | NoFreeSystemUid> => {
  const existing = accounts.users.find((u) => u.name === USER)
  if (existing !== undefined) return Effect.succeed({ _tag: "exists", uid: existing.uid, gid: existing.gid })
  const holders = (id: number) => [
    ...accounts.users.filter((u) => u.uid === id).map((u) => `user ${u.name}`),
    ...accounts.groups.filter((g) => g.gid === id && g.name !== USER).map((g) => `group ${g.name}`)
  ]
  // A group of that name left without its user (a half-finished manual setup) is kept only
  // when its GID is the one the user gets.
  const group = accounts.groups.find((g) => g.name === USER)
  const withGroup = (uid: number): Effect.Effect<Decision, GroupMismatch> =>
    group === undefined || group.gid === uid ? Effect.succeed({ _tag: "create", uid }) : Effect.fail(new GroupMismatch({ host, gid: group.gid, wanted: uid }))
  if (fleetUid !== undefined) {
    const taken = holders(fleetUid)
    return taken.length === 0 ? withGroup(fleetUid) : Effect.fail(new UidCollision({ host, uid: fleetUid, holders: taken }))
  }
  if (group !== undefined && holders(group.gid).length === 0 && group.gid >= SYSTEM_IDS.first && group.gid <= SYSTEM_IDS.last) return withGroup(group.gid)
  for (let id = SYSTEM_IDS.last; id >= SYSTEM_IDS.first; id--) {
    if (holders(id).length === 0) return withGroup(id)
  }
  return Effect.fail(new NoFreeSystemUid({ host }))
}

/** The node's accounts, as getent lists them (files and any other NSS source). */
export const readAccounts = (session: SshSession): Effect.Effect<Accounts, SshFailed | UserCommandFailed> =>
  Effect.flatMap(session.exec("getent passwd; echo '--groups--'; getent group"), (r) => {
    const host = session.name
    if (r.code !== 0 || !r.stdout.includes("--groups--\n")) return Effect.fail(new UserCommandFailed({ host, step: "listing the accounts (getent)", output: `${r.stdout}${r.stderr}` }))
    const [passwd, group] = r.stdout.split("--groups--\n") as [string, string]
    return Effect.succeed(parseAccounts(passwd, group))
  })

/**
 * Makes sure the node has the `mcp` user: reads its accounts, decides, and creates the user and
 * its group with the chosen id when it has none. Returns the decision (its UID is the fleet's
 * from then on). A collision fails before anything is written on the node.
 */
export const ensureUser = (
  session: SshSession,
  options: { readonly fleetUid?: number; readonly home: string }
): Effect.Effect<Decision, SshFailed | UserCommandFailed | UidCollision | GroupMismatch | NoFreeSystemUid> =>
  Effect.gen(function* () {
    const host = session.name
    const decision = yield* decide(host, yield* readAccounts(session), options.fleetUid)
    if (decision._tag === "exists") return decision
    const id = decision.uid
    // The home goes into the command line: only a plain absolute path is accepted.
    if (!/^\/[A-Za-z0-9._/-]+$/.test(options.home)) return yield* Effect.dieMessage(`the mcp user's home ${JSON.stringify(options.home)} is not a plain absolute path`)
    // One command, so that a failure of the second part leaves no group without its user: the
    // group is removed again. The id checks repeat on the node, against a change since reading.
    const command = [
      `set -e`,
      `if getent passwd ${id} >/dev/null; then echo "UID ${id} was taken meanwhile" >&2; exit 3; fi`,
      `made_group=no`,
      `if ! getent group ${USER} >/dev/null; then`,
      `  if getent group ${id} >/dev/null; then echo "GID ${id} was taken meanwhile" >&2; exit 3; fi`,
      `  groupadd --system --gid ${id} ${USER}; made_group=yes`,
      `fi`,
      `useradd --system --uid ${id} --gid ${id} --home-dir ${options.home} --no-create-home --shell /usr/sbin/nologin --comment 'MCP agent' ${USER} || { [ $made_group = no ] || groupdel ${USER}; exit 4; }`
    ].join("\n")
    const r = yield* session.exec(command)
    if (r.code !== 0) return yield* Effect.fail(new UserCommandFailed({ host, step: `creating the ${USER} user with UID ${id}`, output: `${r.stdout}${r.stderr}` }))
    return decision
  })
