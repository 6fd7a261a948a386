// serde_json's reading of JSON numbers, and floats written back so they read the same.
#include "number.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// serde_json's powers of ten, 1e0..=1e308, each correctly rounded.
static double pow10_of(int k) {
  static double table[309];
  if (table[0] == 0) {
    char text[8];
    for (int i = 0; i < 309; i++) {
      snprintf(text, sizeof text, "1e%d", i);
      table[i] = strtod(text, NULL);
    }
  }
  return table[k];
}

static bool u64_overflows(uint64_t sig, uint64_t digit) {
  return sig >= UINT64_MAX / 10 && (sig > UINT64_MAX / 10 || digit > UINT64_MAX % 10);
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

number_kind number_read(const char *s, size_t n, double *f, size_t *bad) {
  size_t i = 0;
  bool positive = true;
  if (s[i] == '-') {
    positive = false;
    i++;
  }
  if (i == n || !is_digit(s[i])) return *bad = i, NUMBER_INVALID;
  uint64_t sig = 0;
  int64_t exponent = 0;
  bool dropping = false;  // the significand is full: later digits only scale it
  bool is_float = false;
  if (s[i] == '0') {
    i++;
    if (i < n && is_digit(s[i])) return *bad = i, NUMBER_INVALID;
  } else {
    for (; i < n && is_digit(s[i]); i++) {
      uint64_t digit = (uint64_t)(s[i] - '0');
      if (dropping || u64_overflows(sig, digit)) {
        dropping = is_float = true;
        exponent++;
      } else {
        sig = sig * 10 + digit;
      }
    }
  }
  if (i < n && s[i] == '.') {
    is_float = true;
    // serde_json starts afresh here: a digit that fits is taken even after integer digits
    // were dropped, the first one that does not ends the significand.
    dropping = false;
    size_t first = ++i;
    for (; i < n && is_digit(s[i]); i++) {
      uint64_t digit = (uint64_t)(s[i] - '0');
      if (dropping || u64_overflows(sig, digit)) {
        dropping = true;
      } else {
        sig = sig * 10 + digit;
        exponent--;
      }
    }
    if (i == first) return *bad = i, NUMBER_INVALID;
  }
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    is_float = true;
    bool exp_positive = true;
    if (++i < n && (s[i] == '+' || s[i] == '-')) exp_positive = s[i++] == '+';
    size_t first = i;
    int32_t exp = 0;
    bool exp_overflows = false;
    for (; i < n && is_digit(s[i]); i++) {
      int32_t digit = s[i] - '0';
      if (exp >= INT32_MAX / 10 && (exp > INT32_MAX / 10 || digit > INT32_MAX % 10)) {
        exp_overflows = true;
      } else if (!exp_overflows) {
        exp = exp * 10 + digit;
      }
    }
    if (i == first) return *bad = i, NUMBER_INVALID;
    if (i < n) return *bad = i, NUMBER_INVALID;
    if (exp_overflows) {
      if (sig != 0 && exp_positive) return *bad = i, NUMBER_OUT_OF_RANGE;
      *f = positive ? 0.0 : -0.0;
      return NUMBER_FLOAT;
    }
    exponent += exp_positive ? exp : -(int64_t)exp;
  }
  if (i < n) return *bad = i, NUMBER_INVALID;
  if (!is_float) {
    // Negative integers below i64::MIN, and -0, are floats to serde_json.
    if (positive || (sig != 0 && sig <= (uint64_t)1 << 63)) return NUMBER_INTEGER;
    *f = -(double)sig;
    return NUMBER_FLOAT;
  }
  if (exponent > INT32_MAX) exponent = INT32_MAX;
  if (exponent < INT32_MIN) exponent = INT32_MIN;
  double v = (double)sig;
  for (;;) {
    int64_t abs = exponent < 0 ? -exponent : exponent;
    if (abs <= 308) {
      if (exponent >= 0) {
        v *= pow10_of((int)abs);
        if (isinf(v)) return *bad = i, NUMBER_OUT_OF_RANGE;
      } else {
        v /= pow10_of((int)abs);
      }
      break;
    }
    if (v == 0) break;
    if (exponent >= 0) return *bad = i, NUMBER_OUT_OF_RANGE;
    v /= 1e308;
    exponent += 308;
  }
  *f = positive ? v : -v;
  return NUMBER_FLOAT;
}

// The shortest of 15, 16 or 17 significant digits that reads back as the same f64, always with
// a point or an exponent: serde_json writes a float as `1.0`, never `1`.
void number_write_float(double f, buf *out) {
  char text[32];
  for (int digits = 15; digits <= 17; digits++) {
    snprintf(text, sizeof text, "%.*g", digits, f);
    if (strtod(text, NULL) == f) break;
  }
  buf_str(out, text);
  if (!strpbrk(text, ".e")) buf_str(out, ".0");
}
