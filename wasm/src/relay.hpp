// Socket.IO relay messages in the reference server's JSON shapes (web/server.mjs), built and
// parsed with nlohmann::json in its non-throwing mode.
//
//   "pyodide_player_action" {player_id, action, frame_number, timestamp}
//   "p2p_state_sync"        {game_id, sender_id, frame_number, state_hash, action_counts}
//
// The server attaches "from" (the sender's playerIndex) to every relayed event; the parsers
// accept it as the only extra field. Parsers are strict: any other field, a wrong type, a value
// out of range, or an oversized payload -> RxResult::BadRelayJson. Plain C++20, no exceptions.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "result.hpp"

namespace p2psync {

constexpr size_t kMaxPlayerActionJson = 1024;   // bytes of a pyodide_player_action payload
constexpr size_t kMaxStateSyncJson = 8 * 1024;  // bytes of a p2p_state_sync payload
constexpr size_t kMaxRelayIdLength = 64;        // player_id / sender_id / game_id strings (server's maxIdLength)

// Per-actor counts of each action executed so far (actors = players, then bots).
// Sparse and compact: one sorted vector of the non-zero (actor, action) entries, 8 bytes each;
// a typical game (2 players, ~6 actions) copies ~100 bytes. Zero counts are never stored, so
// "absent" and "0" are the same thing (also in toJson/diff/==).
class ActionCounts {
 public:
  static constexpr int kMaxActors = 12;    // 4 players + 8 bots
  static constexpr int kMaxActions = 256;  // actions are bytes

  void clear() { entries_.clear(); }
  // +1 (saturating at 2^32-1). False (no change) when actor/action is out of range.
  bool add(int actor, int action);
  // Sets one count (0 removes the entry). False when actor/action is out of range.
  bool set(int actor, int action, uint32_t count);
  uint32_t get(int actor, int action) const;
  size_t size() const { return entries_.size(); }  // number of non-zero entries
  bool empty() const { return entries_.empty(); }

  // {"<actor>": {"<action>": count}}; actors with no non-zero count are omitted.
  nlohmann::json toJson() const;
  // {"<actor>": {"<action>": this - other}} for the entries that differ only ({} when equal).
  // The values are signed integers (local - remote when called as local.diff(remote)).
  nlohmann::json diff(const ActionCounts& other) const;

  bool operator==(const ActionCounts& o) const;
  bool operator!=(const ActionCounts& o) const { return !(*this == o); }

 private:
  struct Entry {
    uint16_t key;  // actor * 256 + action
    uint32_t count;
  };
  std::vector<Entry> entries_;  // sorted by key, count > 0
};

// ---------------------------------------------------------------- pyodide_player_action

struct PlayerActionMsg {
  nlohmann::json playerId;  // integer number or string (1..64 chars)
  uint8_t action = 0;
  uint32_t frame = 0;
  double timestamp = 0;     // ms, finite, >= 0
  int from = -1;            // server-attached sender index (0..255), -1 when absent
  bool unfocused = false;   // "focused": false (the input was chosen while the page was hidden)
};

// {"action":A,"frame_number":F,"player_id":P,"timestamp":T} (+ "focused":false when unfocused).
// `playerId` must be an integer number or a string of 1..64 chars, else "" is returned. A
// non-finite or negative timestamp is written as 0.
std::string formatPlayerAction(const nlohmann::json& playerId, int action, uint32_t frame, double timestampMs,
                               bool unfocused = false);

// Accepts exactly {player_id, action, frame_number, timestamp} plus an optional boolean "focused"
// and an optional integer "from".
// player_id: integer number or string (1..64 chars); action: integer 0..255; frame_number:
// integer 0..2^32-1; timestamp: finite number >= 0. len > kMaxPlayerActionJson -> BadRelayJson.
RxResult parsePlayerAction(const char* text, size_t len, PlayerActionMsg& out);

// ---------------------------------------------------------------- p2p_state_sync

struct StateSyncMsg {
  std::string gameId;       // string, 0..64 chars
  nlohmann::json senderId;  // integer number or string (1..64 chars)
  uint32_t frame = 0;
  uint64_t hash = 0;        // state_hash: 16 lowercase hex chars
  ActionCounts counts;      // action_counts
  int from = -1;            // server-attached sender index (0..255), -1 when absent
};

// {"action_counts":{...},"frame_number":F,"game_id":G,"sender_id":S,"state_hash":"<16 hex>"}.
// Invalid UTF-8 in gameId is replaced (U+FFFD), never aborts. `senderId` must be an integer or a
// string (1..64 chars), else "" is returned.
std::string formatStateSync(const std::string& gameId, const nlohmann::json& senderId, uint32_t frame,
                            uint64_t hash, const ActionCounts& counts);

// Accepts exactly {game_id, sender_id, frame_number, state_hash, action_counts} plus an optional
// integer "from". action_counts must be an object {"<actor 0..11>": {"<action 0..255>": count}}
// with canonical decimal keys (no sign, no leading zeros) and integer counts 0..2^32-1 (zero
// counts are accepted and dropped). len > kMaxStateSyncJson -> BadRelayJson.
RxResult parseStateSync(const char* text, size_t len, StateSyncMsg& out);

// Helpers shared with state_sync.cpp.
// Parses a canonical decimal key ("0", "17"; no sign/leading zero/whitespace) <= maxValue.
bool parseIndexKey(const std::string& key, int maxValue, int& out);
// True for an integer JSON number or a string of 1..kMaxRelayIdLength chars.
bool isValidRelayId(const nlohmann::json& v);

}  // namespace p2psync
