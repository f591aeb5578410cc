// Moves TypeScript modules and rewrites every relative import of them (and the moved files' own
// relative imports) across the repository. Used for restructuring; keeps `git mv` history.
//
//   node scripts/move-modules.mjs old/path/A.ts=new/path/A.ts [more pairs...]
import { execFileSync } from "node:child_process"
import { readFileSync, writeFileSync, mkdirSync } from "node:fs"
import { dirname, relative, resolve } from "node:path"

const repo = resolve(dirname(new URL(import.meta.url).pathname), "..")
const moves = new Map(
  process.argv.slice(2).map((pair) => {
    const [from, to] = pair.split("=")
    if (!from || !to) throw new Error(`expected old=new, got ${pair}`)
    return [resolve(repo, from), resolve(repo, to)]
  })
)
if (moves.size === 0) throw new Error("nothing to move")

const files = execFileSync("git", ["ls-files", "*.ts", "*.mts", "*.mjs", "*.js"], { cwd: repo, encoding: "utf8" })
  .split("\n")
  .filter((f) => f !== "" && !f.includes("node_modules/"))
  .map((f) => resolve(repo, f))

const newPath = (file) => moves.get(file) ?? file
const specifierFor = (fromFile, target) => {
  let spec = relative(dirname(fromFile), target).replace(/\.ts$/, ".js")
  if (!spec.startsWith(".")) spec = `./${spec}`
  return spec
}

// Rewrite imports first (paths resolve against where each file is now), then move.
const pattern = /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)(["'])/g
let rewritten = 0
for (const file of files) {
  const text = readFileSync(file, "utf8")
  const next = text.replace(pattern, (whole, head, spec, tail) => {
    const target = resolve(dirname(file), spec).replace(/\.js$/, ".ts")
    if (!moves.has(target) && !moves.has(file)) return whole
    const wanted = specifierFor(newPath(file), newPath(target))
    return wanted === spec ? whole : `${head}${wanted}${tail}`
  })
  if (next !== text) {
    writeFileSync(file, next)
    rewritten++
  }
}
for (const [from, to] of moves) {
  mkdirSync(dirname(to), { recursive: true })
  execFileSync("git", ["mv", from, to], { cwd: repo })
}
console.log(`moved ${moves.size} module(s), rewrote imports in ${rewritten} file(s)`)
