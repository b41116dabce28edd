// Addresses of the `patch` custom protocol: patch://localhost/<key>/<kind>/<id> on Linux and macOS,
// http://patch.localhost/<key>/<kind>/<id> on Windows. Only integers go in; the Rust side serves pool
// patches of the project opened under `key` only.
import { convertFileSrc } from "@tauri-apps/api/core";

/** Which rendition of a patch. */
export type PatchKind = "thumb" | "full";

/** The URL of a patch rendition of the project opened under `key`, below `base`. */
export function patchUrl(base: string, key: number, kind: PatchKind, id: number): string {
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`not a patch id: ${id}`);
  if (!Number.isSafeInteger(key) || key < 0) throw new RangeError(`not an image key: ${key}`);
  const root = base.endsWith("/") ? base : base + "/";
  return `${root}${key}/${kind}/${id}`;
}

let cachedBase: string | null = null;

/** The platform's base URL of the protocol, as Tauri addresses custom schemes. */
export function patchBase(): string {
  if (cachedBase === null) cachedBase = convertFileSrc("", "patch");
  return cachedBase;
}
