/**
 * How `mcp events` prints one event. Events arrive as a stream (with --follow, for as long as the
 * command runs), so each is a line of its own rather than a row of a table sized to all of them.
 */
import * as Events from "@mcp/domain/Events"

/**
 * `at  node  kind  service  who  message`: `who` is the caller an audit event names (`-` for the
 * daemons' own events), so the log reads as who did what. --json prints the event as it came,
 * `who` included as an object.
 */
export const formatEvent = (e: Events.FleetEvent, json: boolean): string =>
  json
    ? JSON.stringify(e)
    : `${e.at}  ${e.node}  ${e.kind.padEnd(7)} ${e.service ?? "-"}  ${e.who === undefined ? "-" : Events.formatWho(e.who)}  ${e.message}`
