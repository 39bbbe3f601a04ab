// See state_sync.hpp.
#include "state_sync.hpp"

#include <algorithm>
#include <cmath>

#include "protocol.hpp"

namespace p2psync {

using nlohmann::json;

namespace {

constexpr uint32_t kMaxHashHistory = 4096;


}  // namespace

// ------------------------------------------------------------------ config

const char* StateSync::validateConfig(const StateSyncConfig& c) {
  if (c.numPlayers < 2 || c.numPlayers > kMaxPlayers) return "numPlayers";
  if (c.localPlayer < 0 || c.localPlayer >= c.numPlayers) return "localPlayer";
  if (c.hashInterval < 1) return "hashInterval";
  if (c.hashHistory < 1 || c.hashHistory > kMaxHashHistory) return "hashHistory";
  if (c.gameId.size() > kMaxRelayIdLength) return "gameId";
  if (!c.playerIds.empty()) {
    if (c.playerIds.size() != static_cast<size_t>(c.numPlayers)) return "playerIds";
    for (const json& id : c.playerIds)
      if (!isValidRelayId(id)) return "playerIds";
  }
  if (!std::isfinite(c.resendMs) || c.resendMs <= 0) return "resendMs";
  return nullptr;
}

StateSync::StateSync(const StateSyncConfig& cfg) : cfg_(cfg) {
  cfg_.numPlayers = std::clamp(cfg_.numPlayers, 1, kMaxPlayers);
  cfg_.localPlayer = std::clamp(cfg_.localPlayer, 0, cfg_.numPlayers - 1);
  cfg_.hashInterval = std::max<uint32_t>(cfg_.hashInterval, 1);
  cfg_.hashHistory = std::clamp<uint32_t>(cfg_.hashHistory, 1, kMaxHashHistory);
  if (cfg_.gameId.size() > kMaxRelayIdLength) cfg_.gameId.resize(kMaxRelayIdLength);
  bool idsOk = cfg_.playerIds.size() == static_cast<size_t>(cfg_.numPlayers);
  for (const json& id : cfg_.playerIds) idsOk = idsOk && isValidRelayId(id);
  if (!idsOk) cfg_.playerIds.clear();
  if (!std::isfinite(cfg_.resendMs) || cfg_.resendMs <= 0) cfg_.resendMs = 100;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (p != cfg_.localPlayer) remoteMask_ |= 1u << p;
  resetEpisodeState();
}

void StateSync::resetEpisodeState() {
  local_.assign(cfg_.hashHistory, LocalSlot{});
  remote_.assign(static_cast<size_t>(cfg_.numPlayers) * cfg_.hashHistory, RemoteSlot{});
  newestLocal_ = 0;
  sweptBelow_ = 0;
  scanFrom_ = 0;
  running_ = ActionCounts{};
  fedNext_ = 0;
  countsPartial_ = false;
  verifiedFrame_ = 0;
  localEnded_ = false;
  localEndFrame_ = 0;
}

json StateSync::senderId() const {
  if (cfg_.playerIds.empty()) return json(cfg_.localPlayer);
  return cfg_.playerIds[static_cast<size_t>(cfg_.localPlayer)];
}

// ------------------------------------------------------------------ local hashes

uint32_t StateSync::oldestKept() const {
  const uint64_t span = static_cast<uint64_t>(cfg_.hashHistory - 1) * cfg_.hashInterval;
  if (newestLocal_ > span) return static_cast<uint32_t>(newestLocal_ - span);
  return cfg_.hashInterval;
}

StateSync::LocalSlot* StateSync::claimLocal(uint32_t frame) {
  if (!isHashFrame(frame) || frame < oldestKept()) return nullptr;
  LocalSlot& s = local_[slotIndex(frame)];
  if (s.frame == frame) return &s;
  if (s.frame > frame) return nullptr;  // holds a newer frame: `frame` is out of the history
  s.frame = frame;
  s.hash = s.sentHash = 0;
  s.hasHash = s.valid = s.sent = s.countsKnown = false;
  s.matchedMask = 0;
  s.counts.clear();
  newestLocal_ = std::max(newestLocal_, frame);
  return &s;
}

void StateSync::onLocalHash(uint32_t frame, uint64_t hash) {
  LocalSlot* s = claimLocal(frame);
  if (!s) return;
  if (!s->hasHash || s->hash != hash) s->matchedMask = 0;
  s->hash = hash;
  s->hasHash = true;
  s->valid = true;
  scanFrom_ = std::min(scanFrom_, frame);
  // A sent hash whose value now differs is re-sent by update() (sent && sentHash != hash).
}

void StateSync::onRollback(uint32_t targetFrame) {
  for (LocalSlot& s : local_)
    if (s.frame > targetFrame && s.hasHash) s.valid = false;
}

bool StateSync::onConfirmedActions(uint32_t frame, const uint8_t* actions, size_t n) {
  if (frame != fedNext_ || n > static_cast<size_t>(ActionCounts::kMaxActors) || (n > 0 && actions == nullptr))
    return false;
  for (size_t i = 0; i < n; ++i) running_.add(static_cast<int>(i), actions[i]);
  ++fedNext_;
  const uint32_t f = frame + 1;  // counts over 0..frame = counts of snapshot frame + 1
  if (f != 0 && isHashFrame(f)) {
    if (LocalSlot* s = claimLocal(f)) {
      s->counts = running_;
      s->countsKnown = !countsPartial_;
    }
  }
  return true;
}

// ------------------------------------------------------------------ remote hashes

RxResult StateSync::onRemoteHash(int peer, uint32_t frame, uint64_t hash, const ActionCounts* remoteCounts,
                                 uint32_t currentFrame, uint32_t windowFrames, double nowMs) {
  nowMs_ = nowMs;
  if (!validPeer(peer)) return RxResult::UnknownPlayer;
  if (!isHashFrame(frame)) return RxResult::BadValue;
  if (static_cast<uint64_t>(frame) > static_cast<uint64_t>(currentFrame) + windowFrames) {
    ++outOfWindow_;
    return RxResult::OutOfWindow;
  }
  if (begun_ && !peers_[peer].readyIn) return RxResult::StaleEpisode;
  const uint32_t lo = oldestKept();
  if (frame < lo) {
    ++unverifiable_;
    return RxResult::Unverifiable;
  }
  RemoteSlot& r = remote(peer, frame);
  if (r.frame == frame) {
    if (r.hash == hash) {
      ++duplicates_;
      if (remoteCounts && !r.hasCounts) {
        if (!r.everCompared) {
          r.counts = *remoteCounts;
          r.hasCounts = true;
        } else if (r.desyncIndex >= 0 && static_cast<size_t>(r.desyncIndex) < desyncEvents_.size()) {
          // The binary copy was compared first; complete the stored desync record's diff.
          json& rec = desyncEvents_[static_cast<size_t>(r.desyncIndex)];
          const LocalSlot& l = local_[slotIndex(frame)];
          if (rec.is_object() && rec["actionCountDiff"].is_null() && l.frame == frame && l.countsKnown)
            rec["actionCountDiff"] = l.counts.diff(*remoteCounts);
        }
      }
      return RxResult::Duplicate;
    }
    // The peer re-sent a changed hash for this frame: replace it and compare again.
    r.hash = hash;
    r.compared = false;
    scanFrom_ = std::min(scanFrom_, frame);
    r.counts = remoteCounts ? *remoteCounts : ActionCounts{};
    r.hasCounts = remoteCounts != nullptr;
    ++hashesReceived_;
    return RxResult::Ok;
  }
  if (r.frame != 0) {
    if (r.frame > frame) {  // the slot holds a newer frame of this peer
      ++unverifiable_;
      return RxResult::Unverifiable;
    }
    if (!r.everCompared && r.frame >= lo) {  // would evict a still-comparable pending hash
      ++outOfWindow_;
      return RxResult::OutOfWindow;
    }
    if (!r.everCompared) ++unverifiable_;
  }
  r = RemoteSlot{};
  r.frame = frame;
  r.hash = hash;
  scanFrom_ = std::min(scanFrom_, frame);
  if (remoteCounts) {
    r.counts = *remoteCounts;
    r.hasCounts = true;
  }
  ++hashesReceived_;
  return RxResult::Ok;
}

RxResult StateSync::onRelayStateSync(int peer, const char* text, size_t len, uint32_t currentFrame,
                                     uint32_t windowFrames, double nowMs) {
  if (!validPeer(peer)) return RxResult::UnknownPlayer;
  StateSyncMsg msg;
  const RxResult r = parseStateSync(text, len, msg);
  if (r != RxResult::Ok) return r;
  if (msg.from >= 0 && msg.from != peer) return RxResult::SpoofedPlayer;
  if (msg.gameId != cfg_.gameId) return RxResult::BadValue;
  return onRemoteHash(peer, msg.frame, msg.hash, &msg.counts, currentFrame, windowFrames, nowMs);
}

void StateSync::recordDesync(const Event& ev, EventQueue& events, int* indexOut) {
  ++desyncs_;
  events.push(ev);
  if (desyncEvents_.size() < cfg_.maxDesyncEvents) {
    if (indexOut) *indexOut = static_cast<int>(desyncEvents_.size());
    desyncEvents_.push_back(ev.toJson());
  }
}

void StateSync::compare(int peer, RemoteSlot& r, LocalSlot& l, uint32_t currentFrame, EventQueue& events) {
  r.compared = true;
  r.everCompared = true;
  r.comparedLocal = l.hash;
  if (r.hash == l.hash) {
    if (!r.matchedOnce) {
      r.matchedOnce = true;
      ++matches_;
    }
    l.matchedMask |= 1u << peer;
    PeerState& ps = peers_[peer];
    ps.verified = std::max(ps.verified, l.frame);
    if ((l.matchedMask & remoteMask_) == remoteMask_ && l.frame > verifiedFrame_) {
      verifiedFrame_ = l.frame;
      if (cfg_.verifiedEvents) {
        events.push(Event(EventType::Verified).num(Field::kFrame, l.frame));
      }
    }
  } else if (!r.desyncReported) {
    r.desyncReported = true;
    Event ev(EventType::Desync);
    ev.num(Field::kFrame, l.frame).hex(Field::kLocalHash, l.hash).hex(Field::kRemoteHash, r.hash).num(Field::kPeer, peer);
    if (r.hasCounts && l.countsKnown) ev.json(Field::kActionCountDiff, l.counts.diff(r.counts));
    else ev.null(Field::kActionCountDiff);
    ev.num(Field::kDetectedAtFrame, currentFrame).num(Field::kEpisode, episode_).num(Field::kTimeMs, nowMs_);
    recordDesync(ev, events, &r.desyncIndex);
  }
  // Counts are only needed for this comparison: release them (bounded memory).
  r.counts = ActionCounts{};
  r.hasCounts = false;
}

// ------------------------------------------------------------------ update

bool StateSync::sendBinary(Outbox& out, bool p2pUsable, int to, const uint8_t* bytes, size_t len) {
  return out.packet(p2pUsable ? Path::P2P : Path::Relay, to, bytes, len);
}

void StateSync::update(int64_t confirmedFrame, uint32_t currentFrame, bool p2pUsable, double nowMs, Outbox& out,
                       EventQueue& events) {
  nowMs_ = nowMs;
  const uint32_t lo = oldestKept();

  // 1. Pending remote hashes that fell out of the history can never be verified.
  if (lo > sweptBelow_) {
    for (RemoteSlot& r : remote_) {
      if (r.frame != 0 && r.frame < lo) {
        if (!r.everCompared) ++unverifiable_;
        r = RemoteSlot{};
      }
    }
    sweptBelow_ = lo;
  }

  // 2. Send final local hashes (and re-send changed ones), oldest first. 3. Compare.
  // Only from scanFrom_: every hash frame below it was fully handled by an earlier update(), and
  // what could give it new work (a local hash stored again, a remote hash) lowers scanFrom_.
  if (confirmedFrame >= 0) {
    const uint64_t hi = std::min<uint64_t>(newestLocal_, static_cast<uint64_t>(confirmedFrame) + 1);
    static const ActionCounts kNoCounts;
    const uint64_t up = (static_cast<uint64_t>(scanFrom_) + cfg_.hashInterval - 1) / cfg_.hashInterval * cfg_.hashInterval;
    const uint32_t from = static_cast<uint32_t>(std::max<uint64_t>(lo, up));
    if (hi >= from) scanFrom_ = static_cast<uint32_t>(std::min<uint64_t>(hi + 1, 0xffffffffu));
    // The slot index of f + hashInterval is the next slot (mod hashHistory): kept incrementally
    // (slotIndex() divides twice).
    size_t idx = slotIndex(from);
    for (uint64_t f64 = from; f64 <= hi; f64 += cfg_.hashInterval, idx = idx + 1 == cfg_.hashHistory ? 0 : idx + 1) {
      const auto f = static_cast<uint32_t>(f64);
      LocalSlot& s = local_[idx];
      if (s.frame != f || !s.hasHash || !s.valid) continue;
      if (!s.sent || s.sentHash != s.hash) {
        const bool resend = s.sent;
        Message m;
        m.type = MsgType::StateHash;
        m.frame = f;
        m.digest = s.hash;
        uint8_t buf[16];
        const size_t n = encode(m, buf, sizeof buf);
        bool ok = false;
        if (p2pUsable && n > 0) ok = out.packet(Path::P2P, -1, buf, n) || ok;
        if (!p2pUsable || cfg_.relayHashesAlways) {
          const std::string js = formatStateSync(cfg_.gameId, senderId(), f, s.hash, s.countsKnown ? s.counts : kNoCounts);
          if (!js.empty()) ok = out.relayJson(RelayEvent::StateSync, -1, js) || ok;
        }
        if (ok) {
          s.sent = true;
          s.sentHash = s.hash;
          if (resend) ++hashesResent_;
          else ++hashesSent_;
          events.push(Event(EventType::HashBroadcast)
                          .num(Field::kFrame, f)
                          .hex(Field::kHash, s.hash)
                          .num(Field::kPlayer, cfg_.localPlayer)
                          .flag(Field::kResend, resend));
        }
      }
      for (int p = 0; p < cfg_.numPlayers; ++p) {
        if (!validPeer(p)) continue;
        RemoteSlot& r = remote_[static_cast<size_t>(p) * cfg_.hashHistory + idx];  // remote(p, f)
        if (r.frame != f) continue;
        if (r.compared && r.comparedLocal == s.hash) continue;
        compare(p, r, s, currentFrame, events);
      }
    }
  }

  // 4. READY digests.
  if (begun_) {
    for (int p = 0; p < cfg_.numPlayers; ++p) {
      if (!validPeer(p)) continue;
      PeerState& ps = peers_[p];
      if (!ps.readyIn || ps.readyChecked) continue;
      ps.readyChecked = true;
      if (ps.readyDigest != localDigest_) {
        Event ev(EventType::Desync);
        ev.num(Field::kFrame, 0)
            .hex(Field::kLocalHash, localDigest_)
            .hex(Field::kRemoteHash, ps.readyDigest)
            .num(Field::kPeer, p)
            .null(Field::kActionCountDiff)
            .num(Field::kDetectedAtFrame, currentFrame)
            .num(Field::kEpisode, episode_)
            .text(Field::kSource, "ready")
            .num(Field::kTimeMs, nowMs);
        recordDesync(ev, events, nullptr);
      }
    }
  }

  // 5. END / READY sends: once to every peer, re-sent every resendMs to peers whose message is
  // missing, plus answers to duplicates.
  sendEndReady(out, p2pUsable, nowMs, true);
}

void StateSync::sendAnswers(Outbox& out, bool p2pUsable, double nowMs) { sendEndReady(out, p2pUsable, nowMs, false); }

// periodic: the first sends and the re-sends are due too (update()); else only answers to
// duplicates (on receive: a peer that stopped stepping still answers).
void StateSync::sendEndReady(Outbox& out, bool p2pUsable, double nowMs, bool periodic) {
  auto sendEnd = [&](int p, uint32_t frame, uint32_t episode) {
    Message m;
    m.type = MsgType::EpisodeEnd;
    m.frame = frame;
    m.episode = episode;
    uint8_t buf[16];
    const size_t n = encode(m, buf, sizeof buf);
    const bool ok = n > 0 && sendBinary(out, p2pUsable, p, buf, n);
    if (ok) ++endSent_;
    return ok;
  };
  auto sendReady = [&](int p) {
    Message m;
    m.type = MsgType::EpisodeReady;
    m.episode = episode_;
    m.digest = localDigest_;
    uint8_t buf[16];
    const size_t n = encode(m, buf, sizeof buf);
    const bool ok = n > 0 && sendBinary(out, p2pUsable, p, buf, n);
    if (ok) ++readySent_;
    return ok;
  };
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (!validPeer(p)) continue;
    PeerState& ps = peers_[p];
    if (begun_) {
      const bool due = periodic && (!ps.readySentOnce || (!ps.readyIn && nowMs - ps.readySentMs >= cfg_.resendMs));
      if ((due || ps.readyReply.pending) && sendReady(p)) {
        if (due) {
          ps.readySentOnce = true;
          ps.readySentMs = nowMs;
        }
        if (ps.readyReply.pending) {
          ps.readyReply.pending = false;
          ++ps.readyReply.answered;
        }
      }
    }
    if (localEnded_) {
      const bool due = periodic && (!ps.endSentOnce || (!ps.endIn && nowMs - ps.endSentMs >= cfg_.resendMs));
      if ((due || ps.endReply.pending) && sendEnd(p, localEndFrame_, episode_)) {
        if (due) {
          ps.endSentOnce = true;
          ps.endSentMs = nowMs;
        }
        if (ps.endReply.pending) {
          ps.endReply.pending = false;
          ++ps.endReply.answered;
        }
      }
    }
    if (prevEndValid_ && ps.prevEndReply.pending && sendEnd(p, prevEndFrame_, prevEpisode_)) {
      ps.prevEndReply.pending = false;
      ++ps.prevEndReply.answered;
    }
  }
}

// ------------------------------------------------------------------ episodes

void StateSync::noteDuplicate(Reply& r) {
  ++r.dups;
  const uint32_t need = r.answered == 0 ? 1 : 2;
  if (r.dups >= need) {
    r.pending = true;
    r.dups = 0;
  }
}

void StateSync::beginEpisode(uint32_t episode, uint64_t initialDigest, double /*nowMs*/) {
  prevEndValid_ = localEnded_;
  prevEpisode_ = episode_;
  prevEndFrame_ = localEndFrame_;
  resetEpisodeState();
  begun_ = true;
  episode_ = episode;
  localDigest_ = initialDigest;
  for (PeerState& ps : peers_) {
    ps.prevEndReply = ps.endReply;
    ps.endIn = false;
    ps.endFrame = 0;
    ps.endSentOnce = false;
    ps.endSentMs = 0;
    ps.endReply = Reply{};
    ps.readyIn = false;
    ps.readyChecked = false;
    ps.readyDigest = 0;
    ps.readySentOnce = false;
    ps.readySentMs = 0;
    ps.readyReply = Reply{};
    ps.verified = 0;
    if (ps.earlyReady && ps.earlyEpisode == episode) {
      ps.readyIn = true;
      ps.readyDigest = ps.earlyDigest;
    }
    ps.earlyReady = false;
  }
}

void StateSync::joinEpisode(uint32_t episode, uint32_t firstFrame) {
  prevEndValid_ = false;
  resetEpisodeState();
  begun_ = true;
  episode_ = episode;
  localDigest_ = 0;
  fedNext_ = firstFrame;
  countsPartial_ = firstFrame > 0;
  for (PeerState& ps : peers_) {
    ps = PeerState{};
    ps.readyIn = ps.readyChecked = true;
    ps.readySentOnce = true;
  }
}

bool StateSync::hashesAt(uint32_t frame, uint64_t* out) const {
  if (!isHashFrame(frame)) return false;
  const LocalSlot& l = local_[slotIndex(frame)];
  if (l.frame != frame || !l.hasHash || !l.valid) return false;
  out[cfg_.localPlayer] = l.hash;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (!validPeer(p)) continue;
    const RemoteSlot& r = remote_[static_cast<size_t>(p) * cfg_.hashHistory + slotIndex(frame)];
    if (r.frame != frame) return false;
    out[p] = r.hash;
  }
  return true;
}

uint32_t StateSync::earliestDesyncFrom(uint32_t from) const {
  uint32_t best = 0;
  for (int p = 0; p < cfg_.numPlayers; ++p) {
    if (!validPeer(p)) continue;
    for (uint32_t k = 0; k < cfg_.hashHistory; ++k) {
      const RemoteSlot& r = remote_[static_cast<size_t>(p) * cfg_.hashHistory + k];
      if (r.frame >= from && r.frame != 0 && r.desyncReported && (best == 0 || r.frame < best)) best = r.frame;
    }
  }
  return best;
}

void StateSync::localEpisodeEnd(uint32_t terminalFrame, double /*nowMs*/) {
  if (localEnded_) return;
  localEnded_ = true;
  localEndFrame_ = terminalFrame;
}

RxResult StateSync::onEpisodeEnd(int peer, uint32_t frame, uint32_t episode, double /*nowMs*/) {
  if (!validPeer(peer)) return RxResult::UnknownPlayer;
  PeerState& ps = peers_[peer];
  if (episode == episode_) {
    if (!ps.endIn) {
      ps.endIn = true;
      ps.endFrame = frame;
      return RxResult::Ok;
    }
    ++duplicates_;
    if (localEnded_) noteDuplicate(ps.endReply);  // the peer is still missing our END
    return frame == ps.endFrame ? RxResult::Duplicate : RxResult::Conflict;
  }
  // A peer still in the previous episode lacks our END of it: answer every one (this peer no
  // longer re-sends it by itself: the answers are as many as the peer's re-sends). A peer whose
  // READY of this episode arrived has left that episode: its END was late, nothing to answer (two
  // peers past the episode would otherwise answer each other for ever).
  if (begun_ && prevEndValid_ && episode == prevEpisode_ && !ps.readyIn) ps.prevEndReply.pending = true;
  return RxResult::StaleEpisode;
}

RxResult StateSync::onEpisodeReady(int peer, uint32_t episode, uint64_t digest, double /*nowMs*/) {
  if (!validPeer(peer)) return RxResult::UnknownPlayer;
  PeerState& ps = peers_[peer];
  if (begun_ && episode == episode_) {
    if (!ps.readyIn) {
      ps.readyIn = true;
      ps.readyDigest = digest;
      ps.readyChecked = false;
      return RxResult::Ok;
    }
    ++duplicates_;
    noteDuplicate(ps.readyReply);  // the peer is still missing our READY
    return digest == ps.readyDigest ? RxResult::Duplicate : RxResult::Conflict;
  }
  if (!begun_ || episode == episode_ + 1) {  // early READY: kept until beginEpisode(episode)
    if (ps.earlyReady && ps.earlyEpisode == episode && ps.earlyDigest == digest) {
      ++duplicates_;
      return RxResult::Duplicate;
    }
    ps.earlyReady = true;
    ps.earlyEpisode = episode;
    ps.earlyDigest = digest;
    return RxResult::Ok;
  }
  return RxResult::StaleEpisode;
}

bool StateSync::episodeEndSynced() const {
  if (!localEnded_) return false;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (validPeer(p) && !peers_[p].endIn) return false;
  return true;
}

uint32_t StateSync::syncedEndFrame() const {
  bool any = false;
  uint32_t m = 0;
  auto take = [&](uint32_t f) {
    m = any ? std::min(m, f) : f;
    any = true;
  };
  if (localEnded_) take(localEndFrame_);
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (validPeer(p) && peers_[p].endIn) take(peers_[p].endFrame);
  return m;
}

int64_t StateSync::peersEndFrame() const {
  int64_t m = -1;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (validPeer(p) && peers_[p].endIn && (m < 0 || peers_[p].endFrame < m)) m = peers_[p].endFrame;
  return m;
}

bool StateSync::allReady() const {
  if (!begun_) return false;
  for (int p = 0; p < cfg_.numPlayers; ++p)
    if (validPeer(p) && !peers_[p].readyIn) return false;
  return true;
}

// ------------------------------------------------------------------ stats

uint32_t StateSync::peerVerifiedFrame(int peer) const { return validPeer(peer) ? peers_[peer].verified : 0; }

json StateSync::toJson() const {
  json j = json::object();
  j["hashesSent"] = hashesSent_;
  j["hashesResent"] = hashesResent_;
  j["hashesReceived"] = hashesReceived_;
  j["matches"] = matches_;
  j["verifiedFrame"] = verifiedFrame_;
  j["unverifiable"] = unverifiable_;
  j["desyncEvents"] = json::array();
  for (const json& e : desyncEvents_) j["desyncEvents"].push_back(e);
  j["desyncs"] = desyncs_;
  j["duplicates"] = duplicates_;
  j["outOfWindow"] = outOfWindow_;
  j["episode"] = episode_;
  j["allReady"] = allReady();
  j["episodeEndSynced"] = episodeEndSynced();
  j["syncedEndFrame"] = syncedEndFrame();
  j["endMessagesSent"] = endSent_;
  j["readyMessagesSent"] = readySent_;
  return j;
}

}  // namespace p2psync
