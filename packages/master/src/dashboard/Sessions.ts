/**
 * Dashboard sessions: a login with a token opens one, named by a random id in an HttpOnly,
 * Secure, SameSite=Strict cookie. The token stays in the master's memory only and is checked
 * again on every request, so a token taken out of the master's token file ends its sessions at
 * once. Sessions end after `ttl` or at logout; at most `max` are kept, and `maxPerPrincipal` of
 * one token (the oldest goes first, the token's own first), so sign-ins cannot grow the master's
 * memory without bound, nor one token push out everyone else's sessions.
 */
import type { Principal } from "@mcp/rpc/Principal"
import { Clock, Effect, Option, Redacted } from "effect"
import { randomBytes } from "node:crypto"

export const COOKIE = "mcp_session"

export interface Session {
  readonly token: Redacted.Redacted<string>
  readonly principal: Principal
  readonly expiresAt: number
  /** The anti-forgery value its sign-out form carries. */
  readonly csrf: string
}

export interface SessionSettings {
  readonly ttlMs: number
  readonly max: number
  /** Sessions of one principal (token name): one token signing in again and again evicts its own first. */
  readonly maxPerPrincipal: number
}

export const make = (settings: SessionSettings) => {
  // Insertion order is age order: the first key is the oldest session.
  const sessions = new Map<string, Session>()
  return {
    open: (token: Redacted.Redacted<string>, principal: Principal) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const own = [...sessions].filter(([, s]) => s.principal.name === principal.name).map(([id]) => id)
        while (own.length >= settings.maxPerPrincipal) sessions.delete(own.shift()!)
        while (sessions.size >= settings.max) sessions.delete(sessions.keys().next().value!)
        const id = randomBytes(32).toString("base64url")
        sessions.set(id, { token, principal, expiresAt: now + settings.ttlMs, csrf: randomBytes(24).toString("base64url") })
        return id
      }),
    find: (id: string) =>
      Effect.map(Clock.currentTimeMillis, (now) => {
        const session = sessions.get(id)
        if (session === undefined) return Option.none<Session>()
        if (session.expiresAt <= now) {
          sessions.delete(id)
          return Option.none<Session>()
        }
        return Option.some(session)
      }),
    close: (id: string) => Effect.sync(() => void sessions.delete(id)),
    size: Effect.sync(() => sessions.size)
  }
}

export type Sessions = ReturnType<typeof make>

/** The session id in a Cookie header, if any. */
export const sessionId = (cookieHeader: string | undefined): string | undefined => {
  for (const part of (cookieHeader ?? "").split(";")) {
    const [name, ...value] = part.trim().split("=")
    if (name === COOKIE) return value.join("=")
  }
  return undefined
}

/** The cookie that carries a session: never readable by scripts, only over HTTPS, never sent by another site. */
export const cookie = (id: string, maxAgeSeconds: number) =>
  `${COOKIE}=${id}; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=${maxAgeSeconds}`

export const clearedCookie = `${COOKIE}=; Path=/ui; HttpOnly; Secure; SameSite=Strict; Max-Age=0`

/**
 * A state-changing request (a form post) must come from the dashboard's own pages: its Origin
 * (or, lacking one, its Referer) must be this server. The session cookie is SameSite=Strict as
 * well; the check also covers the login form, which has no session yet.
 */
export const sameOrigin = (headers: Readonly<Record<string, string | undefined>>): boolean => {
  const host = headers["host"]
  if (host === undefined) return false
  const origin = headers["origin"] ?? (headers["referer"] === undefined ? undefined : safeOrigin(headers["referer"]))
  return origin === `https://${host}`
}

const safeOrigin = (url: string): string | undefined => {
  try {
    return new URL(url).origin
  } catch {
    // An unreadable Referer proves nothing: the request is refused.
    return undefined
  }
}
