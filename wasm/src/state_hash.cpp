// See state_hash.hpp for the canonical form.
//
// One pass validates the text and writes its canonical form straight into an output buffer
// (the caller's string, or a per-thread buffer that is then hashed with XXH3 in one shot).
// Objects whose keys arrive in order need nothing more; an object whose keys arrive out of order
// is permuted in place when it closes (its members' byte spans are reordered through a scratch
// buffer). Explicit stacks bounded by kMaxJsonDepth, no recursion.
//
// Numbers never go through libc (printf/strtod use a software long double in WASM and are slow).
// Integers are copied digit for digit. A float is rounded by the first method that applies; each
// gives round_N(nearest double to the literal) exactly (see roundFloat):
//   A. decimal window (floatDigits <= 15): the literal's digits alone decide when they are not
//      within the double's rounding error of an N-digit rounding boundary.
//   B. exactly representable literal (e.g. -243.994140625): rounding the digits is exact.
//   C. exact integer arithmetic: 128-bit for literals of at most 19 significant digits with a
//      decimal exponent in -27..19 (what serializers write); otherwise big integers: the nearest
//      double by a search over bit patterns with exact comparisons against midpoints, then its
//      N-digit rounding, again by exact comparisons.
// Only integer arithmetic and one correctly rounded IEEE multiplication/division (Clinger's fast
// path), so the native and the WASM build agree bit for bit.
#include "state_hash.hpp"

#include <algorithm>
#include <bit>
#include <cstring>
#include <vector>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace p2psync {

namespace {

// Rare paths (big integers) stay out of line: smaller code, and the hot loop stays compact.
#define P2PSYNC_COLD [[gnu::noinline, gnu::cold]]

// ============================================================================ exact arithmetic

constexpr uint64_t kPow10U64[20] = {1ull, 10ull, 100ull, 1000ull, 10000ull, 100000ull, 1000000ull, 10000000ull,
                                    100000000ull, 1000000000ull, 10000000000ull, 100000000000ull,
                                    1000000000000ull, 10000000000000ull, 100000000000000ull,
                                    1000000000000000ull, 10000000000000000ull, 100000000000000000ull,
                                    1000000000000000000ull, 10000000000000000000ull};

// 10^0..10^22 are exact doubles.
constexpr double kPow10Dbl[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                  1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

constexpr uint64_t kTwo53 = 1ull << 53;
constexpr uint64_t kMaxFiniteBits = 0x7FEFFFFFFFFFFFFFull;  // DBL_MAX

uint64_t pow5U64(int k) {  // k <= 27
  uint64_t r = 1;
  for (int i = 0; i < k; ++i) r *= 5;
  return r;
}

uint64_t doubleBits(double v) {
  uint64_t b;
  std::memcpy(&b, &v, sizeof b);
  return b;
}

// Non-negative big integer, little-endian 32-bit limbs. Capacity: the largest value built is
// (2^54) * 5^1125 (a midpoint times the 5-power of an 801-digit literal at exponent -325), about
// 2667 bits, or an 801-digit literal (2661 bits); after aligning powers of two the shifted side
// is never longer than the other side. 96 limbs = 3072 bits.
struct Big {
  static constexpr int kCap = 96;
  uint32_t w[kCap];
  int n = 0;
  bool ok = true;  // false once an operation would have exceeded the capacity (never expected)

  explicit Big(uint64_t v = 0) {
    while (v) {
      w[n++] = static_cast<uint32_t>(v);
      v >>= 32;
    }
  }
  Big(const Big& o) : n(o.n), ok(o.ok) { std::memcpy(w, o.w, sizeof(uint32_t) * static_cast<size_t>(n)); }
  Big& operator=(const Big&) = delete;
  void mulAdd(uint32_t m, uint32_t add) {
    uint64_t carry = add;
    for (int i = 0; i < n; ++i) {
      const uint64_t t = static_cast<uint64_t>(w[i]) * m + carry;
      w[i] = static_cast<uint32_t>(t);
      carry = t >> 32;
    }
    if (carry) {
      if (n == kCap) {
        ok = false;
        return;
      }
      w[n++] = static_cast<uint32_t>(carry);
    }
  }
  P2PSYNC_COLD void mulPow5(int k) {
    for (; k >= 13; k -= 13) mulAdd(1220703125u, 0);  // 5^13
    if (k > 0) mulAdd(static_cast<uint32_t>(pow5U64(k)), 0);
  }
  int bitLen() const { return n == 0 ? 0 : 32 * (n - 1) + (32 - std::countl_zero(w[n - 1])); }
  P2PSYNC_COLD void shiftLeft(int bits) {
    if (n == 0 || bits == 0) return;
    if (bitLen() + bits > kCap * 32) {
      ok = false;
      return;
    }
    const int limbs = bits / 32, rem = bits % 32;
    if (rem == 0) {
      for (int i = n - 1; i >= 0; --i) w[i + limbs] = w[i];
    } else {
      const uint32_t top = w[n - 1] >> (32 - rem);
      if (top) w[n + limbs] = top;  // in range: the bit length check above
      for (int i = n - 1; i >= 1; --i) w[i + limbs] = (w[i] << rem) | (w[i - 1] >> (32 - rem));
      w[limbs] = w[0] << rem;
      if (top) ++n;
    }
    for (int i = 0; i < limbs; ++i) w[i] = 0;
    n += limbs;
  }
};

int compareBig(const Big& a, const Big& b) {
  if (a.n != b.n) return a.n < b.n ? -1 : 1;
  for (int i = a.n - 1; i >= 0; --i)
    if (a.w[i] != b.w[i]) return a.w[i] < b.w[i] ? -1 : 1;
  return 0;
}

// sign(A * 2^a2 * 5^a5 - B * 2^b2 * 5^b5) for A, B > 0. Consumes A and B. `ok` goes false on a
// capacity overflow (never expected; see Big).
P2PSYNC_COLD int compareScaled(Big& A, int a2, int a5, Big& B, int b2, int b5, bool& ok) {
  const int m5 = std::min(a5, b5);
  A.mulPow5(a5 - m5);
  B.mulPow5(b5 - m5);
  const int ta = A.bitLen() + a2, tb = B.bitLen() + b2;
  if (ta != tb) return ta < tb ? -1 : 1;
  if (a2 > b2) A.shiftLeft(a2 - b2);
  else B.shiftLeft(b2 - a2);
  if (!A.ok || !B.ok) ok = false;
  return compareBig(A, B);
}

// ============================================================================ float rounding

// Result of rounding: value = I * 10^(E - nd + 1), I < 10^nd; or zero.
struct Rounded {
  uint64_t I = 0;
  int nd = 0;  // digits of I (1..17)
  int E = 0;   // decimal exponent of I's leading digit
  bool zero = false;
};

// I (nd digits) after a carry: 10^nd becomes 10^(nd-1) one decade up.
Rounded makeRounded(uint64_t I, int nd, int64_t E) {
  Rounded r;
  if (I == kPow10U64[nd]) {
    I = kPow10U64[nd - 1];
    ++E;
  }
  r.I = I;
  r.nd = nd;
  r.E = static_cast<int>(E);
  return r;
}

// First n digits of d (padded with zeros when d has fewer).
uint64_t leadingDigits(const char* d, int k, int n) {
  uint64_t v = 0;
  for (int j = 0; j < n; ++j) v = v * 10 + static_cast<uint64_t>(j < k ? d[j] - '0' : 0);
  return v;
}

// The smallest x in [lo, hi] with pred(x) (pred monotone, pred(hi) true), trying `guess` and
// its neighbours first, then bisecting.
template <class Pred>
uint64_t smallestTrue(uint64_t lo, uint64_t hi, uint64_t guess, Pred pred) {
  guess = std::clamp(guess, lo, hi);
  if (pred(guess)) {
    for (int step = 0; step < 3 && guess > lo; ++step) {
      if (!pred(guess - 1)) return guess;
      --guess;
    }
    hi = guess;
  } else {
    for (int step = 0; step < 3 && guess < hi; ++step) {
      if (pred(++guess)) return guess;
    }
    lo = guess;
  }
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    if (pred(mid)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

// Nearest double to 0.d * 10^(E+1) (k digits, no trailing zeros unless sticky; sticky: nonzero
// digits follow), as a bit pattern; false on overflow (the nearest double is infinite).
// -325 <= E <= 308.
P2PSYNC_COLD bool nearestDouble(const char* d, int k, bool sticky, int64_t E, uint64_t& bits, bool& ok) {
  // L = S * 10^q, S an integer of k (+1 sticky digit) digits.
  int q = static_cast<int>(E) - k + 1;
  if (!sticky && k <= 19) {
    const uint64_t S = leadingDigits(d, k, k);
    if (S <= kTwo53 && q >= -22 && q <= 22) {  // Clinger: one correctly rounded IEEE operation
      const double v = q >= 0 ? static_cast<double>(S) * kPow10Dbl[q] : static_cast<double>(S) / kPow10Dbl[-q];
      bits = doubleBits(v);
      return true;
    }
  }
  Big S;
  for (int j = 0; j < k;) {
    const int c = std::min(9, k - j);
    uint32_t chunk = 0;
    for (int t = 0; t < c; ++t) chunk = chunk * 10 + static_cast<uint32_t>(d[j + t] - '0');
    S.mulAdd(static_cast<uint32_t>(kPow10U64[c]), chunk);
    j += c;
  }
  if (sticky) {  // an 801st digit standing for "more nonzero digits": no midpoint lies in between
    S.mulAdd(10, 1);
    --q;
  }
  if (!S.ok) ok = false;
  // P(b): L lies below the midpoint between b and b+1, or on it with b even. Monotone in b; the
  // nearest double is the smallest b with P(b).
  auto P = [&](uint64_t b) {
    const uint64_t mant = b & ((1ull << 52) - 1);
    const int x = static_cast<int>(b >> 52);
    const uint64_t f = x == 0 ? mant : (mant | (1ull << 52));
    const int e = x == 0 ? -1074 : x - 1075;
    Big A = S, M(2 * f + 1);  // midpoint = (2f+1) * 2^(e-1)
    const int c = compareScaled(A, q, q, M, e - 1, 0, ok);
    return c < 0 || (c == 0 && (b & 1) == 0);
  };
  // Estimate with doubles (off by a few units in the last place), then search.
  const uint64_t S19 = leadingDigits(d, k, std::min(k, 19));
  int s = static_cast<int>(E) - std::min(k, 19) + 1;
  double v = static_cast<double>(S19);
  for (; s > 22; s -= 22) v *= 1e22;
  for (; s < -22; s += 22) v /= 1e22;
  v = s >= 0 ? v * kPow10Dbl[s] : v / kPow10Dbl[-s];
  if (!P(kMaxFiniteBits)) return false;  // rounds to infinity
  bits = smallestTrue(0, kMaxFiniteBits, doubleBits(v), P);
  return true;
}

// round_N of the (positive) double with bit pattern `bits`. El: decimal exponent of the literal
// (the double's is El - 1, El or El + 1), I0: the literal's first N digits (estimate).
P2PSYNC_COLD Rounded roundDouble(uint64_t bits, int N, int64_t El, uint64_t I0, bool& ok) {
  Rounded r;
  if (bits == 0) {
    r.zero = true;
    return r;
  }
  const uint64_t mant = bits & ((1ull << 52) - 1);
  const int x = static_cast<int>(bits >> 52);
  const uint64_t f = x == 0 ? mant : (mant | (1ull << 52));
  const int e = x == 0 ? -1074 : x - 1075;
  auto cmpPow10 = [&](int E) {  // sign(d - 10^E)
    Big A(f), B(1);
    return compareScaled(A, e, 0, B, E, E, ok);
  };
  int E = static_cast<int>(El);
  int guard = 0;
  while (cmpPow10(E) < 0 && guard++ < 8) --E;
  while (cmpPow10(E + 1) >= 0 && guard++ < 16) ++E;
  if (E != El) I0 = E < El ? kPow10U64[N] - 1 : kPow10U64[N - 1];
  const int k = E - N + 1;
  // Q(I): 2d < (2I+1) * 10^k, or equal with I even. Monotone; the answer is the smallest I in
  // [10^(N-1), 10^N] with Q(I) (Q(10^N) holds since d < 10^(E+1)).
  auto Q = [&](uint64_t I) {
    Big A(f), B(2 * I + 1);
    const int c = compareScaled(A, e + 1, 0, B, k, k, ok);
    return c < 0 || (c == 0 && (I & 1) == 0);
  };
  return makeRounded(smallestTrue(kPow10U64[N - 1], kPow10U64[N], I0, Q), N, E);
}

// ---- 128-bit exact arithmetic: method C for literals of at most 19 significant digits with a
// decimal exponent q in -27..19 (5^27 < 2^63), which covers what JSON serializers write.

__extension__ typedef unsigned __int128 U128;

int bitLen64(uint64_t v) { return 64 - std::countl_zero(v); }
int bitLen128(U128 v) {
  const uint64_t hi = static_cast<uint64_t>(v >> 64);
  return hi ? 128 - std::countl_zero(hi) : bitLen64(static_cast<uint64_t>(v));
}

// Bit pattern of the double nearest to (m + frac) * 2^e2, where 0 <= frac < 1 is nonzero iff
// sticky; m has at least 54 bits when sticky. The result must be a normal double.
uint64_t packDouble(U128 m, int e2, bool sticky) {
  const int b = bitLen128(m);
  uint64_t mant;
  if (b <= 53) {
    mant = static_cast<uint64_t>(m) << (53 - b);
    e2 -= 53 - b;
  } else {
    const int sh = b - 53;
    const U128 rem = m & ((U128(1) << sh) - 1), half = U128(1) << (sh - 1);
    mant = static_cast<uint64_t>(m >> sh);
    e2 += sh;
    if (rem > half || (rem == half && (sticky || (mant & 1)))) {
      if (++mant == kTwo53) {
        mant >>= 1;
        ++e2;
      }
    }
  }
  // value = mant * 2^e2 with 2^52 <= mant < 2^53
  return (static_cast<uint64_t>(e2 + 52 + 1023) << 52) | (mant & ((1ull << 52) - 1));
}

// Nearest double to S * 10^q (S > 0); false when q is outside -27..19.
[[gnu::noinline]] bool nearestDouble128(uint64_t S, int64_t q, uint64_t& bits) {
  if (q >= 0) {
    if (q > 19) return false;
    bits = packDouble(static_cast<U128>(S) * kPow10U64[q], 0, false);  // < 10^38 < 2^127
    return true;
  }
  if (q < -27) return false;
  const int p = static_cast<int>(-q);
  const uint64_t D = pow5U64(p);
  // S * 10^q = (S / 5^p) * 2^-p; scale S so that the quotient has at least 56 bits
  const int k = std::max(0, 56 + bitLen64(D) - bitLen64(S));  // bitLen(S << k) <= 119
  const U128 X = static_cast<U128>(S) << k;
  bits = packDouble(X / D, -k - p, X % D != 0);
  return true;
}

// floor(d / 10^k) of d = f * 2^e (f > 0) in I, and the remainder against half a unit in half
// (-1 below, 0 equal, 1 above; -1 when there is no remainder). False if it does not fit.
bool divPow10(uint64_t f, int e, int k, uint64_t& I, int& half) {
  auto cmp = [](U128 a, U128 b) { return a < b ? -1 : a > b ? 1 : 0; };
  if (k <= 0) {  // d / 10^k = f * 5^-k * 2^(e-k)
    if (k < -27) return false;
    const U128 A = static_cast<U128>(f) * pow5U64(-k);  // < 2^116
    const int sh = e - k;
    if (sh >= 0) {
      if (bitLen128(A) + sh > 64) return false;
      I = static_cast<uint64_t>(A << sh);
      half = -1;
    } else {
      const int s = -sh;
      if (s > 120) return false;
      if (bitLen128(A) - s > 64) return false;
      I = static_cast<uint64_t>(A >> s);
      half = cmp(A & ((U128(1) << s) - 1), U128(1) << (s - 1));
    }
    return true;
  }
  if (k > 27) return false;  // d / 10^k = f * 2^(e-k) / 5^k
  const U128 D = pow5U64(k);
  const int sh = e - k;
  if (sh >= 0) {
    if (53 + sh > 127) return false;
    const U128 X = static_cast<U128>(f) << sh, Q = X / D;
    if (bitLen128(Q) > 64) return false;
    I = static_cast<uint64_t>(Q);
    half = cmp(2 * (X % D), D);
  } else {
    const int s = -sh;
    if (bitLen128(D) + s > 126) return false;
    const U128 den = D << s;
    I = static_cast<uint64_t>(f / den);
    half = cmp(2 * (f % den), den);
  }
  return true;
}

// round_N of the positive normal double `bits` (see roundDouble) with 128-bit arithmetic;
// false when the numbers do not fit (then roundDouble does it).
[[gnu::noinline]] bool roundDouble128(uint64_t bits, int N, int64_t El, Rounded& out) {
  const uint64_t f = (bits & ((1ull << 52) - 1)) | (1ull << 52);
  const int e = static_cast<int>(bits >> 52) - 1075;
  int E = static_cast<int>(El);
  for (int tries = 0; tries < 3; ++tries) {  // E is El - 1, El or El + 1
    uint64_t I;
    int half;
    if (!divPow10(f, e, E - N + 1, I, half)) return false;
    if (I < kPow10U64[N - 1]) {
      --E;
      continue;
    }
    if (I >= kPow10U64[N]) {
      ++E;
      continue;
    }
    out = makeRounded(I + ((half > 0 || (half == 0 && (I & 1))) ? 1 : 0), N, E);
    return true;
  }
  return false;
}

// Slack of method A in units of 10^-19 of the N-th digit: 10^(N+19) * 2^-53 * (1 + 2^-52) is
// below 1.1103 * 10^(N+3).
constexpr uint64_t windowSlack(int N) { return 11103ull * kPow10U64[N - 1]; }
constexpr uint64_t kHalf19 = 5000000000000000000ull;  // 1/2 in units of 10^-19

// Method A on the first N digits I and the next 19 digits T (sticky: nonzero digits after
// those). L = literal, d = nearest double, u = unit of L's N-th digit, t = the rest of L below
// that digit in units of u (0 <= t < 1). For a normal d, |d - L| <= 2^-53 d, and L < 10^N u, so
// |d - L| < delta u with delta = windowSlack(N) * 10^-19 (< 0.12 for N <= 15). If t + delta <=
// 1/2, d and L both round down to the same N digits (if those are 10...0, d may be just below
// that power of ten, but by less than 0.023 u, so it still rounds to it on the 10x finer grid
// there); if t - delta >= 1/2, both round up. Requires N <= 15 and |E| <= 307 (d normal and
// finite). Returns false when the literal is within delta of a boundary.
bool roundWindow(uint64_t I, uint64_t T, bool sticky, int N, int64_t E, Rounded& out) {
  const uint64_t slack = windowSlack(N);
  if (T + (sticky ? 1 : 0) + slack <= kHalf19) {
    out = makeRounded(I, N, E);
    return true;
  }
  if (T >= kHalf19 + slack) {
    out = makeRounded(I + 1, N, E);
    return true;
  }
  return false;
}

// Method B test: is S * 10^q (S an integer) exactly a double? S < 2^53 and q >= 0 with
// S * 10^q <= 2^53, or q < 0 with 5^-q dividing S (then it is (S / 5^-q) * 2^q, normal).
bool exactlyDouble(uint64_t S, int q) {
  if (S > kTwo53) return false;
  if (q >= 0) return q <= 15 && S <= kTwo53 / kPow10U64[q];
  return q >= -22 && S % pow5U64(-q) == 0;
}

constexpr int kMaxSigDigits = 800;  // more significant digits than any double midpoint has (768)

// The significant digits of a float literal: value = 0.d[0]d[1]... * 10^(E+1), d[0] != '0'.
struct Sig {
  int k = 0;            // digits stored in d (trailing zeros dropped unless sticky)
  bool sticky = false;  // a nonzero digit follows the stored ones
  bool zero = true;     // the value is 0
  int64_t E = 0;        // decimal exponent of d[0]
};

constexpr int64_t kExpSat = 100000000;  // exponents are saturated here (far outside any double)

// Collects up to `cap` significant digits of the validated float literal p[0..len) into d.
Sig collectDigits(const char* p, size_t len, char* d, int cap) {
  Sig s;
  size_t i = p[0] == '-' ? 1 : 0;
  int64_t pos = -1;  // decimal exponent of the digit at i, before the exponent part
  for (size_t j = i; j < len && p[j] >= '0' && p[j] <= '9'; ++j) ++pos;
  for (; i < len; ++i) {
    const char c = p[i];
    if (c == '.') continue;
    if (c == 'e' || c == 'E') break;
    if (s.zero) {
      if (c != '0') {
        s.zero = false;
        s.E = pos;
      }
    }
    if (!s.zero) {
      if (s.k < cap) d[s.k++] = c;
      else if (c != '0') s.sticky = true;
    }
    --pos;
  }
  if (i < len) {  // exponent
    ++i;
    bool neg = false;
    if (p[i] == '+' || p[i] == '-') neg = p[i++] == '-';
    int64_t e = 0;
    for (; i < len; ++i) e = std::min<int64_t>(e * 10 + (p[i] - '0'), kExpSat);
    s.E += neg ? -e : e;
  }
  if (!s.sticky)
    while (s.k > 0 && d[s.k - 1] == '0') --s.k;
  return s;
}

// Exact half-even rounding of k digits (no trailing zeros) to N: for values that are doubles.
Rounded roundDigitsExact(const char* d, int k, int N, int64_t E) {
  if (k <= N) return makeRounded(leadingDigits(d, k, k), k, E);
  uint64_t I = leadingDigits(d, k, N);
  const char r = d[N];
  if (r > '5' || (r == '5' && (k > N + 1 || (I & 1)))) ++I;  // after d[N]: nonzero iff k > N+1
  return makeRounded(I, N, E);
}

// round_N of the nearest double, for any validated float literal. False: infinite.
P2PSYNC_COLD bool roundGeneral(const char* p, size_t len, int N, Rounded& out, bool& ok) {
  char d[kMaxSigDigits];
  if (N <= 15) {
    Sig s = collectDigits(p, len, d, N + 19);
    if (s.zero) {
      out.zero = true;
      return true;
    }
    if (s.E >= -307 && s.E <= 307) {
      uint64_t T = 0;  // the 19 digits after the first N
      for (int j = N; j < N + 19; ++j) T = T * 10 + static_cast<uint64_t>(j < s.k ? d[j] - '0' : 0);
      if (roundWindow(leadingDigits(d, s.k, N), T, s.sticky, N, s.E, out)) return true;
    }
  }
  Sig s = collectDigits(p, len, d, kMaxSigDigits);
  if (s.zero) {
    out.zero = true;
    return true;
  }
  if (s.E > 308) return false;  // >= 1e309: infinite
  if (s.E < -325) {             // < 1e-325: below half the smallest subnormal
    out.zero = true;
    return true;
  }
  if (!s.sticky && s.k <= 17 && exactlyDouble(leadingDigits(d, s.k, s.k), static_cast<int>(s.E) - s.k + 1)) {
    out = roundDigitsExact(d, s.k, N, s.E);  // method B
    return true;
  }
  uint64_t bits;  // method C
  if (!nearestDouble(d, s.k, s.sticky, s.E, bits, ok)) return false;
  out = roundDouble(bits, N, s.E, leadingDigits(d, s.k, N), ok);
  return true;
}

// The same for a literal with S (1 <= S < 10^19, no trailing zeros, K digits) significant digits
// and decimal exponent E of the first one: integer arithmetic only in the common cases.
bool roundShort(uint64_t S, int K, int64_t E, const char* p, size_t len, int N, Rounded& out, bool& ok) {
  auto methodC = [&] {
    uint64_t bits;
    if (!nearestDouble128(S, E - K + 1, bits)) return false;
    if (!roundDouble128(bits, N, E, out)) {
      const uint64_t I0 = K >= N ? S / kPow10U64[K - N] : S * kPow10U64[N - K];
      out = roundDouble(bits, N, E, I0, ok);
    }
    return true;
  };
  if (E >= -307 && E <= 307) {
    if (K <= N) {  // nothing to round; L is the result (method A with t = 0, or B, or C exact)
      if (N <= 15 || exactlyDouble(S, static_cast<int>(E) - K + 1)) {
        out = makeRounded(S, K, E);
        return true;
      }
    } else {
      const int drop = K - N;  // 1..18
      const uint64_t I = S / kPow10U64[drop], R = S - I * kPow10U64[drop];
      if (N <= 15 && roundWindow(I, R * kPow10U64[19 - drop], false, N, E, out)) return true;
      if (exactlyDouble(S, static_cast<int>(E) - K + 1)) {
        const uint64_t half = 5 * kPow10U64[drop - 1];
        out = makeRounded(I + ((R > half || (R == half && (I & 1))) ? 1 : 0), N, E);
        return true;
      }
    }
    if (methodC()) return true;
  }
  return roundGeneral(p, len, N, out, ok);
}

// Post-processing that keeps every canonical text a fixed point (see state_hash.hpp):
//  - a result at or beyond the overflow threshold 2^1024 - 2^970 = 1.7976931348623158079...e308
//    (only for N <= 16, rounding up from near DBL_MAX) goes one unit toward zero: that is at most
//    DBL_MAX, whose unit in the last place (2^971) is below half the N-digit unit there (>= 10^293
//    / 2), so it re-canonicalizes to itself;
//  - a result D = 10^E becomes R = round_N(nearest double to 10^E) when they differ: below a
//    power of ten the N-digit grid is 10 times finer, and that double can lie outside D's
//    rounding interval there (N = 16, e.g. 1e23, or below 1e-307). R is not a power of ten, and
//    a round_N(double) that is not a power of ten re-canonicalizes to itself.
P2PSYNC_COLD void fixPowerOfTen(int N, Rounded& out, bool& ok) {
  const char one = '1';
  uint64_t bits;
  if (nearestDouble(&one, 1, false, out.E, bits, ok)) {
    const Rounded r = roundDouble(bits, N, out.E, kPow10U64[N - 1], ok);
    if (!r.zero) out = r;
  }
}

void fixPoint(int N, Rounded& out, bool& ok) {
  if (out.zero) return;
  if (out.E == 308 && out.nd == N && out.I * kPow10U64[17 - N] >= 17976931348623159ull) --out.I;
  // For N <= 15 and 10^E >= 1e-307 the nearest double is within 1.2e-16 * 10^E < 10^(E-N)/2 of
  // 10^E; for 0 <= E <= 22 it is 10^E itself.
  if (out.I == kPow10U64[out.nd - 1] && (N >= 16 || out.E < -307) && !(out.E >= 0 && out.E <= 22))
    fixPowerOfTen(N, out, ok);
}

const char kDigitPairs[] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

// Writes a rounded float like nlohmann::json's dump of a double (printf %g style); returns the
// length (at most 25).
size_t formatRounded(bool neg, Rounded r, char* buf) {
  if (r.zero) {
    std::memcpy(buf, "0.0", 3);
    return 3;
  }
  uint64_t I = r.I;
  int k = r.nd;
  while (I % 10 == 0) {
    I /= 10;
    --k;
  }
  char dig[20];
  for (int j = k; j > 1; j -= 2) {
    std::memcpy(dig + j - 2, kDigitPairs + 2 * (I % 100), 2);
    I /= 100;
  }
  if (k & 1) dig[0] = static_cast<char>('0' + I);
  char* p = buf;
  if (neg) *p++ = '-';
  const int n = r.E + 1;      // position of the decimal point relative to the first digit
  if (k <= n && n <= 15) {    // digits[000].0
    std::memcpy(p, dig, static_cast<size_t>(k));
    p += k;
    for (int j = k; j < n; ++j) *p++ = '0';
    *p++ = '.';
    *p++ = '0';
  } else if (0 < n && n <= 15) {  // dig.its
    std::memcpy(p, dig, static_cast<size_t>(n));
    p += n;
    *p++ = '.';
    std::memcpy(p, dig + n, static_cast<size_t>(k - n));
    p += k - n;
  } else if (-4 < n && n <= 0) {  // 0.[000]digits
    *p++ = '0';
    *p++ = '.';
    for (int j = 0; j < -n; ++j) *p++ = '0';
    std::memcpy(p, dig, static_cast<size_t>(k));
    p += k;
  } else {  // d.igitse+XX
    *p++ = dig[0];
    if (k > 1) {
      *p++ = '.';
      std::memcpy(p, dig + 1, static_cast<size_t>(k - 1));
      p += k - 1;
    }
    *p++ = 'e';
    int ex = n - 1;
    *p++ = ex < 0 ? '-' : '+';
    if (ex < 0) ex = -ex;
    if (ex >= 100) {
      *p++ = static_cast<char>('0' + ex / 100);
      ex %= 100;
    }
    std::memcpy(p, kDigitPairs + 2 * ex, 2);
    p += 2;
  }
  return static_cast<size_t>(p - buf);
}

// ============================================================================ strings

inline uint64_t load64(const unsigned char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

constexpr uint64_t kOnes = 0x0101010101010101ull, kHighs = 0x8080808080808080ull;

// High bit set in each byte of v that is '"', '\\', < 0x20 or >= 0x80. Bytes above the first
// such byte may be flagged spuriously (borrows); the lowest flagged byte is always exact.
inline uint64_t specialBytes(uint64_t v) {
  const uint64_t q = v ^ (kOnes * '"'), b = v ^ (kOnes * '\\');
  return (((q - kOnes) & ~q) | ((b - kOnes) & ~b) | ((v - kOnes * 0x20) & ~v) | v) & kHighs;
}

// Index of the first special byte in memory order, given specialBytes() != 0.
inline int firstSpecial(uint64_t m) {
  if constexpr (std::endian::native == std::endian::little) return std::countr_zero(m) >> 3;
  else return std::countl_zero(m) >> 3;
}

inline int hexVal(unsigned char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = static_cast<unsigned char>(c | 0x20);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// Four hex digits at p (caller checked bounds), or -1.
inline int hex4(const unsigned char* p) {
  const int a = hexVal(p[0]), b = hexVal(p[1]), c = hexVal(p[2]), d = hexVal(p[3]);
  if ((a | b | c | d) < 0) return -1;
  return (a << 12) | (b << 8) | (c << 4) | d;
}

// UTF-8 encoding of the scalar value cp into out; returns the length.
inline int utf8(uint32_t cp, char* out) {
  if (cp < 0x80) {
    out[0] = static_cast<char>(cp);
    return 1;
  }
  if (cp < 0x800) {
    out[0] = static_cast<char>(0xC0 | (cp >> 6));
    out[1] = static_cast<char>(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = static_cast<char>(0xE0 | (cp >> 12));
    out[1] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out[2] = static_cast<char>(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = static_cast<char>(0xF0 | (cp >> 18));
  out[1] = static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
  out[2] = static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
  out[3] = static_cast<char>(0x80 | (cp & 0x3F));
  return 4;
}

// Canonical form of the code point cp inside a string; returns the length (at most 6).
inline int canonicalChar(uint32_t cp, char* out) {
  static const char kHex[] = "0123456789abcdef";
  const char* shortEsc = nullptr;
  switch (cp) {
    case '"': shortEsc = "\\\""; break;
    case '\\': shortEsc = "\\\\"; break;
    case '\b': shortEsc = "\\b"; break;
    case '\f': shortEsc = "\\f"; break;
    case '\n': shortEsc = "\\n"; break;
    case '\r': shortEsc = "\\r"; break;
    case '\t': shortEsc = "\\t"; break;
    default: break;
  }
  if (shortEsc) {
    std::memcpy(out, shortEsc, 2);
    return 2;
  }
  if (cp < 0x20) {
    const char esc[6] = {'\\', 'u', '0', '0', kHex[cp >> 4], kHex[cp & 15]};
    std::memcpy(out, esc, 6);
    return 6;
  }
  return utf8(cp, out);
}

// ============================================================================ canonicalizer

struct Member {
  uint32_t start;   // offset in the output of the key's opening quote
  uint32_t keyOff;  // decoded key bytes: in the output (side == 0) or in Scratch::keys
  uint32_t keyLen;
  uint32_t side;
};

struct Scratch {
  std::string out;              // output for canonicalHash (its size is its usable capacity)
  std::vector<Member> members;  // members of the open objects (a stack)
  std::vector<char> keys;       // decoded keys whose canonical text has escapes
  std::vector<uint32_t> order;  // permutation of one object's members
  std::vector<char> tmp;        // one object's members, reordered
  // The last object sorted: its keys in arrival order and its permutation. Objects of the same
  // shape (an array of entities) reuse the permutation instead of sorting again.
  std::vector<char> shapeKeys;
  std::vector<uint32_t> shapeLens, shapeOrder;
  void trim() {
    constexpr size_t kKeepBytes = 1u << 20;
    if (out.capacity() > kKeepBytes) std::string().swap(out);
    if (members.capacity() * sizeof(Member) > kKeepBytes) std::vector<Member>().swap(members);
    if (keys.capacity() > kKeepBytes) std::vector<char>().swap(keys);
    if (order.capacity() * sizeof(uint32_t) > kKeepBytes) std::vector<uint32_t>().swap(order);
    if (tmp.capacity() > kKeepBytes) std::vector<char>().swap(tmp);
    if (shapeKeys.capacity() > kKeepBytes || shapeLens.capacity() * sizeof(uint32_t) > kKeepBytes) {
      std::vector<char>().swap(shapeKeys);
      std::vector<uint32_t>().swap(shapeLens);
      std::vector<uint32_t>().swap(shapeOrder);
    }
  }
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// Output invariant: at least (input bytes not yet consumed) + kSlack bytes are free. Every token
// but a float is written in at most as many bytes as it consumes (escapes never grow, whitespace
// vanishes), and a string's 8-byte block copies stay within that; a float makes room first.
constexpr size_t kSlack = 64;

class Canonicalizer {
 public:
  Canonicalizer(const char* text, size_t len, int digits, std::string& out, Scratch& sc)
      : s_(reinterpret_cast<const unsigned char*>(text)), n_(len), N_(digits), buf_(out), sc_(sc) {}

  // Returns the canonical text's length in buf_ (which may be longer), or false.
  bool run(size_t& outLen) {
    sc_.members.clear();
    sc_.keys.clear();
    if (buf_.size() < n_ + kSlack) buf_.resize(n_ + kSlack);
    o_ = buf_.data();
    struct Open {
      uint32_t firstMember;
      bool obj;
      bool sorted;  // keys so far strictly increasing
    };
    Open st[kMaxJsonDepth];
    int depth = 0;
    if (n_ >= 3 && s_[0] == 0xEF && s_[1] == 0xBB && s_[2] == 0xBF) i_ = 3;
    ws();
    for (;;) {
      // ---- a value starts at i_
      if (i_ >= n_) return false;
      const unsigned char c = s_[i_];
      if (c == '{' || c == '[') {
        if (depth == kMaxJsonDepth) return false;
        st[depth++] = Open{static_cast<uint32_t>(sc_.members.size()), c == '{', true};
        o_[on_++] = static_cast<char>(c);
        ++i_;
        ws();
        const unsigned char close = c == '{' ? '}' : ']';
        if (i_ < n_ && s_[i_] == close) {
          ++i_;
          o_[on_++] = static_cast<char>(close);
          --depth;
        } else {
          if (c == '{' && !member(st[depth - 1].sorted, st[depth - 1].firstMember)) return false;
          continue;
        }
      } else if (c == '"') {
        bool esc;
        if (!string(esc)) return false;
      } else if (c == '-' || (c >= '0' && c <= '9')) {
        if (!number()) return false;
      } else if (c == 't') {
        if (!literal("true", 4)) return false;
      } else if (c == 'f') {
        if (!literal("false", 5)) return false;
      } else if (c == 'n') {
        if (!literal("null", 4)) return false;
      } else {
        return false;
      }
      // ---- a value just ended: it belongs to the container on top of the stack
      for (;;) {
        ws();
        if (depth == 0) {
          outLen = on_;
          return i_ == n_;
        }
        Open& top = st[depth - 1];
        if (i_ >= n_) return false;
        const unsigned char d = s_[i_++];
        if (d == ',') {
          o_[on_++] = ',';
          ws();
          if (top.obj && !member(top.sorted, top.firstMember)) return false;
          break;  // next value
        }
        if (d != (top.obj ? '}' : ']')) return false;
        if (top.obj) {
          if (!top.sorted && !sortObject(top.firstMember)) return false;
          sc_.members.resize(top.firstMember);
        }
        o_[on_++] = static_cast<char>(d);
        --depth;  // the container ended: a value of its parent
      }
    }
  }

 private:
  void ws() {
    while (i_ < n_ && s_[i_] <= ' ') {  // every whitespace byte is <= ' '
      const unsigned char c = s_[i_];
      if (c != ' ' && c != '\n' && c != '\r' && c != '\t') return;
      ++i_;
    }
  }

  // Copies len <= 16 bytes from s_ + from to the output; 8-byte blocks where the input allows
  // reading them (the output always has kSlack bytes to spare).
  void copyShort(size_t from, size_t len) {
    if (len <= 8 && n_ - from >= 8) {
      std::memcpy(o_ + on_, s_ + from, 8);
    } else if (len <= 16 && n_ - from >= 16) {
      std::memcpy(o_ + on_, s_ + from, 16);
    } else {
      std::memcpy(o_ + on_, s_ + from, len);
    }
    on_ += len;
  }

  bool literal(const char* word, size_t len) {
    if (n_ - i_ < len || std::memcmp(s_ + i_, word, len) != 0) return false;
    copyShort(i_, len);
    i_ += len;
    return true;
  }

  // Key, ':' and the whitespace after it; records the member and whether keys are still sorted.
  bool member(bool& sorted, uint32_t first) {
    if (i_ >= n_ || s_[i_] != '"') return false;
    Member m;
    m.start = static_cast<uint32_t>(on_);
    const size_t keyStart = i_ + 1;
    bool esc;
    if (!string(esc)) return false;
    if (!esc) {  // the canonical key text is the decoded key
      m.keyOff = m.start + 1;
      m.keyLen = static_cast<uint32_t>(on_ - m.start - 2);
      m.side = 0;
    } else {
      std::vector<char>& k = sc_.keys;
      m.keyOff = static_cast<uint32_t>(k.size());
      const unsigned char* p = s_ + keyStart;
      const unsigned char* end = s_ + i_ - 1;
      while (p < end) {
        if (*p != '\\') {
          k.push_back(static_cast<char>(*p++));
          continue;
        }
        uint32_t cp;
        p += decodeEscape(p, cp);
        char u[4];
        for (int j = 0, w = utf8(cp, u); j < w; ++j) k.push_back(u[j]);
      }
      m.keyLen = static_cast<uint32_t>(k.size()) - m.keyOff;
      m.side = 1;
    }
    std::vector<Member>& ms = sc_.members;
    if (sorted && ms.size() > first && !less(ms.back(), m)) sorted = false;
    ms.push_back(m);
    ws();
    if (i_ >= n_ || s_[i_] != ':') return false;
    ++i_;
    o_[on_++] = ':';
    ws();
    return true;
  }

  const char* keyBytes(const Member& m) const { return m.side ? sc_.keys.data() + m.keyOff : o_ + m.keyOff; }

  // The members' keys, in arrival order, are those of the last object sorted.
  bool sameShape(const Member* ms, uint32_t count) const {
    if (count != sc_.shapeLens.size()) return false;
    const char* k = sc_.shapeKeys.data();
    for (uint32_t j = 0; j < count; ++j) {
      const uint32_t len = ms[j].keyLen;
      if (len != sc_.shapeLens[j] || std::memcmp(k, keyBytes(ms[j]), len) != 0) return false;
      k += len;
    }
    return true;
  }

  // Bytewise (unsigned) order, a proper prefix first. Keys in the output may be read 8 bytes
  // at a time past their end: the output buffer has kSlack bytes beyond on_.
  bool less(const Member& x, const Member& y) const {
    const char* a = keyBytes(x);
    const char* b = keyBytes(y);
    const uint32_t n = std::min(x.keyLen, y.keyLen);
    if (!x.side && !y.side && std::endian::native == std::endian::little) {
      for (uint32_t j = 0; j < n; j += 8) {
        uint64_t u, v;
        std::memcpy(&u, a + j, 8);
        std::memcpy(&v, b + j, 8);
        const uint64_t diff = u ^ v;
        if (diff == 0) continue;
        const int bit = std::countr_zero(diff);
        if (static_cast<uint32_t>(j + bit / 8) >= n) break;  // first difference past the shorter key
        return ((u >> (bit & ~7)) & 0xFF) < ((v >> (bit & ~7)) & 0xFF);
      }
      return x.keyLen < y.keyLen;
    }
    const int c = std::memcmp(a, b, n);
    return c != 0 ? c < 0 : x.keyLen < y.keyLen;
  }

  // Reorders the members (from index first) of the object being closed by key; false on a
  // duplicate key. Member i spans [start_i, start_{i+1} - 1) (the comma excluded); the last
  // one ends at on_.
  [[gnu::noinline]] bool sortObject(uint32_t first) {
    const Member* ms = sc_.members.data() + first;
    const uint32_t count = static_cast<uint32_t>(sc_.members.size()) - first;
    std::vector<uint32_t>& ord = sc_.order;
    if (sameShape(ms, count)) {
      ord.resize(count);
      std::memcpy(ord.data(), sc_.shapeOrder.data(), sizeof(uint32_t) * count);
    } else {
      ord.resize(count);
      for (uint32_t j = 0; j < count; ++j) ord[j] = j;
      // insertion sort for small objects, else heapsort (in place, no recursion, n log n); the
      // order of equal keys does not matter: they are rejected below
      uint32_t* h = ord.data();
      if (count <= 16) {
        for (uint32_t j = 1; j < count; ++j) {
          const uint32_t v = h[j];
          uint32_t i = j;
          for (; i > 0 && less(ms[v], ms[h[i - 1]]); --i) h[i] = h[i - 1];
          h[i] = v;
        }
      } else {
        auto sift = [&](uint32_t root, uint32_t end) {
          for (uint32_t child; (child = 2 * root + 1) < end; root = child) {
            if (child + 1 < end && less(ms[h[child]], ms[h[child + 1]])) ++child;
            if (!less(ms[h[root]], ms[h[child]])) return;
            std::swap(h[root], h[child]);
          }
        };
        for (uint32_t j = count / 2; j-- > 0;) sift(j, count);
        for (uint32_t end = count; end-- > 1;) {
          std::swap(h[0], h[end]);
          sift(0, end);
        }
      }
      for (uint32_t j = 1; j < count; ++j)
        if (!less(ms[ord[j - 1]], ms[ord[j]])) return false;  // equal keys
      // remember the shape
      size_t bytes = 0;
      for (uint32_t j = 0; j < count; ++j) bytes += ms[j].keyLen;
      sc_.shapeKeys.resize(bytes);
      sc_.shapeLens.resize(count);
      sc_.shapeOrder.resize(count);
      char* k = sc_.shapeKeys.data();
      for (uint32_t j = 0; j < count; ++j) {
        std::memcpy(k, keyBytes(ms[j]), ms[j].keyLen);
        k += ms[j].keyLen;
        sc_.shapeLens[j] = ms[j].keyLen;
      }
      std::memcpy(sc_.shapeOrder.data(), ord.data(), sizeof(uint32_t) * count);
    }
    const size_t begin = ms[0].start, total = on_ - begin;
    std::vector<char>& tmp = sc_.tmp;
    tmp.resize(total);
    size_t t = 0;
    for (uint32_t j = 0; j < count; ++j) {
      const uint32_t a = ord[j];
      const size_t from = ms[a].start, to = a + 1 < count ? ms[a + 1].start - 1 : on_;
      if (j) tmp[t++] = ',';
      std::memcpy(tmp.data() + t, o_ + from, to - from);
      t += to - from;
    }
    std::memcpy(o_ + begin, tmp.data(), total);
    return true;
  }

  // Decodes the escape at p[0] == '\\' of a validated string; returns bytes consumed.
  static int decodeEscape(const unsigned char* p, uint32_t& cp) {
    switch (p[1]) {
      case 'b': cp = '\b'; return 2;
      case 'f': cp = '\f'; return 2;
      case 'n': cp = '\n'; return 2;
      case 'r': cp = '\r'; return 2;
      case 't': cp = '\t'; return 2;
      case 'u': {
        const uint32_t u = static_cast<uint32_t>(hex4(p + 2));
        if (u >= 0xD800 && u <= 0xDBFF) {
          cp = 0x10000 + ((u - 0xD800) << 10) + (static_cast<uint32_t>(hex4(p + 8)) - 0xDC00);
          return 12;
        }
        cp = u;
        return 6;
      }
      default: cp = p[1]; return 2;  // " \ /
    }
  }

  // String at s_[i_] == '"': validates it and writes its canonical form. esc: the canonical
  // form contains a backslash.
  bool string(bool& esc) {
    esc = false;
    o_[on_++] = '"';
    ++i_;
    for (;;) {
      while (n_ - i_ >= 8) {  // copy 8 bytes at a time up to the next special byte
        const uint64_t v = load64(s_ + i_);
        std::memcpy(o_ + on_, &v, 8);
        const uint64_t m = specialBytes(v);
        if (m == 0) {
          i_ += 8;
          on_ += 8;
          continue;
        }
        const int k = firstSpecial(m);
        i_ += static_cast<size_t>(k);
        on_ += static_cast<size_t>(k);
        break;
      }
      if (i_ >= n_) return false;
      const unsigned char c = s_[i_];
      if (c == '"') {
        ++i_;
        o_[on_++] = '"';
        return true;
      }
      if (c == '\\') {
        if (n_ - i_ < 2) return false;
        uint32_t cp;
        int used = 2;
        switch (s_[i_ + 1]) {
          case '"': cp = '"'; break;
          case '\\': cp = '\\'; break;
          case '/': cp = '/'; break;
          case 'b': cp = '\b'; break;
          case 'f': cp = '\f'; break;
          case 'n': cp = '\n'; break;
          case 'r': cp = '\r'; break;
          case 't': cp = '\t'; break;
          case 'u': {
            if (n_ - i_ < 6) return false;
            const int u = hex4(s_ + i_ + 2);
            if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;  // lone low surrogate
            if (u >= 0xD800 && u <= 0xDBFF) {
              if (n_ - i_ < 12 || s_[i_ + 6] != '\\' || s_[i_ + 7] != 'u') return false;
              const int lo = hex4(s_ + i_ + 8);
              if (lo < 0xDC00 || lo > 0xDFFF) return false;
              cp = 0x10000 + ((static_cast<uint32_t>(u) - 0xD800) << 10) + (static_cast<uint32_t>(lo) - 0xDC00);
              used = 12;
            } else {
              cp = static_cast<uint32_t>(u);
              used = 6;
            }
            break;
          }
          default:
            return false;
        }
        i_ += static_cast<size_t>(used);
        const int w = canonicalChar(cp, o_ + on_);  // w <= used
        if (o_[on_] == '\\') esc = true;
        on_ += static_cast<size_t>(w);
        continue;
      }
      if (c < 0x20) return false;
      if (c < 0x80) {  // other ASCII
        o_[on_++] = static_cast<char>(c);
        ++i_;
        continue;
      }
      // UTF-8 (Unicode table 3-7); a closing quote must still follow
      size_t len;
      if (c < 0xC2 || c > 0xF4) return false;
      if (c < 0xE0) {
        if (n_ - i_ < 3 || (s_[i_ + 1] & 0xC0) != 0x80) return false;
        len = 2;
      } else if (c < 0xF0) {
        if (n_ - i_ < 4) return false;
        const unsigned char c1 = s_[i_ + 1];
        const unsigned char lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        if (c1 < lo || c1 > hi || (s_[i_ + 2] & 0xC0) != 0x80) return false;
        len = 3;
      } else {
        if (n_ - i_ < 5) return false;
        const unsigned char c1 = s_[i_ + 1];
        const unsigned char lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        if (c1 < lo || c1 > hi || (s_[i_ + 2] & 0xC0) != 0x80 || (s_[i_ + 3] & 0xC0) != 0x80) return false;
        len = 4;
      }
      std::memcpy(o_ + on_, s_ + i_, len);
      on_ += len;
      i_ += len;
    }
  }

  static bool digit(unsigned char c) { return c >= '0' && c <= '9'; }

  bool number() {
    const size_t start = i_;
    const bool neg = s_[i_] == '-';
    if (neg) ++i_;
    if (i_ >= n_) return false;
    const size_t intStart = i_;
    if (s_[i_] == '0') {
      ++i_;
    } else if (digit(s_[i_])) {
      while (++i_ < n_ && digit(s_[i_])) {
      }
    } else {
      return false;
    }
    if (i_ >= n_ || (s_[i_] != '.' && (s_[i_] | 0x20) != 'e')) {  // an integer
      const size_t len = i_ - start;
      if (len == 2 && neg && s_[intStart] == '0') o_[on_++] = '0';  // -0
      else copyShort(start, len);
      return true;
    }
    // A float. Significant digits: S holds the first 19 (leading zeros skipped), K counts them.
    uint64_t S = 0;
    int K = 0;
    int64_t intDigits = 0, fracZeros = 0;  // for the exponent of the first significant digit
    if (s_[intStart] != '0') {
      intDigits = static_cast<int64_t>(i_ - intStart);
      for (size_t j = intStart; j < i_; ++j)
        if (K++ < 19) S = S * 10 + (s_[j] - '0');
    }
    if (i_ < n_ && s_[i_] == '.') {
      ++i_;
      if (i_ >= n_ || !digit(s_[i_])) return false;
      for (; i_ < n_ && digit(s_[i_]); ++i_) {
        if (K == 0 && s_[i_] == '0') {
          ++fracZeros;
          continue;
        }
        if (K++ < 19) S = S * 10 + (s_[i_] - '0');
      }
    }
    int64_t exp = 0;
    if (i_ < n_ && (s_[i_] == 'e' || s_[i_] == 'E')) {
      ++i_;
      bool eneg = false;
      if (i_ < n_ && (s_[i_] == '+' || s_[i_] == '-')) eneg = s_[i_++] == '-';
      if (i_ >= n_ || !digit(s_[i_])) return false;
      for (; i_ < n_ && digit(s_[i_]); ++i_) exp = std::min<int64_t>(exp * 10 + (s_[i_] - '0'), kExpSat);
      if (eneg) exp = -exp;
    }
    const size_t len = i_ - start;
    // Make room for up to 25 bytes (see kSlack).
    const size_t need = on_ + (n_ - i_) + kSlack + 32;
    if (buf_.size() < need) {
      buf_.resize(std::max(need, buf_.size() * 2));
      o_ = buf_.data();
    }
    Rounded r;
    bool ok = true;
    if (K == 0) {
      r.zero = true;
    } else if (K <= 19) {
      while (S % 10 == 0) {
        S /= 10;
        --K;
      }
      const int64_t E = (intDigits > 0 ? intDigits - 1 : -fracZeros - 1) + exp;
      if (!roundShort(S, K, E, reinterpret_cast<const char*>(s_ + start), len, N_, r, ok)) return false;
    } else if (!roundGeneral(reinterpret_cast<const char*>(s_ + start), len, N_, r, ok)) {
      return false;
    }
    fixPoint(N_, r, ok);
    if (!ok) return false;
    on_ += formatRounded(neg && !r.zero, r, o_ + on_);
    return true;
  }

  const unsigned char* s_;
  size_t n_;
  size_t i_ = 0;
  int N_;
  std::string& buf_;
  char* o_ = nullptr;
  size_t on_ = 0;
  Scratch& sc_;
};

bool validArgs(const char*& text, size_t len, int floatDigits) {
  if (floatDigits < 1 || floatDigits > 17) return false;
  if (text == nullptr) {
    if (len != 0) return false;
    text = "";
  }
  // Output offsets are 32-bit; the canonical text is at most about 6.4 times the input
  // ("0.1," -> "0.10000000000000001," at 17 digits).
  return len < (size_t{1} << 29);
}

#undef P2PSYNC_COLD

}  // namespace

uint64_t hashBytes(const uint8_t* data, size_t len) {
  return static_cast<uint64_t>(XXH3_64bits(data, len));
}

bool canonicalize(const char* text, size_t len, int floatDigits, std::string& out) {
  const auto at = [](const char* p) { return reinterpret_cast<uintptr_t>(p); };
  if (text != nullptr && at(text) + len > at(out.data()) && at(text) < at(out.data()) + out.capacity()) {
    std::string separate;  // text lies in out's buffer
    const bool ok = canonicalize(text, len, floatDigits, separate);
    out.swap(separate);
    return ok;
  }
  out.clear();
  if (!validArgs(text, len, floatDigits)) return false;
  Scratch& sc = scratch();
  size_t n = 0;
  const bool ok = Canonicalizer(text, len, floatDigits, out, sc).run(n);
  out.resize(ok ? n : 0);
  sc.trim();
  return ok;
}

bool canonicalHash(const char* text, size_t len, int floatDigits, uint64_t& out) {
  if (!validArgs(text, len, floatDigits)) return false;
  Scratch& sc = scratch();
  size_t n = 0;
  const bool ok = Canonicalizer(text, len, floatDigits, sc.out, sc).run(n);
  if (ok) out = static_cast<uint64_t>(XXH3_64bits(sc.out.data(), n));
  sc.trim();
  return ok;
}

}  // namespace p2psync
