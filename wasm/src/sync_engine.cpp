#include "sync_engine.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "state_hash.hpp"

namespace p2psync {

using nlohmann::json;

namespace {
// Frames between the synced end of an episode and the start of the next: more than the largest
// input delay (30) plus slack, so no input of an old episode can land in the new one.
constexpr Frame kEpisodeGap = 64;
// Bytes of event records per configured event (a typical record is 40-100 bytes).
constexpr size_t kEventBytesPerEvent = 128;

HealthConfig healthConfig(const EngineConfig& c) {
  HealthConfig h;
  h.pingIntervalMs = c.pingIntervalMs;
  h.interruptMs = c.interruptMs;
  h.disconnectMs = c.disconnectMs;
  h.recovery = c.fallbackRecovery;
  h.recoveryHealthyForMs = c.recoveryHealthyForMs;
  h.recoveryLatencyBelowMs = c.recoveryLatencyBelowMs;
  return h;
}

StateSyncConfig stateSyncConfig(const EngineConfig& c) {
  StateSyncConfig s;
  s.numPlayers = c.numPlayers;
  s.localPlayer = c.localPlayerIndex;
  s.hashInterval = static_cast<uint32_t>(c.effectiveHashInterval());
  s.hashHistory = static_cast<uint32_t>(c.hashHistory);
  s.gameId = c.gameId;
  s.playerIds = c.playerIds;
  s.relayHashesAlways = c.relayHashesAlways;
  return s;
}

double num(Frame f) { return static_cast<double>(f); }
}  // namespace


std::unique_ptr<SyncEngine> SyncEngine::create(const char* configJson, size_t len, std::string& error) {
  EngineConfig cfg;
  error = parseConfig(configJson, len, cfg);
  if (!error.empty()) return nullptr;
  return std::make_unique<SyncEngine>(cfg);
}

SyncEngine::SyncEngine(const EngineConfig& cfg)
    : cfg_(cfg),
      numActors_(cfg.numActors()),
      local_(cfg.localPlayerIndex),
      ringMask_(static_cast<size_t>(cfg.bufferFrames - 1)),
      replayCap_(cfg.bufferFrames),
      inputs_(static_cast<size_t>(cfg.numPlayers), InputBuffer(cfg.bufferFrames)),
      records_(static_cast<size_t>(cfg.bufferFrames)),
      snapshots_(cfg.snapshotBytes, cfg.snapshotSlots),
      timeSync_(cfg.numPlayers, cfg.localPlayerIndex,
                TimeSyncConfig{cfg.timeSyncThreshold, cfg.timeSyncMinSpacing, cfg.timeSyncWindow, 3000}),
      health_(cfg.numPlayers, cfg.localPlayerIndex, healthConfig(cfg), static_cast<size_t>(cfg.maxEvents)),
      metrics_(static_cast<size_t>(cfg.maxEvents)),
      stateSync_(stateSyncConfig(cfg)),
      syncTest_(cfg.syncTestDistance, cfg.bufferFrames),
      events_(static_cast<size_t>(cfg.maxEvents) * kEventBytesPerEvent),
      rows_(cfg.numActors(), static_cast<size_t>(cfg.bufferFrames)),
      out_(64 * 1024),
      reply_(16 * 1024),
      plan_(plan::arenaBytes(cfg), 0),
      writer_(plan_.data(), plan::requestCapacity(cfg)),
      rx_(kMaxPacketBytes),
      msg_(std::make_unique<Message>()),
      scratchMsg_(std::make_unique<Message>()),
      proposals_(static_cast<size_t>(cfg.numPlayers)),
      xHist_(static_cast<size_t>(cfg.numPlayers)),
      xSamples_(static_cast<size_t>(cfg.numPlayers), 0),
      remoteFocused_(static_cast<size_t>(cfg.numPlayers), 1),
      lastRequestMs_(static_cast<size_t>(cfg.numPlayers), -1e18),
      budget_(static_cast<size_t>(cfg.numPlayers), 0),
      oneWay_(static_cast<size_t>(cfg.numPlayers), 0.0),
      lastHeader_(static_cast<size_t>(cfg.numPlayers), kNoFrame),
      joining_(cfg.rejoin),
      pendingServe_(static_cast<size_t>(cfg.numPlayers)),
      touts_(static_cast<size_t>(cfg.numPlayers)),
      lastBuildMs_(static_cast<size_t>(cfg.numPlayers), -1e18),
      rejoinSeen_(static_cast<size_t>(cfg.numPlayers), 0),
      lastInputMs_(static_cast<size_t>(cfg.numPlayers), -1),
      remoteFocusFrame_(static_cast<size_t>(cfg.numPlayers), kNoFrame) {
  header()[plan::kRowSize] = static_cast<int32_t>(rows_.rowBytes());
  resetEpisode(-1);
}

// ------------------------------------------------------------------------------------- helpers

Frame SyncEngine::windowLo() const {
  // The oldest frame still needed: replays start at a snapshot at or before the confirmed frame.
  const Frame lo = std::min(confirmed_ + 1, cur_) - 2 * cfg_.snapshotInterval - syncTest_.distance() - 2;
  return std::max(lo, episodeStart_);
}

bool SyncEngine::isSnapshotFrame(Frame f) const {
  if (syncTest_.enabled()) return true;
  const Frame ef = f - episodeStart_;
  return ef % cfg_.snapshotInterval == 0 || ef % cfg_.effectiveHashInterval() == 0;
}

Frame SyncEngine::lastPlannableFrame() const {
  Frame last = kMaxWireFrame;
  if (terminal_ != kNoFrame) last = terminal_;
  if (cfg_.maxEpisodeFrames > 0) last = std::min(last, episodeStart_ + cfg_.maxEpisodeFrames - 1);
  if (stateSync_.episodeBegun() && stateSync_.episode() == episode_) {
    const int64_t e = stateSync_.peersEndFrame();
    if (e >= 0) last = std::min(last, episodeStart_ + e);
  }
  return last;
}

void SyncEngine::fillActions(Frame f, FrameRecord& r, const uint8_t* bots) {
  r.frame = f;
  r.predictedMask = 0;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    uint8_t a;
    if (!inputs(p).get(f, a)) {
      a = inputs(p).predict(f, cfg_.predictionMethod, cfg_.defaultAction);
      r.predictedMask = static_cast<uint16_t>(r.predictedMask | (1u << p));
    }
    r.actions[static_cast<size_t>(p)] = a;
  }
  if (bots) std::memcpy(r.actions.data() + cfg_.numPlayers, bots, static_cast<size_t>(cfg_.numBots));
}

void SyncEngine::recomputeConfirmed() {
  Frame c = simulated_;
  for (const InputBuffer& b : inputs_) c = std::min(c, b.knownUpTo());
  if (pendingRollback_ != kNoFrame) c = std::min(c, pendingRollback_ - 1);
  if (c > confirmed_) confirmed_ = c;
}

bool SyncEngine::p2pUsableAny() const {
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_ && health_.p2pUsable(p)) return true;
  return false;
}

bool SyncEngine::p2pUsableAll() const {
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_ && !health_.p2pUsable(p)) return false;
  return true;
}

void SyncEngine::emitPacket(Outbox& box, Path path, int to, const Message& m) {
  const size_t n = encode(m, scratch_.data(), scratch_.size());
  if (n && box.packet(path, to, scratch_.data(), n)) metrics_.packetSent(path);
}

void SyncEngine::feedConfirmedActions() {
  // State sync keeps per-actor action counts of confirmed frames (for the relay message).
  // Not before state sync has begun this episode (the first snapshot, after the first advance):
  // beginEpisode() resets its counts, so frames fed earlier would be lost and every later
  // frame refused (when the peer's first inputs arrive before the first advance).
  if (!stateSync_.episodeBegun() || stateSync_.episode() != episode_) return;
  while (countedUpTo_ < confirmed_) {
    const Frame f = countedUpTo_ + 1;
    const FrameRecord& r = record(f);
    if (r.frame == f)
      stateSync_.onConfirmedActions(wireFrame(f - episodeStart_), r.actions.data(), static_cast<size_t>(numActors_));
    countedUpTo_ = f;
  }
}

// ------------------------------------------------------------------------------------- advance

Status SyncEngine::advance(double nowMs, uint8_t localAction, double bufferedAmount) {
  Call call(*this);
  beginAdvance(nowMs);
  if (joining_) {  // a reloaded page: nothing to plan until a peer's state is loaded
    pumpTransfers(nowMs);
    if (health_.pingDue(nowMs, std::min(100.0, cfg_.pingIntervalMs))) {
      Message m;
      m.type = MsgType::Ping;
      m.timestamp = nowMs;
      for (int p = 0; p < cfg_.numPlayers; ++p)
        if (p != local_ && health_.channelOpen(p)) emitPacket(out_, Path::P2P, p, m);
    }
    finishPlan(Status::Joining);
    return Status::Joining;
  }
  planRollback(nowMs);
  recomputeConfirmed();
  const Status status = decideStatus(nowMs);
  if (status == Status::Run) planFrames(nowMs, localAction);
  sendInputs(nowMs, bufferedAmount);
  requestGaps(nowMs);
  sendPings(nowMs);
  syncState(nowMs);
  pumpTransfers(nowMs);
  emitRows();
  finishPlan(status);
  return status;
}

void SyncEngine::noteLocalGap(double nowMs) {
  // This page did not run for a while (a frozen or throttled tab): the pings it sent before give
  // round trips that measure that, not the link (they would push it into a fallback for good).
  if (started_ && nowMs - lastNowMs_ > cfg_.interruptMs) health_.discardPingsSentBefore(lastNowMs_ + 1e-3);
}

void SyncEngine::beginAdvance(double nowMs) {
  out_.clear();
  writer_.clear();
  noteLocalGap(nowMs);
  lastNowMs_ = nowMs;
  int32_t* H = header();
  H[plan::kRollbackTarget] = -1;
  H[plan::kLoadFrame] = -1;
  H[plan::kReplayCount] = 0;
  // Advance requests of the previous plan that were never reported: taken as stepped, not ended.
  if (nextReport_ != kNoFrame && nextReport_ <= planLast_) {
    unreportedSteps_ += static_cast<uint64_t>(planLast_ - nextReport_ + 1);
    simulated_ = planLast_;
  }
  nextReport_ = planLast_ = kNoFrame;
  std::fill(budget_.begin(), budget_.end(), 0);
  health_.update(nowMs, cur_, events_);
  for (int p = 0; p < cfg_.numPlayers; ++p) oneWay_[static_cast<size_t>(p)] = p == local_ ? 0.0 : health_.latencyMs(p);
}

// The earliest misprediction (or sync-test's forced rollback): Load S, then Save?/Advance for
// every frame S .. the newest simulated one, replayed with the best inputs known now.
void SyncEngine::planRollback(double nowMs) {
  if (loadPending_ != kNoFrame) {
    // A transferred state (rejoin, resync): Load it, replay up to the newest frame planned before.
    const Frame S = loadPending_;
    loadPending_ = kNoFrame;
    const Frame last = std::min(cur_ - 1, lastPlannableFrame());
    planLoadAndReplay(S, S, last, false);
    return;
  }
  Frame target = pendingRollback_;
  const Frame last = std::min(cur_ - 1, lastPlannableFrame());
  // Sync-test re-simulates the newest frames as the timeline advances; once the episode's last
  // frame is simulated nothing advances, and there is nothing new to check.
  const Frame forced = cur_ <= lastPlannableFrame() ? syncTest_.forcedTarget(cur_, episodeStart_) : kNoFrame;
  if (forced != kNoFrame && (target == kNoFrame || forced < target)) target = forced;
  if (target == kNoFrame || target >= cur_) return;
  if (target > last) {  // a misprediction past the episode's end changes nothing
    pendingRollback_ = kNoFrame;
    firstMiss_ = Misprediction{};
    return;
  }
  const SnapshotStore::Entry* snap = snapshots_.latestAtOrBefore(target);
  if (!snap || snap->frame < episodeStart_ || cur_ - snap->frame > replayCap_) {
    // Cannot roll back: keep the misprediction pending so the confirmed frame never passes it
    // (the session then stalls instead of confirming inputs it did not simulate).
    ++snapshotMisses_;
    if (target != lastMissingTarget_) {
      lastMissingTarget_ = target;
      events_.push(Event(EventType::Error)
                       .text(Field::kReason, "snapshot-missing")
                       .num(Field::kFrame, num(target))
                       .num(Field::kCurrentFrame, num(cur_))
                       .num(Field::kTimeMs, nowMs));
    }
    return;
  }
  const Frame S = snap->frame;
  if (pendingRollback_ != kNoFrame) {
    // A real misprediction (in sync-test mode possibly inside a deeper forced rollback).
    metrics_.rollback(wireFrame(pendingRollback_), wireFrame(cur_), wireFrame(cur_ - pendingRollback_), firstMiss_.player,
                      firstMiss_.predicted, firstMiss_.actual, nowMs, &events_);
    syncTest_.onMisprediction(pendingRollback_);
  }
  // The replay re-evaluates the episode's end, unless it is already confirmed (a forced sync-test
  // rollback replays confirmed frames: their outcome cannot change).
  if (terminal_ != kNoFrame && target <= terminal_ && confirmed_ < terminal_) terminal_ = kNoFrame;
  snapshots_.invalidateAfter(target);
  stateSync_.onRollback(wireFrame(target - episodeStart_));
  planLoadAndReplay(S, target, last, pendingRollback_ != kNoFrame);
  pendingRollback_ = kNoFrame;
  firstMiss_ = Misprediction{};
  lastMissingTarget_ = kNoFrame;
}

// Load S, then replay S..last (a Save for each snapshot frame after `target`, whose snapshots were
// invalidated) in one plan. With countRollback each replayed frame counts one more rollback.
void SyncEngine::planLoadAndReplay(Frame S, Frame target, Frame last, bool countRollback) {
  writer_.add(RequestKind::Load, 0, 0, S, S - episodeStart_, nullptr, 0);
  for (Frame f = S; f <= last; ++f) {
    FrameRecord& r = record(f);
    if (countRollback && r.rollbacks < UINT16_MAX) ++r.rollbacks;
    // Bots' recorded actions are reused; players' inputs are the best known now.
    std::array<uint8_t, kMaxActors> recorded = r.actions;
    fillActions(f, r, recorded.data() + cfg_.numPlayers);
    if (f > target && isSnapshotFrame(f)) writer_.add(RequestKind::Save, 0, 0, f, f - episodeStart_, nullptr, 0);
    writer_.add(RequestKind::Advance, kRequestReplay, r.predictedMask, f, f - episodeStart_, r.actions.data(), numActors_);
  }
  int32_t* H = header();
  H[plan::kRollbackTarget] = static_cast<int32_t>(target);
  H[plan::kLoadFrame] = static_cast<int32_t>(S);
  H[plan::kReplayCount] = static_cast<int32_t>(std::max<Frame>(0, last - S + 1));
  nextReport_ = last >= S ? S : kNoFrame;
  planLast_ = last >= S ? last : kNoFrame;
  simulated_ = S - 1;
  cur_ = std::max(S, last + 1);
}

Status SyncEngine::decideStatus(double nowMs) {
  const int limit = cfg_.predictionLimit();
  const bool readyGate = !stateSync_.allReady() && cur_ > episodeStart_ + limit / 2;
  Status status = Status::Run;
  if (!agreeDelay(nowMs) || !startBarrier(nowMs)) {
    status = Status::Starting;  // the episode's start barrier (not a stall)
  } else if (cur_ > lastPlannableFrame()) {
    status = Status::Ended;
  } else if (cur_ - confirmed_ > limit || readyGate || pausedMask_ != 0) {
    status = Status::Stall;
    metrics_.stall();
    // the inputs that end the stall arrive late because of it: not a measure of who runs ahead
    timeSync_.hold(limit + 8);
    if (!stalled_)
      events_.push(Event(EventType::Stall)
                       .num(Field::kFrame, num(cur_))
                       .num(Field::kConfirmedFrame, num(confirmed_))
                       .text(Field::kReason, pausedMask_ ? "paused" : readyGate ? "waiting-ready" : "prediction-limit")
                       .num(Field::kTimeMs, nowMs));
  }
  const bool running = status == Status::Run && cfg_.timeSync && !syncTest_.enabled();
  if (timeSync_.update(nowMs, running)) {
    status = Status::Wait;
    metrics_.wait();
  }
  if (stalled_ && status != Status::Stall)
    events_.push(Event(EventType::StallEnd).num(Field::kFrame, num(cur_)).num(Field::kConfirmedFrame, num(confirmed_)).num(Field::kTimeMs, nowMs));
  stalled_ = status == Status::Stall;
  return status;
}

// The episode's start barrier: its first frame waits until this peer's initial state is saved (its
// READY goes out with it: the plan then holds just that Save) and every peer's READY arrived — at
// most readyTimeoutMs — so that the peers start together instead of one running ahead and waiting.
bool SyncEngine::startBarrier(double nowMs) {
  if (cur_ != episodeStart_ || started_ep_) return true;
  if (!stateSync_.episodeBegun() || stateSync_.episode() != episode_) {
    writer_.add(RequestKind::Save, 0, 0, episodeStart_, 0, nullptr, 0);
    return false;
  }
  if (readyWaitMs_ < 0) readyWaitMs_ = nowMs;
  if (!stateSync_.allReady() && nowMs - readyWaitMs_ < cfg_.readyTimeoutMs) return false;
  started_ep_ = true;
  return true;
}

// How many new frames this advance runs: 1, or more while this peer is behind the others
// (catch-up: back within about catchUpWithinMs), never past the prediction limit or the episode.
int SyncEngine::framesToRun() {
  int n = 1;
  if (cfg_.catchUp && timeSync_.frameMs() > 0) {
    const double behind = timeSync_.framesBehind(cur_ + cfg_.inputDelay, oneWay_);
    if (behind > cfg_.catchUpThreshold) {
      const double ticks = std::max(1.0, cfg_.catchUpWithinMs / timeSync_.frameMs());
      n += static_cast<int>(std::min<double>(kMaxFramesPerAdvance - 1, std::ceil(behind / ticks)));
    }
  }
  // The catch-up after a hidden span ends once this peer is back with the others.
  if (n == 1) returning_ = false;
  const Frame room = std::min<Frame>(confirmed_ + cfg_.predictionLimit() + 1 - cur_, lastPlannableFrame() + 1 - cur_);
  return static_cast<int>(std::clamp<Frame>(room, 1, n));
}

// This tick's frames: for each, the local input for frame + inputDelay, then Save? and Advance.
void SyncEngine::planFrames(double nowMs, uint8_t localAction) {
  const int n = framesToRun();
  InputBuffer& mine = inputs(local_);
  for (int k = 0; k < n; ++k) {
    const Frame target = cur_ + cfg_.inputDelay;
    // After a rejoin: frames whose own input the peers may still have from before the reload are
    // not chosen anew until their copies are in (holdOwnInputs_).
    if (holdOwnInputs_ && (!mine.known(cur_) || !mine.known(target))) break;
    double lag;
    // A rejoiner's frames between the last input the peers had and this one: chosen now.
    if (!mine.known(cur_)) mine.insert(cur_, localAction, Path::P2P, nowMs, windowLo(), lag, true);
    if (!mine.known(target)) {
      // Not focused: the page is hidden, or these are the frames it missed while hidden (its
      // catch-up after coming back): the participant did not choose them live.
      mine.insert(target, localAction, Path::P2P, nowMs, windowLo(), lag, !localFocused_ || returning_);
    }
    FrameRecord& r = record(cur_);
    const bool fresh = r.frame != cur_;
    // Frames a transfer carried the bots' actions of (a rejoin): the actions the others ran.
    const size_t bi = static_cast<size_t>(cur_ - transferBotsFrom_) * static_cast<size_t>(cfg_.numBots);
    const bool transferred = cfg_.numBots > 0 && cur_ >= transferBotsFrom_ && bi < transferBots_.size();
    fillActions(cur_, r, transferred ? transferBots_.data() + bi : botInput());
    if (fresh) {
      r.firstPredictedMask = r.predictedMask;
      r.firstMs = nowMs;
      r.rollbacks = 0;
      r.stepFlags = 0;
      r.rewards.fill(0);
    }
    if (isSnapshotFrame(cur_)) writer_.add(RequestKind::Save, 0, 0, cur_, cur_ - episodeStart_, nullptr, 0);
    writer_.add(RequestKind::Advance, 0, r.predictedMask, cur_, cur_ - episodeStart_, r.actions.data(), numActors_);
    if (nextReport_ == kNoFrame) nextReport_ = cur_;
    planLast_ = cur_;
    ++cur_;
  }
}

void SyncEngine::sendPings(double nowMs) {
  // QUALITY: margins for time sync and the input-delay proposal (often while agreeing on it).
  if (nowMs - lastQualityMs_ >= (delayAgreed_ ? 200.0 : 50.0)) {
    lastQualityMs_ = nowMs;
    sendQuality(out_);
  }
  // While the delay is being agreed, RTT samples are wanted fast (pings every 100 ms).
  if (!health_.pingDue(nowMs, delayAgreed_ ? cfg_.pingIntervalMs : std::min(100.0, cfg_.pingIntervalMs))) return;
  Message m;
  m.type = MsgType::Ping;
  m.timestamp = nowMs;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_ && health_.channelOpen(p)) emitPacket(out_, Path::P2P, p, m);
  // The focus state is re-announced with the pings once it has changed: a lost FOCUS_STATE
  // (pauses and focus events depend on it) is repaired within one ping interval.
  if (focusAnnounced_)
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (p != local_) sendFocus(out_, p);
}

void SyncEngine::sendQuality(Outbox& box) {
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    Message m;
    m.type = MsgType::Quality;
    m.episode = episode_;
    m.frame = wireFrame(cur_);
    m.flags = 0;
    if (timeSync_.hasMargin(p) && !timeSync_.holding()) {
      m.flags |= kQualityMargin;
      m.margin = static_cast<int16_t>(std::lround(std::clamp(timeSync_.margin(p), -2000.0, 2000.0) * 16));
    }
    // the next episode's proposal while this one ends, else this episode's (kept being sent
    // after this peer agreed: a peer may still be waiting for it)
    if (endSent_ && nextProposal_ >= 0) {
      m.flags |= kQualityProposal;
      m.episode = episode_ + 1;
      m.delay = static_cast<uint8_t>(nextProposal_);
    } else if (delayProposal_ >= 0) {
      m.flags |= kQualityProposal;
      m.delay = static_cast<uint8_t>(delayProposal_);
    }
    emitPacket(box, health_.p2pUsable(p) ? Path::P2P : Path::Relay, p, m);
  }
}

void SyncEngine::onQuality(int peer, const Message& m, double nowMs) {
  if ((m.flags & kQualityMargin) && (m.episode == episode_ || m.episode == episode_ + 1)) timeSync_.onReport(peer, m.margin / 16.0, nowMs);
  if (m.flags & kQualityProposal) {
    Proposal& pr = proposals_[static_cast<size_t>(peer)];
    // a proposal for an earlier episode never replaces one for a later episode
    if (!pr.valid || m.episode >= pr.episode) pr = Proposal{true, m.episode, m.delay};
  }
}

// This peer's input-delay proposal for the current episode: the smallest delay at which
// targetOnTime of each remote peer's inputs arrive before they are needed, from the measured
// margins (margin - the delay they were sent with), else from the RTT; -1 while neither is known
// (for at most 2 s: then the range's low end... or 2).
int SyncEngine::proposeDelay() const {
  const double frameMs = timeSync_.frameMs() > 0 ? timeSync_.frameMs() : 1000.0 / 30;
  int need = cfg_.autoDelayMin;
  bool known = true;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    const auto& h = xHist_[static_cast<size_t>(p)];
    uint64_t n = 0;
    for (uint32_t c : h) n += c;
    int d = -1;
    if (n >= 60) {
      // smallest D with P(x >= -D) >= target, x = margin - delay
      uint64_t atLeast = 0;  // samples with x >= -D, growing with D
      for (int D = 0; D <= cfg_.autoDelayMax && d < 0; ++D) {
        atLeast = 0;
        for (int x = -D; x <= kXMax; ++x) atLeast += h[static_cast<size_t>(x - kXMin)];
        if (static_cast<double>(atLeast) >= cfg_.autoDelayTargetOnTime * static_cast<double>(n)) d = D;
      }
      if (d < 0) d = cfg_.autoDelayMax;
    } else if (health_.sampleCount(p) >= 3) {
      // one way at the RTT's 95th percentile, plus half a frame for the ticks' phase
      const double rtt95 = health_.rttPercentileMs(p, 95);
      d = static_cast<int>(std::ceil((rtt95 / 2 + frameMs / 2) / frameMs));
    } else {
      known = false;
    }
    need = std::max(need, d);
  }
  if (!known) return -1;
  return std::clamp(need, cfg_.autoDelayMin, cfg_.autoDelayMax);
}

// The auto delay's agreement at the start of an episode: every peer proposes, each takes the
// largest proposal. Frames wait for it (STALL 'agreeing-delay'), at most delayAgreementTimeoutMs
// after this peer's own proposal (then it goes on with the proposals it has).
bool SyncEngine::agreeDelay(double nowMs) {
  if (delayAgreed_) return true;
  if (delayGateMs_ < 0) delayGateMs_ = nowMs;
  if (delayProposal_ < 0) {
    delayProposal_ = nextProposal_ >= 0 ? nextProposal_ : proposeDelay();
    nextProposal_ = -1;
    if (delayProposal_ < 0 && nowMs - delayGateMs_ >= 2000) delayProposal_ = std::clamp(2, cfg_.autoDelayMin, cfg_.autoDelayMax);
    if (delayProposal_ < 0) return false;
    proposalMs_ = nowMs;
    lastQualityMs_ = -1e18;  // announce it now
  }
  int agreed = delayProposal_;
  bool all = true;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    const Proposal& pr = proposals_[static_cast<size_t>(p)];
    if (pr.valid && pr.episode == episode_) agreed = std::max(agreed, pr.delay);
    else all = false;
  }
  if (!all && nowMs - proposalMs_ < cfg_.delayAgreementTimeoutMs) return false;
  applyDelay(agreed, nowMs, all ? "agreed" : "timeout");
  return true;
}

// The episode's input delay: the local inputs of its first `delay` frames are the default action.
void SyncEngine::applyDelay(int delay, double nowMs, const char* how) {
  cfg_.inputDelay = delay;
  delayAgreed_ = true;
  double lag;
  for (int i = 0; i < delay; ++i)
    if (!inputs(local_).known(episodeStart_ + i))
      inputs(local_).insert(episodeStart_ + i, cfg_.defaultAction, Path::P2P, 0, episodeStart_, lag);
  if (delayByEpisode_.size() < 4096) delayByEpisode_.push_back(delay);
  events_.push(Event(EventType::InputDelay)
                   .num(Field::kEpisode, episode_)
                   .num(Field::kInputDelay, delay)
                   .text(Field::kReason, how)
                   .num(Field::kTimeMs, nowMs));
}

void SyncEngine::sendFocus(Outbox& box, int to) {
  Message m;
  m.type = MsgType::FocusState;
  m.focused = localFocused_ ? 1 : 0;
  m.frame = wireFrame(localFocusFrame_);
  emitPacket(box, health_.p2pUsable(to) ? Path::P2P : Path::Relay, to, m);
}

void SyncEngine::setFocus(bool focused, double nowMs) {
  Call call(*this);
  reply_.clear();
  if (focused != localFocused_) {
    localFocused_ = focused;
    focusAnnounced_ = true;
    returning_ = focused;
    // The first local input chosen in the new state: the next one advance() inserts (and always
    // after the previous change's: the peers order the changes by it).
    const Frame previous = focusAnnounced_ ? localFocusFrame_ : kNoFrame;
    localFocusFrame_ = cur_ + cfg_.inputDelay;
    while (inputs(local_).known(localFocusFrame_)) ++localFocusFrame_;
    if (previous != kNoFrame && localFocusFrame_ <= previous) localFocusFrame_ = previous + 1;
    events_.push(Event(EventType::Focus)
                     .num(Field::kPeer, local_)
                     .flag(Field::kFocused, focused)
                     .num(Field::kFrame, num(localFocusFrame_))
                     .num(Field::kTimeMs, nowMs));
    // On both paths: the P2P copy is fast, the relay copy cannot be lost.
    for (int p = 0; p < cfg_.numPlayers; ++p) {
      if (p == local_) continue;
      if (health_.p2pUsable(p)) sendFocus(reply_, p);
      Message m;
      m.type = MsgType::FocusState;
      m.focused = focused ? 1 : 0;
      m.frame = wireFrame(localFocusFrame_);
      emitPacket(reply_, Path::Relay, p, m);
    }
    if (cfg_.focusPolicy == FocusPolicy::Pause) {
      pausedMask_ = focused ? (pausedMask_ & ~(1u << local_)) : (pausedMask_ | (1u << local_));
      updatePause(nowMs);
    }
  }
  int32_t* H = header();
  H[plan::kReplyBytes] = static_cast<int32_t>(reply_.size());
  H[plan::kReplyCount] = static_cast<int32_t>(reply_.count());
}

void SyncEngine::onRemoteFocus(int peer, bool focused, Frame frame, double nowMs) {
  int8_t& known = remoteFocused_[static_cast<size_t>(peer)];
  if (known == (focused ? 1 : 0)) return;  // a re-announcement
  // A change older than the newest one seen (held back by a frozen tab, reordered): ignored.
  Frame& last = remoteFocusFrame_[static_cast<size_t>(peer)];
  if (last != kNoFrame && frame <= last) return;
  last = frame;
  known = focused ? 1 : 0;
  events_.push(Event(EventType::Focus)
                   .num(Field::kPeer, peer)
                   .flag(Field::kFocused, focused)
                   .num(Field::kFrame, num(frame))
                   .num(Field::kTimeMs, nowMs));
  if (cfg_.focusPolicy == FocusPolicy::Pause) {
    pausedMask_ = focused ? (pausedMask_ & ~(1u << peer)) : (pausedMask_ | (1u << peer));
    updatePause(nowMs);
  }
}

// focusPolicy pause: a 'pause' event when the first page hides, 'resume' when the last is back.
void SyncEngine::updatePause(double nowMs) {
  const bool paused = pausedMask_ != 0;
  const int32_t was = header()[plan::kPaused];
  if (paused && !was) {
    pausedSinceMs_ = nowMs;
    pausedAtFrame_ = cur_;
    events_.push(Event(EventType::Pause).num(Field::kFrame, num(cur_)).num(Field::kPeers, pausedMask_).num(Field::kTimeMs, nowMs));
  } else if (!paused && was) {
    events_.push(Event(EventType::Resume)
                     .num(Field::kFrame, num(cur_))
                     .num(Field::kStartFrame, num(pausedAtFrame_))
                     .num(Field::kDownMs, nowMs - pausedSinceMs_)
                     .num(Field::kTimeMs, nowMs));
  }
  header()[plan::kPaused] = paused ? static_cast<int32_t>(pausedMask_) : 0;
}

// The episode's end: the local terminal frame, once confirmed, goes to state sync (END). A peer's
// END that this timeline confirmed past without ending is a mismatch (a desync): it is reported
// and adopted, so that every peer still ends the episode on one frame.
void SyncEngine::syncEpisodeEnd(double nowMs) {
  if (endSent_ || !stateSync_.episodeBegun() || stateSync_.episode() != episode_) return;
  const int64_t peersEnd = stateSync_.peersEndFrame();
  if (peersEnd >= 0) {
    const Frame e = episodeStart_ + peersEnd;
    if (confirmed_ >= e && (terminal_ == kNoFrame || terminal_ > e)) {
      if (!endMismatchReported_) {
        endMismatchReported_ = true;
        events_.push(Event(EventType::Error)
                         .text(Field::kReason, "end-mismatch")
                         .num(Field::kFrame, num(e))
                         .num(Field::kEpisodeFrame, static_cast<double>(peersEnd))
                         .num(Field::kTimeMs, nowMs));
      }
      terminal_ = e;
    }
  }
  if (terminal_ != kNoFrame && confirmed_ >= terminal_) {
    stateSync_.localEpisodeEnd(wireFrame(terminal_ - episodeStart_), nowMs);
    endSent_ = true;
    endSentMs_ = nowMs;
    // the next episode's delay proposal, frozen now and announced while the end is agreed, so
    // the next episode usually starts without waiting for the proposals
    if (cfg_.autoDelay) {
      nextProposal_ = proposeDelay();
      lastQualityMs_ = -1e18;
    }
  }
}

void SyncEngine::syncState(double nowMs) {
  feedConfirmedActions();
  syncEpisodeEnd(nowMs);
  // State sync writes its packets (STATE_HASH, END, READY) and p2p_state_sync messages straight
  // into the outbox: count them as sent like every other packet (a P2P broadcast once per open channel).
  const size_t from = out_.size();
  stateSync_.update(confirmed_ - episodeStart_, wireFrame(cur_ - episodeStart_), p2pUsableAll(), nowMs, out_, events_);
  out_.forEach(
      [&](const OutRecord& r) {
        if (r.kind == OutKind::RelayJson || r.path == Path::Relay || r.to >= 0) {
          metrics_.packetSent(r.path);
          return;
        }
        for (int p = 0; p < cfg_.numPlayers; ++p)
          if (p != local_ && health_.channelOpen(p)) metrics_.packetSent(Path::P2P);
      },
      from);
  // (stateSync_ still holds the previous episode's synced END until the first snapshot of this one)
  if (endEventEmitted_ || stateSync_.episode() != episode_) return;
  if (stateSync_.episodeEndSynced() && confirmed_ >= episodeStart_ + stateSync_.syncedEndFrame()) {
    emitEpisodeEnd(nowMs);
  } else if (endSent_ && nowMs - endSentMs_ >= cfg_.endTimeoutMs) {
    // A peer that never confirms the end (gone, or stuck) no longer holds the others.
    endTimedOut_ = true;
    uint32_t missing = 0;
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (p != local_ && !stateSync_.peerEnded(p)) missing |= 1u << p;
    events_.push(Event(EventType::EndTimeout)
                     .num(Field::kEpisode, episode_)
                     .num(Field::kFrame, num(terminal_))
                     .num(Field::kPeers, missing)
                     .num(Field::kTimeMs, nowMs));
    emitEpisodeEnd(nowMs);
  }
}

void SyncEngine::emitEpisodeEnd(double nowMs) {
  endEventEmitted_ = true;
  const uint32_t endRel = stateSync_.syncedEndFrame();
  json summary{{"episode", episode_}, {"frame", endRel}, {"startFrame", episodeStart_}, {"inputDelay", cfg_.inputDelay}};
  if (endTimedOut_) summary["reason"] = "endTimeout";
  episodeSummaries_.push_back(std::move(summary));
  if (episodeSummaries_.size() > 256) episodeSummaries_.erase(episodeSummaries_.begin());
  Event ev(EventType::EpisodeEnd);
  ev.num(Field::kEpisode, episode_)
      .num(Field::kFrame, num(episodeStart_ + endRel))
      .num(Field::kEpisodeFrame, endRel)
      .flag(Field::kTruncated, terminalTruncated_)
      .text(Field::kReason, endTimedOut_ ? "endTimeout" : "synced")
      .num(Field::kTimeMs, nowMs);
  events_.push(ev);
}

// One research row per confirmed frame of the episode, in frame order (research_data.hpp).
void SyncEngine::emitRows() {
  if (rowsUpTo_ < episodeStart_ - 1) rowsUpTo_ = episodeStart_ - 1;
  while (rowsUpTo_ < confirmed_) {
    const Frame f = rowsUpTo_ + 1;
    const FrameRecord& r = record(f);
    if (r.frame != f) {  // left the ring before it could be written (the reader fell behind)
      ++rowsLost_;
      rowsUpTo_ = f;
      continue;
    }
    FrameRow row;
    row.frame = f;
    row.episodeFrame = f - episodeStart_;
    row.episode = episode_;
    row.predictedMask = r.firstPredictedMask;
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (inputs(p).unfocused(f)) row.unfocusedMask = static_cast<uint16_t>(row.unfocusedMask | (1u << p));
    row.rollbacks = r.rollbacks;
    row.flags = r.stepFlags;
    row.firstSteppedMs = r.firstMs;
    row.inputDelay = static_cast<uint8_t>(cfg_.inputDelay);
    std::memcpy(row.actions, r.actions.data(), static_cast<size_t>(numActors_));
    std::memcpy(row.rewards, r.rewards.data(), sizeof(double) * static_cast<size_t>(numActors_));
    if (!rows_.push(row)) break;  // full: retried once the reader has read
    rowsUpTo_ = f;
  }
}

void SyncEngine::finishPlan(Status status) {
  int32_t* H = header();
  H[plan::kStatus] = static_cast<int32_t>(status);
  H[plan::kFrame] = static_cast<int32_t>(cur_);
  H[plan::kEpisode] = static_cast<int32_t>(episode_);
  H[plan::kEpisodeStart] = static_cast<int32_t>(episodeStart_);
  H[plan::kConfirmedFrame] = static_cast<int32_t>(confirmed_);
  H[plan::kVerifiedFrame] = static_cast<int32_t>(verifiedFrame());
  H[plan::kRequestCount] = static_cast<int32_t>(writer_.count());
  H[plan::kOutBytes] = static_cast<int32_t>(out_.size());
  H[plan::kOutCount] = static_cast<int32_t>(out_.count());
  H[plan::kNumActors] = numActors_;
  H[plan::kTerminalFrame] = static_cast<int32_t>(terminal_);
  H[plan::kInputDelay] = cfg_.inputDelay;
  H[plan::kRowSize] = static_cast<int32_t>(rows_.rowBytes());
  H[plan::kPacingUs] = cfg_.timeSync && !syncTest_.enabled() ? static_cast<int32_t>(std::lround(timeSync_.pacingMs(lastNowMs_) * 1000)) : 0;
}

// ------------------------------------------------------------------------------------- stepped

bool SyncEngine::stepped(Frame frame, uint8_t flags) {
  Call call(*this);
  if (nextReport_ == kNoFrame || frame != nextReport_) {
    ++badReports_;
    return false;
  }
  simulated_ = frame;
  nextReport_ = frame < planLast_ ? frame + 1 : kNoFrame;
  const bool limit = cfg_.maxEpisodeFrames > 0 && frame >= episodeStart_ + cfg_.maxEpisodeFrames - 1;
  const bool ended = (flags & (kStepTerminated | kStepTruncated)) != 0 || limit;
  // The research record keeps the last simulation's outcome.
  FrameRecord& rec = record(frame);
  rec.stepFlags = static_cast<uint8_t>(((flags & kStepTerminated) ? kRowTerminated : 0) |
                                       ((flags & kStepTruncated) || (limit && !(flags & kStepTerminated)) ? kRowTruncated : 0) |
                                       ((flags & kStepRewards) ? kRowRewards : 0));
  if (flags & kStepRewards) std::memcpy(rec.rewards.data(), stepRewards(), sizeof(double) * static_cast<size_t>(numActors_));
  else rec.rewards.fill(0);
  if (ended) {
    markTerminal(frame, (flags & kStepTerminated) == 0, lastNowMs_);
    if (frame < planLast_) voidPlanAfter(frame);
    nextReport_ = kNoFrame;
  }
  recomputeConfirmed();
  emitRows();
  int32_t* H = header();
  H[plan::kConfirmedFrame] = static_cast<int32_t>(confirmed_);
  H[plan::kFrame] = static_cast<int32_t>(cur_);
  H[plan::kTerminalFrame] = static_cast<int32_t>(terminal_);
  return nextReport_ != kNoFrame;
}

void SyncEngine::markTerminal(Frame f, bool truncated, double nowMs) {
  if (terminal_ != kNoFrame && terminal_ <= f) return;
  terminal_ = f;
  terminalTruncated_ = truncated;
  events_.push(Event(EventType::Terminal)
                   .num(Field::kFrame, num(f))
                   .num(Field::kEpisodeFrame, num(f - episodeStart_))
                   .flag(Field::kTruncated, truncated)
                   .num(Field::kTimeMs, nowMs));
}

// The step of `f` ended the episode: the plan's later requests are void and never simulated.
void SyncEngine::voidPlanAfter(Frame f) {
  cur_ = f + 1;
  planLast_ = f;
  snapshots_.invalidateAfter(f);
  stateSync_.onRollback(wireFrame(f - episodeStart_));
}

// ------------------------------------------------------------------------------------- sending

void SyncEngine::sendInputs(double nowMs, double bufferedAmount) {
  const InputBuffer& mine = inputs(local_);
  const Frame newest = mine.knownUpTo();
  if (newest < episodeStart_) return;
  const bool congested = bufferedAmount > cfg_.congestionBytes;
  // The last `redundancy` inputs, in one INPUT packet per run of inputs with the same focus
  // (usually one run): the packet's flag is the focus of all its entries.
  Message& m = *msg_;
  m.type = MsgType::Input;
  m.playerIndex = static_cast<uint16_t>(local_);
  m.frame = wireFrame(newest);
  m.count = 0;
  uint32_t entries = 0, fresh = 0;  // fresh: entries never sent on P2P before
  bool sentP2P = false;
  bool runUnfocused = false;
  auto flush = [&]() {
    if (m.count == 0) return;
    m.flags = runUnfocused ? kInputUnfocused : 0;
    entries += m.count;
    for (int p = 0; p < cfg_.numPlayers; ++p) {
      if (p == local_ || !health_.p2pUsable(p) || congested) continue;
      emitPacket(out_, Path::P2P, p, m);
      sentP2P = true;
    }
    m.count = 0;
  };
  for (Frame f = std::max<Frame>(newest - cfg_.redundancy + 1, episodeStart_); f <= newest; ++f) {
    uint8_t a;
    if (!mine.get(f, a)) continue;
    const bool u = mine.unfocused(f);
    if (m.count && u != runUnfocused) flush();
    runUnfocused = u;
    m.inputs[m.count++] = FrameAction{wireFrame(f), a};
    if (f > p2pSentUpTo_) ++fresh;
  }
  flush();
  if (entries == 0) return;
  // Inputs count once per frame, whatever the number of peers (packets count per peer): the new
  // ones — this tick's (several while catching up), on the episode's first frame also the
  // inputDelay default inputs, after an outage of P2P those it had not carried yet.
  if (sentP2P) {
    metrics_.inputSent(Path::P2P, fresh, entries);
    p2pSentUpTo_ = newest;
  }
  // The relay carries every new input under "dual", and under "p2p-first" whenever some peer
  // cannot be reached by P2P this frame (channel down, fallback, congestion).
  const bool relayNeeded = cfg_.sendPolicy == SendPolicy::Dual || congested || !p2pUsableAll();
  if (!relayNeeded) return;
  // Give the relay, in order, every local input it has not carried yet, but at most the
  // redundancy window: older inputs the P2P path lost are filled by INPUT_REQUEST.
  const Frame from = std::max({relaySentUpTo_ + 1, newest - cfg_.redundancy + 1, episodeStart_});
  uint32_t sent = 0;
  for (Frame f = from; f <= newest; ++f) {
    uint8_t a;
    if (!mine.get(f, a)) continue;
    const std::string j = formatPlayerAction(cfg_.playerIds[static_cast<size_t>(local_)], a, wireFrame(f), nowMs, mine.unfocused(f));
    out_.relayJson(RelayEvent::PlayerAction, -1, j);
    metrics_.packetSent(Path::Relay);
    ++sent;
  }
  if (sent) metrics_.inputSent(Path::Relay, sent, sent);
  relaySentUpTo_ = newest;
}

void SyncEngine::requestGaps(double nowMs) {
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    const InputBuffer& b = inputs(p);
    const Frame known = b.knownUpTo();
    const Frame header = std::max(b.newestKnown(), lastHeader_[static_cast<size_t>(p)]);
    // Frames that the sender's redundancy will no longer carry must be asked for.
    if (header - known <= cfg_.redundancy) continue;
    const double spacing = std::max(100.0, 4.0 * oneWay_[static_cast<size_t>(p)]);
    if (nowMs - lastRequestMs_[static_cast<size_t>(p)] < spacing) continue;
    lastRequestMs_[static_cast<size_t>(p)] = nowMs;
    Message m;
    m.type = MsgType::InputRequest;
    m.start = wireFrame(known + 1);
    m.end = wireFrame(std::min<Frame>(header, known + kMaxRequestFrames));
    emitPacket(out_, health_.p2pUsable(p) ? Path::P2P : Path::Relay, p, m);
    metrics_.inputRequestSent();
  }
}

// ------------------------------------------------------------------------------------- receive

void SyncEngine::onRemoteInput(int player, Frame frame, uint8_t action, bool unfocused, Path via, double nowMs, RxResult& agg) {
  InputBuffer& b = inputs(player);
  if (frame < episodeStart_) {
    if (agg == RxResult::Duplicate) agg = RxResult::StaleEpisode;
    return;
  }
  if (b.heldBy(frame, action, via)) {  // a redundant copy: what insert() + the Duplicate case do
    metrics_.inputReceived(via, false);
    return;
  }
  double lag;
  switch (b.insert(frame, action, via, nowMs, windowLo(), lag, unfocused)) {
    case InputBuffer::Insert::Conflict:
      agg = RxResult::Conflict;
      return;
    case InputBuffer::Insert::OutOfWindow:
      if (agg == RxResult::Duplicate) agg = RxResult::OutOfWindow;
      return;
    case InputBuffer::Insert::Duplicate:
      metrics_.inputReceived(via, false);
      if (lag >= 0) metrics_.otherPathLag(via == Path::P2P ? Path::Relay : Path::P2P, lag);
      return;
    case InputBuffer::Insert::New:
      break;
  }
  if (agg == RxResult::Duplicate || agg == RxResult::OutOfWindow) agg = RxResult::Ok;
  metrics_.inputReceived(via, true);
  metrics_.inputMargin(static_cast<int32_t>(std::clamp<Frame>(frame - cur_, -1000, 1000)));
  // Time sync and the auto delay learn from how early the input arrived (first deliveries).
  timeSync_.onMargin(player, frame, cur_);
  if (delayAgreed_ && !timeSync_.holding()) {
    auto& h = xHist_[static_cast<size_t>(player)];
    const Frame x = std::clamp<Frame>(frame - cur_ - cfg_.inputDelay, kXMin, kXMax);
    ++h[static_cast<size_t>(x - kXMin)];
    // about the last 3000 samples count: older ones fade by a quarter each time that many arrived
    if (++xSamples_[static_cast<size_t>(player)] >= 3000) {
      xSamples_[static_cast<size_t>(player)] = 0;
      for (uint32_t& c : h) c -= c / 4;
    }
  }
  if (frame < cur_) {
    FrameRecord& rec = record(frame);
    if (rec.frame == frame) {
      if (rec.actions[static_cast<size_t>(player)] != action) {
        if (pendingRollback_ == kNoFrame || frame < pendingRollback_) {
          pendingRollback_ = frame;
          firstMiss_ = Misprediction{frame, player, rec.actions[static_cast<size_t>(player)], action};
        }
      } else {
        rec.predictedMask = static_cast<uint16_t>(rec.predictedMask & ~(1u << player));
      }
    }
  }
  recomputeConfirmed();
}

void SyncEngine::beginReceive() { reply_.clear(); }

RxResult SyncEngine::endReceive(RxResult r) {
  if (r != RxResult::Ok) metrics_.rejected(r);
  int32_t* H = header();
  H[plan::kReplyBytes] = static_cast<int32_t>(reply_.size());
  H[plan::kReplyCount] = static_cast<int32_t>(reply_.count());
  return r;
}

RxResult SyncEngine::receive(const uint8_t* data, size_t len, int fromPeer, Path via, double nowMs) {
  Call call(*this);
  beginReceive();
  RxResult r;
  if (fromPeer < 0 || fromPeer >= cfg_.numPlayers || fromPeer == local_) {
    r = RxResult::UnknownPlayer;
  } else if (++budget_[static_cast<size_t>(fromPeer)] > static_cast<uint32_t>(cfg_.maxPacketsPerPeerPerFrame)) {
    r = RxResult::Flood;
  } else if (len > kMaxPacketBytes) {
    r = RxResult::Oversized;
  } else {
    const DecodeError e = decode(data, len, *msg_);
    if (e != DecodeError::Ok) {
      r = fromDecodeError(e);
    } else {
      if (msg_->type == MsgType::Pong) noteLocalGap(nowMs);
      metrics_.packetReceived(via);
      r = handleMessage(*msg_, fromPeer, via, nowMs);
    }
  }
  return endReceive(r);
}

RxResult SyncEngine::handleMessage(const Message& m, int fromPeer, Path via, double nowMs) {
  switch (m.type) {
    case MsgType::Input: {
      if (m.playerIndex >= cfg_.numPlayers) return RxResult::UnknownPlayer;
      if (m.playerIndex != fromPeer) return RxResult::SpoofedPlayer;
      if (m.frame >= windowLo() + cfg_.bufferFrames) return RxResult::OutOfWindow;
      health_.onPacket(fromPeer, nowMs, &events_);
      health_.onInputHeader(fromPeer, m.frame);
      lastInputMs_[static_cast<size_t>(fromPeer)] = nowMs;
      if (m.frame >= episodeStart_) {
        timeSync_.onHeader(fromPeer, m.frame, nowMs);
        Frame& h = lastHeader_[static_cast<size_t>(fromPeer)];
        h = std::max<Frame>(h, m.frame);
      }
      RxResult agg = RxResult::Duplicate;
      const bool unfocused = (m.flags & kInputUnfocused) != 0;
      for (uint16_t i = 0; i < m.count; ++i) onRemoteInput(fromPeer, m.inputs[i].frame, m.inputs[i].action, unfocused, via, nowMs, agg);
      return agg;
    }
    case MsgType::InputResponse: {
      if (m.playerIndex >= cfg_.numPlayers) return RxResult::UnknownPlayer;
      if (m.playerIndex == local_ && (joining_ || holdOwnInputs_)) {
        // A peer's copy of this peer's own inputs from before its reload (the answer to its
        // STATE_REQUEST): kept until the transfer is loaded, then taken where still unknown.
        health_.onPacket(fromPeer, nowMs, &events_);
        ownAnswered_ |= 1u << fromPeer;
        const bool unfocused = (m.flags & kInputUnfocused) != 0;
        double lag;
        for (uint16_t i = 0; i < m.count; ++i) {
          if (joining_) {
            if (ownStash_.size() < static_cast<size_t>(kMaxResponseInputs) * static_cast<size_t>(cfg_.numPlayers))
              ownStash_.push_back(OwnInput{m.inputs[i].frame, m.inputs[i].action, unfocused});
          } else if (m.inputs[i].frame >= cur_) {
            inputs(local_).insert(m.inputs[i].frame, m.inputs[i].action, Path::P2P, nowMs, windowLo(), lag, unfocused);
          }
        }
        return RxResult::Ok;
      }
      if (m.playerIndex != fromPeer) return RxResult::SpoofedPlayer;
      health_.onPacket(fromPeer, nowMs, &events_);
      RxResult agg = RxResult::Duplicate;
      const Frame before = inputs(fromPeer).knownUpTo();
      const bool unfocused = (m.flags & kInputUnfocused) != 0;
      for (uint16_t i = 0; i < m.count; ++i) onRemoteInput(fromPeer, m.inputs[i].frame, m.inputs[i].action, unfocused, via, nowMs, agg);
      const Frame after = inputs(fromPeer).knownUpTo();
      if (after > before) metrics_.gapFilled(static_cast<uint32_t>(after - before));
      return agg;
    }
    case MsgType::InputRequest: {
      health_.onPacket(fromPeer, nowMs, &events_);
      // One INPUT_RESPONSE per run of inputs with the same focus (usually one).
      const InputBuffer& mine = inputs(local_);
      Message& r = *scratchMsg_;
      r.type = MsgType::InputResponse;
      r.playerIndex = static_cast<uint16_t>(local_);
      r.count = 0;
      bool any = false;
      for (Frame f = m.start; f <= m.end; ++f) {
        uint8_t a;
        if (!mine.get(f, a)) continue;
        const uint8_t flag = mine.unfocused(f) ? kInputUnfocused : 0;
        if (r.count && (flag != r.flags || r.count == kMaxResponseInputs)) {
          emitPacket(reply_, via, fromPeer, r);
          r.count = 0;
        }
        r.flags = flag;
        r.inputs[r.count++] = FrameAction{wireFrame(f), a};
        any = true;
      }
      if (!any) return RxResult::OutOfWindow;
      emitPacket(reply_, via, fromPeer, r);
      metrics_.inputResponseSent();
      return RxResult::Ok;
    }
    case MsgType::Ping: {
      health_.onPacket(fromPeer, nowMs, &events_);
      Message r;
      r.type = MsgType::Pong;
      r.timestamp = m.timestamp;
      emitPacket(reply_, via, fromPeer, r);
      return RxResult::Ok;
    }
    case MsgType::Pong: {
      const RxResult r = health_.onPong(fromPeer, m.timestamp, nowMs);
      if (r == RxResult::Ok) health_.onPacket(fromPeer, nowMs, &events_);
      return r;
    }
    case MsgType::Keepalive:
      health_.onPacket(fromPeer, nowMs, &events_);
      return RxResult::Ok;
    case MsgType::FocusState:
      health_.onPacket(fromPeer, nowMs, &events_);
      onRemoteFocus(fromPeer, m.focused != 0, m.frame, nowMs);
      return RxResult::Ok;
    case MsgType::Quality:
      health_.onPacket(fromPeer, nowMs, &events_);
      onQuality(fromPeer, m, nowMs);
      return RxResult::Ok;
    case MsgType::StateRequest: {
      const double heard = health_.lastHeardMs(fromPeer);
      health_.onPacket(fromPeer, nowMs, &events_);
      return onStateRequest(fromPeer, m, heard, nowMs);
    }
    case MsgType::StateChunk:
      health_.onPacket(fromPeer, nowMs, &events_);
      return onStateChunk(fromPeer, m, nowMs);
    case MsgType::StateAck:
      health_.onPacket(fromPeer, nowMs, &events_);
      return onStateAck(fromPeer, m, nowMs);
    case MsgType::StateHash:
      health_.onPacket(fromPeer, nowMs, &events_);
      if (m.frame == 0) return RxResult::BadValue;
      return stateSync_.onRemoteHash(fromPeer, m.frame, m.digest, nullptr, wireFrame(cur_ - episodeStart_),
                                     static_cast<uint32_t>(cfg_.bufferFrames), nowMs);
    case MsgType::EpisodeEnd:
    case MsgType::EpisodeReady: {
      health_.onPacket(fromPeer, nowMs, &events_);
      const RxResult r = m.type == MsgType::EpisodeEnd ? stateSync_.onEpisodeEnd(fromPeer, m.frame, m.episode, nowMs)
                                                      : stateSync_.onEpisodeReady(fromPeer, m.episode, m.digest, nowMs);
      // A duplicate means the peer still lacks ours: answer now, not at the next advance().
      const size_t from = reply_.size();
      stateSync_.sendAnswers(reply_, p2pUsableAll(), nowMs);
      reply_.forEach([&](const OutRecord& rec) { metrics_.packetSent(rec.path); }, from);
      return r;
    }
  }
  return RxResult::UnknownType;
}

RxResult SyncEngine::receiveRelayInput(int playerIndex, Frame frame, int action, double nowMs, int fromPeer) {
  Call call(*this);
  beginReceive();
  return endReceive(relayInput(playerIndex, frame, action, nowMs, fromPeer));
}

RxResult SyncEngine::relayInput(int playerIndex, Frame frame, int action, double nowMs, int fromPeer, bool unfocused) {
  if (playerIndex < 0 || playerIndex >= cfg_.numPlayers || playerIndex == local_) return RxResult::UnknownPlayer;
  if (fromPeer >= 0 && fromPeer != playerIndex) return RxResult::SpoofedPlayer;
  if (action < 0 || action > 255 || frame < 0 || frame > kMaxWireFrame) return RxResult::BadValue;
  if (++budget_[static_cast<size_t>(playerIndex)] > static_cast<uint32_t>(cfg_.maxPacketsPerPeerPerFrame) * 4)
    return RxResult::Flood;
  metrics_.packetReceived(Path::Relay);
  health_.onPacket(playerIndex, nowMs, &events_);
  lastInputMs_[static_cast<size_t>(playerIndex)] = nowMs;
  if (frame >= windowLo() + cfg_.bufferFrames) return RxResult::OutOfWindow;
  if (frame >= episodeStart_) {
    Frame& h = lastHeader_[static_cast<size_t>(playerIndex)];
    h = std::max(h, frame);
  }
  RxResult r = RxResult::Duplicate;
  onRemoteInput(playerIndex, frame, static_cast<uint8_t>(action), unfocused, Path::Relay, nowMs, r);
  return r;
}

// ------------------------------------------------------------------------------------- snapshots

uint64_t SyncEngine::hashState(const uint8_t* data, size_t len) const {
  if (cfg_.canonicalizeDigits > 0) {
    uint64_t h;
    if (canonicalHash(reinterpret_cast<const char*>(data), len, cfg_.canonicalizeDigits, h)) return h;
  }
  return hashBytes(data, len);
}

bool SyncEngine::saveSnapshot(Frame frame, const uint8_t* data, size_t len) {
  Call call(*this);
  if (frame < episodeStart_ || frame > cur_) return false;
  const uint64_t h = hashState(data, len);
  if (!snapshots_.save(frame, data, len, h)) {
    events_.push(Event(EventType::Error).text(Field::kReason, "snapshot-too-large").num(Field::kFrame, num(frame)).num(Field::kBytes, static_cast<double>(len)));
    return false;
  }
  // The first snapshot of each episode begins it in state sync (READY, per-episode hash/END state).
  if (frame == episodeStart_ && (!stateSync_.episodeBegun() || stateSync_.episode() != episode_))
    stateSync_.beginEpisode(episode_, h, lastNowMs_);
  if (frame > episodeStart_) stateSync_.onLocalHash(wireFrame(frame - episodeStart_), h);
  syncTest_.onSnapshot(frame, h, episodeStart_, cur_, events_);
  return true;
}

// ------------------------------------------------------------------------------------- connection

void SyncEngine::onChannelOpen(int peer, double nowMs) {
  Call call(*this);
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onChannelOpen(peer, nowMs);
}
void SyncEngine::onChannelClosed(int peer, double nowMs) {
  Call call(*this);
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onChannelClosed(peer, nowMs, cur_, &events_);
}
void SyncEngine::onConnectionFailed(int peer, double nowMs) {
  Call call(*this);
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onConnectionFailed(peer, nowMs, cur_, &events_);
}
bool SyncEngine::setConnectionType(const std::string& type) { return metrics_.setConnectionType(type); }

// ------------------------------------------------------------------------------------- episodes

void SyncEngine::restartTimelineAt(Frame start) {
  cur_ = start;
  confirmed_ = simulated_ = countedUpTo_ = start - 1;
  nextReport_ = planLast_ = kNoFrame;
  pendingRollback_ = lastMissingTarget_ = kNoFrame;
  firstMiss_ = Misprediction{};
  terminal_ = kNoFrame;
  terminalTruncated_ = endSent_ = endEventEmitted_ = endMismatchReported_ = endTimedOut_ = false;
  rowsUpTo_ = start - 1;
  relaySentUpTo_ = p2pSentUpTo_ = kNoFrame;
  for (InputBuffer& b : inputs_) b.reset(start);
  for (FrameRecord& r : records_) r.frame = kNoFrame;
  snapshots_.clear();
  timeSync_.reset();
  syncTest_.reset();
}

std::string SyncEngine::resetEpisode(int inputDelay) {
  Call call(*this);
  if (inputDelay >= 0 && (inputDelay > 30 || inputDelay + 16 > cfg_.bufferFrames / 2)) return "inputDelay out of range";
  if (started_) {
    if (!endEventEmitted_) return "the episode end is not synced yet (wait for the episodeEnd event)";
    const Frame next = episodeStart_ + stateSync_.syncedEndFrame() + 1 + kEpisodeGap;
    // A peer's END earlier than frames this engine has already confirmed (a lying or desynced
    // peer: the synced end is the minimum of every END) would start the next episode inside
    // them: frame numbers reused, stale inputs taken for new ones, the confirmed frame going
    // back. Refuse: such a session cannot continue consistently.
    if (next <= confirmed_)
      return "the synced episode end is before frames already confirmed (a peer sent an inconsistent EPISODE_END)";
    episodeStart_ = next;
    ++episode_;
    metrics_.beginEpisode();
  }
  started_ = true;
  if (inputDelay >= 0) cfg_.inputDelay = inputDelay;
  restartTimelineAt(episodeStart_);
  std::fill(lastHeader_.begin(), lastHeader_.end(), kNoFrame);
  // The episode's input delay: fixed now, or agreed by the peers before its first frame.
  delayProposal_ = -1;
  delayGateMs_ = proposalMs_ = -1;
  if (joining_) delayAgreed_ = true;  // a rejoiner takes the episode and its delay from the transfer
  else if (cfg_.autoDelay && inputDelay < 0) delayAgreed_ = false;
  else applyDelay(cfg_.inputDelay, lastNowMs_, "fixed");
  // state transfer: nothing of the previous episode's carries over (a transfer being sent to a
  // rejoiner goes on: it holds that episode's state)
  if (!joining_ && tin_.expecting()) tin_.reset();
  resyncFrom_ = 1;
  holdOwnInputs_ = false;
  loadPending_ = kNoFrame;
  transferBots_.clear();
  started_ep_ = false;
  readyWaitMs_ = -1;
  writer_.clear();
  finishPlan(Status::Run);
  return "";
}

// ------------------------------------------------------------------------------------- reading

Frame SyncEngine::verifiedFrame() const {
  // Until state sync begins the new episode (its first snapshot) it still holds the previous
  // episode's verified frame, which is not a frame of this one.
  if (stateSync_.episode() != episode_) return kNoFrame;
  const uint32_t v = stateSync_.verifiedFrame();
  return v == 0 ? kNoFrame : episodeStart_ + v;
}

size_t SyncEngine::actionLog(Frame from, Frame to, std::vector<uint8_t>& out, bool confirmedOnly) const {
  out.clear();
  size_t n = 0;
  for (Frame f = from; f <= to; ++f) {
    if (confirmedOnly && f > confirmed_) break;
    const FrameRecord& r = record(f);
    if (r.frame != f) break;
    out.insert(out.end(), r.actions.begin(), r.actions.begin() + numActors_);
    ++n;
  }
  return n;
}

size_t SyncEngine::memoryBytes() const {
  return sizeof(*this) + inputs_.size() * static_cast<size_t>(cfg_.bufferFrames) * sizeof(InputBuffer::Slot) +
         records_.size() * sizeof(FrameRecord) + snapshots_.capacityBytes() + plan_.size() + rx_.size() +
         out_.capacity() + reply_.capacity() + static_cast<size_t>(cfg_.maxEvents) * kEventBytesPerEvent + rows_.capacity() +
         transferBytes();
}

size_t SyncEngine::transferBytes() const {
  size_t n = tin_.bytes() + ownStash_.capacity() * sizeof(OwnInput) + transferBots_.capacity() + attachment_.capacity();
  for (const TransferOut& t : touts_) n += t.bytes();
  return n;
}

}  // namespace p2psync
