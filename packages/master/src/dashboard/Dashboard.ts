/**
 * The web dashboard, served by the master on its HTTPS listener under /ui: a sign-in with any
 * token the master accepts (a guest token included), then one page of nodes, services, public
 * hostnames, charts of the last hour, the live event stream and the steps of deploys as they run.
 *
 * It reads what the CLI's views read (FleetViews, NodeManagement) and changes nothing: its only
 * posts are sign-in and sign-out. Safe by default: every value is escaped (Html.ts); the session
 * cookie is HttpOnly, Secure and SameSite=Strict; posts must come from the dashboard's own origin;
 * the Content-Security-Policy allows the master's own script and stylesheet and nothing inline.
 */
import { HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as Audit from "@mcp/rpc/Audit"
import { Authenticator } from "@mcp/rpc/Authenticator"
import { UNAVAILABLE_REASON } from "@mcp/rpc/HttpAuthenticator"
import type { Principal } from "@mcp/rpc/Principal"
import * as EventLog from "@mcp/rpc/EventLog"
import type { RpcRoute } from "@mcp/rpc/Transport"
import { Cause, Clock, Context, Data, Duration, Effect, Either, Layer, Metric, Option, Redacted, Schedule, Schema, Stream } from "effect"
import { MasterDb } from "../db/MasterDb.js"
import { NodeSupervisors } from "../nodes/NodeSupervisors.js"
import type { MasterSettings } from "../daemon/handlers/Common.js"
import * as FleetViews from "../daemon/handlers/FleetViews.js"
import * as NodeManagement from "../daemon/handlers/NodeManagement.js"
import * as DeployActivity from "../services/DeployActivity.js"
import * as Assets from "./Assets.js"
import * as HeartbeatAges from "./HeartbeatAges.js"
import * as Pages from "./Pages.js"
import * as Sessions from "./Sessions.js"

export interface DashboardSettings {
  readonly sampleInterval: Duration.Duration
  readonly sessionTtl: Duration.Duration
}

const SECURITY_HEADERS = {
  "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  // Not no-referrer: under it browsers send "Origin: null" with the forms' posts, which the origin check needs.
  "referrer-policy": "same-origin",
  "cache-control": "no-store"
}

const HOUR_MS = 3_600_000
/** Sessions kept at once, and of one principal; the oldest (of that principal first) goes beyond it. */
const MAX_SESSIONS = 1_000
const MAX_SESSIONS_PER_PRINCIPAL = 20
/** Live streams: each holds a connection of the master's (512 at most, agents' heartbeats among them). */
const LIVE_PER_SESSION = 4
const LIVE_TOTAL = 64
/** How often an open live stream checks that its session still holds. */
const LIVE_RECHECK = Duration.seconds(5)
/** How long the services (asked of every agent) and the DNS check are reused between refreshes. */
const PS_REUSE = Duration.seconds(2)
const DNS_REUSE = Duration.seconds(30)
/** The live stream sends a comment this often, so proxies and browsers keep it open. */
const KEEPALIVE = Duration.seconds(15)

/** The sign-in form: one token, of a sane size (a token file's are far shorter). */
const SignIn = Schema.Struct({ token: Schema.String.pipe(Schema.minLength(1, { message: () => "token: enter a token" }), Schema.maxLength(4096, { message: () => "token: longer than any token (4096 characters at most)" })) })
const SignOut = Schema.Struct({ csrf: Schema.String })

/** The identity service could not say whether a session's token holds (HttpAuthenticator): 503, the session kept. */
class IdentityUnavailable extends Data.TaggedError("IdentityUnavailable") {}

const sessionsEnded = Metric.counter("mcp_dashboard_sessions_ended", {
  incremental: true,
  description: "Dashboard sessions ended before their time, by why (token refused: taken out of the token file or expired)"
})

const failures = Metric.counter("mcp_dashboard_failures", {
  incremental: true,
  description: "Dashboard reads that failed (the page showed the error) or live streams ended by an error (the browser reconnects), by part"
})

const withHeaders = (response: HttpServerResponse.HttpServerResponse) => HttpServerResponse.setHeaders(response, SECURITY_HEADERS)
const htmlResponse = (body: { readonly text: string }, status = 200) => withHeaders(HttpServerResponse.text(body.text, { status, contentType: "text/html; charset=utf-8" }))
const redirect = (location: string, cookie?: string) =>
  withHeaders(HttpServerResponse.empty({ status: 303, headers: { location, ...(cookie === undefined ? {} : { "set-cookie": cookie }) } }))
const refused = (status: number, text: string) => withHeaders(HttpServerResponse.text(text, { status }))

const formOf = <A, I>(schema: Schema.Schema<A, I>) =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) =>
    Effect.flatMap(Effect.mapError(request.text, (e) => `the form could not be read: ${e.message}`), (text) =>
      Schema.decodeUnknown(schema)(Object.fromEntries(new URLSearchParams(text))).pipe(
        Effect.mapError((e) => e.message)
      )))

const make = (settings: Pick<MasterSettings, "fanoutTimeout" | "version">, dashboard: DashboardSettings) =>
  Effect.gen(function* () {
    const db = yield* MasterDb
    const supervisors = yield* NodeSupervisors
    const authenticator = yield* Authenticator
    const audit = yield* Audit.AuditLog
    const activity = yield* DeployActivityWatch
    const views = yield* FleetViews.handlers(settings)
    const nodeViews = yield* NodeManagement.handlers
    const sessions = Sessions.make({ ttlMs: Duration.toMillis(dashboard.sessionTtl), max: MAX_SESSIONS, maxPerPrincipal: MAX_SESSIONS_PER_PRINCIPAL })
    // Open live streams by session id.
    const liveStreams = new Map<string, number>()

    // Services are asked of every agent: one answer serves every open page for a moment.
    const services = yield* Effect.cachedWithTTL(views.Ps(), PS_REUSE)
    // A failed check leaves the column "not checked yet" (logged and counted), not the page blank.
    const dnsCheck = yield* Effect.cachedWithTTL(
      views.DnsCheck().pipe(
        Effect.map((rows) => new Map(rows.map((r) => [r.hostname, r] as const))),
        Effect.catchAllCause((cause) =>
          Effect.as(Effect.zipRight(Metric.increment(Metric.tagged(failures, "part", "dns check")), Effect.logWarning("dashboard: the DNS check of public hostnames failed", cause)), new Map()))
      ),
      DNS_REUSE
    )

    // Each node's heartbeat age, sampled for the chart, an hour's worth kept.
    const heartbeatAges = HeartbeatAges.make(HOUR_MS)
    // From the supervisors' memory, not NodesList: reading and decoding every node's row every
    // sample interval held a master of 10,000 nodes for a few hundred ms (bench/heartbeats.ts).
    // The database is read, for two columns, only for nodes not heard from since the start.
    const sample = Effect.gen(function* () {
      let unheard = false
      supervisors.eachNode((_, at) => {
        if (at === undefined) unheard = true
      })
      const stored = unheard ? yield* db.lastHeartbeats : new Map<string, string>()
      const now = yield* Clock.currentTimeMillis
      heartbeatAges.record(now, HeartbeatAges.agesAt(now, supervisors.eachNode, stored))
    }).pipe(Effect.catchAllCause((cause) => Effect.zipRight(Metric.increment(Metric.tagged(failures, "part", "heartbeat sample")), Effect.logWarning("dashboard: sampling heartbeat ages failed; tried again next interval", cause))))
    yield* Effect.forkScoped(Effect.repeat(sample, Schedule.spaced(dashboard.sampleInterval)))

    const picture = Effect.gen(function* () {
      const [nodes, fleet, hostnames, dns, deploys] = yield* Effect.all([nodeViews.NodesList(), services, views.EdgeRoutesList(), dnsCheck, activity.lastHour], { concurrency: "unbounded" })
      return {
        now: yield* Clock.currentTimeMillis,
        nodes: [...nodes].sort((a, b) => a.info.name.localeCompare(b.info.name)),
        services: fleet.services,
        unreachable: fleet.unreachable,
        hostnames,
        dns,
        heartbeats: heartbeatAges.chart(Pages.MAX_CHART_SERIES),
        deploys
      } satisfies Pages.FleetPicture
    })

    /** Sign-ins and sign-outs in the audit trail; one that cannot be written is logged and counted. */
    const recordAudit = (principal: Principal, rpc: string) =>
      Effect.catchAll(audit.record({ who: Audit.whoOf(principal), rpc, target: [], outcome: { _tag: "Ok" } }), (e) =>
        Effect.zipRight(Metric.increment(Metric.tagged(failures, "part", "audit")), Effect.logError(`dashboard: ${e.message}`)))

    /** The signed-in session of this request, its token still accepted; none otherwise. */
    const current = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const id = Sessions.sessionId(request.headers["cookie"])
      if (id === undefined) return Option.none()
      const session = yield* sessions.find(id)
      if (Option.isNone(session)) return Option.none()
      // The token is asked about again: one taken out of the token file ends the session now.
      const still = yield* Effect.either(authenticator.authenticate(session.value.token))
      if (Either.isLeft(still)) {
        // An identity service that cannot answer now is no verdict on the token: the session stays.
        if (still.left.reason === UNAVAILABLE_REASON) return yield* new IdentityUnavailable()
        yield* sessions.close(id)
        yield* Metric.increment(Metric.tagged(sessionsEnded, "why", "token refused"))
        yield* Effect.logInfo(`dashboard: the session of ${session.value.principal.name} ended: its token is no longer accepted (${still.left.reason})`)
        return Option.none()
      }
      return Option.some({ id, principal: still.right, csrf: session.value.csrf })
    })

    /**
     * A failed read answers with what failed (logged and counted, the details in the master's
     * log only: a guest reads this page), never a blank page.
     */
    const orProblem = (part: string, effect: Effect.Effect<HttpServerResponse.HttpServerResponse, unknown, HttpServerRequest.HttpServerRequest>) =>
      effect.pipe(
        Effect.catchAllCause((cause) =>
          Effect.gen(function* () {
            if (Option.exists(Cause.failureOption(cause), (e) => e instanceof IdentityUnavailable)) {
              return refused(503, "the identity service cannot check your token now; try again shortly")
            }
            yield* Metric.increment(Metric.tagged(failures, "part", part))
            yield* Effect.logWarning(`dashboard: reading the ${part} failed`, cause)
            return refused(500, `the ${part} could not be read; the master's log says why`)
          })))

    const page = orProblem("page", Effect.gen(function* () {
      const signedIn = yield* current
      if (Option.isNone(signedIn)) return htmlResponse(Pages.login(undefined))
      return htmlResponse(Pages.dashboard(signedIn.value.principal, yield* picture, signedIn.value.csrf))
    }))

    const parts = orProblem("fleet", Effect.gen(function* () {
      if (Option.isNone(yield* current)) return refused(401, "not signed in")
      return htmlResponse(Pages.parts(yield* picture))
    }))

    const signIn = Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!Sessions.sameOrigin(request.headers)) return refused(403, "sign-in refused: the form must be posted from this dashboard's own page")
      const form = yield* Effect.either(formOf(SignIn))
      if (Either.isLeft(form)) return htmlResponse(Pages.login(form.left), 400)
      const token = Redacted.make(form.right.token)
      const principal = yield* Effect.either(authenticator.authenticate(token))
      if (Either.isLeft(principal)) {
        yield* Metric.increment(Metric.tagged(Audit.unauthenticated, "rpc", "POST /ui/login"))
        yield* Effect.logInfo(`dashboard: sign-in refused (${principal.left.reason})`)
        return htmlResponse(Pages.login("That token is not accepted by this master."), 401)
      }
      // Daemons' and scrapers' tokens are for machines: a person signs in with a human token.
      if (principal.right.kind !== "human") {
        yield* Metric.increment(Metric.tagged(Audit.unauthenticated, "rpc", "POST /ui/login"))
        yield* Effect.logInfo(`dashboard: sign-in refused for ${principal.right.name}: a ${principal.right.kind} token`)
        return htmlResponse(Pages.login("That is a system token (for daemons and scrapers); sign in with a human token."), 403)
      }
      // A sign-in replaces the browser's earlier session, if it had one.
      const earlier = Sessions.sessionId(request.headers["cookie"])
      if (earlier !== undefined) yield* sessions.close(earlier)
      const id = yield* sessions.open(token, principal.right)
      yield* recordAudit(principal.right, "DashboardSignIn")
      return redirect("/ui", Sessions.cookie(id, Math.floor(Duration.toSeconds(dashboard.sessionTtl))))
    })

    const signOut = orProblem("session", Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      if (!Sessions.sameOrigin(request.headers)) return refused(403, "sign-out refused: the form must be posted from this dashboard's own page")
      const signedIn = yield* current
      if (Option.isNone(signedIn)) return redirect("/ui", Sessions.clearedCookie)
      const form = yield* Effect.either(formOf(SignOut))
      if (Either.isLeft(form) || form.right.csrf !== signedIn.value.csrf) return refused(403, "sign-out refused: the form is not this session's")
      yield* sessions.close(signedIn.value.id)
      yield* recordAudit(signedIn.value.principal, "DashboardSignOut")
      return redirect("/ui", Sessions.clearedCookie)
    }))

    /**
     * Server-sent events: the event log (resumed after Last-Event-ID), deploy steps and ends, a
     * keep-alive. Each stream holds a connection: at most LIVE_PER_SESSION per session and
     * LIVE_TOTAL in all, and each ends within LIVE_RECHECK of its session ending.
     */
    const live = orProblem("live stream", Effect.gen(function* () {
      const request = yield* HttpServerRequest.HttpServerRequest
      const signedIn = yield* current
      if (Option.isNone(signedIn)) return refused(401, "not signed in")
      const sessionId = signedIn.value.id
      const open = liveStreams.get(sessionId) ?? 0
      const total = [...liveStreams.values()].reduce((a, b) => a + b, 0)
      if (open >= LIVE_PER_SESSION || total >= LIVE_TOTAL) {
        yield* Metric.increment(Metric.tagged(failures, "part", "live stream refused"))
        return refused(429, `too many live views open (${open} for this session, ${total} in all; at most ${LIVE_PER_SESSION} and ${LIVE_TOTAL}): close a tab`)
      }
      liveStreams.set(sessionId, open + 1)
      const release = Effect.sync(() => {
        const n = (liveStreams.get(sessionId) ?? 1) - 1
        if (n <= 0) liveStreams.delete(sessionId)
        else liveStreams.set(sessionId, n)
      })
      // Ends once the session does (sign-out, expiry, its token taken away).
      const sessionEnded = Effect.repeat(
        Effect.flatMap(Effect.either(Effect.provideService(current, HttpServerRequest.HttpServerRequest, request)), (now) => (Either.isRight(now) && Option.isNone(now.right) ? Effect.fail("ended" as const) : Effect.void)),
        Schedule.spaced(LIVE_RECHECK)
      ).pipe(Effect.flip, Effect.asVoid)
      const resumeAfter = Number(request.headers["last-event-id"] ?? "")
      const after = Number.isSafeInteger(resumeAfter) && resumeAfter > 0 ? resumeAfter : 0
      const events = EventLog.stream((n, afterId) => db.events(n, Math.max(afterId, after), {}), { limit: 50, follow: true }).pipe(
        Stream.map((row) => `id: ${row.id}\nevent: event\ndata: ${JSON.stringify(EventLog.toFleetEvent(row, row.node))}\n\n`)
      )
      const deploys = Stream.unwrapScoped(Effect.map(activity.subscribe, (updates) => Stream.fromQueue(updates))).pipe(
        Stream.map((u) => `event: ${u._tag === "Step" ? "step" : "ended"}\ndata: ${JSON.stringify(u)}\n\n`)
      )
      const keepalive = Stream.as(Stream.fromSchedule(Schedule.spaced(KEEPALIVE)), ": keep-alive\n\n")
      const stream = Stream.mergeAll([Stream.make("retry: 2000\n\n"), events, deploys, keepalive], { concurrency: "unbounded" }).pipe(
        Stream.interruptWhen(sessionEnded),
        Stream.catchAllCause((cause) =>
          Stream.fromEffect(Effect.zipRight(Metric.increment(Metric.tagged(failures, "part", "live")), Effect.logWarning("dashboard: the live stream ended on an error; the browser reconnects", cause))).pipe(Stream.drain)),
        Stream.ensuring(release),
        Stream.encodeText
      )
      return withHeaders(HttpServerResponse.stream(stream, { contentType: "text/event-stream; charset=utf-8" }))
    }))

    const asset = (text: string, contentType: string) => Effect.succeed(withHeaders(HttpServerResponse.text(text, { contentType })))

    return {
      routes: [
        { path: "/", method: "GET", app: Effect.succeed(redirect("/ui")) },
        { path: "/ui", method: "GET", app: page },
        { path: "/ui/parts", method: "GET", app: parts },
        { path: "/ui/live", method: "GET", app: live },
        { path: "/ui/app.js", method: "GET", app: asset(Assets.script, "text/javascript; charset=utf-8") },
        { path: "/ui/app.css", method: "GET", app: asset(Assets.stylesheet, "text/css; charset=utf-8") },
        { path: "/ui/login", method: "POST", app: signIn },
        { path: "/ui/logout", method: "POST", app: signOut }
      ] satisfies ReadonlyArray<RpcRoute>
    }
  })

/** The deploys as they happen (DeployActivity), shared by the deploy handler and the dashboard. */
export class DeployActivityWatch extends Context.Tag("@mcp/master/DeployActivityWatch")<DeployActivityWatch, DeployActivity.DeployWatch>() {
  static readonly layer = Layer.effect(DeployActivityWatch, DeployActivity.make)
}

export class Dashboard extends Context.Tag("@mcp/master/Dashboard")<Dashboard, { readonly routes: ReadonlyArray<RpcRoute> }>() {}

export const layer = (settings: Pick<MasterSettings, "fanoutTimeout" | "version">, dashboard: DashboardSettings) => Layer.scoped(Dashboard, make(settings, dashboard))
