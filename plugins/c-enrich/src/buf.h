// A growable byte buffer, and allocation that traps when memory runs out.
//
// A failed allocation means the host refused to grow memory past the handler's `memory_mb`;
// trapping (abort is `unreachable` in wasi-libc) lets the host dead-letter the message with
// class `memory-limit`, as it does for the Rust handler, instead of a misleading handler error.
#ifndef ENRICH_BUF_H
#define ENRICH_BUF_H

#include <stdlib.h>
#include <string.h>

static inline void *xrealloc(void *ptr, size_t size) {
  ptr = realloc(ptr, size ? size : 1);
  if (!ptr) abort();
  return ptr;
}

static inline void *xmalloc(size_t size) { return xrealloc(NULL, size); }

// `data` is malloc'd (or NULL while empty) and not NUL-terminated; hand it on or free it.
typedef struct {
  char *data;
  size_t len;
  size_t cap;
} buf;

static inline void buf_add(buf *b, const void *bytes, size_t n) {
  if (b->cap - b->len < n) {
    size_t cap = b->cap ? b->cap * 2 : 64;
    while (cap - b->len < n) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, bytes, n);
  b->len += n;
}

static inline void buf_str(buf *b, const char *s) { buf_add(b, s, strlen(s)); }

static inline void buf_char(buf *b, char c) { buf_add(b, &c, 1); }

static inline void buf_free(buf *b) {
  free(b->data);
  *b = (buf){0};
}

#endif
