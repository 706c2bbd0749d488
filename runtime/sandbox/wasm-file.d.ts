// A .wasm file imported `with { type: "file" }` is its path (embedded by `bun build --compile`).
declare module "@jitl/quickjs-wasmfile-release-sync/wasm" {
  const path: string;
  export default path;
}
declare module "@jitl/quickjs-wasmfile-debug-sync/wasm" {
  const path: string;
  export default path;
}
