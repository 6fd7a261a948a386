// The shortest decimal digits of a float, as serde_json writes them: the fewest digits that read
// back to the same f64 and, of those, the closest to it (what Ryu-style writers produce).
// AssemblyScript's own `toString` (Grisu2) always reads back correctly but, for some floats that
// need 16 or 17 digits, is not the closest (0.1 + 0.2 comes out 0.30000000000000007, not
// 0.30000000000000004); those go through the exact algorithm below.

/** The digits of the last `shortest` (ASCII), at most 17. */
export const digits = memory.data(24);

/** The decimal exponent of the first digit: f = d.ddd × 10^exponent. */
export let exponent: i32 = 0;

/** Write the digits of `f` (finite, > 0) to `digits` and return how many there are. */
export function shortest(f: f64): i32 {
  const count = fromGrisu(f);
  // Doubles are at least 2^-53 apart relative to their size and 15-digit decimals 10^-14, so at
  // most one decimal of 15 digits or fewer reads back to `f`: Grisu's answer, if it is one.
  return count <= 15 ? count : exact(f);
}

/** Grisu's digits, read back from AssemblyScript's text (`123.45`, `1e+21`, `1.5e-7`). */
function fromGrisu(f: f64): i32 {
  const text = f.toString();
  let count = 0;
  let point = 0;
  let seenPoint = false;
  let k = 0;
  for (; k < text.length; k++) {
    const c = text.charCodeAt(k);
    if (c == 0x2e) {
      seenPoint = true;
    } else if (c >= 0x30 && c <= 0x39) {
      if (count == 0 && c == 0x30) {
        if (seenPoint) point--; // a leading zero after the point: 0.00123
      } else {
        store<u8>(digits + <usize>(count++), c);
        if (!seenPoint) point++;
      }
    } else {
      break; // `e`
    }
  }
  if (k < text.length) point += I32.parseInt(text.substring(k + 1));
  while (count > 1 && load<u8>(digits + <usize>(count - 1)) == 0x30) count--;
  exponent = point - 1;
  return count;
}

// --- The exact algorithm: Burger and Dybvig's free-format printing ("Printing Floating-Point
// Numbers Quickly and Accurately", 1996), with big integers. f = r / s; the numbers that read
// back to f lie within (r - m-, r + m+) / s, the bounds included when f's significand is even.

/** 40 × 32 bits: the largest value here, r × 10 for the smallest subnormal, needs about 1,090. */
const LIMBS = 40;

class Big {
  limbs: StaticArray<u32> = new StaticArray<u32>(LIMBS);
  length: i32 = 0;

  set(v: u64): Big {
    this.limbs[0] = <u32>v;
    this.limbs[1] = <u32>(v >> 32);
    this.length = v >> 32 ? 2 : v ? 1 : 0;
    return this;
  }

  copy(other: Big): Big {
    for (let i = 0; i < other.length; i++) this.limbs[i] = other.limbs[i];
    this.length = other.length;
    return this;
  }

  /** × 2^n */
  shiftLeft(n: i32): Big {
    const words = n >> 5;
    const bits = n & 31;
    let carry: u32 = 0;
    if (bits != 0) {
      for (let i = 0; i < this.length; i++) {
        const v = this.limbs[i];
        this.limbs[i] = (v << bits) | carry;
        carry = v >> (32 - bits);
      }
    }
    if (carry != 0) this.limbs[this.length++] = carry;
    if (words > 0 && this.length > 0) {
      for (let i = this.length - 1; i >= 0; i--) this.limbs[i + words] = this.limbs[i];
      for (let i = 0; i < words; i++) this.limbs[i] = 0;
      this.length += words;
    }
    return this;
  }

  mulSmall(m: u32): Big {
    let carry: u64 = 0;
    for (let i = 0; i < this.length; i++) {
      const v = <u64>this.limbs[i] * m + carry;
      this.limbs[i] = <u32>v;
      carry = v >> 32;
    }
    if (carry != 0) this.limbs[this.length++] = <u32>carry;
    return this;
  }

  /** × 10^n */
  mulPow10(n: i32): Big {
    for (; n >= 9; n -= 9) this.mulSmall(1000000000);
    let m: u32 = 1;
    for (; n > 0; n--) m *= 10;
    return this.mulSmall(m);
  }

  add(other: Big): Big {
    const length = max(this.length, other.length);
    let carry: u64 = 0;
    for (let i = 0; i < length; i++) {
      const v = <u64>(i < this.length ? this.limbs[i] : 0) + (i < other.length ? other.limbs[i] : 0) + carry;
      this.limbs[i] = <u32>v;
      carry = v >> 32;
    }
    this.length = length;
    if (carry != 0) this.limbs[this.length++] = <u32>carry;
    return this;
  }

  /** − other, which is not larger. */
  sub(other: Big): Big {
    let borrow: i64 = 0;
    for (let i = 0; i < this.length; i++) {
      let v = <i64>this.limbs[i] - (i < other.length ? other.limbs[i] : 0) - borrow;
      borrow = v < 0 ? 1 : 0;
      if (v < 0) v += <i64>1 << 32;
      this.limbs[i] = <u32>v;
    }
    while (this.length > 0 && this.limbs[this.length - 1] == 0) this.length--;
    return this;
  }

  compare(other: Big): i32 {
    if (this.length != other.length) return this.length < other.length ? -1 : 1;
    for (let i = this.length - 1; i >= 0; i--) {
      const a = this.limbs[i];
      const b = other.limbs[i];
      if (a != b) return a < b ? -1 : 1;
    }
    return 0;
  }
}

const r = new Big();
const s = new Big();
const mPlus = new Big();
const mMinus = new Big();
const sum = new Big();

function exact(f: f64): i32 {
  const bits = reinterpret<u64>(f);
  const biased = <i32>(bits >> 52) & 0x7ff;
  const fraction = bits & 0xfffffffffffff;
  const significand = biased == 0 ? fraction : fraction | (<u64>1 << 52);
  const e = biased == 0 ? -1074 : biased - 1075;
  const inclusive = (significand & 1) == 0;
  // At a power of two the next float down is half as far as the next one up.
  const unequal = fraction == 0 && biased > 1;
  if (e >= 0) {
    r.set(significand).shiftLeft(e + (unequal ? 2 : 1));
    s.set(unequal ? 4 : 2);
    mPlus.set(1).shiftLeft(unequal ? e + 1 : e);
    mMinus.set(1).shiftLeft(e);
  } else {
    r.set(significand).shiftLeft(unequal ? 2 : 1);
    s.set(1).shiftLeft(unequal ? 2 - e : 1 - e);
    mPlus.set(unequal ? 2 : 1);
    mMinus.set(1);
  }
  // k estimates the decimal exponent: f < 10^k, one too small at worst.
  let k = <i32>Math.ceil(Math.log10(f) - 1e-10);
  if (k >= 0) {
    s.mulPow10(k);
  } else {
    r.mulPow10(-k);
    mPlus.mulPow10(-k);
    mMinus.mulPow10(-k);
  }
  if (reachesS(inclusive)) {
    k++;
  } else {
    r.mulSmall(10);
    mPlus.mulSmall(10);
    mMinus.mulSmall(10);
  }
  exponent = k - 1;
  let count = 0;
  for (;;) {
    let d = 0;
    while (r.compare(s) >= 0) {
      r.sub(s);
      d++;
    }
    const low = inclusive ? r.compare(mMinus) <= 0 : r.compare(mMinus) < 0;
    const high = reachesS(inclusive);
    if (!low && !high) {
      store<u8>(digits + <usize>(count++), 0x30 + d);
      r.mulSmall(10);
      mPlus.mulSmall(10);
      mMinus.mulSmall(10);
      continue;
    }
    if (low && high) {
      // Both d and d + 1 read back: the closer one (r / s against one half), the even one on a tie.
      const half = sum.copy(r).shiftLeft(1).compare(s);
      if (half > 0 || (half == 0 && (d & 1) != 0)) d++;
    } else if (high) {
      d++;
    }
    store<u8>(digits + <usize>(count++), 0x30 + d);
    return count;
  }
}

/** r + m+ reaches s (passes it, when the bound is excluded). */
function reachesS(inclusive: bool): bool {
  const order = sum.copy(r).add(mPlus).compare(s);
  return inclusive ? order >= 0 : order > 0;
}
