// State hashing: XXH3-64 over raw bytes, and a canonical JSON hash that is stable across peers.
// Plain C++20: no exceptions escape, no I/O, no clocks. The native and the WASM build produce the
// same canonical text and hash for every input (no libc number conversion, no long double, no
// platform-dependent floating point: see state_hash.cpp).
//
// ------------------------------------------------------------------------------ canonical form
// canonicalize(text, len, floatDigits) maps a JSON text to its canonical text; two texts with the
// same canonical text are "the same state". Inputs (false is returned for anything else):
//   strict RFC 8259 JSON: exactly one value of any type, optional whitespace (space, tab, LF, CR)
//   around tokens, and optionally one leading UTF-8 byte order mark (EF BB BF), which is ignored.
//   Rejected, among others: NaN, Infinity, comments, trailing commas, single quotes, leading
//   zeros, '+' signs, raw control characters (U+0000..U+001F) inside strings, any NUL byte,
//   invalid UTF-8 (overlong forms, encoded surrogates, above U+10FFFF, truncated sequences),
//   \u escapes that leave a lone surrogate, duplicate keys in one object (compared after
//   decoding escapes: {"a":1,"\u0061":2} is a duplicate), nesting deeper than kMaxJsonDepth,
//   floats whose nearest double is infinite (1e400, -1e309), len >= 2^29 (512 MiB), floatDigits
//   outside 1..17.
// The canonical text is compact JSON (no whitespace at all) where
//   objects   list their members sorted by the decoded key's UTF-8 bytes, compared as unsigned
//             bytes, a proper prefix first ("a" < "ab" < "b" < "é").
//   arrays    keep their order.
//   strings   are decoded and written back with exactly these escapes: \" \\ \b \f \n \r \t, and
//             \u00XX with lowercase hex for the other U+0000..U+001F. Everything else is written
//             as raw UTF-8, including '/', U+007F and all non-ASCII ("\u00e9" and "é" -> "é").
//   true, false, null   as they are.
//   integers  (numbers without fraction and exponent) keep their digits exactly, at any length
//             (never converted to binary): 12345678901234567890123 stays as is; "-0" -> "0".
//             An integer and a float are different values: 1 -> "1", 1.0 -> "1.0".
//   floats    (numbers with a fraction or an exponent): x = the IEEE-754 double nearest to the
//             literal's exact decimal value (ties to even; what JSON.parse, Python's float() and a
//             correct strtod give), so different spellings of the same double are equal. x is
//             rounded to floatDigits significant decimal digits, exact ties to the even digit
//             (the exact binary value of x decides: 0.15 is 0.1499999999999999944... -> 0.1 at 1
//             digit). Trailing zeros are dropped. x == 0 (0.0, -0.0, 1e-400) -> "0.0"; the
//             sign is kept otherwise. Two corner cases keep every canonical text valid input
//             that canonicalizes to itself:
//               - a result at or beyond the overflow threshold 2^1024 - 2^970 (rounding up
//                 within one unit of +-DBL_MAX, floatDigits <= 16) is rounded toward zero:
//                 1.7976931348623157e308 at 3 digits -> 1.79e+308;
//               - a result that is a power of ten 10^E whose nearest double rounds to another
//                 floatDigits-digit value D' is replaced by D' (floatDigits 16, or |x| < 1e-307):
//                 the double just above 1e23 at 16 digits -> 9.999999999999999e+22.
//             The result D is laid out like printf("%g") / nlohmann::json: fixed notation for
//             1e-4 <= |D| < 1e15 with at least one digit after the point ("123.5", "0.00123",
//             "1200.0"), exponential otherwise with a sign and at least two exponent digits
//             ("1e-05", "2.5e+20", "-1.25e-300").
// The canonical text is itself valid input and a fixed point: canonicalize(canonicalize(t)) ==
// canonicalize(t).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace p2psync {

// Maximum array/object nesting accepted by canonicalize/canonicalHash (deeper input -> false).
// Parsing and writing use explicit stacks of this depth (no recursion).
constexpr int kMaxJsonDepth = 256;

// XXH3-64, seed 0.
uint64_t hashBytes(const uint8_t* data, size_t len);

// Writes the canonical text of JSON `text` (len bytes) to `out` (see above; `text` may point
// into `out`). Returns false (out unspecified) when the input is rejected. Memory: O(len)
// scratch, kept per thread between calls (released after a call if it grew past 1 MiB), so
// concurrent calls on different threads are safe.
bool canonicalize(const char* text, size_t len, int floatDigits, std::string& out);

// hashBytes(canonical text), with the text built in the per-thread scratch (no allocation once
// warm). Returns false exactly when canonicalize does.
bool canonicalHash(const char* text, size_t len, int floatDigits, uint64_t& out);

}  // namespace p2psync
