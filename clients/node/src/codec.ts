/**
 * JSON shapes shared with the other SDKs (clients/python/README.md, "Wire format").
 *   input  = a JSON array of the arguments ({"args": [...], "kwargs": {...}} is accepted too)
 *   output = the return value as JSON (null for undefined)
 *   error  = {"type": "TypeError", "message": "...", "traceback": "<stack>"}
 */
import { SerializationError, StepFailed } from "./errors";

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export function dumps(value: unknown, what = "value"): string {
  let text: string | undefined;
  try {
    text = JSON.stringify(value === undefined ? null : value, (_k, v) => {
      if (typeof v === "number" && !Number.isFinite(v)) throw new TypeError(`${v} is not a JSON number`);
      if (typeof v === "bigint") throw new TypeError("a bigint is not JSON (convert it to a string or number)");
      return v;
    });
  } catch (e) {
    throw new SerializationError(`${what} is not JSON (${(e as Error).message}); return JSON-able values`);
  }
  if (text === undefined) {
    throw new SerializationError(`${what} is not JSON (a ${typeof value}); return JSON-able values`);
  }
  return text;
}

/** What a replay will return for a value: its JSON decoded (a Date becomes a string, undefined null). */
export function asStored(value: unknown, encoded: string): unknown {
  if (value === null || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return value;
  return JSON.parse(encoded);
}

export function encodeInput(args: readonly unknown[], what = "the workflow's input"): string {
  if (!Array.isArray(args)) {
    throw new TypeError(`${what}: arguments must be given as an array, e.g. [orderId]`);
  }
  return dumps(args, what);
}

/**
 * The arguments of a stored input: an array; {"args", "kwargs"} gives args then kwargs as a last
 * object; {} (no args, no kwargs, as Python reads it) is no arguments.
 */
export function decodeInput(value: unknown): unknown[] {
  if (value === null || value === undefined) return [];
  if (Array.isArray(value)) return value;
  if (typeof value === "object") {
    const keys = Object.keys(value as object);
    if (keys.every((k) => k === "args" || k === "kwargs")) {
      const v = value as { args?: unknown[]; kwargs?: Record<string, unknown> };
      const args = [...(v.args ?? [])];
      if (v.kwargs && Object.keys(v.kwargs).length > 0) args.push(v.kwargs);
      return args;
    }
  }
  return [value]; // a single non-array input (from psql or a schedule): one argument
}

export interface ErrorJson { type: string; message: string; traceback: string | null }

export function errorOf(e: unknown): ErrorJson {
  if (e instanceof Error) {
    // pg's DatabaseError is named "error": the class name says more.
    const type = e.name && e.name !== "Error" && e.name !== "error" ? e.name : e.constructor?.name || "Error";
    return { type, message: e.message, traceback: e.stack ?? null };
  }
  return { type: "Error", message: String(e), traceback: null };
}

const BUILTIN: Record<string, new (m: string) => Error> = {
  Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError,
};

/** The error a replayed step throws: the builtin type of the first run when there is one, else StepFailed. */
export function rebuildStepError(error: unknown): Error {
  if (error === null || typeof error !== "object") return new StepFailed("Error", String(error));
  const e = error as Record<string, unknown>;
  const name = String(e.type ?? "Error");
  const message = String(e.message ?? "");
  const cls = BUILTIN[name];
  if (cls) return new cls(message);
  return new StepFailed(name, message, e.traceback == null ? null : String(e.traceback));
}
