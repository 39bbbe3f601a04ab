// State hash tests. Expected XXH3-64 values were computed independently with the xxhsum CLI
// (xxhash 0.8.1, `printf '%s' STR | xxhsum -H3`), not with this code. Canonical texts are
// checked against hand-written golden vectors, against an independent writer of the canonical
// form (random JSON trees), and against nlohmann::json plus glibc's exact printf/strtod (floats).
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "state_hash.hpp"

using namespace p2psync;

namespace {

uint64_t hashStr(const std::string& s) {
  return hashBytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

bool canon(const std::string& s, int digits, std::string& out) {
  return canonicalize(s.data(), s.size(), digits, out);
}

std::string canonOrFail(const std::string& s, int digits) {
  std::string out;
  if (!canon(s, digits, out)) return "<invalid>";
  return out;
}

bool chash(const std::string& s, int digits, uint64_t& out) {
  return canonicalHash(s.data(), s.size(), digits, out);
}

// bytes i % 251 for i in 0..n-1
std::vector<uint8_t> pattern(size_t n) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(i % 251);
  return v;
}

// ------------------------------------------------------------------ float reference (glibc)
// glibc's printf("%.*e") rounds the exact binary value (ties to even) and strtod is correctly
// rounded: an implementation independent of state_hash.cpp.

// Decimal value of a number text as (significant digits without leading/trailing zeros,
// exponent of the first one); "0" digits for zero.
struct Dec {
  std::string digits;
  long exp = 0;
  bool neg = false;
  bool operator==(const Dec& o) const { return digits == o.digits && exp == o.exp && neg == o.neg; }
};

Dec decOf(const std::string& s) {
  Dec d;
  size_t i = 0;
  if (s[i] == '-') {
    d.neg = true;
    ++i;
  }
  long intDigits = 0;
  for (size_t j = i; j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])); ++j) ++intDigits;
  long pos = intDigits - 1;
  bool seen = false;
  for (; i < s.size() && s[i] != 'e' && s[i] != 'E'; ++i) {
    if (s[i] == '.') continue;
    if (!seen && s[i] != '0') {
      seen = true;
      d.exp = pos;
    }
    if (seen) d.digits += s[i];
    --pos;
  }
  if (i < s.size()) d.exp += std::atol(s.c_str() + i + 1);
  while (!d.digits.empty() && d.digits.back() == '0') d.digits.pop_back();
  if (d.digits.empty()) {
    d.digits = "0";
    d.exp = 0;
    d.neg = false;
  }
  return d;
}

std::string printE(double x, int N) {
  char b[64];
  std::snprintf(b, sizeof b, "%.*e", N - 1, x);
  return b;
}

// The canonical float of the double x at N digits, per state_hash.hpp, computed with glibc.
Dec referenceFloat(double x, int N) {
  if (x == 0) return decOf("0");
  std::string e = printE(x, N);
  if (std::isinf(std::strtod(e.c_str(), nullptr))) {  // beyond the overflow threshold: toward zero
    std::fesetround(FE_TOWARDZERO);
    e = printE(x, N);
    std::fesetround(FE_TONEAREST);
  }
  Dec d = decOf(e);
  if (d.digits == "1") {  // a power of ten must re-canonicalize to itself
    const std::string again = printE(std::strtod(e.c_str(), nullptr), N);
    if (decOf(again) != d) d = decOf(again);
  }
  return d;
}

// ------------------------------------------------------------------ random JSON trees
// A tree with its canonical text written independently of state_hash.cpp, and serializers
// that vary key order, whitespace, escapes and float spelling.
struct Node {
  enum Kind { Null, True, False, Int, Float, Str, Arr, Obj } kind = Null;
  std::string text;      // Int: the literal; Float: decimal digits (no leading/trailing zeros)
  long exp = 0;          // Float: exponent of the first digit
  bool neg = false;      // Float
  std::string str;       // Str: decoded UTF-8
  std::vector<Node> items;
  std::vector<std::pair<std::string, Node>> members;  // distinct keys
};

constexpr uint64_t kPow10[8] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000};

class Gen {
 public:
  Gen(uint64_t seed, int digits) : rng_(seed), N_(digits) {}
  bool hugeInts = true;  // integers beyond 64 bits

  Node value(int depth) {
    const int r = below(depth > 4 ? 6 : 10);
    Node n;
    switch (r) {
      case 0: n.kind = Node::Null; break;
      case 1: n.kind = below(2) ? Node::True : Node::False; break;
      case 2: n = integer(); break;
      case 3: case 4: n = floating(); break;
      case 5: n.kind = Node::Str; n.str = str(); break;
      case 6: case 7: {
        n.kind = Node::Arr;
        for (int k = below(5); k > 0; --k) n.items.push_back(value(depth + 1));
        break;
      }
      default: {
        n.kind = Node::Obj;
        std::set<std::string> seen;
        for (int k = below(6); k > 0; --k) {
          std::string key = below(3) ? str() : std::string(1, static_cast<char>('a' + below(4)));
          if (!seen.insert(key).second) continue;
          n.members.emplace_back(key, value(depth + 1));
        }
      }
    }
    return n;
  }

  int below(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  std::mt19937_64& rng() { return rng_; }

 private:
  Node integer() {
    Node n;
    n.kind = Node::Int;
    switch (below(4)) {
      case 0: n.text = std::to_string(below(100)); break;
      case 1: n.text = std::to_string(static_cast<int64_t>(rng_())); break;
      case 2: n.text = "-" + std::to_string(1 + below(1000)); break;
      default:
        if (hugeInts) {
          n.text = below(2) ? "-" : "";
          n.text += static_cast<char>('1' + below(9));
          for (int k = 20 + below(30); k > 0; --k) n.text += static_cast<char>('0' + below(10));
        } else {
          n.text = std::to_string(rng_());
        }
    }
    return n;
  }
  // A float whose canonical decimal is known: D = digits * 10^(exp - len + 1) with at most N
  // digits (N <= 15), or a dyadic value whose exact decimal has at most N digits (any N).
  Node floating() {
    Node n;
    n.kind = Node::Float;
    n.neg = below(2);
    if (N_ <= 15 && below(4)) {
      const int nd = 1 + below(N_);
      n.text = std::string(1, static_cast<char>('1' + below(9)));
      for (int k = 1; k < nd; ++k) n.text += static_cast<char>('0' + below(10));
      while (n.text.size() > 1 && n.text.back() == '0') n.text.pop_back();
      n.exp = below(8) ? below(40) - 20 : below(600) - 300;
    } else {
      // m / 2^s: exact decimal with s fraction digits; keep it within N significant digits
      n.text = "5";
      n.exp = -1;  // 0.5 if no draw fits
      for (int tries = 0; tries < 100; ++tries) {
        const int s = below(std::min(N_, 12));
        const uint64_t m = 1 + rng_() % kPow10[std::min(N_, 7)];
        char b[64];
        std::snprintf(b, sizeof b, "%.*f", s, static_cast<double>(m) / static_cast<double>(1u << s));
        const Dec d = decOf(b);
        if (static_cast<int>(d.digits.size()) > N_) continue;
        n.text = d.digits;
        n.exp = d.exp;
        break;
      }
    }
    return n;
  }
  std::string str() {
    static const char* const kPool[] = {"a", "b", "z", "A", "0", " ", "\"", "\\", "/", "\x01", "\x1f", "\n",
                                        "\t", "\b", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                                        "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf", "~", "{", "}", "[", ":", ","};
    std::string s;
    for (int k = below(7); k > 0; --k) s += kPool[below(static_cast<int>(std::size(kPool)))];
    return s;
  }
  std::mt19937_64 rng_;
  int N_;
};

// Decodes one UTF-8 scalar at s[i]; advances i.
uint32_t nextCodePoint(const std::string& s, size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
  uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1F) : len == 3 ? (c & 0x0F) : (c & 0x07);
  for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
  i += len;
  return cp;
}

// The canonical text, written from the spec in state_hash.hpp.
std::string canonicalString(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\b': o += "\\b"; break;
      case '\f': o += "\\f"; break;
      case '\n': o += "\\n"; break;
      case '\r': o += "\\r"; break;
      case '\t': o += "\\t"; break;
      default:
        if (c < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", c);
          o += b;
        } else {
          o += static_cast<char>(c);
        }
    }
  }
  return o + "\"";
}

// printf("%g")-like layout of digits * 10^(exp - len + 1), as nlohmann::json writes doubles.
std::string canonicalFloat(bool neg, const std::string& digits, long exp) {
  if (digits == "0") return "0.0";
  std::string o = neg ? "-" : "";
  const long k = static_cast<long>(digits.size()), n = exp + 1;
  if (k <= n && n <= 15) {
    o += digits + std::string(static_cast<size_t>(n - k), '0') + ".0";
  } else if (n > 0 && n <= 15) {
    o += digits.substr(0, static_cast<size_t>(n)) + "." + digits.substr(static_cast<size_t>(n));
  } else if (n > -4 && n <= 0) {
    o += "0." + std::string(static_cast<size_t>(-n), '0') + digits;
  } else {
    o += digits.substr(0, 1);
    if (k > 1) o += "." + digits.substr(1);
    char b[32];
    std::snprintf(b, sizeof b, "e%c%02ld", exp < 0 ? '-' : '+', std::labs(exp));
    o += b;
  }
  return o;
}

std::string canonicalText(const Node& n) {
  switch (n.kind) {
    case Node::Null: return "null";
    case Node::True: return "true";
    case Node::False: return "false";
    case Node::Int: return n.text == "-0" ? "0" : n.text;
    case Node::Float: return canonicalFloat(n.neg, n.text, n.exp);
    case Node::Str: return canonicalString(n.str);
    case Node::Arr: {
      std::string o = "[";
      for (size_t i = 0; i < n.items.size(); ++i) o += (i ? "," : "") + canonicalText(n.items[i]);
      return o + "]";
    }
    case Node::Obj: {
      std::vector<const std::pair<std::string, Node>*> ms;
      for (const auto& m : n.members) ms.push_back(&m);
      std::sort(ms.begin(), ms.end(), [](auto* a, auto* b) { return a->first < b->first; });  // bytewise
      std::string o = "{";
      for (size_t i = 0; i < ms.size(); ++i) o += (i ? "," : "") + canonicalString(ms[i]->first) + ":" + canonicalText(ms[i]->second);
      return o + "}";
    }
  }
  return "";
}

// Serializes n in a random but equivalent way.
class Writer {
 public:
  Writer(Gen& g, int digits, bool noise) : g_(g), N_(digits), noise_(noise) {}
  std::string write(const Node& n) {
    std::string o;
    ws(o);
    value(n, o);
    ws(o);
    return o;
  }

 private:
  void ws(std::string& o) {
    static const char kWs[] = {' ', '\t', '\n', '\r'};
    if (g_.below(3) == 0)
      for (int k = 1 + g_.below(3); k > 0; --k) o += kWs[g_.below(4)];
  }
  void hex4(uint32_t u, std::string& o) {
    char b[8];
    std::snprintf(b, sizeof b, g_.below(2) ? "\\u%04x" : "\\u%04X", u);
    o += b;
  }
  void string(const std::string& s, std::string& o) {
    o += '"';
    for (size_t i = 0; i < s.size();) {
      const size_t start = i;
      const uint32_t cp = nextCodePoint(s, i);
      const bool mustEscape = cp == '"' || cp == '\\' || cp < 0x20;
      const int how = g_.below(4);  // 0: \u escape, 1: short escape if any, else raw
      if (how == 0 || (mustEscape && how > 1)) {
        if (cp >= 0x10000) {
          hex4(0xD800 + ((cp - 0x10000) >> 10), o);
          hex4(0xDC00 + ((cp - 0x10000) & 0x3FF), o);
        } else {
          hex4(cp, o);
        }
        continue;
      }
      const char* shortEsc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '/' ? "\\/" : cp == '\b' ? "\\b"
                           : cp == '\f' ? "\\f" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r" : cp == '\t' ? "\\t" : nullptr;
      if (shortEsc && (how == 1 || mustEscape)) o += shortEsc;
      else if (mustEscape) hex4(cp, o);
      else o.append(s, start, i - start);
    }
    o += '"';
  }
  // A spelling of digits * 10^(exp-len+1): the point anywhere, trailing zeros, any exponent
  // form; with noise below a ten-thousandth of the N-th digit (N <= 15 only).
  void floating(const Node& n, std::string& o) {
    std::string digits = n.text;
    if (noise_) {
      const size_t pad = static_cast<size_t>(N_) + 4 - std::min(digits.size(), static_cast<size_t>(N_));
      if (g_.below(2)) {  // above: D + tail
        digits += std::string(pad + static_cast<size_t>(g_.below(3)), '0');
        for (int k = 1 + g_.below(6); k > 0; --k) digits += static_cast<char>('0' + g_.below(10));
        digits += static_cast<char>('1' + g_.below(9));
      } else {  // below: D - tail, i.e. (D - 1 unit) followed by nines
        std::string d = digits + std::string(static_cast<size_t>(N_) - std::min(digits.size(), static_cast<size_t>(N_)), '0');
        size_t j = d.size();
        while (d[j - 1] == '0') d[--j] = '9';
        --d[j - 1];
        d += std::string(pad - (static_cast<size_t>(N_) - std::min(digits.size(), static_cast<size_t>(N_))) + static_cast<size_t>(g_.below(3)), '9');
        for (int k = g_.below(6); k > 0; --k) d += static_cast<char>('0' + g_.below(10));
        digits = d;  // may now start with '0' (1.000 -> 0.9999...)
      }
    } else if (g_.below(2)) {
      digits += std::string(static_cast<size_t>(g_.below(4)), '0');
    }
    // value = 0.digits * 10^(exp+1); place the point after p digits, exponent e:
    // value = digits[0..p).digits[p..) * 10^e with e = exp + 1 - p.
    const int len = static_cast<int>(digits.size());
    const int p = g_.below(len + 1);
    const long e = n.exp + 1 - p;  // digits[0] keeps its weight 10^exp (it may be a '0' now)
    std::string mant = p == 0 ? "0" : digits.substr(0, static_cast<size_t>(p));
    // JSON forbids leading zeros in the integer part
    while (mant.size() > 1 && mant[0] == '0') mant.erase(0, 1);
    const std::string frac = digits.substr(static_cast<size_t>(p));
    if (n.neg) o += '-';
    o += mant;
    if (!frac.empty()) o += "." + frac;
    if (e != 0 || frac.empty() || g_.below(3) == 0) {
      o += g_.below(2) ? 'e' : 'E';
      if (e >= 0 && g_.below(2)) o += '+';
      if (e < 0) o += '-';
      if (g_.below(4) == 0) o += '0';
      o += std::to_string(std::labs(e));
    }
  }
  void value(const Node& n, std::string& o) {
    switch (n.kind) {
      case Node::Null: o += "null"; break;
      case Node::True: o += "true"; break;
      case Node::False: o += "false"; break;
      case Node::Int: o += n.text; break;
      case Node::Float: floating(n, o); break;
      case Node::Str: string(n.str, o); break;
      case Node::Arr:
        o += '[';
        for (size_t i = 0; i < n.items.size(); ++i) {
          if (i) o += ',';
          ws(o);
          value(n.items[i], o);
          ws(o);
        }
        o += ']';
        break;
      case Node::Obj: {
        std::vector<size_t> order(n.members.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        std::shuffle(order.begin(), order.end(), g_.rng());
        o += '{';
        for (size_t i = 0; i < order.size(); ++i) {
          if (i) o += ',';
          ws(o);
          string(n.members[order[i]].first, o);
          ws(o);
          o += ':';
          ws(o);
          value(n.members[order[i]].second, o);
          ws(o);
        }
        o += '}';
      }
    }
  }
  Gen& g_;
  int N_;
  bool noise_;
};

// Changes one leaf of n to a different value (false if n has no leaf to change).
bool mutate(Node& n, Gen& g) {
  switch (n.kind) {
    case Node::Arr:
      if (!n.items.empty()) return mutate(n.items[static_cast<size_t>(g.below(static_cast<int>(n.items.size())))], g);
      n.items.push_back(Node{});
      return true;
    case Node::Obj:
      if (!n.members.empty()) return mutate(n.members[static_cast<size_t>(g.below(static_cast<int>(n.members.size())))].second, g);
      n.members.emplace_back("k", Node{});
      return true;
    case Node::Null: n.kind = Node::False; return true;
    case Node::True: n.kind = Node::False; return true;
    case Node::False: n.kind = Node::Null; return true;
    case Node::Int: n.text = n.text == "7" ? "8" : "7"; return true;
    case Node::Float: n.neg = !n.neg; return true;
    case Node::Str: n.str += "x"; return true;
  }
  return false;
}

}  // namespace

// ------------------------------------------------------------------------------------ tests

TEST_CASE("hashBytes is XXH3-64 with seed 0", "[state_hash]") {
  CHECK(hashBytes(nullptr, 0) == 0x2D06800538D394C2ull);  // well-known empty-input vector
  CHECK(hashStr("") == 0x2D06800538D394C2ull);
  CHECK(hashStr("a") == 0xE6C632B61E964E1Full);
  CHECK(hashStr("abc") == 0x78AF5F94892F3950ull);
  CHECK(hashStr("p2psync") == 0x446BBAF6503E0AC0ull);
  CHECK(hashStr("Hello, World!") == 0x60415D5F616602AAull);
  // lengths exercising the 17..128, 129..240 and >240 byte code paths
  auto p17 = pattern(17), p200 = pattern(200), p1000 = pattern(1000);
  CHECK(hashBytes(p17.data(), p17.size()) == 0x9EF341A99DE37328ull);
  CHECK(hashBytes(p200.data(), p200.size()) == 0xF42A8864FEAF0703ull);
  CHECK(hashBytes(p1000.data(), p1000.size()) == 0x33EF703FB2B20ED1ull);
}

TEST_CASE("canonicalHash is XXH3-64 of the canonical text", "[state_hash]") {
  const std::string x = R"({"b":1.00000001,"a":[1,2]})";
  const std::string y = R"({"a":[1,2],"b":1.0})";
  uint64_t hx = 0, hy = 0;
  REQUIRE(chash(x, 6, hx));
  REQUIRE(chash(y, 6, hy));
  CHECK(hx == hy);
  CHECK(hx == 0xCC419EC3AFEFD72Cull);  // xxhsum -H3 of {"a":[1,2],"b":1.0}
  REQUIRE(chash(x, 17, hx));
  CHECK(hx != hy);
  REQUIRE(chash(y, 17, hy));
  CHECK(hy == 0xCC419EC3AFEFD72Cull);
}

TEST_CASE("canonicalize: golden vectors", "[state_hash]") {
  struct Case {
    const char* in;
    int digits;
    const char* out;
  };
  const Case cases[] = {
      // layout and key order (bytes of the decoded key; a prefix first)
      {R"({"b":1.00000001,"a":[1,2]})", 6, R"({"a":[1,2],"b":1.0})"},
      {" { \"z\" : { \"y\" : true , \"x\" : null } , \"a\" : \"s\" } ", 6, R"({"a":"s","z":{"x":null,"y":true}})"},
      {"\t[ 1 ,\r\n2 ]\n", 6, "[1,2]"},
      {R"({"b":0,"ab":1,"a":2,"":3,"B":4})", 6, R"({"":3,"B":4,"a":2,"ab":1,"b":0})"},
      {"{\"\xc3\xa9\":1,\"z\":2,\"\\u00e8\":3,\"\xf0\x9f\x98\x80\":4,\"\xef\xbf\xbf\":5}", 6,
       "{\"z\":2,\"\xc3\xa8\":3,\"\xc3\xa9\":1,\"\xef\xbf\xbf\":5,\"\xf0\x9f\x98\x80\":4}"},
      {R"({"a\"":1,"a":2,"a\u0000":3})", 6, R"({"a":2,"a\u0000":3,"a\"":1})"},  // 0x00 < 0x22
      {R"([{"b":[{"d":1,"c":2}],"a":{}}, {}, []])", 6, R"([{"a":{},"b":[{"c":2,"d":1}]},{},[]])"},
      {"\xef\xbb\xbf{\"a\":1}", 6, R"({"a":1})"},  // a leading BOM is skipped
      // scalars at the top level
      {"true", 6, "true"},
      {" null ", 6, "null"},
      {"\"x\"", 6, "\"x\""},
      {"-0", 6, "0"},
      {"-0.0", 6, "0.0"},
      // strings: one escape spelling
      {R"("a\u0041\n")", 6, R"("aA\n")"},
      {"\"caf\xC3\xA9\"", 6, "\"caf\xC3\xA9\""},
      {R"("caf\u00E9 \u20ac \ud83d\ude00 \uD83D\uDE00")", 6, "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf0\x9f\x98\x80\""},
      {R"("\/ \" \\ \b \f \n \r \t")", 6, R"("/ \" \\ \b \f \n \r \t")"},
      {R"("\u002f\u0022\u005c\u0008\u000C\u000a\u000d\u0009")", 6, R"("/\"\\\b\f\n\r\t")"},
      {R"("\u0000\u0001\u001F\u007f\u0080")", 6, "\"\\u0000\\u0001\\u001f\x7f\xc2\x80\""},
      {"\"\x7f\"", 6, "\"\x7f\""},
      // integers: exact digits at any length
      {"[12345678901, 3, -7, 0]", 3, "[12345678901,3,-7,0]"},
      {"[18446744073709551615, -9223372036854775808]", 1, "[18446744073709551615,-9223372036854775808]"},
      {"[123456789012345678901234567890, -98765432109876543210]", 1, "[123456789012345678901234567890,-98765432109876543210]"},
      // floats: rounding (exact binary value, ties to even), layout like %g / nlohmann
      {"[3.14159265, 2.5e-10, 123456.789]", 4, "[3.142,2.5e-10,123500.0]"},
      {"[0.1, 0.30000000000000004]", 15, "[0.1,0.3]"},
      {"[0.30000000000000004]", 17, "[0.30000000000000004]"},
      {"[0.1]", 17, "[0.10000000000000001]"},
      {"[1.5, 2.5, -1.5, 0.25, 0.35]", 1, "[2.0,2.0,-2.0,0.2,0.3]"},  // 0.35 is 0.34999...
      {"[0.15, 0.125, 0.375]", 2, "[0.15,0.12,0.38]"},
      {"[2.0, 2e0, 20e-1, 0.2E+1, 2.000000000000000000001]", 6, "[2.0,2.0,2.0,2.0,2.0]"},
      {"[-0.0, 0.0, -0e5, 0e-999999999999, 1e-400, -1e-400]", 6, "[0.0,0.0,0.0,0.0,0.0,0.0]"},
      {"[1e15, 1e14, 123456789012345.6, 1e-5, 1e-4, 0.000123, 123e-7]", 15,
       "[1e+15,100000000000000.0,123456789012346.0,1e-05,0.0001,0.000123,1.23e-05]"},
      {"[1e100, -2.5e-100, 1.7976931348623157e308, 5e-324]", 17,
       "[1e+100,-2.5e-100,1.7976931348623157e+308,4.9406564584124654e-324]"},
      {"[5e-324, 2.4703282292062328e-324, 2.4703282292062327e-324]", 3, "[4.94e-324,4.94e-324,0.0]"},
      {"[-243.994140625, 219.938720703125]", 6, "[-243.994,219.939]"},
      {"[-243.994140625, 219.938720703125]", 17, "[-243.994140625,219.938720703125]"},
      {"[99.5, 999.5, 9.95, 0.995]", 2, "[100.0,1000.0,9.9,0.99]"},
      // the two fixed-point rules (state_hash.hpp)
      {"[1.7976931348623157e308, -1.79e308]", 3, "[1.79e+308,-1.79e+308]"},
      {"[1.7976931348623157e308]", 16, "[1.797693134862315e+308]"},
      {"[100000000000000008388608.0, 1e23]", 16, "[9.999999999999999e+22,9.999999999999999e+22]"},
      {"[1.0375378562666177e-322]", 2, "[9.9e-323]"},
      // literals with more digits than any double needs
      {"[0.33333333333333333333333333333333333333333333333333333333333333333333333333333]", 5, "[0.33333]"},
      {"[1.00000000000000000000000000000000000000000000000000000000000000000000000000000001]", 17, "[1.0]"},
  };
  for (const Case& c : cases) {
    INFO(c.in << "  digits " << c.digits);
    const std::string got = canonOrFail(c.in, c.digits);
    CHECK(got == c.out);
    uint64_t h = 0;
    CHECK(chash(c.in, c.digits, h));
    CHECK(h == hashStr(c.out));
    CHECK(canonOrFail(c.out, c.digits) == c.out);  // a fixed point
  }
}

TEST_CASE("canonicalize: invalid input is rejected", "[state_hash]") {
  std::string out;
  const std::string bad[] = {
      "", " ", "{", "}", "[", "]", "{\"a\":}", "[1,2,]", "[,1]", "{\"a\":1,}", "{,}", "nan", "NaN", "-NaN",
      "Infinity", "-Infinity", "[Infinity]", "inf", "{}x", "[1] [2]", "{'a':1}", "{a:1}", "\"unterminated",
      "[1e]", "[1e+]", "[1.]", "[.5]", "[-]", "[+1]", "01", "-01", "[00]", "[0x10]", "\"\\x41\"", "\"\\u12\"",
      "\"\\u12G4\"", "\"\\a\"", "\"\\\"", "{\"a\" 1}", "{\"a\"::1}", "// c\n1", "/* c */ 1", "tru", "nul",
      "falsee", "True", "NULL", "\v1", "\f1", "\xc2\xa0" "1",
      // duplicate keys (after decoding escapes)
      R"({"a":1,"a":2})", R"({"a":1,"\u0061":2})", R"({"b":{"x":1,"y":2,"x":3}})", R"({"\u00e9":1,"é":2})",
      R"([{"a":1},{"b":1,"c":2,"b":3}])",
      // raw control characters in strings, NUL anywhere
      std::string("\"a\x01\""), std::string("\"a\nb\""), std::string("\"\t\""), std::string("\"\x1f\""),
      // invalid UTF-8
      "\"\xFF\"", "\"\x80\"", "\"\xC0\x80\"", "\"\xC1\xBF\"", "\"\xE0\x80\xAF\"", "\"\xED\xA0\x80\"",
      "\"\xED\xBF\xBF\"", "\"\xF0\x80\x80\x80\"", "\"\xF4\x90\x80\x80\"", "\"\xF5\x80\x80\x80\"", "\"\xC3\"",
      "\"\xE2\x82\"", "\"\xF0\x9F\x98\"", "\"\xC3\x28\"", "\xC3\xA9", "[\"\xE2\x28\xA1\"]",
      // lone surrogates
      R"("\ud800")", R"("\udc00")", R"("\ud800\u0041")", R"("\ud800x")", R"("\udbff\udbff")", R"("\ude00\ud83d")",
      // floats whose nearest double is infinite
      "[1e400]", "[-1e400]", "[1e309]", "[1.7976931348623159e308]", "[1.797693134862315808e308]",
      "[1e999999999999999999999]", "[123456789e301]", "[0.000000000000000001e327]",
  };
  for (const std::string& b : bad) {
    INFO(b);
    CHECK_FALSE(canon(b, 6, out));
    uint64_t h = 7;
    CHECK_FALSE(chash(b, 6, h));
    CHECK(h == 7);
  }
  // the largest finite literal still works, and its neighbour just below the threshold
  CHECK(canon("[1.797693134862315807e308]", 17, out));
  CHECK(out == "[1.7976931348623157e+308]");
  // NUL bytes: inside a string, after a document, between tokens
  for (const std::string& s : {std::string("[1]\0", 4), std::string("[1]\0xy", 6), std::string("\"a\0b\"", 5),
                               std::string("[1,\0 2]", 7), std::string("\0[1]", 4)}) {
    CHECK_FALSE(canon(s, 6, out));
  }
  CHECK(canonicalize("[1]\0", 3, 6, out));  // the same text without the NUL is fine
  CHECK(out == "[1]");
  CHECK_FALSE(canonicalize(nullptr, 3, 6, out));
  CHECK(canonicalize(nullptr, 0, 6, out) == false);  // empty text is not JSON
  // sizes beyond the limit are refused before any byte is read
  const char tiny[] = "1";
  CHECK_FALSE(canonicalize(tiny, size_t{1} << 29, 6, out));
  CHECK_FALSE(canonicalize(tiny, size_t{1} << 31, 6, out));
  uint64_t h = 0;
  CHECK_FALSE(canonicalHash(tiny, size_t{1} << 29, 6, h));
}

TEST_CASE("canonicalize: objects of one shape in an array", "[state_hash]") {
  // objects whose keys arrive in the same (unsorted) order reuse one permutation; any other key
  // sequence is sorted on its own, and duplicates are still found
  CHECK(canonOrFail(R"([{"y":1,"x":2,"id":3},{"y":4,"x":5,"id":6},{"y":7,"x":8,"id":9}])", 6) ==
        R"([{"id":3,"x":2,"y":1},{"id":6,"x":5,"y":4},{"id":9,"x":8,"y":7}])");
  CHECK(canonOrFail(R"([{"y":1,"x":2},{"x":3,"y":4},{"y":5,"x":6},{"y":7,"xx":8},{"yy":9,"x":0}])", 6) ==
        R"([{"x":2,"y":1},{"x":3,"y":4},{"x":6,"y":5},{"xx":8,"y":7},{"x":0,"yy":9}])");
  CHECK(canonOrFail(R"([{"b":1,"a":2},{"b":1,"\u0061":2},{"b":{"d":1,"c":2},"a":{"d":3,"c":4}}])", 6) ==
        R"([{"a":2,"b":1},{"a":2,"b":1},{"a":{"c":4,"d":3},"b":{"c":2,"d":1}}])");
  std::string out;
  CHECK_FALSE(canon(R"([{"b":1,"a":2},{"b":1,"a":2},{"b":1,"b":2}])", 6, out));
  CHECK_FALSE(canon(R"([{"b":1,"a":2},{"b":1,"a":2,"a":3}])", 6, out));
  // the remembered shape outlives a call; it never changes a result
  CHECK(canonOrFail(R"({"b":1,"a":2})", 6) == R"({"a":2,"b":1})");
  CHECK(canonOrFail(R"({"b":[true],"a":null})", 6) == R"({"a":null,"b":[true]})");
  CHECK_FALSE(canon(R"({"b":1,"b":2})", 6, out));
}

TEST_CASE("canonicalize: the text may live in the output string", "[state_hash]") {
  std::string s = R"({"b":[1.00000001, "A"], "a": -0})";
  REQUIRE(canonicalize(s.data(), s.size(), 6, s));
  CHECK(s == R"({"a":0,"b":[1.0,"A"]})");
  std::string t = "   [2.5e0]";
  REQUIRE(canonicalize(t.data() + 3, t.size() - 3, 6, t));
  CHECK(t == "[2.5]");
}

TEST_CASE("canonicalize: floatDigits must be 1..17", "[state_hash]") {
  std::string out;
  uint64_t h = 0;
  for (int d : {0, 18, -3, 100}) {
    CHECK_FALSE(canon("[1.5]", d, out));
    CHECK_FALSE(chash("[1.5]", d, h));
  }
  for (int d = 1; d <= 17; ++d) CHECK(canon("[1.5]", d, out));
}

TEST_CASE("canonicalize: nesting depth is bounded", "[state_hash]") {
  std::string ok(kMaxJsonDepth, '[');
  ok += std::string(kMaxJsonDepth, ']');
  std::string out;
  CHECK(canon(ok, 6, out));
  CHECK(out == ok);
  std::string okObj;
  for (int i = 0; i < kMaxJsonDepth; ++i) okObj += "{\"a\":";
  okObj += "1" + std::string(kMaxJsonDepth, '}');
  CHECK(canon(okObj, 6, out));
  CHECK(out == okObj);

  std::string deep(kMaxJsonDepth + 1, '[');
  deep += std::string(kMaxJsonDepth + 1, ']');
  CHECK_FALSE(canon(deep, 6, out));
  CHECK_FALSE(canon("{\"a\":" + okObj + "}", 6, out));
  std::string veryDeep(100000, '[');
  CHECK_FALSE(canon(veryDeep, 6, out));

  // brackets inside strings do not count
  std::string s = "[\"\\\"" + std::string(1000, '[') + "\"]";
  CHECK(canon(s, 6, out));
  CHECK(out == s);
}

TEST_CASE("canonicalize: large inputs and scratch reuse", "[state_hash]") {
  // an object of 20,000 members in reverse order, strings with long escape-free runs
  std::string in = "{", expect = "{";
  for (int i = 19999; i >= 0; --i) {
    char k[16];
    std::snprintf(k, sizeof k, "k%05d", i);
    in += std::string(i == 19999 ? "" : ",") + "\"" + k + "\": \"" + std::string(static_cast<size_t>(i % 50), 'v') + "\"";
  }
  for (int i = 0; i < 20000; ++i) {
    char k[16];
    std::snprintf(k, sizeof k, "k%05d", i);
    expect += std::string(i ? "," : "") + "\"" + k + "\":\"" + std::string(static_cast<size_t>(i % 50), 'v') + "\"";
  }
  expect += "}";
  in += "}";
  std::string out;
  REQUIRE(canon(in, 6, out));
  CHECK(out == expect);
  uint64_t h = 0;
  REQUIRE(chash(in, 6, h));
  CHECK(h == hashStr(expect));
  // small inputs after a big one (the scratch buffers shrink back)
  CHECK(canonOrFail(R"({"b":1,"a":2})", 6) == R"({"a":2,"b":1})");
  REQUIRE(chash(R"({"b":1,"a":2})", 6, h));
  CHECK(h == hashStr(R"({"a":2,"b":1})"));
  // a float-heavy text whose canonical form is longer than the input ("1e9" -> "1000000000.0")
  std::string floats = "[", fexp = "[";
  for (int i = 0; i < 5000; ++i) {
    floats += std::string(i ? "," : "") + "1e9";
    fexp += std::string(i ? "," : "") + "1000000000.0";
  }
  CHECK(canonOrFail(floats + "]", 6) == fexp + "]");
  REQUIRE(chash(floats + "]", 6, h));
  CHECK(h == hashStr(fexp + "]"));
}

TEST_CASE("canonicalHash: random trees, equivalent spellings hash equal", "[state_hash]") {
  int checked = 0;
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    const int N = 1 + static_cast<int>(seed % 17);
    Gen g(seed, N);
    Node tree = g.value(0);
    const std::string expect = canonicalText(tree);
    INFO("seed " << seed << " digits " << N << "\nexpected " << expect);
    uint64_t h0 = 0;
    REQUIRE(chash(expect, N, h0));
    CHECK(h0 == hashStr(expect));
    CHECK(canonOrFail(expect, N) == expect);
    for (int v = 0; v < 6; ++v) {
      Writer w(g, N, /*noise=*/N <= 15 && v % 2 == 1);
      const std::string text = w.write(tree);
      INFO("variant " << text);
      std::string c;
      REQUIRE(canon(text, N, c));
      CHECK(c == expect);
      uint64_t h = 0;
      REQUIRE(chash(text, N, h));
      CHECK(h == h0);
      ++checked;
    }
    // a different value hashes differently
    Node other = tree;
    if (mutate(other, g)) {
      const std::string changed = Writer(g, N, false).write(other);
      INFO("changed " << changed);
      uint64_t h = 0;
      REQUIRE(chash(changed, N, h));
      CHECK(h != h0);
    }
  }
  CHECK(checked == 2400);
}

namespace {

// The reference: nlohmann parses the text, glibc rounds every float; json equality compares.
void roundTree(nlohmann::json& j, int N) {
  if (j.is_number_float()) {
    const Dec d = referenceFloat(j.get<double>(), N);
    std::string s = (d.neg ? "-0." : "0.") + d.digits + "e" + std::to_string(d.exp + 1);
    j = std::strtod(s.c_str(), nullptr);
  } else if (j.is_array()) {
    for (auto& e : j) roundTree(e, N);
  } else if (j.is_object()) {
    for (auto& kv : j.items()) roundTree(kv.value(), N);
  }
}

}  // namespace

TEST_CASE("canonicalize agrees with nlohmann::json and glibc on random trees", "[state_hash]") {
  for (uint64_t seed = 1000; seed < 1400; ++seed) {
    const int N = 1 + static_cast<int>(seed % 17);
    Gen g(seed, N);
    g.hugeInts = false;  // nlohmann turns integers beyond 64 bits into doubles
    const Node tree = g.value(0);
    const std::string text = Writer(g, N, false).write(tree);
    INFO("seed " << seed << " digits " << N << "\n" << text);
    std::string c;
    REQUIRE(canon(text, N, c));
    nlohmann::json ref = nlohmann::json::parse(text, nullptr, false);
    REQUIRE_FALSE(ref.is_discarded());
    roundTree(ref, N);
    const nlohmann::json got = nlohmann::json::parse(c, nullptr, false);
    REQUIRE_FALSE(got.is_discarded());
    CHECK(got == ref);
  }
}

TEST_CASE("float rounding matches glibc's exact %.*e on random doubles", "[state_hash]") {
  std::mt19937_64 rng(77);
  auto check = [](const std::string& lit, int N) {
    const double x = std::strtod(lit.c_str(), nullptr);
    std::string c;
    const bool ok = canonicalize(lit.data(), lit.size(), N, c);
    if (std::isinf(x)) return !ok;
    if (!ok) return false;
    if (decOf(c) != referenceFloat(x, N) && !(x == 0 && c == "0.0")) return false;
    std::string again;
    return canonicalize(c.data(), c.size(), N, again) && again == c;  // a fixed point
  };
  int failures = 0;
  auto expectOk = [&](const std::string& lit, int N) {
    if (!check(lit, N)) {
      ++failures;
      if (failures < 20) FAIL_CHECK("float " << lit << " digits " << N);
    }
  };
  char b[64];
  for (int it = 0; it < 30000; ++it) {
    const int N = 1 + static_cast<int>(rng() % 17);
    uint64_t bits = rng() & 0x7FEFFFFFFFFFFFFFull;
    double x;
    std::memcpy(&x, &bits, sizeof x);
    if (rng() & 1) x = std::ldexp(static_cast<double>(rng() >> 11), static_cast<int>(rng() % 140) - 90);
    std::snprintf(b, sizeof b, (rng() & 1) ? "%.*e" : "%.*g", 1 + static_cast<int>(rng() % 20), (rng() & 1) ? -x : x);
    std::string lit = b;
    if (lit.find_first_of(".e") == std::string::npos) lit += ".0";
    expectOk(lit, N);
    // a decimal near an N-digit rounding boundary: N digits, then 5, then noise
    std::string t = std::string(1, static_cast<char>('1' + rng() % 9)) + ".";
    for (int j = 1; j < N; ++j) t += static_cast<char>('0' + rng() % 10);
    t += '5';
    for (int j = static_cast<int>(rng() % 25); j > 0; --j) t += (rng() % 8) ? '0' : static_cast<char>('0' + rng() % 10);
    t += "e" + std::to_string(static_cast<int>(rng() % 660) - 340);
    expectOk(t, N);
  }
  // every power of ten and its neighbours, every N; subnormals and the top of the range
  for (int N = 1; N <= 17; ++N) {
    for (int E = -323; E <= 308; ++E) {
      std::snprintf(b, sizeof b, "1e%d", E);
      const double p = std::strtod(b, nullptr);
      for (double y : {std::nextafter(std::nextafter(p, 0), 0), std::nextafter(p, 0), p, std::nextafter(p, INFINITY),
                       std::nextafter(std::nextafter(p, INFINITY), INFINITY)}) {
        if (y == 0 || std::isinf(y)) continue;
        std::snprintf(b, sizeof b, "%.17e", y);
        expectOk(b, N);
      }
    }
    for (uint64_t k = 1; k < 300; ++k) {
      const uint64_t near[] = {k, uint64_t{0x0010000000000000} - k, uint64_t{0x7FEFFFFFFFFFFFFF} - k};
      for (uint64_t bits : near) {
        double y;
        std::memcpy(&y, &bits, sizeof y);
        std::snprintf(b, sizeof b, "%.17e", y);
        expectOk(b, N);
      }
    }
    // literals longer than any double midpoint: the exact halfway point between 0 and the
    // smallest subnormal (2^-1075, 751 significant digits) and values just around it
    const std::string half =
        "2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828"
        "234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536"
        "152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246"
        "597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506"
        "740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386"
        "591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189"
        "313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125";
    expectOk(half + "e-324", N);                                    // tie: to even (0)
    expectOk(half + "000000000000000000000000000001e-324", N);      // just above: the subnormal
    expectOk(half + std::string(100, '0') + "1e-324", N);             // above, decided past 800 digits
    expectOk(half.substr(0, half.size() - 1) + "4999999999e-324", N);  // just below: 0
    expectOk("0." + std::string(1200, '3') + "e-300", N);
  }
  CHECK(failures == 0);
}
