/**
 * Giving the event loop back to I/O in the middle of long work. Effect's own yield (the fiber
 * scheduler's microtask; a setTimeout 0 only after 2,048 of them in a row) lets other fibers run
 * but comes before Node reads the sockets; a heartbeat that arrived during the work waits for the
 * whole of it unless the work steps aside for a macrotask turn now and then.
 */
import { Effect } from "effect"

/** Resumes once Node has served the I/O that is waiting (a setImmediate turn, after the poll phase). */
export const ioTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  const turn = setImmediate(() => resume(Effect.void))
  return Effect.sync(() => clearImmediate(turn))
})

/** `f` for each of `items` in order, with an I/O turn between two. */
export const inTurns = <A, E, R>(items: ReadonlyArray<A>, f: (item: A, index: number) => Effect.Effect<void, E, R>): Effect.Effect<void, E, R> =>
  Effect.forEach(items, (item, i) => (i === 0 ? f(item, i) : Effect.zipRight(ioTurn, f(item, i))), { discard: true })
