/**
 * Volume entries, `host-path:container-path[:options]`: both paths absolute and free of `..`, the
 * options a bind mount accepts (at most one of each kind), and every problem reported at the
 * entry's own path (`components[0].volumes[1]`) with the fix in the message.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, FastCheck as fc } from "effect"
import { VOLUME_OPTIONS, volumeProblem } from "../src/ServiceDefinition.js"
import { decodeDefinitionToml, type Problem } from "../src/Validation.js"

const ctx = { internalZone: "svc.mcp.internal" }

/** The problems of a one-component service whose volumes are `volumes`. */
const problemsWith = (...volumes: ReadonlyArray<string>): ReadonlyArray<Problem> => {
  const toml = `name = "vol"
[[components]]
name = "api"
image = "localhost/vol:v1.0.0"
volumes = ${JSON.stringify(volumes)}
`
  const result = decodeDefinitionToml(toml, ctx)
  return Either.isLeft(result) ? result.left : []
}

const GOOD = "/srv/vol:/srv/vol"

describe("volume container paths", () => {
  it("a relative container path is rejected at the entry's path, with an absolute path to use instead", () => {
    expect(problemsWith(GOOD, "/srv/vol/data:var/lib/vol")).toEqual([{
      path: "components[0].volumes[1]",
      message: `volume "/srv/vol/data:var/lib/vol" has a relative container path "var/lib/vol"; use an absolute path such as "/var/lib/vol"`
    }])
    expect(volumeProblem("/srv/vol:./data")).toContain(`relative container path "./data"; use an absolute path such as "/data"`)
    expect(volumeProblem("/srv/vol:../data")).toContain(`use an absolute path such as "/data"`)
    expect(volumeProblem("/srv/vol:")).toContain(`relative container path ""`)
  })

  it("a container path with \"..\" is rejected at the entry's path, asking to name the directory", () => {
    expect(problemsWith("/srv/vol/logs:/srv/vol/../../var/log", GOOD)).toEqual([{
      path: "components[0].volumes[0]",
      message: `volume "/srv/vol/logs:/srv/vol/../../var/log" has ".." in its container path; name the directory directly`
    }])
    expect(volumeProblem("/srv/vol:/..")).toContain(`".." in its container path`)
    // Dots inside a name are not a climb.
    expect(volumeProblem("/srv/vol:/srv/..vol../x")).toBeUndefined()
  })

  it("host paths are checked before container paths", () => {
    expect(volumeProblem("data:var/data")).toContain("relative host path")
    expect(volumeProblem("/srv/../etc:../data")).toContain(`climbs out of its host path`)
  })

  it("too many or too few \":\" fields are rejected with the format and an example", () => {
    const [problem, ...rest] = problemsWith("/srv/vol:/srv/vol:ro:Z")
    expect(rest).toEqual([])
    expect(problem!.path).toBe("components[0].volumes[0]")
    expect(problem!.message).toBe(
      `volume "/srv/vol:/srv/vol:ro:Z" must be "host-path:container-path" or "host-path:container-path:options", e.g. "/srv/app:/srv/app:ro"; it has 4 ":"-separated fields`
    )
    expect(volumeProblem("/srv/vol")).toContain(`must be "host-path:container-path"`)
  })
})

describe("volume options", () => {
  it("accepts each option alone and sensible combinations", () => {
    const accepted = [
      "ro", "rw", "z", "Z", "private", "rprivate", "shared", "rshared", "slave", "rslave", "U",
      "ro,Z", "Z,ro", "rw,z", "ro,z,rslave", "rshared,rw,Z"
    ]
    for (const options of accepted) expect(volumeProblem(`${GOOD}:${options}`), options).toBeUndefined()
    expect(problemsWith(`${GOOD}:ro,Z`, "/srv/vol/cache:/cache:rw,z,private")).toEqual([])
  })

  it("an unknown option is rejected at the entry's path, naming the option and every allowed value", () => {
    const problems = problemsWith(GOOD, "/srv/vol/cfg:/etc/vol:readonly")
    expect(problems).toHaveLength(1)
    expect(problems[0]!.path).toBe("components[0].volumes[1]")
    const message = problems[0]!.message
    expect(message).toContain(`volume "/srv/vol/cfg:/etc/vol:readonly" has an unknown option "readonly"`)
    for (const option of Object.values(VOLUME_OPTIONS).flat()) expect(message).toContain(`"${option}"`)
    expect(message).toContain(`e.g. "/srv/app:/srv/app:ro,Z"`)
    // Case matters ("Z" is not "z", "RO" is not "ro"), and Podman-only or --mount spellings are refused.
    for (const option of ["RO", "Rw", "u", "O", "nocopy", "noexec", "bind", "delegated", "ro Z", " ro"]) {
      expect(volumeProblem(`${GOOD}:${option}`), option).toContain(`unknown option "${option.split(",")[0]}"`)
    }
    expect(volumeProblem(`${GOOD}:ro,bogus`)).toContain(`unknown option "bogus"`)
  })

  it("empty options are rejected: a trailing \":\" or an empty item", () => {
    expect(volumeProblem(`${GOOD}:`)).toContain(`ends with an empty options field; drop the trailing ":"`)
    expect(volumeProblem(`${GOOD}:ro,,Z`)).toContain(`has an empty option in "ro,,Z"`)
    expect(volumeProblem(`${GOOD}:ro,`)).toContain(`has an empty option in "ro,"`)
  })

  it("contradictory options are rejected, naming both and what they both set", () => {
    const problems = problemsWith(`${GOOD}:ro,rw`)
    expect(problems).toEqual([{
      path: "components[0].volumes[0]",
      message: `volume "/srv/vol:/srv/vol:ro,rw" has contradictory options "ro" and "rw" (both set the access); keep one of them`
    }])
    expect(volumeProblem(`${GOOD}:rw,Z,ro`)).toContain(`contradictory options "rw" and "ro"`)
    expect(volumeProblem(`${GOOD}:z,Z`)).toContain(`contradictory options "z" and "Z" (both set the SELinux label)`)
    expect(volumeProblem(`${GOOD}:shared,rslave`)).toContain(`contradictory options "shared" and "rslave" (both set the propagation)`)
    expect(volumeProblem(`${GOOD}:ro,ro`)).toContain(`repeats the option "ro"; give it once`)
  })

  const kinds = Object.values(VOLUME_OPTIONS)

  it.prop(
    "any choice of at most one option per kind, in any order, is accepted",
    [fc.tuple(...kinds.map((options) => fc.option(fc.constantFrom(...options), { nil: undefined }))).chain((picked) => {
      const chosen = picked.filter((o): o is NonNullable<typeof o> => o !== undefined)
      // All of them, in any order; none at all means no options field, tested elsewhere.
      return chosen.length === 0 ? fc.constant(["ro"]) : fc.shuffledSubarray(chosen, { minLength: chosen.length })
    })],
    ([options]) => {
      expect(volumeProblem(`${GOOD}:${options.join(",")}`)).toBeUndefined()
    }
  )

  it.prop(
    "two options of one kind are rejected, and so is any word that is not an option",
    [
      fc.integer({ min: 0, max: kinds.length - 1 }).chain((k) =>
        fc.tuple(fc.constantFrom(...kinds[k]!), fc.constantFrom(...kinds[k]!), fc.constantFrom(...kinds.flat()))),
      fc.stringMatching(/^[A-Za-z]{1,8}$/).filter((w) => !kinds.flat().includes(w as never))
    ],
    ([[a, b, other], word]) => {
      expect(volumeProblem(`${GOOD}:${[other, a, b].join(",")}`)).toMatch(/contradictory options|repeats the option/)
      expect(volumeProblem(`${GOOD}:${a},${word}`)).toContain(`unknown option "${word}"`)
    }
  )
})
