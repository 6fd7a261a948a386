// The per-call arena: every byte that crosses the component boundary lives here.
//
// The host writes a call's arguments into guest memory through `cabi_realloc`, and reads the
// results from guest memory after the call; both are only needed until the host has read the
// results, when it calls the export's `cabi_post_*` function, which resets the arena. So nothing
// from one message is left behind for the next, and the instance's memory stays as large as the
// largest single call needed, however many calls it serves.
//
// The arena takes its memory from the AssemblyScript heap in chunks; a reset keeps the first
// chunk and frees the rest, so a one-off large message does not keep its memory forever.

/** Size of the chunk kept across calls; a call that needs more takes extra chunks. */
const CHUNK: usize = 64 * 1024;

/** Each chunk starts with the address of the chunk taken before it (0 for the first) and the
 * address of its own end. */
const HEADER: usize = 2 * sizeof<usize>();

let first: usize = 0;
let current: usize = 0;
let top: usize = 0;
let end: usize = 0;

/** `size` bytes aligned to `align` (a power of two), valid until the arena is reset. */
export function alloc(size: usize, align: usize = 1): usize {
  let ptr = (top + align - 1) & ~(align - 1);
  if (ptr + size > end || current == 0) {
    ptr = grow(size, align);
  }
  top = ptr + size;
  return ptr;
}

/** `cabi_realloc`: the canonical ABI's allocator, here backed by the arena. */
export function realloc(old: usize, oldSize: usize, align: usize, newSize: usize): usize {
  if (old != 0) {
    // The last allocation can grow in place; anything else moves.
    if (old + oldSize == top && old + newSize <= end) {
      top = old + newSize;
      return old;
    }
    if (newSize <= oldSize) return old;
  }
  const ptr = alloc(newSize, align);
  if (old != 0) memory.copy(ptr, old, oldSize);
  return ptr;
}

/** Free everything allocated since the last reset. */
export function reset(): void {
  while (current != first) {
    const previous = load<usize>(current);
    heap.free(current);
    current = previous;
  }
  if (first != 0) {
    top = first + HEADER;
    end = load<usize>(first, sizeof<usize>());
  }
}

function grow(size: usize, align: usize): usize {
  const bytes = max(CHUNK, HEADER + size + align);
  const chunk = heap.alloc(bytes);
  end = chunk + bytes;
  store<usize>(chunk, current);
  store<usize>(chunk, end, sizeof<usize>());
  if (first == 0) first = chunk;
  current = chunk;
  return (chunk + HEADER + align - 1) & ~(align - 1);
}
