// Relay JSON messages (pyodide_player_action, p2p_state_sync) and ActionCounts.
#include <catch2/catch_test_macros.hpp>

#include <cstring>
#include <limits>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "relay.hpp"

using namespace p2psync;
using nlohmann::json;

namespace {

json parseOk(const std::string& s) {
  json j = json::parse(s.begin(), s.end(), nullptr, false);
  REQUIRE_FALSE(j.is_discarded());
  return j;
}

std::set<std::string> keysOf(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

RxResult pa(const std::string& s) {
  PlayerActionMsg m;
  return parsePlayerAction(s.data(), s.size(), m);
}
RxResult ss(const std::string& s) {
  StateSyncMsg m;
  return parseStateSync(s.data(), s.size(), m);
}

const char* kGoodAction = R"({"player_id":1,"action":3,"frame_number":42,"timestamp":1234.5})";
const char* kGoodSync =
    R"({"game_id":"g1","sender_id":0,"frame_number":60,"state_hash":"00000000deadbeef","action_counts":{"0":{"3":10}}})";

// Replaces `key`'s value in a JSON object text by `raw` (or removes it when raw is null).
std::string with(const char* base, const char* key, const char* raw) {
  json j = json::parse(base);
  if (raw == nullptr) {
    j.erase(key);
  } else {
    json v = json::parse(raw, nullptr, false);
    REQUIRE_FALSE(v.is_discarded());
    j[key] = v;
  }
  return j.dump();
}

}  // namespace

TEST_CASE("ActionCounts: add, set, get, bounds, saturation", "[relay][counts]") {
  ActionCounts c;
  CHECK(c.empty());
  CHECK(c.add(0, 3));
  CHECK(c.add(0, 3));
  CHECK(c.add(11, 255));
  CHECK(c.add(1, 0));
  CHECK(c.get(0, 3) == 2);
  CHECK(c.get(11, 255) == 1);
  CHECK(c.get(1, 0) == 1);
  CHECK(c.get(2, 2) == 0);
  CHECK(c.size() == 3);
  CHECK_FALSE(c.add(12, 0));
  CHECK_FALSE(c.add(-1, 0));
  CHECK_FALSE(c.add(0, 256));
  CHECK_FALSE(c.add(0, -1));
  CHECK(c.get(12, 0) == 0);
  CHECK(c.size() == 3);

  CHECK(c.set(5, 7, std::numeric_limits<uint32_t>::max()));
  CHECK(c.add(5, 7));  // saturates
  CHECK(c.get(5, 7) == std::numeric_limits<uint32_t>::max());
  CHECK(c.set(5, 7, 0));  // 0 removes
  CHECK(c.get(5, 7) == 0);
  CHECK(c.size() == 3);

  ActionCounts d = c;
  CHECK(d == c);
  d.add(0, 3);
  CHECK(d != c);
  ActionCounts e;
  e.set(1, 1, 0);  // zero is never stored: equal to empty
  CHECK(e == ActionCounts{});

  CHECK(c.toJson() == json::parse(R"({"0":{"3":2},"1":{"0":1},"11":{"255":1}})"));
  CHECK(ActionCounts{}.toJson() == json::object());
}

TEST_CASE("ActionCounts: diff gives local-remote for differing entries only", "[relay][counts]") {
  ActionCounts local, remote;
  local.set(0, 1, 5);
  local.set(0, 2, 3);
  local.set(1, 4, 7);
  remote.set(0, 1, 4);
  remote.set(1, 0, 2);
  remote.set(1, 4, 7);  // equal: not listed
  CHECK(local.diff(remote) == json::parse(R"({"0":{"1":1,"2":3},"1":{"0":-2}})"));
  CHECK(remote.diff(local) == json::parse(R"({"0":{"1":-1,"2":-3},"1":{"0":2}})"));
  CHECK(local.diff(local) == json::object());
  CHECK(ActionCounts{}.diff(ActionCounts{}) == json::object());
  ActionCounts big;
  big.set(3, 9, std::numeric_limits<uint32_t>::max());
  CHECK(ActionCounts{}.diff(big)["3"]["9"].get<int64_t>() == -static_cast<int64_t>(std::numeric_limits<uint32_t>::max()));
}

TEST_CASE("pyodide_player_action: format uses the reference field names and round-trips", "[relay]") {
  const std::string s = formatPlayerAction(json(1), 3, 42, 1234.5);
  const json j = parseOk(s);
  CHECK(keysOf(j) == std::set<std::string>{"player_id", "action", "frame_number", "timestamp"});
  CHECK(j["player_id"] == 1);
  CHECK(j["action"] == 3);
  CHECK(j["frame_number"] == 42);
  CHECK(j["timestamp"] == 1234.5);

  PlayerActionMsg m;
  REQUIRE(parsePlayerAction(s.data(), s.size(), m) == RxResult::Ok);
  CHECK(m.playerId == json(1));
  CHECK(m.action == 3);
  CHECK(m.frame == 42);
  CHECK(m.timestamp == 1234.5);
  CHECK(m.from == -1);

  const std::string s2 = formatPlayerAction(json("human-a"), 255, 0xFFFFFFFFu, 0);
  PlayerActionMsg m2;
  REQUIRE(parsePlayerAction(s2.data(), s2.size(), m2) == RxResult::Ok);
  CHECK(m2.playerId == json("human-a"));
  CHECK(m2.action == 255);
  CHECK(m2.frame == 0xFFFFFFFFu);
  CHECK(m2.timestamp == 0);

  // Bad ids produce no message; bad timestamps are written as 0.
  CHECK(formatPlayerAction(json::object(), 1, 1, 1).empty());
  CHECK(formatPlayerAction(json(1.5), 1, 1, 1).empty());
  CHECK(formatPlayerAction(json(""), 1, 1, 1).empty());
  CHECK(parseOk(formatPlayerAction(json(0), 1, 1, -5))["timestamp"] == 0.0);
  CHECK(parseOk(formatPlayerAction(json(0), 1, 1, std::numeric_limits<double>::quiet_NaN()))["timestamp"] == 0.0);
}

TEST_CASE("pyodide_player_action: server-attached 'from' is accepted", "[relay]") {
  PlayerActionMsg m;
  const std::string s = R"({"player_id":"p","action":0,"frame_number":1,"timestamp":0,"from":2})";
  REQUIRE(parsePlayerAction(s.data(), s.size(), m) == RxResult::Ok);
  CHECK(m.from == 2);
  CHECK(pa(with(kGoodAction, "from", "\"1\"")) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "from", "-1")) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "from", "1.5")) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "from", "256")) == RxResult::BadRelayJson);
}

TEST_CASE("pyodide_player_action: malformed, wrong-type and oversized payloads are rejected", "[relay]") {
  CHECK(pa(kGoodAction) == RxResult::Ok);
  // not an object / not JSON
  for (const char* bad : {"", "nope", "[1,2]", "1", "null", "{", R"({"player_id":1,)", "{} {}"})
    CHECK(pa(bad) == RxResult::BadRelayJson);
  {
    PlayerActionMsg m;
    CHECK(parsePlayerAction(nullptr, 0, m) == RxResult::BadRelayJson);
    CHECK(parsePlayerAction(nullptr, 10, m) == RxResult::BadRelayJson);
  }
  // missing / extra fields
  for (const char* k : {"player_id", "action", "frame_number", "timestamp"})
    CHECK(pa(with(kGoodAction, k, nullptr)) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "room", "\"r1\"")) == RxResult::BadRelayJson);
  // action
  for (const char* v : {"256", "-1", "1.5", "3.0", "\"3\"", "null", "true", "[3]", "{}", "1e2"})
    CHECK(pa(with(kGoodAction, "action", v)) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "action", "0")) == RxResult::Ok);
  CHECK(pa(with(kGoodAction, "action", "255")) == RxResult::Ok);
  // frame_number
  for (const char* v : {"-1", "4294967296", "1.5", "\"x\"", "null", "18446744073709551616"})
    CHECK(pa(with(kGoodAction, "frame_number", v)) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "frame_number", "4294967295")) == RxResult::Ok);
  // timestamp
  for (const char* v : {"-1", "-0.5", "\"now\"", "null", "[]"})
    CHECK(pa(with(kGoodAction, "timestamp", v)) == RxResult::BadRelayJson);
  CHECK(pa(R"({"player_id":1,"action":3,"frame_number":42,"timestamp":1e999})") == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "timestamp", "0")) == RxResult::Ok);
  CHECK(pa(with(kGoodAction, "timestamp", "1.7e12")) == RxResult::Ok);
  // player_id
  for (const char* v : {"{\"x\":1}", "1.5", "true", "null", "\"\"", "[1]"})
    CHECK(pa(with(kGoodAction, "player_id", v)) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "player_id", ("\"" + std::string(65, 'a') + "\"").c_str())) == RxResult::BadRelayJson);
  CHECK(pa(with(kGoodAction, "player_id", ("\"" + std::string(64, 'a') + "\"").c_str())) == RxResult::Ok);
  // size limit (valid JSON padded with whitespace)
  std::string big = kGoodAction;
  big += std::string(kMaxPlayerActionJson - big.size(), ' ');
  CHECK(pa(big) == RxResult::Ok);
  big += ' ';
  CHECK(pa(big) == RxResult::BadRelayJson);
  // raw NUL and invalid UTF-8
  std::string nul = R"({"player_id":"a)";
  nul.push_back('\0');
  nul += R"(","action":3,"frame_number":42,"timestamp":1})";
  CHECK(pa(nul) == RxResult::BadRelayJson);
  CHECK(pa("{\"player_id\":\"\xff\xfe\",\"action\":3,\"frame_number\":42,\"timestamp\":1}") == RxResult::BadRelayJson);
  CHECK(pa(R"({"player_id":"\ud800","action":3,"frame_number":42,"timestamp":1})") == RxResult::BadRelayJson);
}

TEST_CASE("p2p_state_sync: format uses the reference field names and round-trips", "[relay]") {
  ActionCounts c;
  c.set(0, 3, 10);
  c.set(1, 0, 4);
  c.set(11, 255, 1);
  const std::string s = formatStateSync("game-7", json(1), 60, 0x00000000deadbeefULL, c);
  const json j = parseOk(s);
  CHECK(keysOf(j) == std::set<std::string>{"game_id", "sender_id", "frame_number", "state_hash", "action_counts"});
  CHECK(j["game_id"] == "game-7");
  CHECK(j["sender_id"] == 1);
  CHECK(j["frame_number"] == 60);
  CHECK(j["state_hash"] == "00000000deadbeef");
  CHECK(j["action_counts"] == json::parse(R"({"0":{"3":10},"1":{"0":4},"11":{"255":1}})"));

  StateSyncMsg m;
  REQUIRE(parseStateSync(s.data(), s.size(), m) == RxResult::Ok);
  CHECK(m.gameId == "game-7");
  CHECK(m.senderId == json(1));
  CHECK(m.frame == 60);
  CHECK(m.hash == 0x00000000deadbeefULL);
  CHECK(m.counts == c);
  CHECK(m.from == -1);

  // extremes, string sender, empty counts and game id
  const std::string s2 = formatStateSync("", json("subject-9"), 0xFFFFFFFFu, ~0ULL, ActionCounts{});
  CHECK(parseOk(s2)["action_counts"] == json::object());
  CHECK(parseOk(s2)["state_hash"] == "ffffffffffffffff");
  StateSyncMsg m2;
  REQUIRE(parseStateSync(s2.data(), s2.size(), m2) == RxResult::Ok);
  CHECK(m2.hash == ~0ULL);
  CHECK(m2.frame == 0xFFFFFFFFu);
  CHECK(m2.senderId == json("subject-9"));
  CHECK(m2.counts.empty());

  // invalid UTF-8 in the game id is replaced, never aborts
  const std::string s3 = formatStateSync(std::string("g\xff"), json(0), 5, 1, ActionCounts{});
  CHECK_FALSE(s3.empty());
  CHECK(ss(s3) == RxResult::Ok);
  CHECK(formatStateSync("g", json(nullptr), 5, 1, ActionCounts{}).empty());

  // full counts (12 actors x 256 actions) still fit the size limit? They must at least parse
  // when under it; the maximum-size message is bounded by kMaxStateSyncJson.
  ActionCounts few;
  for (int a = 0; a < 12; ++a)
    for (int act = 0; act < 8; ++act) few.set(a, act, 1000000u + static_cast<uint32_t>(act));
  const std::string s4 = formatStateSync("g", json(0), 5, 1, few);
  StateSyncMsg m4;
  REQUIRE(parseStateSync(s4.data(), s4.size(), m4) == RxResult::Ok);
  CHECK(m4.counts == few);
}

TEST_CASE("p2p_state_sync: 'from', zero counts", "[relay]") {
  StateSyncMsg m;
  const std::string s = with(kGoodSync, "from", "1");
  REQUIRE(parseStateSync(s.data(), s.size(), m) == RxResult::Ok);
  CHECK(m.from == 1);
  const std::string z = with(kGoodSync, "action_counts", R"({"0":{"3":0},"1":{}})");
  REQUIRE(parseStateSync(z.data(), z.size(), m) == RxResult::Ok);
  CHECK(m.counts.empty());
}

TEST_CASE("p2p_state_sync: malformed, wrong-type and oversized payloads are rejected", "[relay]") {
  CHECK(ss(kGoodSync) == RxResult::Ok);
  for (const char* bad : {"", "x", "[]", "\"s\"", "{"}) CHECK(ss(bad) == RxResult::BadRelayJson);
  for (const char* k : {"game_id", "sender_id", "frame_number", "state_hash", "action_counts"})
    CHECK(ss(with(kGoodSync, k, nullptr)) == RxResult::BadRelayJson);
  CHECK(ss(with(kGoodSync, "extra", "1")) == RxResult::BadRelayJson);
  // game_id
  for (const char* v : {"1", "null", "[]"}) CHECK(ss(with(kGoodSync, "game_id", v)) == RxResult::BadRelayJson);
  CHECK(ss(with(kGoodSync, "game_id", ("\"" + std::string(65, 'g') + "\"").c_str())) == RxResult::BadRelayJson);
  // sender_id
  for (const char* v : {"1.5", "null", "{}", "\"\""}) CHECK(ss(with(kGoodSync, "sender_id", v)) == RxResult::BadRelayJson);
  // frame_number
  for (const char* v : {"-1", "4294967296", "2.5", "\"60\""})
    CHECK(ss(with(kGoodSync, "frame_number", v)) == RxResult::BadRelayJson);
  // state_hash: exactly 16 lowercase hex chars
  for (const char* v : {"\"00000000DEADBEEF\"", "\"deadbeef\"", "\"00000000deadbeef0\"", "\"00000000deadbeeg\"",
                        "3735928559", "null", "\"\""})
    CHECK(ss(with(kGoodSync, "state_hash", v)) == RxResult::BadRelayJson);
  // action_counts
  for (const char* v : {"null", "[]", "1", "\"x\"", R"({"0":[1]})", R"({"0":5})", R"({"01":{"3":1}})",
                        R"({"-1":{"3":1}})", R"({"12":{"3":1}})", R"({"a":{"3":1}})", R"({" 0":{"3":1}})",
                        R"({"0":{"256":1}})", R"({"0":{"03":1}})", R"({"0":{"3":-1}})", R"({"0":{"3":1.5}})",
                        R"({"0":{"3":"1"}})", R"({"0":{"3":4294967296}})", R"({"":{"3":1}})", R"({"0":{"3":null}})"})
    CHECK(ss(with(kGoodSync, "action_counts", v)) == RxResult::BadRelayJson);
  CHECK(ss(with(kGoodSync, "action_counts", R"({"11":{"255":4294967295}})")) == RxResult::Ok);
  // size limit
  std::string big = kGoodSync;
  big += std::string(kMaxStateSyncJson - big.size(), ' ');
  CHECK(ss(big) == RxResult::Ok);
  big += ' ';
  CHECK(ss(big) == RxResult::BadRelayJson);
  // deep nesting inside the limit: rejected without crashing
  std::string deep = R"({"game_id":"g","sender_id":0,"frame_number":5,"state_hash":"0000000000000001","action_counts":)";
  const size_t depth = 3000;
  deep += std::string(depth, '[') + std::string(depth, ']') + "}";
  REQUIRE(deep.size() <= kMaxStateSyncJson);
  CHECK(ss(deep) == RxResult::BadRelayJson);
}

TEST_CASE("relay helpers: index keys and ids", "[relay]") {
  int v = -1;
  CHECK(parseIndexKey("0", 11, v));
  CHECK(v == 0);
  CHECK(parseIndexKey("11", 11, v));
  CHECK(v == 11);
  CHECK_FALSE(parseIndexKey("12", 11, v));
  CHECK_FALSE(parseIndexKey("007", 255, v));
  CHECK_FALSE(parseIndexKey("+1", 255, v));
  CHECK_FALSE(parseIndexKey("", 255, v));
  CHECK_FALSE(parseIndexKey("99999", 100000, v));
  CHECK(isValidRelayId(json(-3)));
  CHECK(isValidRelayId(json(7u)));
  CHECK(isValidRelayId(json("x")));
  CHECK_FALSE(isValidRelayId(json(2.0)));
  CHECK_FALSE(isValidRelayId(json(true)));
}
