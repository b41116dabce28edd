// Maps whatever an IPC call rejects with into one AppError with a code and a readable message.
import type { AppErrorPayload } from "./types";

/** An error from the Rust side (or the IPC layer), with a stable code. */
export class AppError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.name = "AppError";
    this.code = code;
  }
}

function isPayload(value: unknown): value is AppErrorPayload {
  return (
    typeof value === "object" &&
    value !== null &&
    typeof (value as Record<string, unknown>).code === "string" &&
    typeof (value as Record<string, unknown>).message === "string"
  );
}

/** Turns a rejected IPC value into an AppError; never throws. */
export function toAppError(value: unknown): AppError {
  if (value instanceof AppError) return value;
  if (isPayload(value)) return new AppError(value.code, value.message);
  if (typeof value === "string") return new AppError("ipc", value || "unknown error");
  if (value instanceof Error) return new AppError("internal", value.message || value.name);
  return new AppError("internal", "unexpected error: " + String(value));
}

/** The sentence shown to the user for an error. */
export function describeError(error: AppError): string {
  switch (error.code) {
    case "no_project":
      return "No project is open. Open or create a project first.";
    case "busy":
      return error.message || "Another job is running. Wait for it to finish or cancel it.";
    default:
      return error.message;
  }
}
