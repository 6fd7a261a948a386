// The members of the arrays and objects being read wait on one stack, reused from message to
// message; a finished array or object moves its own into storage of their exact size, sorted
// and without repeated keys for an object. Slots above `top` may still hold old values; they are
// overwritten before they are read.

import { JsonArray, JsonObject, JsonString, JsonValue } from "./json-value";

let stack = new StaticArray<JsonValue | null>(64);
let top = 0;
/** Room for merge-sorting the members of a large object. */
let spare = new StaticArray<JsonValue | null>(0);

/** How many values are waiting: where the next array or object starts. */
export function mark(): i32 {
  return top;
}

/** Drop the values above `base`. */
export function truncate(base: i32): void {
  top = base;
}

export function push(value: JsonValue): void {
  if (top == stack.length) {
    const grown = new StaticArray<JsonValue | null>(top * 2);
    for (let k = 0; k < top; k++) unchecked((grown[k] = stack[k]));
    stack = grown;
  }
  unchecked((stack[top++] = value));
}

/** Order of two keys (JsonStrings) by UTF-8 bytes, which is by code point: Rust's order. */
@inline
function compareKeys(a: JsonValue | null, b: JsonValue | null): i32 {
  return changetype<JsonString>(a).compare(changetype<JsonString>(b));
}

/** The array of the values from `base` up, which leave the stack. */
export function arrayFrom(base: i32): JsonArray {
  const items = new Array<JsonValue>(top - base);
  for (let k = base; k < top; k++) unchecked((items[k - base] = changetype<JsonValue>(stack[k])));
  top = base;
  return new JsonArray(items);
}

/**
 * The object of the key/value pairs from `base` up, which leave the stack: sorted by key, and of
 * equal keys the last one read, as serde_json's map keeps them.
 */
export function objectFrom(base: i32): JsonObject {
  const count = (top - base) >> 1;
  top = base;
  let from = stack;
  let at = base;
  if (count <= 16) {
    // Insertion sort, stable: a key moves down only past greater keys.
    for (let i = 1; i < count; i++) {
      const key = unchecked(stack[base + 2 * i]);
      const value = unchecked(stack[base + 2 * i + 1]);
      let j = i - 1;
      for (; j >= 0 && compareKeys(unchecked(stack[base + 2 * j]), key) > 0; j--) {
        unchecked((stack[base + 2 * j + 2] = stack[base + 2 * j]));
        unchecked((stack[base + 2 * j + 3] = stack[base + 2 * j + 1]));
      }
      unchecked((stack[base + 2 * j + 2] = key));
      unchecked((stack[base + 2 * j + 3] = value));
    }
  } else {
    // Bottom-up merge sort, stable, between the stack and `spare`.
    if (spare.length < 2 * count) spare = new StaticArray<JsonValue | null>(2 * count);
    let to = spare;
    let toAt = 0;
    for (let width = 1; width < count; width *= 2) {
      for (let low = 0; low < count; low += 2 * width) {
        const middle = min(low + width, count);
        const high = min(low + 2 * width, count);
        let a = low;
        let b = middle;
        for (let k = low; k < high; k++) {
          const takeA =
            a < middle &&
            (b >= high || compareKeys(unchecked(from[at + 2 * a]), unchecked(from[at + 2 * b])) <= 0);
          const pick = takeA ? a++ : b++;
          unchecked((to[toAt + 2 * k] = from[at + 2 * pick]));
          unchecked((to[toAt + 2 * k + 1] = from[at + 2 * pick + 1]));
        }
      }
      const swap = from;
      from = to;
      to = swap;
      const swapAt = at;
      at = toAt;
      toAt = swapAt;
    }
  }
  // Of a run of equal keys, keep the last.
  let kept = count;
  for (let k = 0; k + 1 < count; k++) {
    if (compareKeys(unchecked(from[at + 2 * k]), unchecked(from[at + 2 * k + 2])) == 0) kept--;
  }
  const members = new StaticArray<JsonValue>(2 * kept);
  let n = 0;
  for (let k = 0; k < count; k++) {
    if (k + 1 < count && compareKeys(unchecked(from[at + 2 * k]), unchecked(from[at + 2 * k + 2])) == 0) continue;
    unchecked((members[n++] = changetype<JsonValue>(from[at + 2 * k])));
    unchecked((members[n++] = changetype<JsonValue>(from[at + 2 * k + 1])));
  }
  return new JsonObject(members);
}
