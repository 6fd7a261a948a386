// Sluice for AssemblyScript: a handler for sluice:plugin@0.1.0 speaking the component model's
// canonical ABI itself (there is no wit-bindgen for AssemblyScript).
//
// The entry file imports from here, re-exports the core exports and registers its functions:
//
//   import { Message, Outputs, HandlerError, register } from "./sluice";
//   export * from "./sluice/exports";
//   register(handle);

export { Bytes, Config, Message } from "./message";
export { ErrorKind, HandlerError, Headers, Outputs, fatal, invalid, transient } from "./output";
export { Level, count, log } from "./host";
export { HandleFn, InitFn, register } from "./register";
