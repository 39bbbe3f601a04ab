// State hashing: XXH3-64 over raw bytes, and a canonical JSON hash that is stable across peers
// (sorted keys, compact dump, floats rounded to a fixed number of significant digits, -0 -> 0).
// Plain C++20: no exceptions escape, no I/O.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace p2psync {

// Maximum array/object nesting accepted by canonicalize/canonicalHash (deeper input -> false).
// Bounds the recursion depth of rounding and dumping (WASM stacks are small).
constexpr int kMaxJsonDepth = 256;

// XXH3-64, seed 0.
uint64_t hashBytes(const uint8_t* data, size_t len);

// Parses JSON `text` (len bytes), rounds every floating-point number (numbers written with a
// fraction or exponent) to `floatDigits` significant digits (1..17) via "%.*g" + strtod,
// maps -0.0 to 0.0, and writes the compact dump with sorted object keys to `out`.
// Integers (numbers without fraction/exponent) are kept exactly and stay integers; note that
// 1 and 1.0 therefore canonicalize differently ("1" vs "1.0").
// Returns false (out unspecified) on invalid JSON (including any raw NUL byte), floatDigits outside 1..17, or nesting
// deeper than kMaxJsonDepth.
bool canonicalize(const char* text, size_t len, int floatDigits, std::string& out);

// hashBytes(canonicalize(text)). Returns false when canonicalize does.
bool canonicalHash(const char* text, size_t len, int floatDigits, uint64_t& out);

}  // namespace p2psync
