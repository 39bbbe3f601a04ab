// State hash tests. Expected XXH3-64 values were computed independently with the xxhsum CLI
// (xxhash 0.8.1, `printf '%s' STR | xxhsum -H3`), not with this code.
#include <catch2/catch_test_macros.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

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

}  // namespace

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

TEST_CASE("canonicalize: compact dump with sorted keys", "[state_hash]") {
  CHECK(canonOrFail(R"({"b":1.00000001,"a":[1,2]})", 6) == R"({"a":[1,2],"b":1.0})");
  CHECK(canonOrFail(" { \"z\" : { \"y\" : true , \"x\" : null } , \"a\" : \"s\" } ", 6) ==
        R"({"a":"s","z":{"x":null,"y":true}})");
  CHECK(canonOrFail("[]", 6) == "[]");
  CHECK(canonOrFail("{}", 6) == "{}");
  CHECK(canonOrFail("\"caf\xC3\xA9\"", 6) == "\"caf\xC3\xA9\"");
  CHECK(canonOrFail(R"("a\u0041\n")", 6) == R"("aA\n")");
}

TEST_CASE("canonicalHash: float rounding decides equality", "[state_hash]") {
  const std::string x = R"({"b":1.00000001,"a":[1,2]})";
  const std::string y = R"({"a":[1,2],"b":1.0})";
  uint64_t hx = 0, hy = 0;
  REQUIRE(chash(x, 6, hx));
  REQUIRE(chash(y, 6, hy));
  CHECK(hx == hy);
  // independent check: xxhsum -H3 of the canonical text {"a":[1,2],"b":1.0}
  CHECK(hx == 0xCC419EC3AFEFD72Cull);

  REQUIRE(chash(x, 17, hx));
  REQUIRE(chash(y, 17, hy));
  CHECK(hx != hy);
  CHECK(hy == 0xCC419EC3AFEFD72Cull);
}

TEST_CASE("canonicalHash: key order and whitespace are irrelevant", "[state_hash]") {
  uint64_t a = 0, b = 0;
  REQUIRE(chash(R"({"x":1,"y":{"q":2.5,"p":[3,{"n":1,"m":0}]}})", 10, a));
  REQUIRE(chash("{ \"y\" : {\"p\":[3, {\"m\":0,\"n\":1}],\n \"q\":2.5}, \"x\":1 }", 10, b));
  CHECK(a == b);
  // but array order matters
  REQUIRE(chash("[1,2]", 10, a));
  REQUIRE(chash("[2,1]", 10, b));
  CHECK(a != b);
}

TEST_CASE("canonicalize: rounding rules", "[state_hash]") {
  CHECK(canonOrFail("[3.14159265, 2.5e-10, 123456.789]", 4) == "[3.142,2.5e-10,123500.0]");
  CHECK(canonOrFail("[0.1, 0.30000000000000004]", 15) == "[0.1,0.3]");
  CHECK(canonOrFail("[0.30000000000000004]", 17) == "[0.30000000000000004]");
  CHECK(canonOrFail("[1.5, 2.5, -1.5]", 1) == "[2.0,2.0,-2.0]");  // exact ties: round-half-even
  // -0.0 becomes 0
  CHECK(canonOrFail("[-0.0, 0.0, -0e5]", 6) == "[0.0,0.0,0.0]");
  uint64_t a = 0, b = 0;
  REQUIRE(chash(R"({"v":-0.0})", 6, a));
  REQUIRE(chash(R"({"v":0.0})", 6, b));
  CHECK(a == b);
}

TEST_CASE("canonicalize: integers stay integers", "[state_hash]") {
  CHECK(canonOrFail("[12345678901, 3, -7, 0]", 3) == "[12345678901,3,-7,0]");
  CHECK(canonOrFail("[18446744073709551615, -9223372036854775808]", 1) ==
        "[18446744073709551615,-9223372036854775808]");
  CHECK(canonOrFail("[2.0]", 3) == "[2.0]");
  CHECK(canonOrFail("-0", 6) == "0");
}

TEST_CASE("canonicalize: invalid input is rejected", "[state_hash]") {
  std::string out;
  for (const std::string bad : {"", " ", "{", "}", "{\"a\":}", "[1,2,]", "nan", "NaN", "{}x",
                                "{'a':1}", "[1] [2]", "\"unterminated", "[1e]", "01",
                                "\"\xFF\"", "{\"a\" 1}", "// c\n1",
                                "[1e400]", "[-1e400]"}) {
    INFO(bad);
    CHECK_FALSE(canon(bad, 6, out));
    uint64_t h = 7;
    CHECK_FALSE(chash(bad, 6, h));
  }
  // embedded NUL after a valid document
  const char nul[] = {'[', '1', ']', '\0'};
  CHECK_FALSE(canonicalize(nul, sizeof nul, 6, out));
  const char nulJunk[] = {'[', '1', ']', '\0', 'x', 'y'};
  CHECK_FALSE(canonicalize(nulJunk, sizeof nulJunk, 6, out));
  CHECK(canonicalize(nul, 3, 6, out));  // the same text without the NUL is fine
  CHECK(out == "[1]");
  CHECK_FALSE(canonicalize(nullptr, 3, 6, out));
}

TEST_CASE("canonicalize: floatDigits must be 1..17", "[state_hash]") {
  std::string out;
  CHECK_FALSE(canon("[1.5]", 0, out));
  CHECK_FALSE(canon("[1.5]", 18, out));
  CHECK_FALSE(canon("[1.5]", -3, out));
  CHECK(canon("[1.5]", 1, out));
  CHECK(canon("[1.5]", 17, out));
}

TEST_CASE("canonicalize: nesting depth is bounded", "[state_hash]") {
  std::string ok(kMaxJsonDepth, '[');
  ok += std::string(kMaxJsonDepth, ']');
  std::string out;
  CHECK(canon(ok, 6, out));
  CHECK(out == ok);

  std::string deep(kMaxJsonDepth + 1, '[');
  deep += std::string(kMaxJsonDepth + 1, ']');
  CHECK_FALSE(canon(deep, 6, out));

  std::string veryDeep(100000, '[');
  CHECK_FALSE(canon(veryDeep, 6, out));

  // brackets inside strings (including after an escaped quote) do not count
  std::string s = "[\"\\\"" + std::string(1000, '[') + "\"]";
  CHECK(canon(s, 6, out));
  CHECK(out == s);
}
