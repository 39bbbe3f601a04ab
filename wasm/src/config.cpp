#include "config.hpp"

#include <algorithm>
#include <cmath>

#include "relay.hpp"

namespace p2psync {

using nlohmann::json;

int EngineConfig::predictionLimit() const {
  // The ring must hold every unconfirmed frame plus the local input delay and some slack for
  // remote peers that run ahead; half the ring keeps the window unambiguous.
  int cap = bufferFrames / 2 - inputDelay - 2;
  return maxPredictionFrames > 0 && maxPredictionFrames < cap ? maxPredictionFrames : cap;
}

namespace {

struct Reader {
  const json& obj;
  std::string err;

  bool has(const char* k) const { return obj.contains(k) && !obj[k].is_null(); }

  void fail(const std::string& key, const std::string& why) {
    if (err.empty()) err = "config." + key + ": " + why;
  }
  void integer(const char* key, int& out, long lo, long hi) {
    if (!has(key)) return;
    const json& v = obj[key];
    if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>())) {
      fail(key, "must be an integer");
      return;
    }
    double d = v.get<double>();
    if (d < static_cast<double>(lo) || d > static_cast<double>(hi)) {
      fail(key, "must be in " + std::to_string(lo) + ".." + std::to_string(hi));
      return;
    }
    out = static_cast<int>(d);
  }
  void number(const char* key, double& out, double lo, double hi) {
    if (!has(key)) return;
    const json& v = obj[key];
    if (!v.is_number()) { fail(key, "must be a number"); return; }
    double d = v.get<double>();
    if (!std::isfinite(d) || d < lo || d > hi) { fail(key, "out of range"); return; }
    out = d;
  }
  void boolean(const char* key, bool& out) {
    if (!has(key)) return;
    if (!obj[key].is_boolean()) { fail(key, "must be a boolean"); return; }
    out = obj[key].get<bool>();
  }
};

bool allowedKeys(const json& o, std::initializer_list<const char*> keys, const std::string& prefix, std::string& err) {
  for (auto it = o.begin(); it != o.end(); ++it) {
    bool ok = false;
    for (const char* k : keys) if (it.key() == k) { ok = true; break; }
    if (!ok) {
      err = "config." + prefix + it.key() + ": unknown key";
      return false;
    }
  }
  return true;
}

}  // namespace

std::string parseConfig(const char* text, size_t len, EngineConfig& c) {
  json j = json::parse(text, text + len, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return "config: must be an object";
  std::string err;
  if (!allowedKeys(j, {"numPlayers", "localPlayerIndex", "numBots", "inputDelay", "predictionMethod",
                       "defaultAction", "snapshotInterval", "maxPredictionFrames", "redundancy", "sendPolicy",
                       "congestionBytes", "timeSync", "syncTest", "bufferFrames", "snapshotSlots", "snapshotBytes",
                       "hashInterval", "hashHistory", "canonicalize", "pingIntervalMs", "interruptMs",
                       "disconnectMs", "fallbackRecovery", "gameId", "playerIds", "maxEvents",
                       "maxPacketsPerPeerPerFrame", "maxEpisodeFrames", "relayHashes", "endTimeoutMs",
                       "focusPolicy", "catchUp", "autoDelay", "readyTimeoutMs", "rejoin", "maxTransferBytes",
                       "transferChunksPerFrame", "desyncPolicy"},
                   "", err))
    return err;
  Reader r{j, ""};
  r.integer("numPlayers", c.numPlayers, 2, kMaxPlayers);
  if (!r.has("localPlayerIndex")) r.fail("localPlayerIndex", "is required");
  r.integer("localPlayerIndex", c.localPlayerIndex, 0, kMaxPlayers - 1);
  if (r.err.empty() && c.localPlayerIndex >= c.numPlayers) r.fail("localPlayerIndex", "must be < numPlayers");
  r.integer("numBots", c.numBots, 0, kMaxBots);
  if (r.has("inputDelay") && j["inputDelay"] == "auto") c.autoDelay = true;
  else r.integer("inputDelay", c.inputDelay, 0, 30);
  if (r.has("autoDelay")) {
    const json& v = j["autoDelay"];
    if (!v.is_object()) {
      r.fail("autoDelay", "must be {min, max, targetOnTime}");
    } else {
      if (!allowedKeys(v, {"min", "max", "targetOnTime"}, "autoDelay.", err)) return err;
      Reader t{v, ""};
      t.integer("min", c.autoDelayMin, 0, 30);
      t.integer("max", c.autoDelayMax, 0, 30);
      t.number("targetOnTime", c.autoDelayTargetOnTime, 0.5, 1.0);
      if (!t.err.empty()) return "config.autoDelay." + t.err.substr(7);
      if (c.autoDelayMin > c.autoDelayMax) return "config.autoDelay.min: must be <= max";
    }
  }
  if (c.autoDelay) c.inputDelay = c.autoDelayMin;
  if (r.has("predictionMethod")) {
    const json& v = j["predictionMethod"];
    if (v == "previous_submitted_action") c.predictionMethod = PredictionMethod::PreviousSubmitted;
    else if (v == "default_action") c.predictionMethod = PredictionMethod::DefaultAction;
    else r.fail("predictionMethod", "must be \"previous_submitted_action\" or \"default_action\"");
  }
  int da = c.defaultAction;
  r.integer("defaultAction", da, 0, 255);
  c.defaultAction = static_cast<uint8_t>(da);
  r.integer("snapshotInterval", c.snapshotInterval, 1, 600);
  r.integer("maxPredictionFrames", c.maxPredictionFrames, 0, 100000);
  r.integer("redundancy", c.redundancy, 1, 15);
  if (r.has("sendPolicy")) {
    const json& v = j["sendPolicy"];
    if (v == "dual") c.sendPolicy = SendPolicy::Dual;
    else if (v == "p2p-first") c.sendPolicy = SendPolicy::P2PFirst;
    else r.fail("sendPolicy", "must be \"dual\" or \"p2p-first\"");
  }
  r.number("congestionBytes", c.congestionBytes, 0, 1e12);
  if (r.has("timeSync")) {
    const json& v = j["timeSync"];
    if (v.is_boolean()) {
      c.timeSync = v.get<bool>();
    } else if (v.is_object()) {
      if (!allowedKeys(v, {"enabled", "window", "threshold", "minSpacing"}, "timeSync.", err)) return err;
      Reader t{v, ""};
      t.boolean("enabled", c.timeSync);
      if (!t.has("enabled")) c.timeSync = true;
      t.integer("window", c.timeSyncWindow, 1, 1024);
      t.number("threshold", c.timeSyncThreshold, 0.1, 1000);
      t.integer("minSpacing", c.timeSyncMinSpacing, 1, 1000);
      if (!t.err.empty()) return "config.timeSync." + t.err.substr(7);
    } else {
      r.fail("timeSync", "must be a boolean or {enabled, window, threshold, minSpacing}");
    }
  }
  if (r.has("syncTest")) {
    const json& v = j["syncTest"];
    if (!v.is_object()) {
      r.fail("syncTest", "must be {checkDistance: k}");
    } else {
      if (!allowedKeys(v, {"checkDistance"}, "syncTest.", err)) return err;
      Reader t{v, ""};
      if (!t.has("checkDistance")) return "config.syncTest.checkDistance: is required";
      t.integer("checkDistance", c.syncTestDistance, 1, 60);
      if (!t.err.empty()) return "config.syncTest." + t.err.substr(7);
    }
  }
  r.integer("bufferFrames", c.bufferFrames, 64, 4096);
  if (r.err.empty() && (c.bufferFrames & (c.bufferFrames - 1)) != 0) r.fail("bufferFrames", "must be a power of two");
  r.integer("snapshotSlots", c.snapshotSlots, 4, 1024);
  double sb = static_cast<double>(c.snapshotBytes);
  r.number("snapshotBytes", sb, 4096, 256.0 * 1024 * 1024);
  c.snapshotBytes = static_cast<size_t>(sb);
  r.integer("hashInterval", c.hashInterval, 1, 6000);
  r.integer("hashHistory", c.hashHistory, 8, 4096);
  if (r.has("canonicalize")) {
    const json& v = j["canonicalize"];
    if (!v.is_object()) {
      r.fail("canonicalize", "must be {floatDigits: d}");
    } else {
      if (!allowedKeys(v, {"floatDigits"}, "canonicalize.", err)) return err;
      Reader t{v, ""};
      if (!t.has("floatDigits")) return "config.canonicalize.floatDigits: is required";
      t.integer("floatDigits", c.canonicalizeDigits, 1, 17);
      if (!t.err.empty()) return "config.canonicalize." + t.err.substr(7);
    }
  }
  r.number("pingIntervalMs", c.pingIntervalMs, 10, 600000);
  r.number("interruptMs", c.interruptMs, 10, 3600000);
  r.number("disconnectMs", c.disconnectMs, 10, 3600000);
  if (r.has("fallbackRecovery")) {
    const json& v = j["fallbackRecovery"];
    if (v.is_boolean()) {
      c.fallbackRecovery = v.get<bool>();
    } else if (v.is_object()) {
      if (!allowedKeys(v, {"healthyForMs", "latencyBelowMs"}, "fallbackRecovery.", err)) return err;
      Reader t{v, ""};
      c.fallbackRecovery = true;
      t.number("healthyForMs", c.recoveryHealthyForMs, 0, 3600000);
      t.number("latencyBelowMs", c.recoveryLatencyBelowMs, 1, 100000);
      if (!t.err.empty()) return "config.fallbackRecovery." + t.err.substr(7);
    } else {
      r.fail("fallbackRecovery", "must be {healthyForMs, latencyBelowMs}");
    }
  }
  // Both go into relay messages whose parsers (ours and the server's) take ids of at most
  // kMaxRelayIdLength characters: a longer or empty id would make every relay message of this
  // engine unsendable or rejected by the peers.
  if (r.has("gameId")) {
    if (!j["gameId"].is_string() || j["gameId"].get_ref<const std::string&>().size() > kMaxRelayIdLength)
      r.fail("gameId", "must be a string of at most 64 characters");
    else
      c.gameId = j["gameId"].get<std::string>();
  }
  if (r.has("playerIds")) {
    const json& v = j["playerIds"];
    if (!v.is_array() || static_cast<int>(v.size()) != c.numPlayers) {
      r.fail("playerIds", "must be an array of numPlayers ids");
    } else {
      c.playerIds.clear();
      for (const auto& id : v) {
        if (!isValidRelayId(id)) {
          r.fail("playerIds", "ids must be integers or strings of 1..64 characters");
          break;
        }
        if (std::find(c.playerIds.begin(), c.playerIds.end(), id) != c.playerIds.end()) {
          r.fail("playerIds", "ids must be unique");  // a relay input must name one player
          break;
        }
        c.playerIds.push_back(id);
      }
    }
  }
  r.integer("maxEvents", c.maxEvents, 8, 65536);
  r.integer("maxPacketsPerPeerPerFrame", c.maxPacketsPerPeerPerFrame, 4, 100000);
  r.integer("maxEpisodeFrames", c.maxEpisodeFrames, 0, 1 << 30);
  if (r.has("relayHashes")) {
    const json& v = j["relayHashes"];
    if (v == "fallback") c.relayHashesAlways = false;
    else if (v == "always") c.relayHashesAlways = true;
    else r.fail("relayHashes", "must be \"fallback\" or \"always\"");
  }
  r.number("endTimeoutMs", c.endTimeoutMs, 0, 3600000);
  r.number("readyTimeoutMs", c.readyTimeoutMs, 0, 3600000);
  if (r.has("focusPolicy")) {
    const json& v = j["focusPolicy"];
    if (v == "predict") c.focusPolicy = FocusPolicy::Predict;
    else if (v == "pause") c.focusPolicy = FocusPolicy::Pause;
    else r.fail("focusPolicy", "must be \"predict\" or \"pause\"");
  }
  if (r.has("catchUp")) {
    const json& v = j["catchUp"];
    if (v.is_boolean()) {
      c.catchUp = v.get<bool>();
    } else if (v.is_object()) {
      if (!allowedKeys(v, {"enabled", "threshold", "withinMs"}, "catchUp.", err)) return err;
      Reader t{v, ""};
      c.catchUp = true;
      t.boolean("enabled", c.catchUp);
      t.integer("threshold", c.catchUpThreshold, 1, 1000);
      t.number("withinMs", c.catchUpWithinMs, 50, 60000);
      if (!t.err.empty()) return "config.catchUp." + t.err.substr(7);
    } else {
      r.fail("catchUp", "must be a boolean or {enabled, threshold, withinMs}");
    }
  }
  if (r.has("rejoin")) {
    if (!j["rejoin"].is_boolean()) r.fail("rejoin", "must be a boolean");
    else c.rejoin = j["rejoin"].get<bool>();
  }
  double maxTransfer = static_cast<double>(c.maxTransferBytes);
  r.number("maxTransferBytes", maxTransfer, 64 * 1024, 256.0 * 1024 * 1024);
  c.maxTransferBytes = static_cast<size_t>(maxTransfer);
  r.integer("transferChunksPerFrame", c.transferChunksPerFrame, 1, 1024);
  if (r.has("desyncPolicy")) {
    const json& v = j["desyncPolicy"];
    if (v == "report") c.desyncPolicy = DesyncPolicy::Report;
    else if (v == "resync") c.desyncPolicy = DesyncPolicy::Resync;
    else r.fail("desyncPolicy", "must be \"report\" or \"resync\"");
  }
  if (!r.err.empty()) return r.err;
  if (c.playerIds.empty())
    for (int i = 0; i < c.numPlayers; ++i) c.playerIds.push_back(i);
  if (std::max(c.inputDelay, c.autoDelay ? c.autoDelayMax : 0) + 16 > c.bufferFrames / 2)
    return "config.inputDelay: too large for bufferFrames";
  if (c.syncTestDistance > 0 && !j.contains("snapshotSlots")) {
    // Sync-test saves every frame and re-saves each one checkDistance times: keep enough slots
    // for the whole prediction window plus the forced rollbacks.
    c.snapshotSlots = std::min(1024, (c.predictionLimit() + 2 * c.syncTestDistance + 8) * (c.syncTestDistance + 1));
  }
  if (c.syncTestDistance > 0 && c.syncTestDistance + 2 > c.snapshotSlots) return "config.syncTest.checkDistance: needs more snapshotSlots";
  return "";
}

nlohmann::json EngineConfig::toJson() const {
  json j = {
      {"numPlayers", numPlayers},
      {"localPlayerIndex", localPlayerIndex},
      {"numBots", numBots},
      {"inputDelay", autoDelay ? json("auto") : json(inputDelay)},
      {"autoDelay", {{"min", autoDelayMin}, {"max", autoDelayMax}, {"targetOnTime", autoDelayTargetOnTime}}},
      {"predictionMethod", predictionMethod == PredictionMethod::PreviousSubmitted ? "previous_submitted_action" : "default_action"},
      {"defaultAction", defaultAction},
      {"snapshotInterval", snapshotInterval},
      {"maxPredictionFrames", maxPredictionFrames},
      {"redundancy", redundancy},
      {"sendPolicy", sendPolicy == SendPolicy::Dual ? "dual" : "p2p-first"},
      {"congestionBytes", congestionBytes},
      {"timeSync", {{"enabled", timeSync}, {"window", timeSyncWindow}, {"threshold", timeSyncThreshold}, {"minSpacing", timeSyncMinSpacing}}},
      {"syncTest", syncTestDistance > 0 ? json{{"checkDistance", syncTestDistance}} : json(nullptr)},
      {"bufferFrames", bufferFrames},
      {"snapshotSlots", snapshotSlots},
      {"snapshotBytes", snapshotBytes},
      {"hashInterval", effectiveHashInterval()},
      {"hashHistory", hashHistory},
      {"canonicalize", canonicalizeDigits > 0 ? json{{"floatDigits", canonicalizeDigits}} : json(nullptr)},
      {"pingIntervalMs", pingIntervalMs},
      {"interruptMs", interruptMs},
      {"disconnectMs", disconnectMs},
      {"fallbackRecovery", fallbackRecovery ? json{{"healthyForMs", recoveryHealthyForMs}, {"latencyBelowMs", recoveryLatencyBelowMs}} : json(nullptr)},
      {"gameId", gameId},
      {"playerIds", playerIds},
      {"maxEvents", maxEvents},
      {"maxPacketsPerPeerPerFrame", maxPacketsPerPeerPerFrame},
      {"maxEpisodeFrames", maxEpisodeFrames},
      {"relayHashes", relayHashesAlways ? "always" : "fallback"},
      {"endTimeoutMs", endTimeoutMs},
      {"readyTimeoutMs", readyTimeoutMs},
      {"focusPolicy", focusPolicy == FocusPolicy::Pause ? "pause" : "predict"},
      {"catchUp", {{"enabled", catchUp}, {"threshold", catchUpThreshold}, {"withinMs", catchUpWithinMs}}},
      {"rejoin", rejoin},
      {"maxTransferBytes", maxTransferBytes},
      {"transferChunksPerFrame", transferChunksPerFrame},
      {"desyncPolicy", desyncPolicy == DesyncPolicy::Resync ? "resync" : "report"},
  };
  return j;
}

}  // namespace p2psync
