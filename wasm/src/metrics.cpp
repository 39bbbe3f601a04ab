#include "metrics.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace p2psync {

namespace {

nlohmann::json num(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

// JS Number.prototype.toFixed(1) for 0 <= v <= 100: the nearest one-decimal value, exact ties
// rounded up. printf rounds exact ties to even instead; the only doubles that are exact ties at
// one decimal are k + 0.25 and k + 0.75 (v * 4 odd), and only .25 differs, so nudge those up.
std::string toFixed1(double v) {
  double q = v * 4;
  if (std::floor(q) == q && std::fmod(q, 2.0) != 0) v += 0.01;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

Metrics::Metrics(size_t maxRollbackEvents) : maxEvents_(maxRollbackEvents) {
  events_.reserve(maxEvents_);
}

// ------------------------------------------------------------------------------ inputs

void Metrics::inputSent(Path path, uint32_t newInputs, uint32_t entries) {
  sent_[idx(path)] += newInputs;
  entries_[idx(path)] += entries;
}
void Metrics::packetSent(Path path) { ++pktSent_[idx(path)]; }
void Metrics::packetReceived(Path path) { ++pktRecv_[idx(path)]; }

void Metrics::inputReceived(Path path, bool firstDelivery) {
  if (firstDelivery) {
    ++received_[idx(path)];
    ++ep_.received[idx(path)];
  } else {
    ++dups_[idx(path)];
  }
}

void Metrics::otherPathLag(Path firstPath, double lagMs) {
  if (!std::isfinite(lagMs)) return;
  if (lagMs < 0) lagMs = 0;
  Lag& l = lag_[idx(firstPath)];
  if (l.count == 0) { l.min = lagMs; l.max = lagMs; }
  l.min = std::min(l.min, lagMs);
  l.max = std::max(l.max, lagMs);
  l.sum += lagMs;
  ++l.count;
  int b = 0;
  while (b < kLagBuckets - 1 && lagMs >= kLagBoundsMs[static_cast<size_t>(b)]) ++b;
  ++l.buckets[static_cast<size_t>(b)];
}

void Metrics::inputMargin(int32_t framesBeforeUse) {
  int32_t m = std::clamp<int32_t>(framesBeforeUse, kMarginMin, kMarginMax);
  ++margin_[static_cast<size_t>(m - kMarginMin)];
}

// ---------------------------------------------------------------------------- rollbacks

void Metrics::rollback(uint32_t frame, uint32_t currentFrame, uint32_t depth, int player,
                       int predictedAction, int actualAction, double timeMs, EventQueue* events) {
  ++rollbacks_;
  framesReplayed_ += depth;
  maxDepth_ = std::max(maxDepth_, depth);
  ++depthHist_[std::min<size_t>(std::max<uint32_t>(depth, 1) - 1, kDepthBins - 1)];
  ++ep_.rollbacks;
  ep_.framesReplayed += depth;
  ep_.maxFrames = std::max(ep_.maxFrames, depth);
  if (!std::isfinite(timeMs)) timeMs = 0;
  if (events_.size() < maxEvents_) {
    events_.push_back({frame, currentFrame, depth, player, predictedAction, actualAction, timeMs});
  } else {
    ++eventsDropped_;
  }
  if (events) {
    events->push(Event(EventType::Rollback)
                     .num(Field::kFrame, frame)
                     .num(Field::kCurrentFrame, currentFrame)
                     .num(Field::kRollbackFrames, depth)
                     .num(Field::kPlayerIndex, player)
                     .num(Field::kPredictedAction, predictedAction)
                     .num(Field::kActualAction, actualAction)
                     .num(Field::kTimeMs, timeMs));
  }
}

int64_t Metrics::p99RollbackFrames() const {
  if (rollbacks_ == 0) return -1;
  const uint64_t rank = (rollbacks_ * 99 + 99) / 100;  // ceil(0.99 * count)
  uint64_t cum = 0;
  for (int i = 0; i < kDepthBins; ++i) {
    cum += depthHist_[static_cast<size_t>(i)];
    if (cum >= rank) return i == kDepthBins - 1 ? static_cast<int64_t>(maxDepth_) : i + 1;
  }
  return maxDepth_;
}

// ------------------------------------------------------------------------------- others

void Metrics::stall() { ++stalls_; ++ep_.stalls; }
void Metrics::wait() { ++waits_; ++ep_.waits; }
void Metrics::rejected(RxResult code) {
  auto i = static_cast<size_t>(code);
  if (code == RxResult::Ok || i >= rejected_.size()) return;
  ++rejected_[i];
}
uint64_t Metrics::rejectedCount(RxResult code) const {
  auto i = static_cast<size_t>(code);
  return i < rejected_.size() ? rejected_[i] : 0;
}
void Metrics::inputRequestSent() { ++requests_; }
void Metrics::inputResponseSent() { ++responses_; }
void Metrics::gapFilled(uint32_t n) { gapsFilled_ += n; }

bool Metrics::setConnectionType(std::string_view type) {
  if (type == "direct") conn_ = ConnectionType::Direct;
  else if (type == "relay") conn_ = ConnectionType::Relay;
  else if (type == "unknown") conn_ = ConnectionType::Unknown;
  else return false;
  return true;
}

const char* Metrics::connectionType() const {
  switch (conn_) {
    case ConnectionType::Direct: return "direct";
    case ConnectionType::Relay: return "relay";
    case ConnectionType::Unknown: break;
  }
  return "unknown";
}

void Metrics::beginEpisode() { ep_ = Episode{}; }

// --------------------------------------------------------------------------------- export

nlohmann::json Metrics::p2pMetricsJson(bool fallbackTriggered, int64_t fallbackFrame) const {
  nlohmann::json j;
  j["inputsReceivedViaP2P"] = received_[0];
  j["inputsReceivedViaSocketIO"] = received_[1];
  j["inputsSentViaP2P"] = sent_[0];
  j["inputsSentViaSocketIO"] = sent_[1];
  j["p2pFallbackTriggered"] = fallbackTriggered;
  j["p2pFallbackFrame"] = fallbackFrame >= 0 ? nlohmann::json(fallbackFrame) : nlohmann::json(nullptr);
  j["connectionType"] = connectionType();
  return j;
}

std::string Metrics::episodeSummary(uint32_t frame, const std::string& rewardsJson, uint32_t inputBufferSize,
                                    uint32_t syncs, bool fallbackTriggered, int64_t fallbackFrame) const {
  std::string s = "[Episode] Complete at frame " + std::to_string(frame) + " | Rewards: " + rewardsJson +
                  " | InputBuf: " + std::to_string(inputBufferSize) + " | Rollbacks: " +
                  std::to_string(ep_.rollbacks) + " | Syncs: " + std::to_string(syncs) + " | P2P: ";
  const uint64_t a = received_[0];
  const uint64_t b = received_[0] + received_[1];
  if (b == 0) {
    s += "N/A";
  } else {
    double pct = static_cast<double>(a) / static_cast<double>(b) * 100;  // JS: (a / b * 100)
    s += std::to_string(a) + "/" + std::to_string(b) + " (" + toFixed1(pct) + "%)";
  }
  if (fallbackTriggered) {
    s += " | Fallback at frame ";
    s += fallbackFrame >= 0 ? std::to_string(fallbackFrame) : std::string("null");
  }
  return s;
}

double Metrics::lagPercentile(const Lag& l, int pct) {
  if (l.count == 0) return 0;
  const double rank = static_cast<double>((l.count * static_cast<uint64_t>(pct) + 99) / 100);  // ceil
  double cum = 0;
  for (int b = 0; b < kLagBuckets; ++b) {
    const double c = static_cast<double>(l.buckets[static_cast<size_t>(b)]);
    if (c > 0 && cum + c >= rank) {
      double lo = b == 0 ? 0 : kLagBoundsMs[static_cast<size_t>(b - 1)];
      double hi = b == kLagBuckets - 1 ? l.max : kLagBoundsMs[static_cast<size_t>(b)];
      double v = lo + (hi - lo) * (rank - cum) / c;
      return std::clamp(v, l.min, l.max);
    }
    cum += c;
  }
  return l.max;
}

nlohmann::json Metrics::lagJson(const Lag& l) {
  nlohmann::json j;
  j["count"] = l.count;
  const bool any = l.count > 0;
  j["meanMs"] = any ? num(l.sum / static_cast<double>(l.count)) : nlohmann::json(nullptr);
  j["maxMs"] = any ? num(l.max) : nlohmann::json(nullptr);
  j["p50Ms"] = any ? num(lagPercentile(l, 50)) : nlohmann::json(nullptr);
  j["p95Ms"] = any ? num(lagPercentile(l, 95)) : nlohmann::json(nullptr);
  nlohmann::json bounds = nlohmann::json::array();
  for (double v : kLagBoundsMs) bounds.push_back(v);
  nlohmann::json counts = nlohmann::json::array();
  for (uint64_t c : l.buckets) counts.push_back(c);
  j["histogram"] = {{"boundsMs", bounds}, {"counts", counts}};
  return j;
}

nlohmann::json Metrics::inputsJson() const {
  nlohmann::json j;
  j["sentViaP2P"] = sent_[0];
  j["sentViaSocketIO"] = sent_[1];
  j["receivedViaP2P"] = received_[0];
  j["receivedViaSocketIO"] = received_[1];
  j["duplicatesViaP2P"] = dups_[0];
  j["duplicatesViaSocketIO"] = dups_[1];
  j["entriesSentViaP2P"] = entries_[0];
  j["entriesSentViaSocketIO"] = entries_[1];
  j["packetsSentViaP2P"] = pktSent_[0];
  j["packetsSentViaSocketIO"] = pktSent_[1];
  j["packetsReceivedViaP2P"] = pktRecv_[0];
  j["packetsReceivedViaSocketIO"] = pktRecv_[1];
  j["requestsSent"] = requests_;
  j["responsesSent"] = responses_;
  j["gapsFilled"] = gapsFilled_;
  j["firstDelivery"] = {{"p2p", received_[0]},
                        {"relay", received_[1]},
                        {"relayLagAfterP2P", lagJson(lag_[0])},
                        {"p2pLagAfterRelay", lagJson(lag_[1])}};
  nlohmann::json counts = nlohmann::json::array();
  for (uint64_t c : margin_) counts.push_back(c);
  j["lateMargin"] = {{"min", kMarginMin}, {"max", kMarginMax}, {"counts", counts}};
  return j;
}

nlohmann::json Metrics::rollbacksJson() const {
  nlohmann::json j;
  j["count"] = rollbacks_;
  j["maxFrames"] = maxDepth_;
  int64_t p99 = p99RollbackFrames();
  j["p99Frames"] = p99 >= 0 ? nlohmann::json(p99) : nlohmann::json(nullptr);
  j["framesReplayed"] = framesReplayed_;
  nlohmann::json hist = nlohmann::json::array();
  for (uint64_t c : depthHist_) hist.push_back(c);
  j["depthHistogram"] = hist;
  nlohmann::json evs = nlohmann::json::array();
  for (const RollbackEvent& e : events_) {
    evs.push_back({{"frame", e.frame}, {"currentFrame", e.currentFrame}, {"rollbackFrames", e.depth},
                   {"playerIndex", e.player}, {"predictedAction", e.predicted},
                   {"actualAction", e.actual}, {"timeMs", e.timeMs}});
  }
  j["events"] = evs;
  j["eventsDropped"] = eventsDropped_;
  return j;
}

nlohmann::json Metrics::rejectedJson() const {
  nlohmann::json j = nlohmann::json::object();
  for (size_t i = 1; i < rejected_.size(); ++i)
    if (rejected_[i]) j[rxResultName(static_cast<RxResult>(i))] = rejected_[i];
  return j;
}

nlohmann::json Metrics::episodeJson() const {
  return {{"rollbacks", ep_.rollbacks}, {"maxFrames", ep_.maxFrames}, {"framesReplayed", ep_.framesReplayed},
          {"stalls", ep_.stalls}, {"waits", ep_.waits}, {"receivedViaP2P", ep_.received[0]},
          {"receivedViaSocketIO", ep_.received[1]}};
}

nlohmann::json Metrics::toJson() const {
  return {{"inputs", inputsJson()}, {"rollbacks", rollbacksJson()}, {"stalls", stalls_},
          {"waits", waits_}, {"rejected", rejectedJson()}, {"connectionType", connectionType()}};
}

}  // namespace p2psync
