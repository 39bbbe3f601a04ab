#include "health.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace p2psync {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// A finite number, or null: NaN/inf never reach the JSON.
nlohmann::json num(double v) {
  if (!std::isfinite(v)) return nullptr;
  return v;
}

nlohmann::json str(const char* s) {
  if (!s) return nullptr;
  return s;
}

}  // namespace

const char* livenessName(Liveness l) {
  switch (l) {
    case Liveness::Alive: return "alive";
    case Liveness::Interrupted: return "interrupted";
    case Liveness::Disconnected: return "disconnected";
  }
  return "alive";
}

Health::Health(int numPlayers, int localPlayerIndex, const HealthConfig& cfg, size_t maxEvents)
    : cfg_(cfg),
      numPlayers_(std::clamp(numPlayers, 1, kMaxPlayers)),
      local_(localPlayerIndex),
      maxEvents_(maxEvents),
      peers_(static_cast<size_t>(std::clamp(numPlayers, 1, kMaxPlayers))),
      lastPingMs_(kNaN) {
  held_.reserve(std::min<size_t>(maxEvents_, 16));
  history_.reserve(std::min<size_t>(maxEvents_, 16));
}

// ------------------------------------------------------------------------------------ RTT

bool Health::pingDue(double nowMs) { return pingDue(nowMs, cfg_.pingIntervalMs); }

bool Health::pingDue(double nowMs, double intervalMs) {
  if (!std::isfinite(nowMs)) return false;
  if (anyPing_ && nowMs - lastPingMs_ < intervalMs) return false;
  PingSlot& s = pings_[static_cast<size_t>(pingHead_)];
  s.used = true;
  s.stale = false;
  s.silentMask = 0;
  // a peer that is silent now answers (if ever) only when it is back: the round trip would
  // measure its silence
  for (int i = 0; i < static_cast<int>(peers_.size()); ++i)
    if (i != local_ && peers_[static_cast<size_t>(i)].live != Liveness::Alive) s.silentMask |= 1u << i;
  s.ts = nowMs;
  s.answered = 0;
  pingHead_ = (pingHead_ + 1) % kPingSlots;
  anyPing_ = true;
  lastPingMs_ = nowMs;
  return true;
}

double Health::rttPercentileMs(int peerIdx, int pct) const {
  const Peer* pp = peer(peerIdx);
  if (!pp || pp->winCount == 0) return kNaN;
  const Peer& p = *pp;
  const int n = p.winCount;
  std::array<double, kWindowSamples> sorted{};
  const int oldest = (p.winHead - n + kWindowSamples) % kWindowSamples;
  for (int k = 0; k < n; ++k) sorted[static_cast<size_t>(k)] = p.win[static_cast<size_t>((oldest + k) % kWindowSamples)];
  std::sort(sorted.begin(), sorted.begin() + n);
  const int r = (pct * n + 99) / 100;  // nearest rank
  return sorted[static_cast<size_t>(std::clamp(r, 1, n) - 1)];
}

double Health::avgOf(const Peer& p) {
  if (p.winCount == 0) return kNaN;
  int n = std::min(p.winCount, kAvgSamples);
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += p.win[static_cast<size_t>((p.winHead - 1 - i + kWindowSamples) % kWindowSamples)];
  return sum / n;
}

const char* Health::statusOf(double latency) {
  if (std::isfinite(latency)) {
    if (latency > kCriticalLatencyMs) return "critical";
    if (latency > kWarningLatencyMs) return "warning";
  }
  return "good";
}

RxResult Health::onPong(int peerIdx, double ts, double nowMs) {
  Peer* p = peer(peerIdx);
  if (!p) return RxResult::UnknownPlayer;
  const uint32_t bit = 1u << peerIdx;
  PingSlot* match = nullptr;
  bool answeredBefore = false;
  for (PingSlot& s : pings_) {
    if (!s.used || !(s.ts == ts)) continue;  // NaN ts never matches
    if (s.answered & bit) { answeredBefore = true; continue; }
    match = &s;
    break;
  }
  if (!match) {
    if (answeredBefore) ++p->duplicate; else ++p->unsolicited;
    return RxResult::UnsolicitedPong;
  }
  match->answered |= bit;
  if (match->stale || (match->silentMask & bit) || p->live != Liveness::Alive) {
    ++p->stale;  // the round trip spans a frozen page: no sample
    return RxResult::Ok;
  }
  double sample = nowMs - ts;
  if (!std::isfinite(sample) || sample < 0) sample = 0;  // caller clock error: never poison stats
  p->win[static_cast<size_t>(p->winHead)] = sample;
  p->winHead = (p->winHead + 1) % kWindowSamples;
  if (p->winCount < kWindowSamples) ++p->winCount;
  ++p->samples;
  if (std::isfinite(nowMs)) p->lastSampleMs = nowMs;

  // Recovery streak: only fresh samples taken while in fallback count.
  if (p->inFallback && cfg_.recovery) {
    double lat = avgOf(*p) / 2;
    if (p->channelOpen && p->live == Liveness::Alive && lat < cfg_.recoveryLatencyBelowMs) {
      if (!p->healthy) { p->healthy = true; p->healthySinceMs = p->lastSampleMs; }
    } else {
      p->healthy = false;
    }
  }
  return RxResult::Ok;
}

// ---------------------------------------------------------------------------- packets

void Health::startClock(Peer& p, double nowMs) {
  if (p.clockStarted) return;
  p.clockStarted = true;
  p.lastHeardMs = nowMs;
}

void Health::onPacket(int peerIdx, double nowMs, EventQueue* events) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  ++p->packets;
  if (!std::isfinite(nowMs)) return;
  startClock(*p, nowMs);
  if (p->live != Liveness::Alive) {
    emit(Event(EventType::Reconnected)
             .num(Field::kPeer, peerIdx)
             .num(Field::kTimeMs, nowMs)
             .num(Field::kDownMs, std::max(0.0, nowMs - p->lastHeardMs))
             .text(Field::kFrom, livenessName(p->live)),
         events);
    p->live = Liveness::Alive;
  }
  p->lastHeardMs = std::max(p->lastHeardMs, nowMs);
  p->lastPacketMs = p->anyPacket ? std::max(p->lastPacketMs, nowMs) : nowMs;
  p->anyPacket = true;
}

void Health::onInputHeader(int peerIdx, uint32_t headerFrame) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  if (!p->haveHeader) {
    p->haveHeader = true;
    p->lastHeader = headerFrame;
    return;
  }
  if (static_cast<uint64_t>(headerFrame) > static_cast<uint64_t>(p->lastHeader) + 1) ++p->gaps;
  p->lastHeader = std::max(p->lastHeader, headerFrame);
}

// ---------------------------------------------------------------------- channel state

void Health::onChannelOpen(int peerIdx, double /*nowMs*/) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  p->channelOpen = true;
}

void Health::resetPeer(int peerIdx, double nowMs) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  p->inFallback = false;
  p->fallbackReason = nullptr;
  p->healthy = false;
  p->live = Liveness::Alive;
  p->lastHeardMs = nowMs;
  p->winCount = 0;
  p->winHead = 0;
  p->haveHeader = false;
}

void Health::onChannelClosed(int peerIdx, double nowMs, Frame frame, EventQueue* events) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  p->channelOpen = false;
  p->healthy = false;
  enterFallback(peerIdx, nowMs, frame, "channel-closed", events);
}

void Health::onConnectionFailed(int peerIdx, double nowMs, Frame frame, EventQueue* events) {
  Peer* p = peer(peerIdx);
  if (!p) return;
  p->channelOpen = false;
  p->healthy = false;
  enterFallback(peerIdx, nowMs, frame, "connection-failed", events);
}

// ----------------------------------------------------------------------------- events

void Health::emit(const Event& ev, EventQueue* events) {
  if (events) { events->push(ev); return; }
  if (held_.size() >= maxEvents_) { ++heldDropped_; return; }
  held_.push_back(ev);
}

void Health::remember(const Event& ev) {
  if (history_.size() >= maxEvents_) { ++historyDropped_; return; }
  history_.push_back(ev.toJson());
}

void Health::enterFallback(int peerIdx, double nowMs, Frame frame, const char* reason,
                           EventQueue* events) {
  Peer& p = peers_[static_cast<size_t>(peerIdx)];
  if (p.inFallback) return;
  p.inFallback = true;
  p.fallbackReason = reason;
  p.fallbackSinceMs = std::isfinite(nowMs) ? nowMs : 0;
  p.healthy = false;
  if (!triggered_) {
    triggered_ = true;
    fallbackFrame_ = frame;
    fallbackReason_ = reason;
    fallbackTimeMs_ = p.fallbackSinceMs;
    fallbackPeer_ = peerIdx;
  }
  Event ev(EventType::Fallback);
  ev.num(Field::kPeer, peerIdx)
      .num(Field::kFrame, static_cast<double>(frame))
      .text(Field::kReason, reason)
      .num(Field::kTimeMs, nowMs)
      .num(Field::kLatencyMs, avgOf(p) / 2);
  remember(ev);
  emit(ev, events);
}

// ----------------------------------------------------------------------------- update

void Health::update(double nowMs, Frame frame, EventQueue& events) {
  for (const Event& ev : held_) events.push(ev);
  held_.clear();
  if (!std::isfinite(nowMs)) return;
  const double staleMs = std::max(3 * cfg_.pingIntervalMs, cfg_.interruptMs);

  for (int i = 0; i < numPlayers_; ++i) {
    if (i == local_) continue;
    Peer& p = peers_[static_cast<size_t>(i)];
    startClock(p, nowMs);

    // liveness
    double silent = nowMs - p.lastHeardMs;
    if (p.live == Liveness::Alive && silent >= cfg_.interruptMs) {
      p.live = Liveness::Interrupted;
      ++p.interruptions;
      p.healthy = false;
      // the pings it has not answered went out while it went silent (its page may be frozen):
      // their round trips will measure that
      for (PingSlot& s : pings_)
        if (s.used && !(s.answered & (1u << i))) s.silentMask |= 1u << i;
      events.push(Event(EventType::Interrupted).num(Field::kPeer, i).num(Field::kTimeMs, nowMs).num(Field::kSilentMs, silent));
    }
    if (p.live != Liveness::Disconnected && silent >= cfg_.disconnectMs) {
      p.live = Liveness::Disconnected;
      ++p.disconnections;
      p.healthy = false;
      events.push(Event(EventType::Disconnected).num(Field::kPeer, i).num(Field::kTimeMs, nowMs).num(Field::kSilentMs, silent));
    }

    // degradation -> fallback
    if (!p.inFallback && p.winCount >= std::max(1, cfg_.minSamplesForDegraded)) {
      double lat = avgOf(p) / 2;
      if (lat > kHighLatencyMs) enterFallback(i, nowMs, frame, "latency-high", &events);
      else if (lat > kCriticalLatencyMs) enterFallback(i, nowMs, frame, "latency-critical", &events);
    }

    // recovery
    if (p.inFallback && cfg_.recovery && p.healthy) {
      if (!p.channelOpen || p.live != Liveness::Alive || nowMs - p.lastSampleMs > staleMs) {
        p.healthy = false;
      } else if (nowMs - p.healthySinceMs >= cfg_.recoveryHealthyForMs) {
        p.inFallback = false;
        p.fallbackReason = nullptr;
        p.healthy = false;
        ++recoveries_;
        Event ev(EventType::Recovery);
        ev.num(Field::kPeer, i)
            .num(Field::kFrame, static_cast<double>(frame))
            .num(Field::kTimeMs, nowMs)
            .num(Field::kFallbackMs, nowMs - p.fallbackSinceMs);
        remember(ev);
        events.push(ev);
      }
    }
  }
}

// ----------------------------------------------------------------------------- queries

double Health::rttAvgMs(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? avgOf(*p) : kNaN;
}
double Health::latencyMs(int peerIdx) const { return rttAvgMs(peerIdx) / 2; }
const char* Health::status(int peerIdx) const { return statusOf(latencyMs(peerIdx)); }
Liveness Health::liveness(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->live : Liveness::Alive;
}
bool Health::channelOpen(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p && p->channelOpen;
}
bool Health::inFallback(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p && p->inFallback;
}
bool Health::p2pUsable(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p && p->channelOpen && !p->inFallback && p->live != Liveness::Disconnected;
}
bool Health::anyFallback() const {
  for (int i = 0; i < numPlayers_; ++i)
    if (i != local_ && peers_[static_cast<size_t>(i)].inFallback) return true;
  return false;
}
void Health::discardPingsSentBefore(double t) {
  for (PingSlot& s : pings_)
    if (s.used && s.ts < t) s.stale = true;
}

uint64_t Health::stalePongs(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->stale : 0;
}

uint64_t Health::unsolicitedPongs(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->unsolicited : 0;
}
uint64_t Health::duplicatePongs(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->duplicate : 0;
}
uint64_t Health::gapCount(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->gaps : 0;
}
uint64_t Health::sampleCount(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->samples : 0;
}

double Health::lastHeardMs(int peerIdx) const {
  const Peer* p = peer(peerIdx);
  return p ? p->lastHeardMs : std::numeric_limits<double>::quiet_NaN();
}

// -------------------------------------------------------------------------------- JSON

nlohmann::json Health::peerJson(int i) const {
  const Peer& p = peers_[static_cast<size_t>(i)];
  nlohmann::json j;
  j["peer"] = i;
  const int n = p.winCount;
  if (n == 0) {
    j["rttAvgMs"] = nullptr;
    j["latencyMs"] = nullptr;
    j["p50Ms"] = nullptr;
    j["p95Ms"] = nullptr;
    j["jitterMs"] = nullptr;
    j["minMs"] = nullptr;
    j["maxMs"] = nullptr;
  } else {
    std::array<double, kWindowSamples> sorted{};
    const int oldest = (p.winHead - n + kWindowSamples) % kWindowSamples;
    double jitterSum = 0;
    double prev = 0;
    for (int k = 0; k < n; ++k) {
      double v = p.win[static_cast<size_t>((oldest + k) % kWindowSamples)];
      sorted[static_cast<size_t>(k)] = v;
      if (k > 0) jitterSum += std::fabs(v - prev);
      prev = v;
    }
    std::sort(sorted.begin(), sorted.begin() + n);
    auto rank = [&](int pct) {  // nearest rank: ceil(pct/100 * n)-th smallest
      int r = (pct * n + 99) / 100;
      return sorted[static_cast<size_t>(std::clamp(r, 1, n) - 1)];
    };
    double avg = avgOf(p);
    j["rttAvgMs"] = num(avg);
    j["latencyMs"] = num(avg / 2);
    j["p50Ms"] = num(rank(50));
    j["p95Ms"] = num(rank(95));
    j["jitterMs"] = n >= 2 ? num(jitterSum / (n - 1)) : nlohmann::json(nullptr);
    j["minMs"] = num(sorted[0]);
    j["maxMs"] = num(sorted[static_cast<size_t>(n - 1)]);
  }
  j["samples"] = p.samples;
  j["status"] = statusOf(avgOf(p) / 2);
  j["packetsReceived"] = p.packets;
  j["gapCount"] = p.gaps;
  j["unsolicitedPongs"] = p.unsolicited;
  j["stalePongs"] = p.stale;
  j["duplicatePongs"] = p.duplicate;
  j["liveness"] = livenessName(p.live);
  j["interruptions"] = p.interruptions;
  j["disconnections"] = p.disconnections;
  j["lastPacketMs"] = p.anyPacket ? num(p.lastPacketMs) : nlohmann::json(nullptr);
  j["channelOpen"] = p.channelOpen;
  j["inFallback"] = p.inFallback;
  j["fallbackReason"] = str(p.fallbackReason);
  return j;
}

nlohmann::json Health::peersJson() const {
  nlohmann::json arr = nlohmann::json::array();
  for (int i = 0; i < numPlayers_; ++i)
    if (i != local_) arr.push_back(peerJson(i));
  return arr;
}

nlohmann::json Health::fallbackJson() const {
  nlohmann::json f;
  f["triggered"] = triggered_;
  f["frame"] = triggered_ ? nlohmann::json(fallbackFrame_) : nlohmann::json(nullptr);
  f["reason"] = triggered_ ? str(fallbackReason_) : nlohmann::json(nullptr);
  f["timeMs"] = triggered_ ? num(fallbackTimeMs_) : nlohmann::json(nullptr);
  f["peer"] = triggered_ ? nlohmann::json(fallbackPeer_) : nlohmann::json(nullptr);
  f["events"] = nlohmann::json::array();
  for (const nlohmann::json& ev : history_) f["events"].push_back(ev);
  f["eventsDropped"] = historyDropped_;
  f["recoveries"] = recoveries_;
  return f;
}

nlohmann::json Health::toJson() const {
  return {{"peers", peersJson()}, {"fallback", fallbackJson()}};
}

}  // namespace p2psync
