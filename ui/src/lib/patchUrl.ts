// Addresses of the `patch` custom protocol: patch://localhost/... on Linux and macOS,
// http://patch.localhost/... on Windows. Only integer ids go in; the Rust side serves pool patches only.
import { convertFileSrc } from "@tauri-apps/api/core";

/** Which rendition of a patch. */
export type PatchKind = "thumb" | "full";

/** The URL of a patch rendition under `base` (which ends with "/"). */
export function patchUrl(base: string, kind: PatchKind, id: number): string {
  if (!Number.isSafeInteger(id) || id < 0) throw new RangeError(`not a patch id: ${id}`);
  const root = base.endsWith("/") ? base : base + "/";
  return `${root}${kind}/${id}`;
}

let cachedBase: string | null = null;

/** The platform's base URL of the protocol, as Tauri addresses custom schemes. */
export function patchBase(): string {
  if (cachedBase === null) cachedBase = convertFileSrc("", "patch");
  return cachedBase;
}
