// libFuzzer target: the JSON text the engine takes in. Byte 0 chooses the entry point, the rest
// is the text:
//   0      SyncEngine::create(config text); a created engine must report a fixed memoryBytes(),
//          survive a few frames, relay payloads and metrics export, and echo its config.
//   1, 2   receiveRelayJson(pyodide_player_action / p2p_state_sync, text) on a live engine
//          (2 players, local 0, fromPeer taken from byte 1), plus the parsers alone: whatever
//          parses must format back to text that parses to the same fields.
//   3      the same text on an invalid relay event id (must be BAD_RELAY_JSON).
// Must never crash; abort() on a broken property.
//   mkdir -p /tmp/cj && cp tests/fuzz/corpus/json/* /tmp/cj/ && /tmp/b-fuzz/fuzz_json /tmp/cj
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "sync_engine.hpp"

using namespace p2psync;
using nlohmann::json;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "PROPERTY BROKEN: %s\n", what);
  std::abort();
}

void exercise(SyncEngine& e, const char* text, size_t len) {
  const size_t mem = e.memoryBytes();
  const int n = e.numActors();
  if (n < 2 || n > kMaxActors) fail("numActors out of range");
  std::string relayText(text, len);
  for (int k = 0; k < 8; ++k) {
    e.advance(k * 33.0, static_cast<uint8_t>(k), 0);
    const int32_t* H = e.planHeader();
    if (H[kStatus] < 0 || H[kStatus] > 3) fail("bad status");
    if (H[kOutBytes] < 0 || static_cast<size_t>(H[kOutBytes]) != e.outbox().size()) fail("outbox size");
    if (H[kStatus] == 0) {
      std::string s = "{\"f\":" + std::to_string(k) + "}";
      if (H[kSaveSnapshot]) e.saveSnapshot(static_cast<uint32_t>(H[kFrame]), reinterpret_cast<const uint8_t*>(s.data()), s.size());
    }
    // Relay JSON records in the outbox must be valid JSON objects (JS parses them).
    const uint8_t* p = e.outbox().data();
    size_t off = 0;
    while (off + 8 <= e.outbox().size()) {
      uint32_t l;
      std::memcpy(&l, p + off + 4, 4);
      if (p[off] == static_cast<uint8_t>(OutKind::RelayJson) || p[off] == static_cast<uint8_t>(OutKind::Event)) {
        json j = json::parse(p + off + 8, p + off + 8 + l, nullptr, false);
        if (j.is_discarded() || !j.is_object()) fail("outbox record is not a JSON object");
      }
      off += 8 + ((l + 3) & ~size_t(3));
    }
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

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
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
