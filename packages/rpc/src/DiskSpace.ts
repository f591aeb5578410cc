/**
 * A full disk, told the way an operator can act on it: which directory, how much is free. SQLite
 * reports one as SQLITE_FULL ("database or disk is full") and the system as ENOSPC; either may be
 * a failure's own code or that of a failure it was caused by.
 */
import { existsSync, statfsSync } from "node:fs"
import { dirname } from "node:path"

const FULL = new Set(["SQLITE_FULL", "ENOSPC"])

/** The failure and those it was caused by, outermost first (a chain of `cause`s, at most 10). */
const causes = (error: unknown): ReadonlyArray<object> => {
  const chain: Array<object> = []
  for (let e = error; typeof e === "object" && e !== null && chain.length < 10; e = (e as { readonly cause?: unknown }).cause) chain.push(e)
  return chain
}

/** Whether `error`, or a failure it was caused by, is a full disk. */
export const isDiskFull = (error: unknown): boolean =>
  causes(error).some((e) => {
    const code = (e as { readonly code?: unknown }).code
    return typeof code === "string" && FULL.has(code)
  })

/** The file a failure names (Node's file system errors carry theirs), if any. */
export const pathOf = (error: unknown): string | undefined => {
  for (const e of causes(error)) {
    const path = (e as { readonly path?: unknown }).path
    if (typeof path === "string") return path
  }
  return undefined
}

const size = (n: number) =>
  n < 1024 ? `${n} B` : n < 1024 ** 2 ? `${(n / 1024).toFixed(1)} KiB` : n < 1024 ** 3 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${(n / 1024 ** 3).toFixed(1)} GiB`

/**
 * "12.0 KiB free of 4.0 MiB" for the file system holding `path` (what an unprivileged writer may
 * use); `path` may be a file the failed write did not leave, then its directory is asked.
 */
export const freeSpace = (path: string): string => {
  try {
    const s = existsSync(path) ? statfsSync(path) : statfsSync(dirname(path))
    return `${size(s.bavail * s.bsize)} free of ${size(s.blocks * s.bsize)}`
  } catch (e) {
    return `free space unknown: ${e instanceof Error ? e.message : String(e)}`
  }
}

/**
 * The reason to give for a full disk: the directory (the file the failure names, else `dir`), its
 * free space, what could not be written, and the fix.
 */
export const diskFullReason = (error: unknown, dir: string, what: string): string => {
  const path = pathOf(error) ?? dir
  return `the disk holding ${path} is full (${freeSpace(path)}): ${what} could not be written; free space there, then try again`
}

/**
 * The reason for a full disk when `error` is one, else undefined: for a write to `file` (a failed
 * write names no file of its own, unlike a failed open).
 */
export const fullDiskReason = (error: unknown, file: string): string | undefined =>
  isDiskFull(error) ? diskFullReason(error, file, file) : undefined
