import { describe, expect, it } from "@effect/vitest"
import { imageVersion, parseImage } from "../src/Image.js"

describe("image references", () => {
  it("explains each reference that cannot be deployed", () => {
    expect(parseImage("Not An Image")).toBe(`image "Not An Image" is not a valid reference; write it as registry/name:tag, e.g. "localhost/app:v1.0.0"`)
    expect(parseImage("localhost/app")).toBe(`image "localhost/app" has no tag; pin a version, e.g. "localhost/app:v1.0.0"`)
    expect(parseImage("localhost/app:latest")).toBe(`image "localhost/app:latest" uses ":latest"; pin a version, e.g. "localhost/app:v1.0.0"`)
    expect(parseImage("registry:5000/team/app:v1.2.0")).toEqual({ name: "registry:5000/team/app", repository: "app", tag: "v1.2.0" })
  })

  it("the version of a running image is its tag, or unknown", () => {
    expect(imageVersion("localhost/app:v1.2.0")).toBe("v1.2.0")
    expect(imageVersion("Not An Image")).toBe("unknown")
    expect(imageVersion("localhost/app")).toBe("unknown")
  })
})
