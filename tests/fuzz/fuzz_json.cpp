// libFuzzer target: the JSON text the engine takes in. Byte 0 chooses the entry point, the rest
// is the text:
//   0      SyncEngine::create(config text); a created engine must report a fixed memoryBytes(),
//          survive a few frames (driven through driver.hpp runPlan; its relay JSON records are
//          JSON objects and its events well-formed), relay payloads and metrics export, and echo
//          its config.
//   1, 2   receiveRelayJson(pyodide_player_action / p2p_state_sync, text) on a live engine
//          (2 players, local 0, fromPeer taken from byte 1), plus the parsers alone: whatever
//          parses must format back to text that parses to the same fields.
//   3      the same text on an invalid relay event id (must be BAD_RELAY_JSON).
//   byte 0 >= 0x80: canonicalize/canonicalHash(text, floatDigits 1 + byte 1 % 17), checked
//          against nlohmann::json (SAX: duplicate keys, depth, integers beyond 64 bits) with
//          floats rounded by glibc (printf "%.*e" and strtod are exact): the same texts are
//          accepted, the canonical text holds the same value, is a fixed point, and hashes to
//          canonicalHash.
// Must never crash; abort() on a broken property.
//   mkdir -p /tmp/cj && cp tests/fuzz/corpus/json/* /tmp/cj/ && /tmp/b-fuzz/fuzz_json /tmp/cj
#include <cfenv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "driver.hpp"
#include "state_hash.hpp"
#include "sync_engine.hpp"

using namespace p2psync;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "PROPERTY BROKEN: %s\n", what);
  std::abort();
}

// The smallest env: a constant-size state, no episode end of its own.
struct TinyEnv {
  int steps = 0;
  bool load(const uint8_t*, size_t) { return true; }
  std::string state() const { return "{\"f\":" + std::to_string(steps) + "}"; }
  test::StepOutcome step(const uint8_t*, int, const RequestView&) {
    ++steps;
    return {};
  }
};

void exercise(SyncEngine& e, const char* text, size_t len) {
  const size_t mem = e.memoryBytes();
  const int n = e.numActors();
  if (n < 2 || n > kMaxActors) fail("numActors out of range");
  std::string relayText(text, len);
  TinyEnv env;
  for (int k = 0; k < 8; ++k) {
    e.advance(k * 33.0, static_cast<uint8_t>(k), 0);
    const int32_t* H = e.planHeader();
    if (H[plan::kStatus] < 0 || H[plan::kStatus] >= static_cast<int32_t>(Status::Count_)) fail("bad status");
    if (H[plan::kOutBytes] < 0 || static_cast<size_t>(H[plan::kOutBytes]) != e.outbox().size()) fail("outbox size");
    test::runPlan(e, env);
    // Relay JSON records in the outbox must be valid JSON objects (JS parses them); events must
    // be well-formed records (drainEvents throws otherwise).
    e.outbox().forEach([](const OutRecord& r) {
      if (r.kind != OutKind::RelayJson) return;
      json j = json::parse(r.data, r.data + r.length, nullptr, false);
      if (j.is_discarded() || !j.is_object()) fail("outbox record is not a JSON object");
    });
    test::drainEvents(e, [](const json&) {});
    for (int from = -1; from < 3; ++from) {
      e.receiveRelayJson(RelayEvent::PlayerAction, relayText.data(), relayText.size(), from, k * 33.0);
      e.receiveRelayJson(RelayEvent::StateSync, relayText.data(), relayText.size(), from, k * 33.0);
    }
    if (e.memoryBytes() != mem) fail("memoryBytes changed");
  }
  (void)e.exportSessionMetrics().dump(-1, ' ', false, json::error_handler_t::replace);
  (void)e.p2pMetrics().dump();
  (void)e.episodeSummary(relayText);
  (void)e.episodeSummary("{}");
  // The config echo re-parses to an equivalent engine config.
  json echo = e.config().toJson();
  for (auto it = echo.begin(); it != echo.end();) {
    if (it->is_null()) it = echo.erase(it);
    else ++it;
  }
  std::string s = echo.dump(-1, ' ', false, json::error_handler_t::replace);
  EngineConfig again;
  std::string err = parseConfig(s.data(), s.size(), again);
  if (!err.empty()) {
    std::fprintf(stderr, "%s\n%s\n", err.c_str(), s.c_str());
    fail("config echo does not parse back");
  }
  if (again.toJson() != e.config().toJson()) fail("config echo changed");
}

void configCase(const char* text, size_t len) {
  EngineConfig cfg;
  std::string err = parseConfig(text, len, cfg);
  std::string err2;
  // Big arenas (up to 256 MiB are valid) are real but slow to zero on every run: create()
  // itself is exercised up to 1 MiB of snapshots; larger ones build the same config capped.
  if (!err.empty() || cfg.snapshotBytes <= (1u << 20)) {
    std::unique_ptr<SyncEngine> e = SyncEngine::create(text, len, err2);
    if (err.empty() != (e != nullptr)) fail("create() and parseConfig() disagree");
    if (!e) {
      if (err2.rfind("config", 0) != 0) fail("error does not name a config key");
      return;
    }
    exercise(*e, text, len);
  } else {
    cfg.snapshotBytes = 1u << 20;
    SyncEngine e(cfg);
    exercise(e, text, len);
  }
}

void relayCase(RelayEvent ev, int fromPeer, const char* text, size_t len) {
  static const char kCfg[] = R"({"numPlayers":3,"localPlayerIndex":0,"playerIds":[0,"p1",2],"gameId":"g","bufferFrames":64,"snapshotBytes":4096})";
  std::string err;
  std::unique_ptr<SyncEngine> e = SyncEngine::create(kCfg, sizeof kCfg - 1, err);
  if (!e) fail("fixed config rejected");
  const size_t mem = e->memoryBytes();
  for (int k = 0; k < 3; ++k) {
    e->advance(k * 33.0, 1, 0);
    RxResult r = e->receiveRelayJson(ev, text, len, fromPeer, k * 33.0 + 1);
    if (std::strcmp(rxResultName(r), "UNKNOWN") == 0) fail("unnamed result");
    if (ev != RelayEvent::PlayerAction && ev != RelayEvent::StateSync && r != RxResult::BadRelayJson) fail("invalid event accepted");
  }
  if (e->memoryBytes() != mem) fail("memoryBytes changed");

  if (ev == RelayEvent::PlayerAction) {
    PlayerActionMsg m;
    if (parsePlayerAction(text, len, m) == RxResult::Ok) {
      if (len > kMaxPlayerActionJson) fail("oversized payload parsed");
      if (std::memchr(text, '\0', len) != nullptr) fail("text with a NUL byte parsed");
      std::string s = formatPlayerAction(m.playerId, m.action, m.frame, m.timestamp);
      PlayerActionMsg m2;
      if (s.empty() || parsePlayerAction(s.data(), s.size(), m2) != RxResult::Ok) fail("player action does not round-trip");
      if (m2.playerId != m.playerId || m2.action != m.action || m2.frame != m.frame || m2.timestamp != m.timestamp)
        fail("player action fields changed");
    }
  } else if (ev == RelayEvent::StateSync) {
    StateSyncMsg m;
    if (parseStateSync(text, len, m) == RxResult::Ok) {
      if (len > kMaxStateSyncJson) fail("oversized payload parsed");
      if (std::memchr(text, '\0', len) != nullptr) fail("text with a NUL byte parsed");
      std::string s = formatStateSync(m.gameId, m.senderId, m.frame, m.hash, m.counts);
      StateSyncMsg m2;
      // The re-formatted text may exceed the size limit only if the input did not (it is compact).
      if (s.empty()) fail("state sync does not format");
      if (s.size() <= kMaxStateSyncJson) {
        if (parseStateSync(s.data(), s.size(), m2) != RxResult::Ok) fail("state sync does not round-trip");
        if (m2.gameId != m.gameId || m2.senderId != m.senderId || m2.frame != m.frame || m2.hash != m.hash || m2.counts != m.counts)
          fail("state sync fields changed");
      }
    }
  }
}

// ---------------------------------------------------------------- canonical JSON (state_hash)

// What nlohmann's SAX parser sees that canonicalize treats differently: duplicate keys (rejected),
// nesting beyond kMaxJsonDepth (rejected), integer literals beyond 64 bits (kept exact, where
// nlohmann makes them doubles or reports an overflow).
struct CanonProbe : nlohmann::json_sax<json> {
  std::vector<std::set<std::string>> keys;
  int depth = 0, maxDepth = 0;
  bool dup = false, bigInt = false;
  static bool isInteger(const std::string& t) { return t.find_first_of(".eE") == std::string::npos; }
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t& t) override {
    if (isInteger(t)) bigInt = true;
    return true;
  }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys.emplace_back();
    maxDepth = std::max(maxDepth, ++depth);
    return true;
  }
  bool key(string_t& k) override {
    if (!keys.back().insert(k).second) dup = true;
    return true;
  }
  bool end_object() override {
    keys.pop_back();
    --depth;
    return true;
  }
  bool start_array(std::size_t) override {
    maxDepth = std::max(maxDepth, ++depth);
    return true;
  }
  bool end_array() override {
    --depth;
    return true;
  }
  bool parse_error(std::size_t, const std::string& token, const nlohmann::detail::exception&) override {
    // nlohmann refuses an integer literal too large for a double; canonicalize keeps its digits
    if (!token.empty() && (token[0] == '-' || (token[0] >= '0' && token[0] <= '9')) && isInteger(token) &&
        std::isinf(std::strtod(token.c_str(), nullptr)))
      bigInt = true;
    return false;
  }
};

// The canonical float of x (state_hash.hpp): glibc's exact %.*e, toward zero past the overflow
// threshold, and a power of ten that does not re-canonicalize to itself replaced by what it does.
double referenceFloat(double x, int digits) {
  if (x == 0) return 0;
  char b[64];
  std::snprintf(b, sizeof b, "%.*e", digits - 1, x);
  if (std::isinf(std::strtod(b, nullptr))) {
    std::fesetround(FE_TOWARDZERO);
    std::snprintf(b, sizeof b, "%.*e", digits - 1, x);
    std::fesetround(FE_TONEAREST);
  }
  const double d = std::strtod(b, nullptr);
  const char* m = b + (b[0] == '-');
  bool pow10 = m[0] == '1';
  for (const char* p = m + 1; *p && *p != 'e'; ++p)
    if (*p != '.' && *p != '0') pow10 = false;
  if (pow10) {
    char again[64];
    std::snprintf(again, sizeof again, "%.*e", digits - 1, d);
    return std::strtod(again, nullptr);
  }
  return d;
}

void roundFloats(json& j, int digits) {
  if (j.is_number_float()) j = referenceFloat(j.get<double>(), digits);
  else if (j.is_array())
    for (auto& e : j) roundFloats(e, digits);
  else if (j.is_object())
    for (auto& kv : j.items()) roundFloats(kv.value(), digits);
}

void canonicalCase(int digits, const char* text, size_t len) {
  std::string c;
  const bool ok = canonicalize(text, len, digits, c);
  uint64_t h = 0;
  if (canonicalHash(text, len, digits, h) != ok) fail("canonicalHash and canonicalize disagree");
  if (ok) {
    if (h != hashBytes(reinterpret_cast<const uint8_t*>(c.data()), c.size())) fail("canonicalHash is not the text's hash");
    std::string again;
    if (!canonicalize(c.data(), c.size(), digits, again) || again != c) fail("canonical text is not a fixed point");
  }
  if (std::memchr(text, 0, len) != nullptr) {  // never JSON; nlohmann may stop at the NUL
    if (ok) fail("text with a NUL byte canonicalized");
    return;
  }
  CanonProbe probe;
  const bool parsed = json::sax_parse(text, text + len, &probe);
  if (probe.bigInt) return;  // nlohmann reads these integers differently
  const bool expect = parsed && !probe.dup && probe.maxDepth <= kMaxJsonDepth;
  if (ok != expect) {
    std::fprintf(stderr, "canonicalize %d, nlohmann %d, duplicate key %d, depth %d\n", ok, parsed, probe.dup, probe.maxDepth);
    fail("canonicalize accepts a different set of texts than nlohmann");
  }
  if (!ok) return;
  json ref = json::parse(text, text + len, nullptr, false);
  roundFloats(ref, digits);
  const json got = json::parse(c, nullptr, false);
  if (got.is_discarded() || got != ref) {
    std::fprintf(stderr, "%s\n", c.c_str());
    fail("canonical text has a different value");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  if (data[0] >= 0x80) {
    canonicalCase(1 + data[1] % 17, reinterpret_cast<const char*>(data + 2), size - 2);
    return 0;
  }
  const int mode = data[0] & 3;
  const int fromPeer = static_cast<int>(data[1] % 6) - 1;  // -1..4
  const char* text = reinterpret_cast<const char*>(data + 2);
  const size_t len = size - 2;
  switch (mode) {
    case 0: configCase(reinterpret_cast<const char*>(data + 1), size - 1); break;
    case 1: relayCase(RelayEvent::PlayerAction, fromPeer, text, len); break;
    case 2: relayCase(RelayEvent::StateSync, fromPeer, text, len); break;
    default: relayCase(static_cast<RelayEvent>(data[1] % 2 ? 0 : 3), fromPeer, text, len); break;
  }
  return 0;
}
