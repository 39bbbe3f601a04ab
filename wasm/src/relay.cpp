// See relay.hpp. nlohmann::json is used only through non-throwing entry points: parse() with
// allow_exceptions=false, find() instead of at()/operator[] on const values, get_ptr<>() after
// a type check, and dump() with error_handler_t::replace.
#include "relay.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "protocol.hpp"

namespace p2psync {

using nlohmann::json;

namespace {

std::string dumpSafe(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

// Integer JSON number in [lo, hi] (floats such as 3.0 are rejected).
bool getInt(const json& v, int64_t lo, int64_t hi, int64_t& out) {
  if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) {
    if (hi < 0 || *u > static_cast<uint64_t>(hi)) return false;
    const auto s = static_cast<int64_t>(*u);
    if (s < lo) return false;
    out = s;
    return true;
  }
  if (const auto* i = v.get_ptr<const json::number_integer_t*>()) {
    if (*i < lo || *i > hi) return false;
    out = *i;
    return true;
  }
  return false;
}

bool getFiniteNonNeg(const json& v, double& out) {
  if (!v.is_number()) return false;
  double d;
  if (const auto* f = v.get_ptr<const json::number_float_t*>()) d = *f;
  else if (const auto* u = v.get_ptr<const json::number_unsigned_t*>()) d = static_cast<double>(*u);
  else if (const auto* i = v.get_ptr<const json::number_integer_t*>()) d = static_cast<double>(*i);
  else return false;
  if (!std::isfinite(d) || d < 0) return false;
  out = d == 0 ? 0.0 : d;  // -0 -> 0
  return true;
}

bool parseLowerHex16(const json& v, uint64_t& out) {
  const auto* s = v.get_ptr<const json::string_t*>();
  if (!s || s->size() != 16) return false;
  for (char c : *s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return hexToDigest(s->data(), s->size(), out);
}

// Parses a payload that must be a JSON object of at most `maxLen` bytes.
bool parseObject(const char* text, size_t len, size_t maxLen, json& out) {
  if (text == nullptr || len == 0 || len > maxLen) return false;
  // nlohmann's lexer takes a NUL byte for the end of the input: "{...}\0<anything>" would parse.
  // A NUL can never be part of JSON text (it must be escaped inside strings).
  if (std::memchr(text, '\0', len) != nullptr) return false;
  out = json::parse(text, text + len, nullptr, /*allow_exceptions=*/false, /*ignore_comments=*/false);
  return !out.is_discarded() && out.is_object();
}

// Checks that every key of `obj` is in `allowed` or is "from", and that the required ones exist.
// Every key of `obj` is "from", one of `required` (all present) or one of `optional`.
bool onlyKeys(const json& obj, std::initializer_list<const char*> required, std::initializer_list<const char*> optional = {}) {
  size_t found = 0;
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    const std::string& k = it.key();
    if (k == "from") continue;
    bool ok = false;
    for (const char* r : required)
      if (k == r) { ok = true; break; }
    if (ok) {
      ++found;
      continue;
    }
    for (const char* o : optional)
      if (k == o) { ok = true; break; }
    if (!ok) return false;
  }
  return found == required.size();  // object keys are unique
}

bool parseFrom(const json& obj, int& from) {
  from = -1;
  auto it = obj.find("from");
  if (it == obj.end()) return true;
  int64_t v;
  if (!getInt(*it, 0, 255, v)) return false;
  from = static_cast<int>(v);
  return true;
}

bool parseCounts(const json& v, ActionCounts& out) {
  out.clear();
  if (!v.is_object()) return false;
  for (auto a = v.begin(); a != v.end(); ++a) {
    int actor;
    if (!parseIndexKey(a.key(), ActionCounts::kMaxActors - 1, actor)) return false;
    const json& per = a.value();
    if (!per.is_object()) return false;
    for (auto b = per.begin(); b != per.end(); ++b) {
      int action;
      if (!parseIndexKey(b.key(), ActionCounts::kMaxActions - 1, action)) return false;
      int64_t c;
      if (!getInt(b.value(), 0, std::numeric_limits<uint32_t>::max(), c)) return false;
      out.set(actor, action, static_cast<uint32_t>(c));
    }
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- helpers

bool parseIndexKey(const std::string& key, int maxValue, int& out) {
  if (key.empty() || key.size() > 4) return false;
  if (key.size() > 1 && key[0] == '0') return false;
  int v = 0;
  for (char c : key) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  if (v > maxValue) return false;
  out = v;
  return true;
}

bool isValidRelayId(const json& v) {
  if (v.is_number_integer()) return true;  // signed or unsigned integer
  if (const auto* s = v.get_ptr<const json::string_t*>()) return !s->empty() && s->size() <= kMaxRelayIdLength;
  return false;
}

// ---------------------------------------------------------------- ActionCounts

bool ActionCounts::add(int actor, int action) {
  if (actor < 0 || actor >= kMaxActors || action < 0 || action >= kMaxActions) return false;
  const auto key = static_cast<uint16_t>(actor * kMaxActions + action);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, uint16_t k) { return e.key < k; });
  if (it != entries_.end() && it->key == key) {
    if (it->count != std::numeric_limits<uint32_t>::max()) ++it->count;
  } else {
    entries_.insert(it, Entry{key, 1});
  }
  return true;
}

bool ActionCounts::set(int actor, int action, uint32_t count) {
  if (actor < 0 || actor >= kMaxActors || action < 0 || action >= kMaxActions) return false;
  const auto key = static_cast<uint16_t>(actor * kMaxActions + action);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, uint16_t k) { return e.key < k; });
  const bool present = it != entries_.end() && it->key == key;
  if (count == 0) {
    if (present) entries_.erase(it);
  } else if (present) {
    it->count = count;
  } else {
    entries_.insert(it, Entry{key, count});
  }
  return true;
}

uint32_t ActionCounts::get(int actor, int action) const {
  if (actor < 0 || actor >= kMaxActors || action < 0 || action >= kMaxActions) return 0;
  const auto key = static_cast<uint16_t>(actor * kMaxActions + action);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), key,
                             [](const Entry& e, uint16_t k) { return e.key < k; });
  return (it != entries_.end() && it->key == key) ? it->count : 0;
}

json ActionCounts::toJson() const {
  json j = json::object();
  for (const Entry& e : entries_)
    j[std::to_string(e.key / kMaxActions)][std::to_string(e.key % kMaxActions)] = e.count;
  return j;
}

json ActionCounts::diff(const ActionCounts& other) const {
  json j = json::object();
  auto put = [&j](uint16_t key, int64_t d) {
    j[std::to_string(key / kMaxActions)][std::to_string(key % kMaxActions)] = d;
  };
  size_t a = 0, b = 0;
  const auto& x = entries_;
  const auto& y = other.entries_;
  while (a < x.size() || b < y.size()) {
    if (b == y.size() || (a < x.size() && x[a].key < y[b].key)) {
      put(x[a].key, static_cast<int64_t>(x[a].count));
      ++a;
    } else if (a == x.size() || y[b].key < x[a].key) {
      put(y[b].key, -static_cast<int64_t>(y[b].count));
      ++b;
    } else {
      if (x[a].count != y[b].count)
        put(x[a].key, static_cast<int64_t>(x[a].count) - static_cast<int64_t>(y[b].count));
      ++a;
      ++b;
    }
  }
  return j;
}

bool ActionCounts::operator==(const ActionCounts& o) const {
  if (entries_.size() != o.entries_.size()) return false;
  for (size_t i = 0; i < entries_.size(); ++i)
    if (entries_[i].key != o.entries_[i].key || entries_[i].count != o.entries_[i].count) return false;
  return true;
}

// ---------------------------------------------------------------- pyodide_player_action

std::string formatPlayerAction(const json& playerId, int action, uint32_t frame, double timestampMs, bool unfocused) {
  if (!isValidRelayId(playerId)) return std::string();
  json j = json::object();
  j["player_id"] = playerId;
  j["action"] = action;
  j["frame_number"] = frame;
  j["timestamp"] = (std::isfinite(timestampMs) && timestampMs > 0) ? timestampMs : 0.0;
  if (unfocused) j["focused"] = false;
  return dumpSafe(j);
}

RxResult parsePlayerAction(const char* text, size_t len, PlayerActionMsg& out) {
  json j;
  if (!parseObject(text, len, kMaxPlayerActionJson, j)) return RxResult::BadRelayJson;
  if (!onlyKeys(j, {"player_id", "action", "frame_number", "timestamp"}, {"focused"})) return RxResult::BadRelayJson;
  const json& pid = *j.find("player_id");
  if (!isValidRelayId(pid)) return RxResult::BadRelayJson;
  int64_t action, frame;
  if (!getInt(*j.find("action"), 0, 255, action)) return RxResult::BadRelayJson;
  if (!getInt(*j.find("frame_number"), 0, std::numeric_limits<uint32_t>::max(), frame)) return RxResult::BadRelayJson;
  double ts;
  if (!getFiniteNonNeg(*j.find("timestamp"), ts)) return RxResult::BadRelayJson;
  int from;
  if (!parseFrom(j, from)) return RxResult::BadRelayJson;
  const auto f = j.find("focused");
  if (f != j.end() && !f->is_boolean()) return RxResult::BadRelayJson;
  out.unfocused = f != j.end() && !f->get<bool>();
  out.playerId = pid;
  out.action = static_cast<uint8_t>(action);
  out.frame = static_cast<uint32_t>(frame);
  out.timestamp = ts;
  out.from = from;
  return RxResult::Ok;
}

// ---------------------------------------------------------------- p2p_state_sync

std::string formatStateSync(const std::string& gameId, const json& senderId, uint32_t frame, uint64_t hash,
                            const ActionCounts& counts) {
  if (!isValidRelayId(senderId)) return std::string();
  char hex[17];
  digestToHex(hash, hex);
  json j = json::object();
  j["game_id"] = gameId;
  j["sender_id"] = senderId;
  j["frame_number"] = frame;
  j["state_hash"] = std::string(hex, 16);
  j["action_counts"] = counts.toJson();
  return dumpSafe(j);
}

RxResult parseStateSync(const char* text, size_t len, StateSyncMsg& out) {
  json j;
  if (!parseObject(text, len, kMaxStateSyncJson, j)) return RxResult::BadRelayJson;
  if (!onlyKeys(j, {"game_id", "sender_id", "frame_number", "state_hash", "action_counts"}))
    return RxResult::BadRelayJson;
  const auto* gid = j.find("game_id")->get_ptr<const json::string_t*>();
  if (!gid || gid->size() > kMaxRelayIdLength) return RxResult::BadRelayJson;
  const json& sid = *j.find("sender_id");
  if (!isValidRelayId(sid)) return RxResult::BadRelayJson;
  int64_t frame;
  if (!getInt(*j.find("frame_number"), 0, std::numeric_limits<uint32_t>::max(), frame)) return RxResult::BadRelayJson;
  uint64_t hash;
  if (!parseLowerHex16(*j.find("state_hash"), hash)) return RxResult::BadRelayJson;
  ActionCounts counts;
  if (!parseCounts(*j.find("action_counts"), counts)) return RxResult::BadRelayJson;
  int from;
  if (!parseFrom(j, from)) return RxResult::BadRelayJson;
  out.gameId = *gid;
  out.senderId = sid;
  out.frame = static_cast<uint32_t>(frame);
  out.hash = hash;
  out.counts = std::move(counts);
  out.from = from;
  return RxResult::Ok;
}

}  // namespace p2psync
