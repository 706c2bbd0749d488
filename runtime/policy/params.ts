/**
 * Plugin parameters: a plugin declares its tunables once, at the top (`export const params`),
 * each with type, default, bounds and meaning; a policy file sets values; the host checks
 * both and hands the resolved values to every hook as `ctx.params`.
 *
 *   export const params = {
 *     window_pages: { type: "integer", default: 512, min: 1, max: 262144,
 *                     description: "pages migrated around a fault" },
 *   };
 */

export type ParamType = "integer" | "number" | "boolean" | "string";

export interface ParamDecl {
  type: ParamType;
  default: number | boolean | string;
  min?: number;
  max?: number;
  /** For strings: the allowed values. */
  values?: string[];
  description: string;
}

export type ParamValues = Record<string, number | boolean | string>;

/** Most parameters one plugin may declare. */
export const PARAMS_MAX = 64;

function checkValue(name: string, d: ParamDecl, v: unknown): string | null {
  switch (d.type) {
    case "integer":
    case "number": {
      if (typeof v !== "number" || !Number.isFinite(v)) return `${name}: expected a ${d.type}, got ${JSON.stringify(v)}`;
      if (d.type === "integer" && !Number.isInteger(v)) return `${name}: expected an integer, got ${v}`;
      if (d.min !== undefined && v < d.min) return `${name}: expected at least ${d.min}, got ${v}`;
      if (d.max !== undefined && v > d.max) return `${name}: expected at most ${d.max}, got ${v}`;
      return null;
    }
    case "boolean":
      return typeof v === "boolean" ? null : `${name}: expected true or false, got ${JSON.stringify(v)}`;
    case "string":
      if (typeof v !== "string") return `${name}: expected a string, got ${JSON.stringify(v)}`;
      if (d.values && !d.values.includes(v)) return `${name}: expected one of ${d.values.join(", ")}, got ${JSON.stringify(v)}`;
      return null;
  }
}

/**
 * Validate the declarations a plugin exports. Returns the declarations and a list of
 * problems (each names the parameter and what is wrong).
 */
export function parseParamDecls(raw: unknown): { decls: Record<string, ParamDecl>; errors: string[] } {
  const decls: Record<string, ParamDecl> = {};
  const errors: string[] = [];
  if (raw === undefined) return { decls, errors };
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    return { decls, errors: ["`params` must be an object of parameter declarations"] };
  }
  const entries = Object.entries(raw as Record<string, unknown>);
  if (entries.length > PARAMS_MAX) errors.push(`at most ${PARAMS_MAX} parameters may be declared, found ${entries.length}`);
  for (const [name, d] of entries.slice(0, PARAMS_MAX)) {
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(name)) {
      errors.push(`params.${name}: names are lower_snake_case, at most 64 characters`);
      continue;
    }
    const decl = d as Partial<ParamDecl> | null;
    if (!decl || typeof decl !== "object") {
      errors.push(`params.${name}: expected a declaration object`);
      continue;
    }
    if (!["integer", "number", "boolean", "string"].includes(decl.type as string)) {
      errors.push(`params.${name}.type: expected integer, number, boolean or string`);
      continue;
    }
    if (typeof decl.description !== "string" || decl.description.length === 0) {
      errors.push(`params.${name}.description: every parameter says what it means`);
    }
    for (const b of ["min", "max"] as const) {
      if (decl[b] !== undefined && (typeof decl[b] !== "number" || !Number.isFinite(decl[b]))) {
        errors.push(`params.${name}.${b}: expected a number`);
      }
    }
    if ((decl.type === "integer" || decl.type === "number") && (decl.min === undefined || decl.max === undefined)) {
      errors.push(`params.${name}: numeric parameters declare both min and max (every bound explicit)`);
    }
    if (decl.values !== undefined && (!Array.isArray(decl.values) || !decl.values.every((x) => typeof x === "string"))) {
      errors.push(`params.${name}.values: expected a list of strings`);
      continue;
    }
    const full = decl as ParamDecl;
    const bad = checkValue(`params.${name}.default`, full, decl.default);
    if (bad) {
      errors.push(bad);
      continue;
    }
    decls[name] = full;
  }
  return { decls, errors };
}

/**
 * Resolve the values of a policy file against the declarations: defaults filled, unknown
 * names and bad values reported as `{ name, message }` so the caller can place them.
 */
export function resolveParams(
  decls: Record<string, ParamDecl>,
  given: Record<string, unknown> | undefined,
): { values: ParamValues; errors: { name: string; message: string }[] } {
  const values: ParamValues = {};
  const errors: { name: string; message: string }[] = [];
  for (const [name, d] of Object.entries(decls)) values[name] = d.default;
  for (const [name, v] of Object.entries(given ?? {})) {
    const d = Object.hasOwn(decls, name) ? decls[name] : undefined;
    if (!d) {
      const known = Object.keys(decls);
      errors.push({ name, message: `unknown parameter; the plugin declares ${known.length ? known.join(", ") : "none"}` });
      continue;
    }
    const bad = checkValue(name, d, v);
    if (bad) errors.push({ name, message: bad.slice(name.length + 2) });
    else values[name] = v as number | boolean | string;
  }
  return { values, errors };
}
