/**
 * Checks on a plugin's source before QuickJS parses it. The parser recurses on the host's
 * thread stack (every guest C frame is a Wasm frame there) faster than QuickJS's own stack
 * accounting grows, so source nested deep enough crashes the host side instead of failing
 * to parse. Nothing a policy needs nests anywhere near SOURCE_NESTING_MAX.
 */

/** Deepest nesting of brackets, braces and parentheses accepted in a plugin's source. */
export const SOURCE_NESTING_MAX = 128;

/**
 * Deepest nesting of ( [ { in `src`, outside strings, template literals and comments, and
 * where it first exceeds `max` (1-based line and column), if it does. Regular-expression
 * literals are not recognised: their brackets count, which can only over-estimate.
 */
export function sourceNesting(src: string, max = SOURCE_NESTING_MAX): { depth: number; line?: number; col?: number } {
  let depth = 0;
  let deepest = 0;
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === "\n") {
      line++;
      lineStart = i + 1;
    } else if (c === "/" && src[i + 1] === "/") {
      while (i < src.length && src[i] !== "\n") i++;
      i--;
    } else if (c === "/" && src[i + 1] === "*") {
      const end = src.indexOf("*/", i + 2);
      const stop = end < 0 ? src.length : end + 2;
      for (let k = i; k < stop; k++) {
        if (src[k] === "\n") {
          line++;
          lineStart = k + 1;
        }
      }
      i = stop - 1;
    } else if (c === '"' || c === "'" || c === "`") {
      for (i++; i < src.length && src[i] !== c; i++) {
        if (src[i] === "\\") i++;
        else if (src[i] === "\n") {
          line++;
          lineStart = i + 1;
        }
      }
    } else if (c === "(" || c === "[" || c === "{") {
      depth++;
      if (depth > deepest) deepest = depth;
      if (depth > max) return { depth, line, col: i - lineStart + 1 };
    } else if (c === ")" || c === "]" || c === "}") depth--;
  }
  return { depth: deepest };
}
