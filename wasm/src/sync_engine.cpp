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
constexpr uint32_t kEpisodeGap = 64;
constexpr const char* kVersion = "0.1.0";

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

std::string hexDigest(uint64_t h) {
  char hex[17];
  digestToHex(h, hex);
  return std::string(hex, 16);
}

StateSyncConfig stateSyncConfig(const EngineConfig& c) {
  StateSyncConfig s;
  s.numPlayers = c.numPlayers;
  s.localPlayer = c.localPlayerIndex;
  s.hashInterval = static_cast<uint32_t>(c.effectiveHashInterval());
  s.hashHistory = static_cast<uint32_t>(c.hashHistory);
  s.gameId = c.gameId;
  s.playerIds = c.playerIds;
  return s;
}
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
      ringMask_(static_cast<uint32_t>(cfg.bufferFrames - 1)),
      replayCap_(cfg.bufferFrames),
      inputs_(static_cast<size_t>(cfg.numPlayers), InputBuffer(cfg.bufferFrames)),
      records_(static_cast<size_t>(cfg.bufferFrames)),
      snapshots_(cfg.snapshotBytes, cfg.snapshotSlots),
      timeSync_(cfg.numPlayers, cfg.timeSyncWindow, cfg.timeSyncThreshold, cfg.timeSyncMinSpacing),
      health_(cfg.numPlayers, cfg.localPlayerIndex, healthConfig(cfg), static_cast<size_t>(cfg.maxEvents)),
      metrics_(static_cast<size_t>(cfg.maxEvents)),
      stateSync_(stateSyncConfig(cfg)),
      events_(static_cast<size_t>(cfg.maxEvents)),
      out_(64 * 1024),
      reply_(16 * 1024),
      rx_(kMaxPacketBytes),
      msg_(std::make_unique<Message>()),
      scratchMsg_(std::make_unique<Message>()),
      lastRequestMs_(static_cast<size_t>(cfg.numPlayers), -1e18),
      budget_(static_cast<size_t>(cfg.numPlayers), 0),
      oneWay_(static_cast<size_t>(cfg.numPlayers), 0.0),
      lastHeader_(static_cast<size_t>(cfg.numPlayers), -1),
      testHashes_(cfg.syncTestDistance > 0 ? static_cast<size_t>(cfg.bufferFrames) : 0) {
  plan_.assign(kPlanWords * 4 + 16 + static_cast<size_t>(replayCap_) * static_cast<size_t>(numActors_) +
                   static_cast<size_t>(replayCap_) + 16,
               0);
  resetEpisode(-1);
}

// ------------------------------------------------------------------------------------- helpers

uint32_t SyncEngine::windowLo() const {
  // The oldest frame still needed: replays start at a snapshot at or before the confirmed frame.
  int64_t lo = std::min<int64_t>(confirmed_ + 1, cur_) - 2 * cfg_.snapshotInterval - cfg_.syncTestDistance - 2;
  if (lo < static_cast<int64_t>(episodeStart_)) lo = episodeStart_;
  return static_cast<uint32_t>(lo);
}

bool SyncEngine::isSnapshotFrame(uint32_t f) const {
  if (cfg_.syncTestDistance > 0) return true;
  uint32_t ef = f - episodeStart_;
  return ef % static_cast<uint32_t>(cfg_.snapshotInterval) == 0 ||
         ef % static_cast<uint32_t>(cfg_.effectiveHashInterval()) == 0;
}

void SyncEngine::fillActions(uint32_t f, FrameRecord& r, const uint8_t* bots) {
  r.frame = f;
  r.valid = true;
  r.predictedMask = 0;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    uint8_t a;
    if (inputs_[static_cast<size_t>(p)].get(f, a)) {
      r.actions[static_cast<size_t>(p)] = a;
    } else {
      r.actions[static_cast<size_t>(p)] = inputs_[static_cast<size_t>(p)].predict(f, cfg_.predictionMethod, cfg_.defaultAction);
      r.predictedMask = static_cast<uint16_t>(r.predictedMask | (1u << p));
    }
  }
  if (bots)
    for (int b = 0; b < cfg_.numBots; ++b) r.actions[static_cast<size_t>(cfg_.numPlayers + b)] = bots[b];
}

void SyncEngine::recomputeConfirmed() {
  int64_t c = static_cast<int64_t>(cur_) - 1;
  for (const InputBuffer& b : inputs_) c = std::min(c, b.knownUpTo());
  if (pendingRollback_ >= 0) c = std::min(c, pendingRollback_ - 1);
  if (c > confirmed_) confirmed_ = c;
}

bool SyncEngine::p2pUsableAny() const {
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_ && health_.p2pUsable(p)) return true;
  return false;
}

void SyncEngine::emitPacket(Outbox& box, Path path, int to, const Message& m) {
  size_t n = encode(m, scratch_.data(), scratch_.size());
  if (n) {
    box.packet(path, to, scratch_.data(), n);
    metrics_.packetSent(path);
  }
}

void SyncEngine::flushEvents() {
  for (const std::string& e : events_.pending()) out_.event(e);
  events_.clear();
}

void SyncEngine::feedConfirmedActions() {
  // State sync keeps per-actor action counts of confirmed frames (for the relay message).
  // Not before state sync has begun this episode (the first snapshot, after the first advance):
  // beginEpisode() resets its counts, so frames fed earlier would be lost and every later
  // frame refused (when the peer's first inputs arrive before the first advance).
  if (!stateSync_.episodeBegun() || stateSync_.episode() != episode_) return;
  while (countedUpTo_ < confirmed_) {
    uint32_t f = static_cast<uint32_t>(countedUpTo_ + 1);
    const FrameRecord& r = record(f);
    if (r.valid && r.frame == f) stateSync_.onConfirmedActions(f - episodeStart_, r.actions.data(), static_cast<size_t>(numActors_));
    countedUpTo_ = f;
  }
}

// ------------------------------------------------------------------------------------- advance

Status SyncEngine::advance(double nowMs, uint8_t localAction, double bufferedAmount) {
  out_.clear();
  lastNowMs_ = nowMs;
  std::fill(budget_.begin(), budget_.end(), 0);
  int32_t* H = reinterpret_cast<int32_t*>(plan_.data());
  const uint8_t* bots = botInput();

  health_.update(nowMs, cur_, events_);
  for (int p = 0; p < cfg_.numPlayers; ++p) oneWay_[static_cast<size_t>(p)] = p == local_ ? 0.0 : health_.latencyMs(p);

  // ---- rollback: the earliest misprediction, or the forced one of sync-test mode
  int64_t target = pendingRollback_;
  bool forced = false;
  if (cfg_.syncTestDistance > 0 && cur_ >= episodeStart_ + static_cast<uint32_t>(cfg_.syncTestDistance)) {
    int64_t t = static_cast<int64_t>(cur_) - cfg_.syncTestDistance;
    if (target < 0 || t < target) { target = t; forced = true; }
  }
  H[kRollback] = 0;
  H[kReplayCount] = 0;
  if (target >= 0 && target < static_cast<int64_t>(cur_)) {
    const SnapshotStore::Entry* snap = snapshots_.latestAtOrBefore(static_cast<uint32_t>(target));
    if (!snap || snap->frame < episodeStart_ || cur_ - snap->frame > static_cast<uint32_t>(replayCap_)) {
      // Cannot roll back: keep the misprediction pending so the confirmed frame never passes it
      // (the session then stalls instead of confirming inputs it did not simulate).
      ++snapshotMisses_;
      if (target != lastMissingTarget_) {
        lastMissingTarget_ = target;
        events_.push(json{{"type", "error"}, {"reason", "snapshot-missing"}, {"frame", target}, {"currentFrame", cur_}, {"timeMs", nowMs}});
      }
    } else {
      uint32_t S = snap->frame;
      uint32_t count = cur_ - S;
      uint8_t* replay = plan_.data() + replayActionsOffset();
      uint8_t* resnap = plan_.data() + resnapOffset();
      for (uint32_t i = 0; i < count; ++i) {
        uint32_t f = S + i;
        FrameRecord& r = record(f);
        // Bots' recorded actions are reused; players' inputs are the best known now.
        std::array<uint8_t, kMaxActors> bot{};
        std::memcpy(bot.data(), r.actions.data() + cfg_.numPlayers, static_cast<size_t>(cfg_.numBots));
        fillActions(f, r, bot.data());
        std::memcpy(replay + static_cast<size_t>(i) * static_cast<size_t>(numActors_), r.actions.data(), static_cast<size_t>(numActors_));
        resnap[i] = (f > static_cast<uint32_t>(target) && isSnapshotFrame(f)) ? 1 : 0;
      }
      snapshots_.invalidateAfter(static_cast<uint32_t>(target));
      stateSync_.onRollback(static_cast<uint32_t>(target) - episodeStart_);
      H[kRollback] = 1;
      H[kRollbackTarget] = static_cast<int32_t>(target);
      H[kLoadFrame] = static_cast<int32_t>(S);
      H[kReplayCount] = static_cast<int32_t>(count);
      if (pendingRollback_ >= 0) {
        // A real misprediction (in sync-test mode possibly inside a deeper forced rollback).
        uint32_t depth = cur_ - static_cast<uint32_t>(pendingRollback_);
        metrics_.rollback(static_cast<uint32_t>(pendingRollback_), cur_, depth, firstMiss_.player, firstMiss_.predicted,
                          firstMiss_.actual, nowMs, &events_);
        // Sync-test: first-run hashes after it were built on mispredicted inputs; the replay
        // re-records them.
        for (TestHash& t : testHashes_)
          if (t.valid && t.frame > static_cast<uint32_t>(pendingRollback_)) t.valid = false;
      }
      if (localEndFrame_ >= target) localEndFrame_ = -1;  // the env re-evaluates done in the replay
      pendingRollback_ = -1;
      firstMiss_ = Misprediction{};
      lastMissingTarget_ = -1;
    }
    (void)forced;
  }
  recomputeConfirmed();

  // ---- this frame
  const int limit = cfg_.predictionLimit();
  Status status = Status::Run;
  bool ended = localEndFrame_ >= 0 || (stateSync_.episodeEndSynced() && cur_ > episodeStart_ + stateSync_.syncedEndFrame());
  bool readyGate = !stateSync_.allReady() && cur_ > episodeStart_ + static_cast<uint32_t>(limit) / 2;
  if (ended) {
    status = Status::Ended;
  } else if (static_cast<int64_t>(cur_) - confirmed_ > limit || readyGate) {
    status = Status::Stall;
    metrics_.stall();
    if (!stalled_)
      events_.push(json{{"type", "stall"}, {"frame", cur_}, {"confirmedFrame", confirmed_},
                        {"reason", readyGate ? "waiting-ready" : "prediction-limit"}, {"timeMs", nowMs}});
  } else if (cfg_.timeSync && cfg_.syncTestDistance == 0 &&
             timeSync_.update(nowMs, cur_ + static_cast<uint32_t>(cfg_.inputDelay), oneWay_, local_)) {
    status = Status::Wait;
    metrics_.wait();
  }

  if (stalled_ && status != Status::Stall)
    events_.push(json{{"type", "stallEnd"}, {"frame", cur_}, {"confirmedFrame", confirmed_}, {"timeMs", nowMs}});
  stalled_ = status == Status::Stall;

  bool newInput = false;
  H[kSaveSnapshot] = 0;
  H[kPredictedMask] = 0;
  H[kFrame] = static_cast<int32_t>(cur_);
  if (status == Status::Run) {
    uint32_t target_ = cur_ + static_cast<uint32_t>(cfg_.inputDelay);
    double lag;
    InputBuffer& mine = inputs_[static_cast<size_t>(local_)];
    if (!mine.known(target_)) {
      mine.insert(target_, localAction, Path::P2P, nowMs, windowLo(), lag);
      newInput = true;
    }
    FrameRecord& r = record(cur_);
    fillActions(cur_, r, bots);
    std::memcpy(plan_.data() + curActionsOffset(), r.actions.data(), static_cast<size_t>(numActors_));
    H[kPredictedMask] = r.predictedMask;
    H[kSaveSnapshot] = isSnapshotFrame(cur_) ? 1 : 0;
    ++cur_;
    recomputeConfirmed();
  }

  sendInputs(nowMs, bufferedAmount, newInput);
  requestGaps(nowMs);

  if (health_.pingDue(nowMs)) {
    Message m;
    m.type = MsgType::Ping;
    m.timestamp = nowMs;
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (p != local_ && health_.channelOpen(p)) emitPacket(out_, Path::P2P, p, m);
  }

  // ---- state sync: hashes of confirmed frames, episode end/ready
  feedConfirmedActions();
  if (localEndFrame_ >= 0 && confirmed_ >= localEndFrame_ && !localEndSent_) {
    stateSync_.localEpisodeEnd(static_cast<uint32_t>(localEndFrame_) - episodeStart_, nowMs);
    localEndSent_ = true;
  }
  // State sync takes one P2P flag for all peers: use P2P only when every remote peer is reachable
  // by it. With "any", END / READY addressed to a peer whose channel is closed would go into that
  // channel forever (3+ players); the relay carries them (and p2p_state_sync) to everyone.
  bool p2pAll = true;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_ && !health_.p2pUsable(p)) p2pAll = false;
  const size_t syncFrom = out_.size();
  stateSync_.update(confirmed_ - static_cast<int64_t>(episodeStart_), cur_ - episodeStart_, p2pAll, nowMs, out_, events_);
  // State sync writes its packets (STATE_HASH, END, READY) and p2p_state_sync messages straight
  // into the outbox: count them as sent like every other packet (a P2P broadcast once per open channel).
  for (size_t off = syncFrom; off + 8 <= out_.size();) {
    const uint8_t* rec = out_.data() + off;
    uint32_t len;
    std::memcpy(&len, rec + 4, 4);
    const Path path = static_cast<Path>(rec[1]);
    if (static_cast<OutKind>(rec[0]) == OutKind::RelayJson) {
      metrics_.packetSent(Path::Relay);
    } else if (static_cast<OutKind>(rec[0]) == OutKind::Packet) {
      if (path == Path::P2P && static_cast<int8_t>(rec[2]) < 0) {
        for (int p = 0; p < cfg_.numPlayers; ++p)
          if (p != local_ && health_.channelOpen(p)) metrics_.packetSent(Path::P2P);
      } else {
        metrics_.packetSent(path);
      }
    }
    off += 8 + ((static_cast<size_t>(len) + 3) & ~size_t(3));
  }
  // (stateSync_ still holds the previous episode's synced END until the first snapshot of this one)
  if (!endEventEmitted_ && stateSync_.episode() == episode_ && stateSync_.episodeEndSynced() &&
      confirmed_ >= static_cast<int64_t>(episodeStart_ + stateSync_.syncedEndFrame())) {
    endEventEmitted_ = true;
    uint32_t endRel = stateSync_.syncedEndFrame();
    episodeSummaries_.push_back(json{{"episode", episode_}, {"frame", endRel}, {"startFrame", episodeStart_}});
    if (episodeSummaries_.size() > 256) episodeSummaries_.erase(episodeSummaries_.begin());
    events_.push(json{{"type", "episodeEnd"}, {"episode", episode_}, {"frame", episodeStart_ + endRel},
                      {"episodeFrame", endRel}, {"timeMs", nowMs}});
  }

  flushEvents();
  H[kStatus] = static_cast<int32_t>(status);
  H[kEpisodeFrame] = static_cast<int32_t>(static_cast<uint32_t>(H[kFrame]) - episodeStart_);
  H[kConfirmedFrame] = static_cast<int32_t>(confirmed_);
  H[kVerifiedFrame] = static_cast<int32_t>(verifiedFrame());
  H[kOutBytes] = static_cast<int32_t>(out_.size());
  H[kOutCount] = static_cast<int32_t>(out_.count());
  H[kEpisode] = static_cast<int32_t>(episode_);
  H[kNumActors] = numActors_;
  H[kEpisodeStart] = static_cast<int32_t>(episodeStart_);
  return status;
}

void SyncEngine::sendInputs(double nowMs, double bufferedAmount, bool newInput) {
  const InputBuffer& mine = inputs_[static_cast<size_t>(local_)];
  int64_t newest = mine.knownUpTo();
  if (newest < static_cast<int64_t>(episodeStart_)) return;
  Message& m = *msg_;
  m.type = MsgType::Input;
  m.playerIndex = static_cast<uint16_t>(local_);
  m.frame = static_cast<uint32_t>(newest);
  m.flags = 0;
  int64_t first = std::max<int64_t>(newest - cfg_.redundancy + 1, episodeStart_);
  m.count = 0;
  for (int64_t f = first; f <= newest; ++f) {
    uint8_t a;
    if (mine.get(static_cast<uint32_t>(f), a)) m.inputs[m.count++] = FrameAction{static_cast<uint32_t>(f), a};
  }
  if (m.count == 0) return;

  const bool congested = bufferedAmount > cfg_.congestionBytes;
  // New inputs: this frame's, and on the episode's first frame also the inputDelay default inputs
  // the packet carries for the first time (the relay counts those too).
  const bool firstSend = newInput && newest == static_cast<int64_t>(episodeStart_) + cfg_.inputDelay;
  const uint32_t fresh = firstSend ? m.count : newInput ? 1u : 0u;
  bool sentP2P = false;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    if (health_.p2pUsable(p) && !congested) {
      emitPacket(out_, Path::P2P, p, m);
      sentP2P = true;
    }
  }
  // Inputs count once per frame, whatever the number of peers (packets count per peer).
  if (sentP2P) metrics_.inputSent(Path::P2P, fresh, m.count);
  // The relay carries every new input under "dual", and under "p2p-first" whenever some peer
  // cannot be reached by P2P this frame (channel down, fallback, congestion).
  bool relayNeeded = cfg_.sendPolicy == SendPolicy::Dual;
  for (int p = 0; p < cfg_.numPlayers && !relayNeeded; ++p)
    if (p != local_ && (!health_.p2pUsable(p) || congested)) relayNeeded = true;
  if (!relayNeeded) return;
  // Give the relay, in order, every local input it has not carried yet, but at most the
  // redundancy window: older inputs the P2P path lost are filled by INPUT_REQUEST.
  int64_t from = std::max<int64_t>(relaySentUpTo_ + 1, newest - cfg_.redundancy + 1);
  from = std::max<int64_t>(from, episodeStart_);
  uint32_t sent = 0;
  for (int64_t f = from; f <= newest; ++f) {
    uint8_t a;
    if (!mine.get(static_cast<uint32_t>(f), a)) continue;
    std::string j = formatPlayerAction(cfg_.playerIds[static_cast<size_t>(local_)], a, static_cast<uint32_t>(f), nowMs);
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
    const InputBuffer& b = inputs_[static_cast<size_t>(p)];
    int64_t known = b.knownUpTo();
    int64_t header = std::max<int64_t>(b.newestKnown(), lastHeader_[static_cast<size_t>(p)]);
    // Frames that the sender's redundancy will no longer carry must be asked for.
    if (header - known <= cfg_.redundancy) continue;
    double spacing = std::max(100.0, 2.0 * oneWay_[static_cast<size_t>(p)] * 2.0);
    if (nowMs - lastRequestMs_[static_cast<size_t>(p)] < spacing) continue;
    lastRequestMs_[static_cast<size_t>(p)] = nowMs;
    Message m;
    m.type = MsgType::InputRequest;
    m.start = static_cast<uint32_t>(known + 1);
    m.end = static_cast<uint32_t>(std::min<int64_t>(header, known + kMaxRequestFrames));
    Path path = health_.p2pUsable(p) ? Path::P2P : Path::Relay;
    emitPacket(out_, path, p, m);
    metrics_.inputRequestSent();
  }
}

// ------------------------------------------------------------------------------------- receive

void SyncEngine::onRemoteInput(int player, uint32_t frame, uint8_t action, Path via, double nowMs, RxResult& agg) {
  InputBuffer& b = inputs_[static_cast<size_t>(player)];
  if (frame < episodeStart_) {
    if (agg == RxResult::Duplicate || agg == RxResult::Ok) agg = agg == RxResult::Ok ? RxResult::Ok : RxResult::StaleEpisode;
    return;
  }
  if (b.heldBy(frame, action, via)) {  // a redundant copy: what insert() + the Duplicate case do
    metrics_.inputReceived(via, false);
    return;
  }
  double lag;
  InputBuffer::Insert r = b.insert(frame, action, via, nowMs, windowLo(), lag);
  switch (r) {
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
  metrics_.inputMargin(static_cast<int32_t>(static_cast<int64_t>(frame) - static_cast<int64_t>(cur_)));
  if (frame < cur_) {
    FrameRecord& rec = record(frame);
    if (rec.valid && rec.frame == frame) {
      if (rec.actions[static_cast<size_t>(player)] != action) {
        if (pendingRollback_ < 0 || static_cast<int64_t>(frame) < pendingRollback_) {
          pendingRollback_ = frame;
          firstMiss_ = Misprediction{frame, player, rec.actions[static_cast<size_t>(player)], action};
        }
      } else {
        rec.predictedMask = static_cast<uint16_t>(rec.predictedMask & ~(1u << player));
      }
    }
  }
  int64_t before = confirmed_;
  recomputeConfirmed();
  (void)before;
}

void SyncEngine::beginReceive() { reply_.clear(); }

RxResult SyncEngine::endReceive(RxResult r) {
  if (r != RxResult::Ok) metrics_.rejected(r);
  int32_t* H = reinterpret_cast<int32_t*>(plan_.data());
  H[kReplyBytes] = static_cast<int32_t>(reply_.size());
  H[kReplyCount] = static_cast<int32_t>(reply_.count());
  return r;
}

RxResult SyncEngine::receive(const uint8_t* data, size_t len, int fromPeer, Path via, double nowMs) {
  beginReceive();
  RxResult r;
  if (fromPeer < 0 || fromPeer >= cfg_.numPlayers || fromPeer == local_) {
    r = RxResult::UnknownPlayer;
  } else if (++budget_[static_cast<size_t>(fromPeer)] > static_cast<uint32_t>(cfg_.maxPacketsPerPeerPerFrame)) {
    r = RxResult::Flood;
  } else if (len > kMaxPacketBytes) {
    r = RxResult::Oversized;
  } else {
    DecodeError e = decode(data, len, *msg_);
    if (e != DecodeError::Ok) {
      r = fromDecodeError(e);
    } else {
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
      if (static_cast<uint64_t>(m.frame) >= static_cast<uint64_t>(windowLo()) + static_cast<uint64_t>(cfg_.bufferFrames))
        return RxResult::OutOfWindow;
      health_.onPacket(fromPeer, nowMs);
      health_.onInputHeader(fromPeer, m.frame);
      if (m.frame >= episodeStart_) {
        timeSync_.onHeader(fromPeer, m.frame, nowMs);
        lastHeader_[static_cast<size_t>(fromPeer)] = std::max<int64_t>(lastHeader_[static_cast<size_t>(fromPeer)], m.frame);
      }
      RxResult agg = RxResult::Duplicate;
      for (uint16_t i = 0; i < m.count; ++i) onRemoteInput(fromPeer, m.inputs[i].frame, m.inputs[i].action, via, nowMs, agg);
      return agg;
    }
    case MsgType::InputResponse: {
      if (m.playerIndex >= cfg_.numPlayers) return RxResult::UnknownPlayer;
      if (m.playerIndex != fromPeer) return RxResult::SpoofedPlayer;
      health_.onPacket(fromPeer, nowMs);
      RxResult agg = RxResult::Duplicate;
      int64_t before = inputs_[static_cast<size_t>(fromPeer)].knownUpTo();
      for (uint16_t i = 0; i < m.count; ++i) onRemoteInput(fromPeer, m.inputs[i].frame, m.inputs[i].action, via, nowMs, agg);
      int64_t after = inputs_[static_cast<size_t>(fromPeer)].knownUpTo();
      if (after > before) metrics_.gapFilled(static_cast<uint32_t>(after - before));
      return agg;
    }
    case MsgType::InputRequest: {
      health_.onPacket(fromPeer, nowMs);
      const InputBuffer& mine = inputs_[static_cast<size_t>(local_)];
      Message& r = *scratchMsg_;
      r.type = MsgType::InputResponse;
      r.playerIndex = static_cast<uint16_t>(local_);
      r.count = 0;
      for (uint32_t f = m.start; r.count < kMaxResponseInputs; ++f) {
        uint8_t a;
        if (mine.get(f, a)) r.inputs[r.count++] = FrameAction{f, a};
        if (f == m.end) break;
      }
      if (r.count == 0) return RxResult::OutOfWindow;
      emitPacket(reply_, via, fromPeer, r);
      metrics_.inputResponseSent();
      return RxResult::Ok;
    }
    case MsgType::Ping: {
      health_.onPacket(fromPeer, nowMs);
      Message r;
      r.type = MsgType::Pong;
      r.timestamp = m.timestamp;
      emitPacket(reply_, via, fromPeer, r);
      return RxResult::Ok;
    }
    case MsgType::Pong: {
      RxResult r = health_.onPong(fromPeer, m.timestamp, nowMs);
      if (r == RxResult::Ok) health_.onPacket(fromPeer, nowMs);
      return r;
    }
    case MsgType::Keepalive:
      health_.onPacket(fromPeer, nowMs);
      return RxResult::Ok;
    case MsgType::FocusState:
      health_.onPacket(fromPeer, nowMs);
      events_.push(json{{"type", "focus"}, {"peer", fromPeer}, {"focused", m.focused != 0}, {"frame", m.frame}, {"timeMs", nowMs}});
      return RxResult::Ok;
    case MsgType::StateHash: {
      health_.onPacket(fromPeer, nowMs);
      if (m.frame == 0) return RxResult::BadValue;
      return stateSync_.onRemoteHash(fromPeer, m.frame, m.digest, nullptr, cur_ - episodeStart_,
                                     static_cast<uint32_t>(cfg_.bufferFrames), nowMs);
    }
    case MsgType::EpisodeEnd:
      health_.onPacket(fromPeer, nowMs);
      return stateSync_.onEpisodeEnd(fromPeer, m.frame, m.episode, nowMs);
    case MsgType::EpisodeReady:
      health_.onPacket(fromPeer, nowMs);
      return stateSync_.onEpisodeReady(fromPeer, m.episode, m.digest, nowMs);
  }
  return RxResult::UnknownType;
}

RxResult SyncEngine::receiveRelayInput(int playerIndex, uint32_t frame, int action, double nowMs, int fromPeer) {
  beginReceive();
  return endReceive(relayInput(playerIndex, frame, action, nowMs, fromPeer));
}

RxResult SyncEngine::relayInput(int playerIndex, uint32_t frame, int action, double nowMs, int fromPeer) {
  RxResult r;
  if (playerIndex < 0 || playerIndex >= cfg_.numPlayers || playerIndex == local_) {
    r = RxResult::UnknownPlayer;
  } else if (fromPeer >= 0 && fromPeer != playerIndex) {
    r = RxResult::SpoofedPlayer;
  } else if (action < 0 || action > 255) {
    r = RxResult::BadValue;
  } else if (++budget_[static_cast<size_t>(playerIndex)] > static_cast<uint32_t>(cfg_.maxPacketsPerPeerPerFrame) * 4) {
    r = RxResult::Flood;
  } else {
    metrics_.packetReceived(Path::Relay);
    health_.onPacket(playerIndex, nowMs);
    r = RxResult::Duplicate;
    if (static_cast<uint64_t>(frame) >= static_cast<uint64_t>(windowLo()) + static_cast<uint64_t>(cfg_.bufferFrames)) {
      r = RxResult::OutOfWindow;
    } else {
      if (frame >= episodeStart_)
        lastHeader_[static_cast<size_t>(playerIndex)] = std::max<int64_t>(lastHeader_[static_cast<size_t>(playerIndex)], frame);
      onRemoteInput(playerIndex, frame, static_cast<uint8_t>(action), Path::Relay, nowMs, r);
    }
  }
  return r;
}

RxResult SyncEngine::receiveRelayJson(RelayEvent event, const char* text, size_t len, int fromPeer, double nowMs) {
  beginReceive();
  RxResult r = RxResult::BadRelayJson;
  if (event == RelayEvent::PlayerAction) {
    PlayerActionMsg pa;
    r = parsePlayerAction(text, len, pa);
    if (r == RxResult::Ok) {
      int idx = -1;
      for (int p = 0; p < cfg_.numPlayers; ++p)
        if (cfg_.playerIds[static_cast<size_t>(p)] == pa.playerId) idx = p;
      // The payload's "from" never overrides the sender the caller knows (fromPeer).
      int from = pa.from >= 0 ? pa.from : fromPeer;
      if (fromPeer >= 0 && from != fromPeer) r = RxResult::SpoofedPlayer;
      else r = idx < 0 ? RxResult::UnknownPlayer : relayInput(idx, pa.frame, pa.action, nowMs, from);
    }
  } else if (event == RelayEvent::StateSync) {
    StateSyncMsg ss;
    r = parseStateSync(text, len, ss);
    if (r == RxResult::Ok) {
      int idx = -1;
      for (int p = 0; p < cfg_.numPlayers; ++p)
        if (cfg_.playerIds[static_cast<size_t>(p)] == ss.senderId) idx = p;
      int from = ss.from >= 0 ? ss.from : fromPeer;
      if (fromPeer >= 0 && from != fromPeer) r = RxResult::SpoofedPlayer;
      else if (idx < 0 || idx == local_) r = RxResult::UnknownPlayer;
      else if (from >= 0 && from != idx) r = RxResult::SpoofedPlayer;
      else if (ss.gameId != cfg_.gameId) r = RxResult::BadValue;
      else {
        metrics_.packetReceived(Path::Relay);
        health_.onPacket(idx, nowMs);
        r = stateSync_.onRemoteHash(idx, ss.frame, ss.hash, &ss.counts, cur_ - episodeStart_,
                                    static_cast<uint32_t>(cfg_.bufferFrames), nowMs);
      }
    }
  }
  return endReceive(r);
}

// ------------------------------------------------------------------------------------- snapshots

uint64_t SyncEngine::hashState(const uint8_t* data, size_t len) const {
  if (cfg_.canonicalizeDigits > 0) {
    uint64_t h;
    if (canonicalHash(reinterpret_cast<const char*>(data), len, cfg_.canonicalizeDigits, h)) return h;
  }
  return hashBytes(data, len);
}

bool SyncEngine::saveSnapshot(uint32_t frame, const uint8_t* data, size_t len) {
  if (frame < episodeStart_ || frame > cur_) return false;
  uint64_t h = hashState(data, len);
  const SnapshotStore::Entry* e = snapshots_.save(frame, data, len, h);
  if (!e) {
    events_.push(json{{"type", "error"}, {"reason", "snapshot-too-large"}, {"frame", frame}, {"bytes", len}});
    return false;
  }
  // The first snapshot of each episode begins it in state sync (READY, per-episode hash/END state).
  if (frame == episodeStart_ && (!stateSync_.episodeBegun() || stateSync_.episode() != episode_))
    stateSync_.beginEpisode(episode_, h, lastNowMs_);
  if (frame > episodeStart_) stateSync_.onLocalHash(frame - episodeStart_, h);
  if (cfg_.syncTestDistance > 0) {
    TestHash& t = testHashes_[frame & ringMask_];
    if (!t.valid || t.frame != frame) {
      t = TestHash{frame, h, true};
    } else if (t.hash != h && !nondeterminismReported_) {
      nondeterminismReported_ = true;
      json ev{{"type", "nondeterminism"}, {"frame", frame}, {"firstHash", hexDigest(t.hash)}, {"replayHash", hexDigest(h)},
              {"episodeFrame", frame - episodeStart_},
              {"checkDistance", cfg_.syncTestDistance}, {"detectedAtFrame", cur_}};
      nondeterminism_.push_back(ev);
      events_.push(ev);
    }
  }
  return true;
}

// ------------------------------------------------------------------------------------- connection

void SyncEngine::onChannelOpen(int peer, double nowMs) {
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onChannelOpen(peer, nowMs);
}
void SyncEngine::onChannelClosed(int peer, double nowMs) {
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onChannelClosed(peer, nowMs, cur_, &events_);
}
void SyncEngine::onConnectionFailed(int peer, double nowMs) {
  if (peer >= 0 && peer < cfg_.numPlayers && peer != local_) health_.onConnectionFailed(peer, nowMs, cur_, &events_);
}
bool SyncEngine::setConnectionType(const std::string& type) { return metrics_.setConnectionType(type); }

// ------------------------------------------------------------------------------------- episodes

void SyncEngine::endEpisode(uint32_t frame, double nowMs) {
  (void)nowMs;
  if (frame < episodeStart_ || frame >= cur_) return;
  if (localEndFrame_ < 0 || frame < localEndFrame_) localEndFrame_ = frame;
}

std::string SyncEngine::resetEpisode(int inputDelay) {
  if (inputDelay >= 0) {
    if (inputDelay > 30 || inputDelay + 16 > cfg_.bufferFrames / 2) return "inputDelay out of range";
  }
  const bool first = !started_;
  if (!first) {
    if (!endEventEmitted_) return "the episode end is not synced yet (wait for the episodeEnd event)";
    const uint32_t next = episodeStart_ + stateSync_.syncedEndFrame() + 1 + kEpisodeGap;
    // A peer's END earlier than frames this engine has already confirmed (a lying or desynced
    // peer: the synced end is the minimum of every END) would start the next episode inside
    // them: frame numbers reused, stale inputs taken for new ones, the confirmed frame going
    // back. Refuse: such a session cannot continue consistently.
    if (static_cast<int64_t>(next) <= confirmed_)
      return "the synced episode end is before frames already confirmed (a peer sent an inconsistent EPISODE_END)";
    episodeStart_ = next;
    ++episode_;
    metrics_.beginEpisode();
  }
  started_ = true;
  if (inputDelay >= 0) cfg_.inputDelay = inputDelay;
  cur_ = episodeStart_;
  confirmed_ = static_cast<int64_t>(episodeStart_) - 1;
  countedUpTo_ = confirmed_;
  pendingRollback_ = -1;
  firstMiss_ = Misprediction{};
  localEndFrame_ = -1;
  localEndSent_ = false;
  endEventEmitted_ = false;
  relaySentUpTo_ = -1;
  for (auto& h : lastHeader_) h = -1;
  for (InputBuffer& b : inputs_) b.reset(episodeStart_);
  for (FrameRecord& r : records_) r.valid = false;
  snapshots_.clear();
  timeSync_.reset();
  for (TestHash& t : testHashes_) t.valid = false;
  nondeterminismReported_ = false;
  // The local inputs of the first inputDelay frames are the default action.
  double lag;
  for (int i = 0; i < cfg_.inputDelay; ++i)
    inputs_[static_cast<size_t>(local_)].insert(episodeStart_ + static_cast<uint32_t>(i), cfg_.defaultAction, Path::P2P, 0,
                                                 episodeStart_, lag);
  return "";
}

// ------------------------------------------------------------------------------------- reading

int64_t SyncEngine::verifiedFrame() const {
  // Until state sync begins the new episode (its first snapshot) it still holds the previous
  // episode's verified frame, which is not a frame of this one.
  if (stateSync_.episode() != episode_) return -1;
  uint32_t v = stateSync_.verifiedFrame();
  return v == 0 ? -1 : static_cast<int64_t>(episodeStart_ + v);
}

size_t SyncEngine::actionLog(uint32_t from, uint32_t to, std::vector<uint8_t>& out, bool confirmedOnly) const {
  out.clear();
  size_t n = 0;
  for (uint64_t f = from; f <= to; ++f) {
    if (confirmedOnly && static_cast<int64_t>(f) > confirmed_) break;
    const FrameRecord& r = record(static_cast<uint32_t>(f));
    if (!r.valid || r.frame != f) break;
    out.insert(out.end(), r.actions.begin(), r.actions.begin() + numActors_);
    ++n;
  }
  return n;
}

nlohmann::json SyncEngine::p2pMetrics() const {
  return metrics_.p2pMetricsJson(health_.fallbackTriggered(), health_.fallbackFrame());
}

nlohmann::json SyncEngine::exportSessionMetrics() const {
  json m = metrics_.toJson();
  json h = health_.toJson();
  json s = stateSync_.toJson();
  s["nondeterminism"] = nondeterminism_;
  json j;
  j["schemaVersion"] = 1;
  j["engine"] = json{{"version", kVersion}, {"numPlayers", cfg_.numPlayers}, {"localPlayerIndex", local_},
                     {"numBots", cfg_.numBots}, {"config", cfg_.toJson()}};
  j["session"] = json{{"episode", episode_}, {"frame", cur_}, {"episodeStart", episodeStart_},
                      {"confirmedFrame", confirmed_}, {"verifiedFrame", verifiedFrame()},
                      {"snapshotMisses", snapshotMisses_}, {"memoryBytes", memoryBytes()}};
  j["p2pMetrics"] = p2pMetrics();
  j["inputs"] = m["inputs"];
  j["rollbacks"] = m["rollbacks"];
  j["sync"] = s;
  j["quality"] = json{{"stalls", m["stalls"]}, {"waits", m["waits"]}, {"connectionType", m["connectionType"]},
                      {"fallback", h["fallback"]}, {"peers", h["peers"]}};
  j["rejected"] = m["rejected"];
  j["events"] = json{{"dropped", events_.dropped() + out_.dropped()}};
  j["episodes"] = episodeSummaries_;
  return j;
}

std::string SyncEngine::episodeSummary(const std::string& rewardsJson) const {
  uint32_t endFrame = stateSync_.episodeEndSynced() ? stateSync_.syncedEndFrame() : cur_ - episodeStart_;
  return metrics_.episodeSummary(endFrame, rewardsJson, static_cast<uint32_t>(cfg_.bufferFrames),
                                 static_cast<uint32_t>(stateSync_.hashesSentCount()), health_.fallbackTriggered(), health_.fallbackFrame());
}

size_t SyncEngine::memoryBytes() const {
  return sizeof(*this) + inputs_.size() * static_cast<size_t>(cfg_.bufferFrames) * sizeof(InputBuffer::Slot) +
         records_.size() * sizeof(FrameRecord) + snapshots_.capacityBytes() + plan_.size() + rx_.size() + 80 * 1024;
}

}  // namespace p2psync
