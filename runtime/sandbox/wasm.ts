/**
 * The QuickJS Wasm binary, compiled once per process and reused for every module instance
 * (one per policy, and a fresh one after each crash).
 *
 * The .wasm file is imported `with { type: "file" }` so `bun build --compile` embeds it in
 * the single executable: the variant's own loader looks for the file next to its .mjs,
 * which does not exist inside a compiled binary (reference/sandbox.md).
 */
// Brings the declaration of the `/wasm` import into a consumer's type check too (svmrt is imported as source).
/// <reference path="./wasm-file.d.ts" />
import RELEASE_SYNC from "@jitl/quickjs-wasmfile-release-sync";
import releaseWasmPath from "@jitl/quickjs-wasmfile-release-sync/wasm" with { type: "file" };
import { type QuickJSSyncVariant, newVariant } from "quickjs-emscripten-core";

let compiledRelease: WebAssembly.Module | undefined;

/** Compile (once) and return the release QuickJS Wasm module. */
export async function releaseWasmModule(): Promise<WebAssembly.Module> {
  if (!compiledRelease) {
    const bytes = await Bun.file(releaseWasmPath).arrayBuffer();
    compiledRelease = new WebAssembly.Module(bytes);
  }
  return compiledRelease;
}

/** The release sync variant bound to the cached compiled module: instancing it compiles nothing. */
export async function releaseVariant(): Promise<QuickJSSyncVariant> {
  return newVariant(RELEASE_SYNC, { wasmModule: await releaseWasmModule() });
}
