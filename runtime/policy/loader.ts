/**
 * Loading a policy file: YAML (capped, unique keys, no alias bombs) -> schema -> plugin path
 * confined to the allowed folders -> plugin source. Every problem becomes a ConfigError at
 * file:line:col naming the field; all of a file's problems are reported together.
 */
import { createHash } from "node:crypto";
import { statSync } from "node:fs";
import { dirname, isAbsolute, resolve, sep } from "node:path";
import { BUILTIN_PREFIX, builtinPath, realpathOf, shippedDir, shippedPluginRoots } from "../assets.ts";
import { type YamlSource, parseYaml, positionOf, readConfigFile, schemaErrors } from "../config.ts";
import { ConfigError, ConfigErrors } from "../errors.ts";
import { type SandboxLimits, resolveLimits } from "../sandbox/limits.ts";
import { PolicyDocument, type PolicyKind } from "./schema.ts";

/** Largest plugin source read, bytes (Shopify Functions cap a module at 256 kB too). */
export const PLUGIN_SOURCE_BYTES_MAX = 256 * 1024;

/** The shipped plugins/ folder (runtime/assets.ts: beside runtime/, or embedded); SVMRT_PLUGINS_DIR overrides. */
export function shippedPluginsDir(): string {
  return shippedDir("plugins");
}

export interface LoadOptions {
  /** Extra folders plugins may live in (--plugin-root, agent config). */
  pluginRoots?: string[];
}

export interface PolicySpec {
  file: string;
  kind: PolicyKind;
  name: string;
  description: string;
  pluginPath: string;
  source: string;
  /** Content hash of the YAML and the plugin: changes with either. */
  revision: string;
  /** Values as written in the file (resolved against the plugin's declarations at load). */
  params: Record<string, unknown>;
  limits: SandboxLimits;
  onFailure: "fallback" | "fail-closed";
  seed: number;
  tests: PolicyDocument["spec"]["tests"];
  yaml: YamlSource;
}

/** Default seed of a plugin's Math.random when the file sets none. */
export const POLICY_SEED_DEFAULT = 1;

/** True when `file` (a real path) lies inside `root` (a real path). */
function isInside(file: string, root: string): boolean {
  return file === root || file.startsWith(root.endsWith(sep) ? root : root + sep);
}

/**
 * Read and check a policy file (a path, or a shipped one: `builtin:policies/...`) without
 * running its plugin.
 * @throws ConfigErrors with every problem found; UsageError for a `builtin:` name outside
 *   the shipped folders.
 */
export async function readPolicySpec(given: string, opts: LoadOptions = {}): Promise<PolicySpec> {
  const file = builtinPath(given);
  let text: string;
  try {
    text = readConfigFile(file);
  } catch (e) {
    if (e instanceof ConfigError) throw new ConfigErrors([e]);
    throw e;
  }
  const src = parseYaml(file, text);
  const errors = schemaErrors(src, PolicyDocument);
  if (errors.length) throw new ConfigErrors(errors);
  const doc = src.data as PolicyDocument;
  const spec = doc.spec;

  const { limits, errors: limitErrors } = resolveLimits(spec.limits ?? {});
  for (const e of limitErrors) {
    const name = e.split(":")[0]!;
    errors.push(new ConfigError(positionOf(src, ["spec", "limits", name]), `spec.limits.${name}`, e.slice(name.length + 2)));
  }

  // The plugin: relative to the YAML (or a shipped one, builtin:plugins/...), confined to
  // the allowed folders, symlinks resolved.
  const pluginPos = positionOf(src, ["spec", "plugin"]);
  const yamlDir = dirname(resolve(file));
  let wanted: string | undefined;
  try {
    wanted = spec.plugin.startsWith(BUILTIN_PREFIX) ? builtinPath(spec.plugin) : isAbsolute(spec.plugin) ? spec.plugin : resolve(yamlDir, spec.plugin);
  } catch {
    errors.push(new ConfigError(pluginPos, "spec.plugin", `a shipped plugin named ${BUILTIN_PREFIX}plugins/...`, `got ${spec.plugin}`));
  }
  const real = wanted === undefined ? null : realpathOf(wanted);
  const roots = [...shippedPluginRoots(), yamlDir, ...(opts.pluginRoots ?? []).map((r) => resolve(r))]
    .map(realpathOf)
    .filter((r): r is string => r !== null);
  let source = "";
  if (real === null) {
    if (wanted !== undefined) errors.push(new ConfigError(pluginPos, "spec.plugin", "an existing plugin file", `${wanted} does not exist`));
  } else if (!roots.some((r) => isInside(real, r))) {
    errors.push(
      new ConfigError(
        pluginPos,
        "spec.plugin",
        "a plugin inside the allowed folders",
        `${real} is outside ${roots.join(", ")}; add its folder with --plugin-root`,
      ),
    );
  } else {
    const st = statSync(real);
    if (!st.isFile()) errors.push(new ConfigError(pluginPos, "spec.plugin", "a regular file", `${real} is not one`));
    else if (st.size > PLUGIN_SOURCE_BYTES_MAX) {
      errors.push(new ConfigError(pluginPos, "spec.plugin", `a plugin of at most ${PLUGIN_SOURCE_BYTES_MAX} bytes`, `it has ${st.size}`));
    } else {
      let bytes: ArrayBuffer | undefined;
      try {
        bytes = await Bun.file(real).arrayBuffer();
      } catch (e) {
        // Unreadable (EACCES, EIO): say so with the errno, it is no question of encoding.
        const code = (e as NodeJS.ErrnoException).code ?? "";
        errors.push(new ConfigError(pluginPos, "spec.plugin", "a readable plugin file", `${real}: ${code ? `${code}: ` : ""}cannot be read`));
      }
      if (bytes !== undefined) {
        try {
          source = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
        } catch {
          errors.push(new ConfigError(pluginPos, "spec.plugin", "UTF-8 JavaScript source", `${real} contains binary data`));
        }
      }
    }
  }
  if (errors.length) throw new ConfigErrors(errors);

  const revision = createHash("sha256").update(text).update("\0").update(source).digest("hex").slice(0, 12);
  return {
    file,
    kind: doc.kind as PolicyKind,
    name: doc.metadata.name,
    description: doc.metadata.description ?? "",
    pluginPath: real!,
    source,
    revision,
    params: spec.params ?? {},
    limits,
    onFailure: (spec.onFailure ?? "fallback") as PolicySpec["onFailure"],
    seed: spec.seed ?? POLICY_SEED_DEFAULT,
    tests: spec.tests ?? [],
    yaml: src,
  };
}
