/**
 * Trusted guest code, evaluated in every policy context before the plugin. It installs the
 * entry points the host calls (`globalThis.__svmrt`), a capped console, a seeded
 * Math.random, a Proxy wrapper that marks proxies as non-data, and the strict serializer
 * that turns plugin results into JSON text. It captures every intrinsic it uses before
 * plugin code runs, so a plugin that patches globals can only corrupt its own answers,
 * and the host re-validates those anyway.
 *
 * Wire protocol of `call` / `batch` / `settled` (all strings, except that `batch` may answer
 * an ArrayBuffer: the adapter's Float64Array; the channel's `run` answers a number and leaves
 * a wire string, when there is one, in `takeWire`):
 *   "R" + json                      a result
 *   "E" + reason + "\n" + message   the plugin failed (reason: exception, invalid-output, ...)
 *   "P"                             a promise is pending: drain jobs, then call settled()
 */
/** Deepest JSON.parse input accepted in the sandbox. */
export const JSON_DEPTH_MAX = 256;

/** Longest array-like the generic Array methods accept in the sandbox (16 Mi elements). */
export const ARRAY_LENGTH_MAX = 2 ** 24;

export const PRELUDE_SOURCE = String.raw`
(function () {
  "use strict";
  const G = globalThis;
  const apply = Reflect.apply, ownKeys = Reflect.ownKeys, defineProperty = Object.defineProperty;
  const getDesc = Object.getOwnPropertyDescriptor, getProto = Object.getPrototypeOf, freeze = Object.freeze;
  const isArray = Array.isArray, OP = Object.prototype, AP = Array.prototype;
  const jsonParse = JSON.parse, jsonString = JSON.stringify, toStr = String;
  const isInteger = Number.isInteger, isFiniteNum = Number.isFinite, floor = Math.floor, imul = Math.imul;
  const RealPromise = Promise, promiseResolve = Promise.resolve, promiseThen = Promise.prototype.then;
  const F64 = Float64Array, AB = ArrayBuffer;
  const WS = WeakSet, wsAdd = WeakSet.prototype.add, wsHas = WeakSet.prototype.has;
  const hasOwn = Object.hasOwn, IE = G.InternalError, RangeErr = RangeError;
  // Own data property (not a getter, not inherited from a patched Object.prototype).
  const isData = function (d) { return d !== undefined && hasOwn(d, "value"); };
  const bufferOf = getDesc(getProto(F64.prototype), "buffer").get;
  const NO_ARGS = freeze([]);

  // Native loops over an array-like's length never poll the interrupt handler, so a
  // {length: 2**53 - 1} would hold the host thread for years: the generic Array methods
  // refuse lengths no array in this heap can have.
  const ARRAY_LENGTH_MAX = ${ARRAY_LENGTH_MAX};
  const GUARDED = ["at", "concat", "copyWithin", "every", "fill", "filter", "find", "findIndex", "findLast",
    "findLastIndex", "flat", "flatMap", "forEach", "includes", "indexOf", "join", "lastIndexOf", "map", "pop",
    "push", "reduce", "reduceRight", "reverse", "shift", "slice", "some", "sort", "splice", "toLocaleString",
    "toReversed", "toSorted", "toSpliced", "toString", "unshift", "with", "keys", "values", "entries"];
  for (let i = 0; i < GUARDED.length; i++) {
    const name = GUARDED[i], d = getDesc(AP, name);
    if (d === undefined || typeof d.value !== "function") continue;
    const orig = d.value;
    const guarded = {
      [name]: function () {
        if (this !== null && this !== undefined) {
          const len = this.length;
          if (typeof len === "number" && len > ARRAY_LENGTH_MAX) {
            throw new RangeErr("Array.prototype." + name + " on a length of " + len + ": the sandbox refuses lengths over " + ARRAY_LENGTH_MAX);
          }
        }
        return apply(orig, this, arguments);
      },
    }[name];
    defineProperty(AP, name, { value: guarded, writable: true, configurable: true, enumerable: false });
  }

  // Proxies are not data: remember every proxy the plugin makes.
  const proxies = new WS();
  const RealProxy = G.Proxy;
  if (RealProxy) {
    const P = function Proxy(target, handler) {
      if (new.target === undefined) throw new TypeError("Constructor Proxy requires 'new'");
      const p = new RealProxy(target, handler);
      apply(wsAdd, proxies, [p]);
      return p;
    };
    P.revocable = function revocable(target, handler) {
      const r = RealProxy.revocable(target, handler);
      apply(wsAdd, proxies, [r.proxy]);
      return r;
    };
    defineProperty(G, "Proxy", { value: P, writable: true, configurable: true, enumerable: false });
  }

  // No code from strings: eval and the Function constructors (reached through any
  // function's .constructor) would let a plugin feed QuickJS's parser input nested deep
  // enough to exhaust the host stack before QuickJS's own check trips, and plugins have
  // no use for them.
  const noEval = function () { throw new TypeError("code from strings is not available in the sandbox"); };
  defineProperty(G, "eval", { value: noEval, writable: false, configurable: false, enumerable: false });
  const ctorHosts = [function () {}, async function () {}, function* () {}, async function* () {}];
  for (let i = 0; i < ctorHosts.length; i++) {
    defineProperty(getProto(ctorHosts[i]), "constructor", { value: noEval, writable: false, configurable: false, enumerable: false });
  }
  defineProperty(G, "Function", { value: noEval, writable: false, configurable: false, enumerable: false });

  // JSON.parse recursion has the same host-stack problem: refuse nesting deeper than
  // JSON_DEPTH_MAX (only texts long enough to nest that deep are scanned).
  const JSON_DEPTH_MAX = ${JSON_DEPTH_MAX};
  const charCodeAt = String.prototype.charCodeAt;
  const guardedParse = function parse(text, reviver) {
    const t = toStr(text);
    if (t.length > JSON_DEPTH_MAX * 2) {
      let depth = 0, inString = false;
      for (let i = 0; i < t.length; i++) {
        const c = apply(charCodeAt, t, [i]);
        if (inString) {
          if (c === 92) i++; // backslash: skip the escaped character
          else if (c === 34) inString = false;
        } else if (c === 34) inString = true;
        else if (c === 91 || c === 123) {
          if (++depth > JSON_DEPTH_MAX) throw new RangeErr("JSON nested deeper than " + JSON_DEPTH_MAX + " levels");
        } else if (c === 93 || c === 125) depth--;
      }
    }
    return apply(jsonParse, JSON, [t, reviver]);
  };
  defineProperty(JSON, "parse", { value: guardedParse, writable: true, configurable: true, enumerable: false });

  // Nothing may detach or move an ArrayBuffer's bytes: the host writes the shared-memory
  // channel's buffers in place (see channel below), and plugins have no use for these.
  const ABP = AB.prototype;
  const DETACHING = ["transfer", "transferToFixedLength", "resize"];
  for (let i = 0; i < DETACHING.length; i++) delete ABP[DETACHING[i]];

  // Deterministic randomness: xorshift32 seeded by the host.
  let rngState = 1;
  const random = function random() {
    let x = rngState;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    rngState = x | 0;
    return (x >>> 0) / 4294967296;
  };
  defineProperty(Math, "random", { value: random, writable: true, configurable: true, enumerable: false });

  // Console with a byte cap per call. logDirty: the current call logged (or dropped) a line,
  // so the next call starts with a fresh log; a call that finds it false resets nothing.
  let logCap = 0, logUsed = 0, logDropped = 0, logLines = [], logDirty = false;
  const describe = function (v) {
    const t = typeof v;
    if (t === "string") return v;
    if (t === "number" || t === "boolean" || t === "bigint" || v === null || v === undefined) return toStr(v);
    if (t === "symbol") return "Symbol()";
    if (t === "function") return "[function]";
    try { const s = jsonString(v); return typeof s === "string" ? s : "[object]"; } catch (e) { return "[object]"; }
  };
  const logAt = function (level) {
    return function () {
      logDirty = true;
      if (logUsed >= logCap) { logDropped++; return; }
      let line = level;
      for (let i = 0; i < arguments.length && line.length < logCap; i++) line += " " + describe(arguments[i]);
      if (logUsed + line.length > logCap) { line = line.slice(0, logCap - logUsed); logDropped++; }
      logUsed += line.length;
      logLines[logLines.length] = line;
    };
  };
  defineProperty(G, "console", {
    value: freeze({ log: logAt("log"), info: logAt("info"), warn: logAt("warn"), error: logAt("error"), debug: logAt("debug") }),
    writable: true, configurable: true, enumerable: false,
  });

  // Strict serializer: plain data only, bounded depth and size.
  const DEPTH_MAX = 64;
  let outCap = 0, failReason = "", failMsg = "";
  const fail = function (reason, msg) { if (!failReason) { failReason = reason; failMsg = msg; } return null; };
  const ser = function (v, path, depth, ancestors, budget) {
    if (failReason) return null;
    if (depth > DEPTH_MAX) return fail("invalid-output", path + ": nested deeper than " + DEPTH_MAX);
    const t = typeof v;
    if (v === null) return "null";
    if (t === "boolean") return v ? "true" : "false";
    if (t === "number") {
      if (!isFiniteNum(v)) return fail("invalid-output", path + ": " + toStr(v) + " is not a finite number");
      return v === 0 ? "0" : toStr(v);
    }
    if (t === "string") {
      if (v.length > outCap) return fail("output-limit", path + ": string of " + v.length + " characters exceeds the output limit of " + outCap + " bytes");
      return jsonString(v);
    }
    if (t === "undefined") return fail("invalid-output", path + ": undefined is not data");
    if (t === "function") return fail("invalid-output", path + ": a function is not data");
    if (t === "symbol") return fail("invalid-output", path + ": a symbol is not data");
    if (t === "bigint") return fail("invalid-output", path + ": a bigint is not data (use a number)");
    if (apply(wsHas, proxies, [v])) return fail("invalid-output", path + ": a Proxy is not data");
    for (let i = 0; i < ancestors.length; i++) if (ancestors[i] === v) return fail("invalid-output", path + ": cyclic reference");
    const proto = getProto(v);
    ancestors[ancestors.length] = v;
    let out;
    if (isArray(v) && proto === AP) {
      const n = v.length;
      if (n > outCap) return fail("output-limit", path + ": array of " + n + " elements exceeds the output limit");
      out = "[";
      for (let i = 0; i < n; i++) {
        const d = getDesc(v, i);
        if (d === undefined) return fail("invalid-output", path + "[" + i + "]: hole in array");
        if (!isData(d)) return fail("invalid-output", path + "[" + i + "]: a getter is not data");
        const s = ser(d.value, path + "[" + i + "]", depth + 1, ancestors, budget);
        if (s === null && failReason) return null;
        out += (i ? "," : "") + s;
        if (out.length > budget.left) return fail("output-limit", path + ": output exceeds " + outCap + " bytes");
      }
      out += "]";
    } else if (proto === OP || proto === null) {
      const keys = ownKeys(v);
      out = "{";
      for (let i = 0; i < keys.length; i++) {
        const k = keys[i];
        if (typeof k !== "string") return fail("invalid-output", path + ": a symbol key is not data");
        const d = getDesc(v, k);
        if (!d.enumerable) continue;
        if (!isData(d)) return fail("invalid-output", path + "." + k + ": a getter is not data");
        const s = ser(d.value, path + "." + k, depth + 1, ancestors, budget);
        if (s === null && failReason) return null;
        out += (out.length > 1 ? "," : "") + jsonString(k) + ":" + s;
        if (out.length > budget.left) return fail("output-limit", path + ": output exceeds " + outCap + " bytes");
      }
      out += "}";
    } else {
      let name = "object";
      try { const c = proto && getDesc(proto, "constructor"); if (c && typeof c.value === "function" && typeof c.value.name === "string") name = c.value.name; } catch (e) {}
      return fail("invalid-output", path + ": a " + name + " is not plain data (use objects, arrays, numbers, strings, booleans, null)");
    }
    ancestors.length = ancestors.length - 1;
    return out;
  };
  // A hook that returns nothing answers null (JSON has no undefined); inside data,
  // undefined is an error, since it would silently drop a field.
  const serialize = function (v) {
    if (v === undefined) return "Rnull";
    failReason = ""; failMsg = "";
    const s = ser(v, "result", 0, [], { left: outCap });
    if (failReason) return "E" + failReason + "\n" + failMsg;
    if (s.length > outCap) return "Eoutput-limit\nresult: output of " + s.length + " bytes exceeds " + outCap;
    return "R" + s;
  };

  // Text of a thrown value, without running plugin code (no getters, no toString).
  const ERR_MAX = 2048;
  const dataProp = function (o, k) {
    for (let p = o, i = 0; p !== null && i < 4; p = getProto(p), i++) {
      const d = getDesc(p, k);
      if (d !== undefined) return isData(d) && typeof d.value === "string" ? d.value : "";
    }
    return "";
  };
  const thrown = function (e) {
    const t = typeof e;
    if (e === null || (t !== "object" && t !== "function")) {
      return "Eexception\nthrew a non-Error " + (t === "string" ? "string: " + e.slice(0, ERR_MAX) : t === "symbol" ? "symbol" : t + ": " + toStr(e));
    }
    const name = dataProp(e, "name"), msg = dataProp(e, "message");
    // Only the engine's own InternalError counts as out of memory or stack overflow; a plain
    // object dressed up as one is the plugin's exception.
    const real = IE !== undefined && e instanceof IE && hasOwn(e, "stack");
    if (real && msg === "out of memory") return "Eoom\nout of memory";
    if (real && msg === "stack overflow") return "Estack\nstack overflow";
    if (name === "" && msg === "") return "Eexception\nthrew a non-Error object";
    return "Eexception\n" + (name || "Error") + ": " + msg.slice(0, ERR_MAX);
  };

  let exportsNs = null, adapters = { __proto__: null }, pending = null;
  let chIn = null, chPayload = null, chOut = null, chInLength = 0, lastWire = "";
  // Per adapter index: the function run() calls, (ns, n, ctx, tools) -> the answer's length
  // in chOut (its last slot is the trailer) or a wire string.
  const chRunners = [], SET_ARGS = [null], f64Set = F64.prototype.set;
  // Adapters' channel forms (see __svmrt_adapt), by name.
  const channelForms = { __proto__: null };
  // What adapters may use besides the plugin's exports: the strict serializer, so an adapter
  // can answer data (a wire string) instead of a Float64Array.
  // thrown + stash: an adapter that keeps going after a hook failed (observe events riding
  // with a fault batch) leaves the failure's wire text for the host's takeWire().
  const tools = freeze({
    serialize: function (v) { return serialize(v); },
    thrown: function (e) { return thrown(e); },
    stash: function (wire) { lastWire = toStr(wire); },
  });
  const lastCtx = { json: "", value: undefined };
  // "" or undefined means: the same context as the last call (the host sends it only when it
  // changes).
  const parseCtx = function (json) {
    if (json !== undefined && json !== "" && json !== lastCtx.json) { lastCtx.json = json; lastCtx.value = jsonParse(json); }
    return lastCtx.value;
  };
  const settle = function (r) {
    if (r !== null && (typeof r === "object" || typeof r === "function")) {
      const d = getDesc(r, "then");
      const isThenable = r instanceof RealPromise || (d !== undefined && typeof d.value === "function");
      if (isThenable) {
        pending = { done: false, out: "" };
        const slot = pending;
        apply(promiseThen, apply(promiseResolve, RealPromise, [r]), [
          function (v) { slot.done = true; slot.out = serialize(v); },
          function (e) { slot.done = true; slot.out = thrown(e); },
        ]);
        return "P";
      }
    }
    return serialize(r);
  };

  // A call after one that logged starts with an empty log (a new log array only then: an
  // allocation costs about as much as a decision).
  const logReset = function () {
    logUsed = 0; logDropped = 0; logDirty = false;
    if (logLines.length !== 0) logLines = [];
  };
  // Every entry point but run() starts a call this way: no pending promise, an empty log.
  const beginCall = function () {
    pending = null;
    if (logDirty) logReset();
  };

  // Channel runner of an adapter without a channel form: run it as batch() does and copy its
  // Float64Array answer into OUT.
  const copyingRunner = function (a) {
    return function (ns, n, ctx, tls) {
      const out = a(ns, chPayload, n, ctx, tls);
      if (typeof out === "string") return out;
      try {
        SET_ARGS[0] = out;
        apply(f64Set, chOut, SET_ARGS);
        SET_ARGS[0] = null;
        return out.length;
      } catch (e) { return "Einvalid-output\nthe adapter's answer does not fit the channel"; }
    };
  };

  const host = freeze({
    // Called once per module build: hand over the exports and the host's settings.
    install: function (ns, settingsJson) {
      if (exportsNs !== null) return "Eload\ninstall may run once";
      const s = jsonParse(settingsJson);
      exportsNs = ns; outCap = s.output_bytes; logCap = s.log_bytes; rngState = (s.seed | 0) || 1;
      const names = ownKeys(ns), fns = [], data = {};
      for (let i = 0; i < names.length; i++) {
        const k = names[i];
        if (typeof k !== "string") continue;
        const d = getDesc(ns, k);
        if (!isData(d)) continue;
        if (typeof d.value === "function") fns[fns.length] = k; else data[k] = d.value;
      }
      const r = serialize({ functions: fns, data: data });
      return r;
    },
    call: function (hook, inputJson, ctxJson) {
      beginCall();
      const d = getDesc(exportsNs, hook);
      if (d === undefined || typeof d.value !== "function") return "Eload\nthe plugin does not export a function '" + hook + "'";
      let r;
      try { r = d.value(jsonParse(inputJson), parseCtx(ctxJson)); } catch (e) { return thrown(e); }
      try { return settle(r); } catch (e) { return thrown(e); }
    },
    settled: function () {
      if (pending === null) return "Eexception\nno pending promise";
      if (!pending.done) return "P";
      const out = pending.out; pending = null; return out;
    },
    // Hot path: a registered adapter decodes a Float64Array batch, calls hooks, returns a Float64Array.
    // ctxJson undefined: the same context as the last call. Nothing here allocates unless
    // the last call logged (an allocation costs about as much as a whole decision).
    batch: function (adapter, buf, n, ctxJson) {
      beginCall();
      const a = adapters[adapter];
      if (typeof a !== "function") return "Eload\nno batch adapter '" + adapter + "'";
      let out;
      try { out = a(exportsNs, new F64(buf), n, parseCtx(ctxJson), tools); } catch (e) { return thrown(e); }
      if (typeof out === "string") return out;
      // The trailer slot (the adapter's last element) tells the host whether to fetch logs.
      try {
        const buffer = apply(bufferOf, out, NO_ARGS);
        out[out.length - 1] = logLines.length + logDropped;
        return buffer;
      } catch (e) { return "Einvalid-output\nadapter " + adapter + " returned no typed array"; }
    },
    // Shared-memory channel, set up once per instance: the host owns the bytes of both
    // buffers and reads and writes them in place, so a batch call crosses no argument and
    // no answer handle. IN: [adapter index, n, payload...]; OUT: the adapter's answer. An
    // adapter with a channel form writes its answer into OUT itself (no copy); any other is
    // run as by batch() and its answer copied into OUT.
    channel: function (inBuf, outBuf) {
      if (chIn !== null) return "Eload\nthe channel is set once";
      chIn = new F64(inBuf); chPayload = new F64(inBuf, 16); chOut = new F64(outBuf);
      chInLength = chIn.length;
      const names = ownKeys(adapters);
      for (let i = 0; i < names.length; i++) {
        const form = channelForms[names[i]];
        chRunners[i] = typeof form === "function" ? form(chPayload, chOut) : copyingRunner(adapters[names[i]]);
      }
      return jsonString(names);
    },
    // Self-test of the channel: OUT[i] = -IN[i] for i < k.
    echo: function (k) { for (let i = 0; i < k; i++) chOut[i] = -chIn[i]; return k; },
    setCtx: function (json) { parseCtx(json); return 0; },
    // One batch through the channel: the hot path, kept to what a call needs (run() holds
    // no promise, so the pending slot is not touched). Answers the answer's length k in
    // OUT, whose slot k - 1 then holds the pending log count, or -1: the wire answer waits
    // in takeWire().
    run: function () {
      if (logDirty) logReset();
      if (chIn.length !== chInLength) { lastWire = "Eexception\nthe channel's buffer was detached"; return -1; }
      const r = chRunners[chIn[0] | 0];
      if (r === undefined) { lastWire = "Eload\nno batch adapter " + chIn[0]; return -1; }
      let k;
      try { k = r(exportsNs, chIn[1] | 0, lastCtx.value, tools); } catch (e) { lastWire = thrown(e); return -1; }
      if (typeof k !== "number") { lastWire = toStr(k); return -1; }
      chOut[k - 1] = logLines.length + logDropped;
      return k;
    },
    takeWire: function () { const w = lastWire; lastWire = ""; return w; },
    // Logs as text: the dropped count, then each line as a JSON string. Built by hand:
    // JSON.stringify of an object would consult a patched Object.prototype.toJSON.
    logs: function () {
      if (logLines.length === 0 && logDropped === 0) return "";
      let text = toStr(logDropped);
      for (let i = 0; i < logLines.length; i++) text += "\n" + jsonString(toStr(logLines[i]));
      return text;
    },
  });
  defineProperty(G, "__svmrt", { value: host, writable: false, configurable: false, enumerable: false });
  // Trusted library installation: a module's exports become a frozen, read-only global.
  defineProperty(G, "__svmrt_lib", {
    value: function (name, ns) {
      const lib = {};
      const keys = ownKeys(ns);
      for (let i = 0; i < keys.length; i++) {
        const d = getDesc(ns, keys[i]);
        if (isData(d)) lib[keys[i]] = d.value;
      }
      defineProperty(G, name, { value: freeze(lib), writable: false, configurable: false, enumerable: false });
    },
    writable: false, configurable: true, enumerable: false,
  });
  // Trusted adapter registration, removed before plugin code runs (see ADAPTERS_SEAL).
  // channelForm, optional: (payload, out) -> runner, called once when the channel opens with
  // the channel's input payload and answer views; runner(ns, n, ctx, tools) reads its input
  // in payload, writes its answer into out in place and answers its length (the last slot,
  // the trailer, is the prelude's), or a wire string. The host fills the answer's slots
  // with NaN before each run, so a slot the runner leaves alone reads NaN.
  defineProperty(G, "__svmrt_adapt", {
    value: function (name, fn, channelForm) { adapters[name] = fn; if (channelForm !== undefined) channelForms[name] = channelForm; },
    writable: false, configurable: true, enumerable: false,
  });
})();
`;

/**
 * Numbers an adapter's Float64Array answer carries after its payload: the prelude writes the
 * count of pending log lines there, so the host fetches logs only when there are some.
 */
export const BATCH_TRAILER = 1;

/** Evaluated after adapters and libraries: no plugin code can register either. */
export const ADAPTERS_SEAL = "delete globalThis.__svmrt_adapt; delete globalThis.__svmrt_lib;";
