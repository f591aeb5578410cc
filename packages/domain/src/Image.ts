/**
 * Container image references. MCP only deploys pinned images: the tag is what `mcp status`
 * reports as the running version, so an untagged or `:latest` image is refused.
 */
import { FastCheck, Schema } from "effect"

export interface ImageReference {
  /** Everything before the tag: registry, path and repository, e.g. `registry:5000/team/app`. */
  readonly name: string
  /** The repository, the last path segment: `app`. It names the `[build.images]` entry. */
  readonly repository: string
  readonly tag: string
}

const REFERENCE = /^(?<name>[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)(?::(?<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@sha256:[a-f0-9]{64})?$/

/** Parses `name[:tag]`, or explains why the reference cannot be deployed. */
export const parseImage = (ref: string): ImageReference | string => {
  const m = REFERENCE.exec(ref)
  if (m === null || m.groups === undefined) {
    return `image "${ref}" is not a valid reference; write it as registry/name:tag, e.g. "localhost/app:v1.0.0"`
  }
  const name = m.groups["name"]!
  const tag = m.groups["tag"]
  if (tag === undefined) return `image "${ref}" has no tag; pin a version, e.g. "${name}:v1.0.0"`
  if (tag === "latest") return `image "${ref}" uses ":latest"; pin a version, e.g. "${name}:v1.0.0"`
  const repository = name.slice(name.lastIndexOf("/") + 1).replace(/:[0-9]+$/, "")
  return { name, repository, tag }
}

export const ImageRef = Schema.String.pipe(
  Schema.filter((s) => {
    const parsed = parseImage(s)
    return typeof parsed === "string" ? parsed : true
  }),
  Schema.annotations({
    identifier: "ImageRef",
    arbitrary: () => (fc: typeof FastCheck) =>
      fc
        .tuple(
          fc.constantFrom("localhost", "registry.example.com:5000", "mcr.svc.example.net:8443"),
          fc.stringMatching(/^[a-z][a-z0-9]{0,8}$/),
          fc.tuple(fc.nat(20), fc.nat(20), fc.nat(20))
        )
        .map(([registry, repo, [a, b, c]]) => `${registry}/${repo}:v${a}.${b}.${c}`)
  })
)

/** The version MCP reports for a running component: its image tag. */
export const imageVersion = (ref: string): string => {
  const parsed = parseImage(ref)
  return typeof parsed === "string" ? "unknown" : parsed.tag
}
