// See state_hash.hpp. nlohmann::json is used only through non-throwing entry points
// (parse with allow_exceptions=false, dump with error_handler_t::replace), so this file builds
// both with exceptions and with -fno-exceptions (optionally -DJSON_NOEXCEPTION).
#include "state_hash.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <nlohmann/json.hpp>

namespace p2psync {

namespace {

using json = nlohmann::json;

// Max [ / { nesting outside strings. Exact for valid JSON; for invalid JSON the parser rejects
// it anyway.
int maxNesting(const char* s, size_t len) {
  int depth = 0, maxDepth = 0;
  bool inString = false;
  for (size_t i = 0; i < len; ++i) {
    const char c = s[i];
    if (inString) {
      if (c == '\\') ++i;
      else if (c == '"') inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > maxDepth) maxDepth = depth;
      if (maxDepth > kMaxJsonDepth) return maxDepth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return maxDepth;
}

double roundSig(double v, int digits) {
  if (v == 0.0) return 0.0;  // also maps -0.0 to 0.0
  if (!std::isfinite(v)) return v;  // defensive: nlohmann rejects out-of-range numbers (1e400)
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  double r = std::strtod(buf, nullptr);
  return r == 0.0 ? 0.0 : r;
}

void roundTree(json& j, int digits) {
  switch (j.type()) {
    case json::value_t::number_float: {
      double* p = j.get_ptr<json::number_float_t*>();
      *p = roundSig(*p, digits);
      break;
    }
    case json::value_t::array:
      for (auto& e : *j.get_ptr<json::array_t*>()) roundTree(e, digits);
      break;
    case json::value_t::object:
      for (auto& kv : *j.get_ptr<json::object_t*>()) roundTree(kv.second, digits);
      break;
    default:
      break;
  }
}

}  // namespace

uint64_t hashBytes(const uint8_t* data, size_t len) {
  return static_cast<uint64_t>(XXH3_64bits(data, len));
}

bool canonicalize(const char* text, size_t len, int floatDigits, std::string& out) {
  if (floatDigits < 1 || floatDigits > 17) return false;
  if (text == nullptr) {
    if (len != 0) return false;
    text = "";
  }
  // Valid JSON never contains a raw NUL byte, but nlohmann's lexer treats one as end of input
  // (so "[1]\0junk" would parse as [1]); reject it.
  if (len > 0 && std::memchr(text, 0, len) != nullptr) return false;
  if (maxNesting(text, len) > kMaxJsonDepth) return false;
  json j = json::parse(text, text + len, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return false;
  roundTree(j, floatDigits);
  out = j.dump(-1, ' ', /*ensure_ascii=*/false, json::error_handler_t::replace);
  return true;
}

bool canonicalHash(const char* text, size_t len, int floatDigits, uint64_t& out) {
  std::string s;
  if (!canonicalize(text, len, floatDigits, s)) return false;
  out = hashBytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
  return true;
}

}  // namespace p2psync
