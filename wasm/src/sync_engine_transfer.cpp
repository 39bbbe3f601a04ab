// SyncEngine, its state-transfer part (state_transfer.hpp has the blob and the chunking):
//
// Rejoin. A reloaded page's engine (config rejoin) starts JOINING: it sends STATE_REQUEST
// (reason rejoin, source = the peer asked for its state: the lowest index first, the next one
// after 3 s without a chunk) to every peer. Every peer answers with what it knows of the
// rejoiner's own inputs (INPUT_RESPONSE for the rejoiner's index: the rejoiner must not choose
// other inputs for frames a peer already has) and records a `rejoin` event; the source builds
// the transfer from its newest confirmed snapshot and sends it. The rejoiner loads it: the same
// episode and frame numbering, the snapshot as frame S's state (the next plan Loads it), every
// input known after S, and catches up. It chooses no new local input until every peer's copy of
// its old ones is in (or 1.5 s passed).
//
// Resync (desyncPolicy "resync"). After a desync at hash frame H, every peer, once it has every
// player's hash of H, computes the same rule: the largest group of equal hashes wins, a tie goes
// to the group with the lowest player index; its lowest index is the source. The others request
// the source's state of H (reason resync), load it and replay from it; the re-simulated frames'
// research rows are handed out again.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "sync_engine.hpp"

namespace p2psync {

namespace {
double num(Frame f) { return static_cast<double>(f); }
constexpr double kRequestResendMs = 1000;   // STATE_REQUEST again while no chunk came
constexpr double kSourceTimeoutMs = 3000;   // no chunk from this source: ask the next one
constexpr double kTransferStallMs = 5000;   // a started transfer that stopped: ask again
constexpr double kServeTimeoutMs = 10000;   // a transfer whose receiver went silent is dropped
constexpr double kOwnInputsWaitMs = 1500;   // how long a rejoiner waits for its old inputs
constexpr double kRebuildSpacingMs = 1000;  // at most one transfer built per peer per second
}  // namespace

int SyncEngine::nextSource(int after) const {
  for (int k = 1; k <= cfg_.numPlayers; ++k) {
    const int p = (after + k + cfg_.numPlayers) % cfg_.numPlayers;
    if (p != local_) return p;
  }
  return -1;
}

void SyncEngine::requestState(int source, uint8_t reason, uint32_t frame, double nowMs, Outbox& box) {
  if (source < 0 || source >= cfg_.numPlayers || source == local_) return;
  ++transferSeq_;
  const uint32_t id = (static_cast<uint32_t>(local_ + 1) << 24) | (transferSeq_ & 0xFFFFFFu);
  tin_.expect(id, source, nowMs);
  tinReason_ = reason;
  tinFrame_ = frame;
  tinAcked_ = 0;
  tinRequestMs_ = -1e18;
  sendStateRequest(nowMs, box);
}

void SyncEngine::sendStateRequest(double nowMs, Outbox& box) {
  tinRequestMs_ = nowMs;
  Message m;
  m.type = MsgType::StateRequest;
  m.transferId = tin_.id();
  m.reason = tinReason_;
  m.source = static_cast<uint8_t>(tin_.source());
  m.episode = tinReason_ == kTransferResync ? episode_ : 0;
  m.frame = tinReason_ == kTransferResync ? tinFrame_ : 0;
  // A rejoin tells every peer (each sends back the rejoiner's old inputs); a resync asks the source.
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_ || (tinReason_ == kTransferResync && p != tin_.source())) continue;
    emitPacket(box, health_.p2pUsable(p) ? Path::P2P : Path::Relay, p, m);
  }
}

void SyncEngine::sendStateAck(uint8_t status, double nowMs, Outbox& box) {
  if (!tin_.expecting()) return;
  tinAckMs_ = nowMs;
  tinAcked_ = tin_.firstMissing();
  Message m;
  m.type = MsgType::StateAck;
  m.transferId = tin_.id();
  m.status = status;
  m.index = tin_.firstMissing();
  m.bitmap = tin_.bitmap();
  const int src = tin_.source();
  emitPacket(box, health_.p2pUsable(src) ? Path::P2P : Path::Relay, src, m);
}

// Once per advance (after the state sync): the transfer this peer waits for, the ones it sends,
// and the resync decision.
void SyncEngine::pumpTransfers(double nowMs) {
  // ---- receiving
  if (joining_ && !tin_.expecting()) requestState(nextSource(-1), kTransferRejoin, 0, nowMs, out_);  // the lowest index first
  if (tin_.expecting()) {
    if (!tin_.started()) {
      if (nowMs - tin_.expectedSinceMs() >= kSourceTimeoutMs) {
        if (joining_) requestState(nextSource(tin_.source()), kTransferRejoin, 0, nowMs, out_);
        else requestState(tin_.source(), tinReason_, tinFrame_, nowMs, out_);  // the rule names one source
      } else if (nowMs - tinRequestMs_ >= kRequestResendMs) {
        sendStateRequest(nowMs, out_);
      }
    } else if (nowMs - tin_.lastChunkMs() >= kTransferStallMs) {
      requestState(joining_ ? nextSource(tin_.source()) : tin_.source(), tinReason_, tinFrame_, nowMs, out_);
    } else if (tin_.firstMissing() != tinAcked_ || nowMs - tinAckMs_ >= 200) {
      sendStateAck(kAckReceiving, nowMs, out_);
    }
  }
  // ---- sending
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (p == local_) continue;
    PendingServe& ps = pendingServe_[static_cast<size_t>(p)];
    if (ps.id != 0 && !buildTransfer(p, nullptr, 0, nowMs) && nowMs - ps.sinceMs >= kServeTimeoutMs) ps = PendingServe{};
    TransferOut& t = touts_[static_cast<size_t>(p)];
    if (!t.active()) continue;
    if (nowMs - t.lastHeardMs() >= kServeTimeoutMs) {
      ++transferErrors_;
      events_.push(Event(EventType::TransferError).num(Field::kPeer, p).text(Field::kReason, "receiver-silent").num(Field::kTimeMs, nowMs));
      t.stop();
      continue;
    }
    const double resendMs = std::max(250.0, 4.0 * (std::isfinite(oneWay_[static_cast<size_t>(p)]) ? oneWay_[static_cast<size_t>(p)] : 100.0));
    const Path path = health_.p2pUsable(p) ? Path::P2P : Path::Relay;
    Message m;
    m.type = MsgType::StateChunk;
    m.transferId = t.id();
    m.total = t.total();
    t.pump(nowMs, resendMs, cfg_.transferChunksPerFrame, [&](uint32_t index, const uint8_t* data, size_t len) {
      m.index = index;
      m.data = data;
      m.dataLen = static_cast<uint16_t>(len);
      emitPacket(out_, path, p, m);
    });
  }
  // ---- desync recovery
  if (cfg_.desyncPolicy == DesyncPolicy::Resync && !joining_) checkResync(nowMs);
  // ---- a rejoiner's hold on new local inputs
  if (holdOwnInputs_) {
    uint32_t all = 0;
    for (int p = 0; p < cfg_.numPlayers; ++p)
      if (p != local_) all |= 1u << p;
    if ((ownAnswered_ & all) == all || nowMs - rejoinedMs_ >= kOwnInputsWaitMs) holdOwnInputs_ = false;
  }
}

// ------------------------------------------------------------------------------------- serving

bool SyncEngine::serveState(int peer, const uint8_t* attachment, size_t len, double nowMs) {
  Call call(*this);
  if (peer < 0 || peer >= cfg_.numPlayers || peer == local_ || pendingServe_[static_cast<size_t>(peer)].id == 0) return false;
  return buildTransfer(peer, attachment, len, nowMs);
}

bool SyncEngine::buildTransfer(int peer, const uint8_t* attachment, size_t len, double nowMs) {
  PendingServe& ps = pendingServe_[static_cast<size_t>(peer)];
  if (ps.id == 0 || joining_) return false;
  // The newest snapshot on the confirmed timeline (the pre-step state of a frame whose
  // predecessors are all confirmed); for a resync the state of the desync's frame when kept.
  const SnapshotStore::Entry* e = nullptr;
  if (ps.reason == kTransferResync) {
    const SnapshotStore::Entry* h = snapshots_.find(episodeStart_ + static_cast<Frame>(ps.frame));
    if (h && h->frame <= confirmed_ + 1) e = h;
  }
  if (!e) e = snapshots_.latestAtOrBefore(std::min(confirmed_ + 1, cur_));
  if (!e || e->frame < episodeStart_) return false;  // nothing to send yet (the episode has not begun)
  const Frame S = e->frame;
  std::vector<uint8_t> blob;
  TransferWriter w(blob);
  w.header(ps.reason, cfg_.numPlayers, cfg_.numBots, episode_, episodeStart_, S, cur_, cfg_.inputDelay, ps.downMs, delayByEpisode_);
  w.state(snapshots_.bytes(*e), e->length, e->hash);
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    const InputBuffer& b = inputs(p);
    const Frame upTo = std::min<Frame>(b.knownUpTo(), S + kTransferMaxInputs - 1);
    const uint16_t n = static_cast<uint16_t>(std::max<Frame>(0, upTo - S + 1));
    w.inputs(S, n, [&](Frame f, uint8_t& a, bool& unfocused) {
      b.get(f, a);
      unfocused = b.unfocused(f);
    });
  }
  const Frame botsTo = std::min<Frame>(cur_ - 1, S + kTransferMaxInputs - 1);
  const uint16_t nb = cfg_.numBots > 0 ? static_cast<uint16_t>(std::max<Frame>(0, botsTo - S + 1)) : 0;
  w.bots(S, nb, cfg_.numBots, [&](Frame f) -> const uint8_t* {
    const FrameRecord& r = record(f);
    return r.frame == f ? r.actions.data() + cfg_.numPlayers : nullptr;
  });
  w.attachment(attachment, len);
  const uint32_t id = ps.id;
  ps = PendingServe{};
  lastBuildMs_[static_cast<size_t>(peer)] = nowMs;
  if (!w.finish(cfg_.maxTransferBytes)) {
    ++transferErrors_;
    events_.push(Event(EventType::TransferError).num(Field::kPeer, peer).text(Field::kReason, "too-large").num(Field::kTimeMs, nowMs));
    return true;
  }
  touts_[static_cast<size_t>(peer)].start(id, std::move(blob), nowMs);
  return true;
}

// The peer `peer` rejoined: it gets back what this peer knows of its own inputs.
void SyncEngine::answerOwnInputs(int peer, Path via) {
  const InputBuffer& b = inputs(peer);
  const Frame hi = b.knownUpTo();
  const Frame lo = std::max<Frame>(std::max(windowLo(), episodeStart_), hi - kMaxResponseInputs + 1);
  Message& r = *scratchMsg_;
  r.type = MsgType::InputResponse;
  r.playerIndex = static_cast<uint16_t>(peer);
  r.count = 0;
  for (Frame f = lo; f <= hi; ++f) {
    uint8_t a;
    if (!b.get(f, a)) continue;
    const uint8_t flag = b.unfocused(f) ? kInputUnfocused : 0;
    if (r.count && flag != r.flags) {
      emitPacket(reply_, via, peer, r);
      r.count = 0;
    }
    r.flags = flag;
    r.inputs[r.count++] = FrameAction{wireFrame(f), a};
  }
  if (r.count) emitPacket(reply_, via, peer, r);
}

RxResult SyncEngine::onStateRequest(int peer, const Message& m, double heardBeforeMs, double nowMs) {
  if (joining_) return RxResult::TransferUnexpected;  // nothing to give
  const size_t pi = static_cast<size_t>(peer);
  // How long the peer was away: since its last input (its reloaded page sends pings first).
  if (lastInputMs_[pi] >= 0) heardBeforeMs = std::min(heardBeforeMs, lastInputMs_[pi]);
  if (m.reason == kTransferRejoin) {
    if (rejoinSeen_[pi] != m.transferId) {
      rejoinSeen_[pi] = m.transferId;
      events_.push(Event(EventType::Rejoin)
                       .num(Field::kPeer, peer)
                       .num(Field::kEpisode, episode_)
                       .num(Field::kFrame, num(cur_))
                       .num(Field::kLastInputFrame, num(inputs(peer).knownUpTo()))
                       .num(Field::kDownMs, std::isfinite(heardBeforeMs) ? std::max(0.0, nowMs - heardBeforeMs) : 0.0)
                       .text(Field::kReason, "reload")
                       .num(Field::kTimeMs, nowMs));
      // It comes back focused, with a fresh page and a new connection: what this peer knew of it
      // restarts (its fallback too: P2P is used again once its new channel is open).
      remoteFocusFrame_[pi] = kNoFrame;  // its new page numbers its focus changes afresh
      if (remoteFocused_[pi] == 0) onRemoteFocus(peer, true, cur_, nowMs);
      remoteFocusFrame_[pi] = kNoFrame;
      health_.resetPeer(peer, nowMs);
    }
    answerOwnInputs(peer, health_.p2pUsable(peer) ? Path::P2P : Path::Relay);
  } else if (m.episode != episode_) {
    return RxResult::StaleEpisode;
  } else if (m.source == local_ && m.frame >= resyncFrom_) {
    // Asked before this peer saw the desync itself (its state was never the odd one out): the
    // same rule, recorded the same way.
    uint64_t hs[kMaxPlayers] = {};
    int winner = local_;
    uint32_t losers = 1u << peer;
    const char* reason = "requested";
    if (!stateSync_.hashesAt(m.frame, hs) || !resyncRule(hs, winner, losers, reason)) {
      winner = local_;
      losers = 1u << peer;
      reason = "requested";
    }
    pushResync(m.frame, winner, losers, hs[local_], reason, nowMs);
  }
  if (m.source != local_) return RxResult::Ok;
  TransferOut& t = touts_[pi];
  PendingServe& ps = pendingServe_[pi];
  if ((t.active() && t.id() == m.transferId) || ps.id == m.transferId) return RxResult::Duplicate;
  // A new request replaces the one in progress, but a peer cannot make this one build
  // transfers back to back.
  if (nowMs - lastBuildMs_[pi] < kRebuildSpacingMs) return RxResult::Flood;
  t.stop();
  ps = PendingServe{m.transferId, m.reason, m.frame, std::isfinite(heardBeforeMs) ? std::max(0.0, nowMs - heardBeforeMs) : 0.0, nowMs};
  events_.push(Event(EventType::StateRequest)
                   .num(Field::kPeer, peer)
                   .text(Field::kReason, m.reason == kTransferRejoin ? "rejoin" : "resync")
                   .num(Field::kTimeMs, nowMs));
  return RxResult::Ok;
}

RxResult SyncEngine::onStateAck(int peer, const Message& m, double nowMs) {
  TransferOut& t = touts_[static_cast<size_t>(peer)];
  if (!t.active() || t.id() != m.transferId) return RxResult::TransferUnexpected;
  if (m.status == kAckComplete) {
    ++transfersOut_;
    events_.push(Event(EventType::TransferSent)
                     .num(Field::kPeer, peer)
                     .num(Field::kBytes, t.total())
                     .num(Field::kChunks, t.chunks())
                     .num(Field::kResent, static_cast<double>(t.resent()))
                     .num(Field::kTimeMs, nowMs));
    t.stop();
    return RxResult::Ok;
  }
  if (m.status == kAckRejected) {
    ++transferErrors_;
    events_.push(Event(EventType::TransferError).num(Field::kPeer, peer).text(Field::kReason, "rejected-by-receiver").num(Field::kTimeMs, nowMs));
    t.stop();
    return RxResult::Ok;
  }
  return t.onAck(m.index, m.bitmap, nowMs) ? RxResult::Ok : RxResult::BadRange;
}

// ------------------------------------------------------------------------------------- receiving

RxResult SyncEngine::onStateChunk(int peer, const Message& m, double nowMs) {
  const RxResult r = tin_.onChunk(peer, m, cfg_.maxTransferBytes, nowMs);
  if (r == RxResult::Ok && tin_.complete()) finishTransfer(nowMs);
  return r;
}

void SyncEngine::finishTransfer(double nowMs) {
  const int source = tin_.source();
  TransferView v;
  TransferError e = parseTransfer(tin_.data(), tin_.size(), cfg_.numPlayers, cfg_.numBots, v);
  if (e == TransferError::Ok && v.reason != tinReason_) e = TransferError::BadShape;
  if (e == TransferError::Ok && hashState(v.state, v.stateLen) != v.stateHash) e = TransferError::BadState;
  if (e == TransferError::Ok && v.stateLen > cfg_.snapshotBytes) e = TransferError::BadState;
  if (e == TransferError::Ok && tinReason_ == kTransferResync &&
      (v.episode != episode_ || v.episodeStart != episodeStart_ || v.snapshotFrame >= cur_ || cur_ - v.snapshotFrame >= replayCap_))
    e = TransferError::BadFrames;
  if (e != TransferError::Ok) {
    ++transferErrors_;
    metrics_.rejected(RxResult::TransferCorrupt);
    events_.push(Event(EventType::TransferError).num(Field::kPeer, source).text(Field::kReason, transferErrorName(e)).num(Field::kTimeMs, nowMs));
    sendStateAck(kAckRejected, nowMs, reply_);
    // Ask again: a rejoiner another peer (a resync asks again if the desync is still there).
    const uint8_t reason = tinReason_;
    const uint32_t frame = tinFrame_;
    tin_.reset();
    if (joining_) requestState(nextSource(source), reason, frame, nowMs, reply_);
    else resyncFrom_ = std::min(resyncFrom_, frame);
    return;
  }
  sendStateAck(kAckComplete, nowMs, reply_);
  attachment_.assign(v.attachment, v.attachment + v.attachmentLen);
  ++transfersIn_;
  if (tinReason_ == kTransferRejoin) applyRejoin(v, nowMs);
  else applyResync(v, nowMs);
  events_.push(Event(EventType::StateLoaded)
                   .num(Field::kPeer, source)
                   .text(Field::kReason, tinReason_ == kTransferRejoin ? "rejoin" : "resync")
                   .num(Field::kEpisode, v.episode)
                   .num(Field::kFrame, num(v.snapshotFrame))
                   .num(Field::kEpisodeFrame, num(v.snapshotFrame - v.episodeStart))
                   .hex(Field::kHash, v.stateHash)
                   .num(Field::kBytes, static_cast<double>(tin_.size()))
                   .num(Field::kAttachmentBytes, v.attachmentLen)
                   .num(Field::kTimeMs, nowMs));
  tin_.reset();
}

void SyncEngine::applyRejoin(const TransferView& v, double nowMs) {
  joining_ = false;
  started_ = true;
  episode_ = v.episode;
  episodeStart_ = v.episodeStart;
  const Frame S = v.snapshotFrame;
  cfg_.inputDelay = v.inputDelay;
  delayAgreed_ = true;
  delayProposal_ = nextProposal_ = -1;
  delayByEpisode_.assign(v.delays, v.delays + v.delayCount);
  if (delayByEpisode_.size() <= v.episode) delayByEpisode_.resize(v.episode + 1, v.inputDelay);
  started_ep_ = true;
  // Inputs, records and snapshots count from S on (nothing before it is needed again).
  restartTimelineAt(S);
  // The inputs known after S: the source's, then this peer's own from the other peers.
  double lag;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    const TransferView::Inputs& in = v.inputs[p];
    for (uint16_t i = 0; i < in.count; ++i)
      inputs(p).insert(in.from + i, in.entries[2 * i], Path::P2P, nowMs, windowLo(), lag, in.entries[2 * i + 1] != 0);
  }
  for (const OwnInput& o : ownStash_)
    if (o.frame >= S) inputs(local_).insert(o.frame, o.action, Path::P2P, nowMs, windowLo(), lag, o.unfocused);
  ownStash_.clear();
  transferBotsFrom_ = v.botsFrom;
  transferBots_.assign(v.bots, v.bots + static_cast<size_t>(v.botCount) * static_cast<size_t>(cfg_.numBots));
  snapshots_.save(S, v.state, v.stateLen, v.stateHash);
  stateSync_.joinEpisode(episode_, static_cast<uint32_t>(S - episodeStart_));
  if (S > episodeStart_) stateSync_.onLocalHash(wireFrame(S - episodeStart_), v.stateHash);
  // The peers are ahead by the time the transfer took: catch up (framesBehind reads the headers).
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != local_) timeSync_.onHeader(p, std::max<Frame>(v.senderFrame, inputs(p).newestKnown()), nowMs);
  loadPending_ = S;
  returning_ = true;  // the frames it runs to catch up were not chosen live
  holdOwnInputs_ = true;
  rejoinedMs_ = nowMs;
  events_.push(Event(EventType::Rejoin)
                   .num(Field::kPeer, local_)
                   .num(Field::kEpisode, episode_)
                   .num(Field::kFrame, num(S))
                   .num(Field::kLastInputFrame, num(inputs(local_).knownUpTo()))
                   .num(Field::kDownMs, v.downMs)
                   .text(Field::kReason, "reload")
                   .num(Field::kTimeMs, nowMs));
  events_.push(Event(EventType::InputDelay).num(Field::kEpisode, episode_).num(Field::kInputDelay, cfg_.inputDelay).text(Field::kReason, "rejoin").num(Field::kTimeMs, nowMs));
}

void SyncEngine::applyResync(const TransferView& v, double nowMs) {
  const Frame S = v.snapshotFrame;
  double lag;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    const TransferView::Inputs& in = v.inputs[p];
    for (uint16_t i = 0; i < in.count; ++i)
      inputs(p).insert(in.from + i, in.entries[2 * i], Path::P2P, nowMs, windowLo(), lag, in.entries[2 * i + 1] != 0);
  }
  snapshots_.invalidateAfter(S);
  snapshots_.save(S, v.state, v.stateLen, v.stateHash);
  // Everything from S on is simulated again from the loaded state: confirmed again as the
  // replay reports it, its rows handed out again, its hashes re-sent.
  stateSync_.onRollback(wireFrame(S - episodeStart_));
  if (S > episodeStart_) stateSync_.onLocalHash(wireFrame(S - episodeStart_), v.stateHash);
  if (terminal_ != kNoFrame && terminal_ >= S && !endSent_) terminal_ = kNoFrame;
  confirmed_ = std::min(confirmed_, S - 1);
  simulated_ = std::min(simulated_, S - 1);
  rowsUpTo_ = std::min(rowsUpTo_, S - 1);
  pendingRollback_ = kNoFrame;
  firstMiss_ = Misprediction{};
  loadPending_ = S;
  ++resyncs_;
}

// desyncPolicy resync: the deterministic rule over every player's hash of hash frame H. Returns
// false when the hashes are all equal (nothing to resolve). `winner` is the source.
bool SyncEngine::resyncRule(const uint64_t* hs, int& winner, uint32_t& losers, const char*& reason) const {
  winner = -1;
  int winnerCount = 0;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    int count = 0, lowest = p;
    for (int q = 0; q < cfg_.numPlayers; ++q)
      if (hs[q] == hs[p]) {
        ++count;
        lowest = std::min(lowest, q);
      }
    if (lowest != p) continue;  // each group once, by its lowest index
    if (count > winnerCount) {  // a tie keeps the group of the lower index
      winner = p;
      winnerCount = count;
    }
  }
  if (winnerCount == cfg_.numPlayers) return false;
  losers = 0;
  for (int q = 0; q < cfg_.numPlayers; ++q)
    if (hs[q] != hs[winner]) losers |= 1u << q;
  reason = winnerCount * 2 > cfg_.numPlayers ? "majority" : "lowest-index";
  return true;
}

void SyncEngine::pushResync(uint32_t H, int source, uint32_t losers, uint64_t hash, const char* reason, double nowMs) {
  resyncFrom_ = std::max(resyncFrom_, H + 1);
  events_.push(Event(EventType::Resync)
                   .num(Field::kEpisode, episode_)
                   .num(Field::kFrame, num(episodeStart_ + H))
                   .num(Field::kEpisodeFrame, H)
                   .num(Field::kSource, source)
                   .num(Field::kPeers, losers)
                   .hex(Field::kHash, hash)
                   .text(Field::kReason, reason)
                   .num(Field::kTimeMs, nowMs));
}

void SyncEngine::checkResync(double nowMs) {
  if (tin_.expecting()) return;
  for (int guard = 0; guard < 4; ++guard) {
    const uint32_t H = stateSync_.earliestDesyncFrom(resyncFrom_);
    if (H == 0) return;
    uint64_t hs[kMaxPlayers] = {};
    if (!stateSync_.hashesAt(H, hs)) return;  // wait for the missing hashes
    int winner;
    uint32_t losers;
    const char* reason;
    if (!resyncRule(hs, winner, losers, reason)) {  // equal again (a replay made them agree)
      resyncFrom_ = H + 1;
      continue;
    }
    pushResync(H, winner, losers, hs[winner], reason, nowMs);
    if (hs[local_] != hs[winner]) requestState(winner, kTransferResync, H, nowMs, out_);
    return;
  }
}

}  // namespace p2psync
