/**
 * The platform services the real adapters and the health checks need (files, processes, HTTP),
 * for tests that build them. The HTTP client runs on the process's undici dispatcher, which
 * outlives any one effect: an adapter made inside `Effect.provide(layerPlatform)` keeps a
 * working client after that effect ends.
 */
import { NodeCommandExecutor, NodeFileSystem, NodeHttpClient } from "@effect/platform-node"
import { Layer } from "effect"

export const layerPlatform = Layer.mergeAll(
  NodeCommandExecutor.layer,
  NodeHttpClient.layerUndiciWithoutDispatcher.pipe(Layer.provide(NodeHttpClient.dispatcherLayerGlobal))
).pipe(Layer.provideMerge(NodeFileSystem.layer))
