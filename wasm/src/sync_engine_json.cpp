// The engine's JSON edges, off the per-frame path (built for size in the WASM module): relay
// events that arrive as JSON text, and the metrics export / episode summary line.
#include "sync_engine.hpp"

namespace p2psync {

using nlohmann::json;

namespace {
constexpr const char* kVersion = "0.2.0";
}  // namespace

RxResult SyncEngine::receiveRelayJson(RelayEvent event, const char* text, size_t len, int fromPeer, double nowMs) {
  Call call(*this);
  beginReceive();
  auto indexOf = [&](const json& id) {
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (cfg_.playerIds[static_cast<size_t>(p)] == id) return p;
    return -1;
  };
  RxResult r = RxResult::BadRelayJson;
  if (event == RelayEvent::PlayerAction) {
    PlayerActionMsg pa;
    r = parsePlayerAction(text, len, pa);
    if (r == RxResult::Ok) {
      const int idx = indexOf(pa.playerId);
      // The payload's "from" never overrides the sender the caller knows (fromPeer).
      const int from = pa.from >= 0 ? pa.from : fromPeer;
      if (fromPeer >= 0 && from != fromPeer) r = RxResult::SpoofedPlayer;
      else r = idx < 0 ? RxResult::UnknownPlayer : relayInput(idx, pa.frame, pa.action, nowMs, from, pa.unfocused);
    }
  } else if (event == RelayEvent::StateSync) {
    StateSyncMsg ss;
    r = parseStateSync(text, len, ss);
    if (r == RxResult::Ok) {
      const int idx = indexOf(ss.senderId);
      const int from = ss.from >= 0 ? ss.from : fromPeer;
      if (fromPeer >= 0 && from != fromPeer) r = RxResult::SpoofedPlayer;
      else if (idx < 0 || idx == local_) r = RxResult::UnknownPlayer;
      else if (from >= 0 && from != idx) r = RxResult::SpoofedPlayer;
      else if (ss.gameId != cfg_.gameId) r = RxResult::BadValue;
      else {
        metrics_.packetReceived(Path::Relay);
        health_.onPacket(idx, nowMs, &events_);
        r = stateSync_.onRemoteHash(idx, ss.frame, ss.hash, &ss.counts, wireFrame(cur_ - episodeStart_),
                                    static_cast<uint32_t>(cfg_.bufferFrames), nowMs);
      }
    }
  }
  return endReceive(r);
}

// ------------------------------------------------------------------------------------- metrics

nlohmann::json SyncEngine::p2pMetrics() const {
  return metrics_.p2pMetricsJson(health_.fallbackTriggered(), health_.fallbackFrame());
}

nlohmann::json SyncEngine::exportSessionMetrics() const {
  json m = metrics_.toJson();
  json h = health_.toJson();
  json s = stateSync_.toJson();
  s["nondeterminism"] = syncTest_.reports();
  json j;
  j["schemaVersion"] = 1;
  j["engine"] = json{{"version", kVersion}, {"numPlayers", cfg_.numPlayers}, {"localPlayerIndex", local_},
                     {"numBots", cfg_.numBots}, {"config", cfg_.toJson()}};
  j["session"] = json{{"episode", episode_}, {"frame", cur_}, {"episodeStart", episodeStart_},
                      {"confirmedFrame", confirmed_}, {"verifiedFrame", verifiedFrame()},
                      {"terminalFrame", terminal_ == kNoFrame ? json(nullptr) : json(terminal_)},
                      {"snapshotMisses", snapshotMisses_}, {"badStepReports", badReports_},
                      {"unreportedSteps", unreportedSteps_}, {"rowsLost", rowsLost_}, {"focused", localFocused_},
                      {"transfers", json{{"received", transfersIn_}, {"sent", transfersOut_}, {"errors", transferErrors_}, {"resyncs", resyncs_}}},
                      {"memoryBytes", memoryBytes()}};
  j["p2pMetrics"] = p2pMetrics();
  j["inputs"] = m["inputs"];
  j["rollbacks"] = m["rollbacks"];
  j["sync"] = s;
  json adv = json::array();
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    const TimeSync::LeadStats& ls = timeSync_.leadStats(p);
    adv.push_back(json{{"peer", p},
                       {"samples", ls.samples},
                       {"mean", ls.samples ? ls.sum / static_cast<double>(ls.samples) : 0.0},
                       {"p95", TimeSync::p95(ls)},
                       {"shareBeyondOne", ls.samples ? static_cast<double>(ls.beyondOne) / static_cast<double>(ls.samples) : 0.0}});
  }
  j["quality"] = json{{"stalls", m["stalls"]}, {"waits", m["waits"]}, {"connectionType", m["connectionType"]},
                      {"fallback", h["fallback"]}, {"peers", h["peers"]}, {"frameAdvantage", adv},
                      {"inputDelayByEpisode", delayByEpisode_}};
  j["rejected"] = m["rejected"];
  j["events"] = json{{"dropped", events_.dropped() + out_.dropped()}};
  j["episodes"] = episodeSummaries_;
  return j;
}

std::string SyncEngine::episodeSummary(const std::string& rewardsJson) const {
  const uint32_t endFrame = stateSync_.episodeEndSynced() ? stateSync_.syncedEndFrame() : wireFrame(cur_ - episodeStart_);
  return metrics_.episodeSummary(endFrame, rewardsJson, static_cast<uint32_t>(cfg_.bufferFrames),
                                 static_cast<uint32_t>(stateSync_.hashesSentCount()), health_.fallbackTriggered(), health_.fallbackFrame());
}

}  // namespace p2psync
