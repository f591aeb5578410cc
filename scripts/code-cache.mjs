/**
 * How dist/mcp.mjs loads the command tree: the CLI's commands are one CommonJS bundle,
 * dist/<program>.cjs (packages/cli/src/commands/Root.ts and all it imports), run from a V8 code
 * cache so a command does not pay to compile about 1.4 MB of JavaScript every time it starts
 * (ES modules have no code cache in Node 20; a script compiled through vm.Script does).
 * scripts/build.mjs bundles this file into dist/mcp.mjs in place of main.ts's import() of
 * Root.ts; `mcp --version` answers before it runs, so it reads neither bundle nor cache.
 *
 * The cache:
 *   dist/<program>.cjs.cache   written by the build (a warm run: it holds the functions that run
 *                              compiled, not only the top level), used as it is;
 *   $XDG_CACHE_HOME/mcp/...    (~/.cache/mcp/) written after a run whose cache V8 rejected or
 *                              that had none (another Node, or V8 flags that change the code),
 *                              then used first.
 *
 * V8 checks a cache against its own version, its flags and the source's length, and rejects one
 * that does not match: the script then compiles from source as usual, so a rejected cache costs
 * time, never correctness. V8 does not compare the source's content: the user cache's name holds
 * the bundle's size and modification time, so a rebuilt bundle never meets an old cache.
 *
 * MCP_BUILD_CODE_CACHE=1 (the build's warm run only) writes dist/<program>.cjs.cache at exit.
 */
import { mkdirSync, readFileSync, renameSync, statSync, writeFileSync } from "node:fs"
import { createRequire } from "node:module"
import { homedir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { Script } from "node:vm"

/** The cache file for this bundle, this Node and these flags in the user's cache directory. */
const userCache = (program, file) => {
  const { size, mtimeMs } = statSync(file)
  // V8 rejects a cache made under other V8 flags; with them in the name, runs with and without
  // such flags each keep their own cache instead of overwriting each other's.
  const flags = [...process.execArgv, process.env.NODE_OPTIONS ?? ""].join(" ")
  let hash = 0x811c9dc5
  for (let i = 0; i < flags.length; i++) hash = Math.imul(hash ^ flags.charCodeAt(i), 0x01000193) >>> 0
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache")
  return join(base, "mcp", `${program}-${process.version}-${process.arch}-${size}-${Math.floor(mtimeMs)}-${hash.toString(16)}.cache`)
}

/** The file's bytes, or undefined when it cannot be read (no cache yet: compile from source). */
const readOptional = (path) => {
  try {
    return readFileSync(path)
  } catch {
    return undefined
  }
}

/**
 * Runs dist/<program>.cjs (beside `entryUrl`, the import.meta.url of dist/<program>.mjs) from
 * its code cache and returns its exports.
 */
export const runCached = (entryUrl, program) => {
  const dir = dirname(fileURLToPath(entryUrl))
  const file = join(dir, `${program}.cjs`)
  const builtCache = join(dir, `${program}.cjs.cache`)
  // Read as latin1: esbuild writes the bundle in ASCII (non-ASCII characters become escapes), so
  // the text is the same, without UTF-8 decoding (about 1.5 ms for this file, every command).
  const source = readFileSync(file, "latin1")

  const building = process.env.MCP_BUILD_CODE_CACHE === "1"
  const userPath = building ? undefined : userCache(program, file)
  // The user's cache exists only where the build's was rejected before: it comes first.
  const cachedData = building ? undefined : readOptional(userPath) ?? readOptional(builtCache)

  // The same wrapper Node puts around a CommonJS module, so the bundle sees what it would as one.
  const script = new Script(`(function (exports, require, module, __filename, __dirname) {${source}\n})`, {
    filename: file,
    ...(cachedData === undefined ? {} : { cachedData })
  })

  if (building || cachedData === undefined || script.cachedDataRejected === true) {
    // At exit, not now: createCachedData then includes every function the run compiled.
    const target = building ? builtCache : userPath
    process.on("exit", () => {
      try {
        mkdirSync(dirname(target), { recursive: true })
        const temporary = `${target}.${process.pid}.tmp`
        writeFileSync(temporary, script.createCachedData())
        // Renamed into place: a concurrent run reads the old cache or the new one, never half of one.
        renameSync(temporary, target)
      } catch (e) {
        // The command's own outcome stands (only the next start is slower), so a warning; the
        // build's warm run, whose whole point is the cache, fails.
        process.stderr.write(`${program}: cannot write the code cache ${target}: ${e instanceof Error ? e.message : String(e)}\n`)
        if (building) process.exitCode = 1
      }
    })
  }

  const module = { exports: {} }
  script.runInThisContext()(module.exports, createRequire(file), module, file, dir)
  return module.exports
}
