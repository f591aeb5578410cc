/**
 * Deploy step "pull": every image the service runs is present before anything changes. Nothing
 * to undo (an image pulled for nothing is harmless).
 */
import { Effect } from "effect"
import { ContainerRuntime } from "../../engine/ContainerRuntime.js"
import { Saga } from "@mcp/rpc"

export const step = (images: ReadonlyArray<string>) =>
  Saga.plain("pull", Effect.flatMap(ContainerRuntime, (runtime) => Effect.forEach(images, (image) => runtime.ensureImage(image), { discard: true })))
