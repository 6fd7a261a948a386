// JSON numbers as the Rust handler's serde_json 1.0 reads them (without its `float_roundtrip`
// feature), so that this handler refuses the same numbers and writes the same values.
#ifndef ENRICH_NUMBER_H
#define ENRICH_NUMBER_H

#include <stddef.h>

#include "buf.h"

typedef enum {
  NUMBER_INTEGER,       // fits an i64 or a u64: written back as it was
  NUMBER_FLOAT,         // an f64, in *f
  NUMBER_INVALID,       // not a number by JSON's grammar
  NUMBER_OUT_OF_RANGE,  // past f64's range
} number_kind;

// Reads s[0..n). Anything but an integer that fits becomes the f64 serde_json computes
// (significand × 10^exponent by its own f64 arithmetic, not always the correctly rounded value);
// on a problem, *bad is the offset where it was found.
number_kind number_read(const char *s, size_t n, double *f, size_t *bad);

// Appends f as JSON that reads back as the same f64 and, like serde_json's `1.0`, stays a float.
void number_write_float(double f, buf *out);

#endif
