// Symmetric state-hash verification, desync detection, and episode END / READY sync.
//
// Neither peer is a host: every peer sends the hash of its own state for each hash frame and
// compares what it receives with its own hash of the SAME frame. Owned and driven by the sync
// engine; plain C++20 (no clock, no I/O, no randomness, no exceptions), bounded memory.
//
// ---- Frames and hashes
// "Snapshot frame f" = the env state before stepping frame f (after frames 0..f-1). Hash frames
// are f > 0 with f % hashInterval == 0. The engine calls onLocalHash(f, h) whenever the page
// saves a snapshot for f (non-hash frames are ignored). A local hash of f is SENT and COMPARED
// only when it is final: valid (not invalidated by onRollback since it was stored) and confirmed
// (every input of frames < f is known: confirmedFrame >= f - 1).
// Sending: STATE_HASH (binary) on P2P to every peer when p2pUsable; the relay JSON
// "p2p_state_sync" only while P2P is unusable (or always, with relayHashesAlways). A peer that
// receives both copies counts the second as a Duplicate.
//
// ---- Action counts (the provider design)
// StateSync keeps the per-actor action counts itself: the engine calls
// onConfirmedActions(frame, actions, n) once per frame, in order 0, 1, 2, ..., as each frame
// becomes confirmed (actions = that frame's executed actions, players then bots). At every hash
// frame f the running counts (= counts over frames 0..f-1) are captured into the hash history
// entry of f, where they are used for the relay message of f (also on re-send) and for the
// actionCountDiff of a desync at f. Confirmed inputs never change, so rollbacks do not touch
// counts. If the engine does not feed a frame, the relay message carries {} and diffs are null.
//
// ---- verifiedFrame
// verifiedFrame() = the highest hash frame f of the current episode such that a matching hash
// for f was received from EVERY remote peer (0 = none yet). It only grows within an episode and
// is reset by beginEpisode(). peerVerifiedFrame(p) is the same for one peer.
//
// ---- Remote hashes
// onRemoteHash() only validates and stores; comparisons happen in update(), once the local hash
// of the same frame is final. Each (peer, frame) desync is reported once (event + bounded list).
// STATE_HASH carries no episode number: after beginEpisode(), a peer's hashes are accepted only
// once its READY for that episode arrived (earlier ones -> StaleEpisode), so a late hash of the
// previous episode is not compared with the new one (residual risk: a previous-episode hash
// delayed past the peer's READY and still inside the frame window).
//
// ---- Episode END / READY (no-loop ack rule)
// Each side sends its END (READY) once to every peer, then re-sends it every resendMs only to
// peers whose END (READY) has not arrived. Receiving a peer's message for the first time is never
// answered. A DUPLICATE from a peer (after we have ours) means that peer still lacks ours; we
// answer the first duplicate, and after that every second duplicate (answers are sent by the
// next update(), coalesced per peer). Termination: once both sides have each other's message no
// periodic re-sends remain; each answer can cause at most one duplicate at the other side, and
// answering needs two duplicates, so the answers die out (finite even though a lost answer is
// always retried by the peer's periodic re-send). Answers go out on receive (sendAnswers), so a
// peer that no longer steps still answers. A duplicate END of the PREVIOUS episode (the
// peer missed our END after we already began the next episode) is still answered with our END
// of that episode (and returns StaleEpisode).
// Binary END/READY go on P2P when p2pUsable, else as relay packets (Path::Relay, to = peer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "outbox.hpp"
#include "relay.hpp"
#include "result.hpp"

namespace p2psync {

struct StateSyncConfig {
  int numPlayers = 2;                     // 2..4
  int localPlayer = 0;                    // 0..numPlayers-1
  uint32_t hashInterval = 5;              // hash frames: f > 0, f % hashInterval == 0 (>= 1)
  uint32_t hashHistory = 120;             // local hash entries kept; also pending remote hashes per peer (>= 1)
  std::string gameId;                     // relay game_id
  std::vector<nlohmann::json> playerIds;  // relay sender_id per player; empty -> the player index
  double resendMs = 100;                  // END / READY re-send period
  size_t maxDesyncEvents = 64;            // stored desync records (further ones are counted only)
  bool verifiedEvents = true;             // push {type:"verified", frame} when verifiedFrame grows
  bool relayHashesAlways = false;         // also copy hashes to the relay while P2P is usable
};

class StateSync {
 public:
  static constexpr int kMaxPlayers = 4;

  // Returns nullptr when `cfg` is valid, else the name of the first bad field. The constructor
  // clamps invalid values into range (it never fails), so validate first.
  static const char* validateConfig(const StateSyncConfig& cfg);
  explicit StateSync(const StateSyncConfig& cfg);

  const StateSyncConfig& config() const { return cfg_; }
  bool isHashFrame(uint32_t frame) const { return frame > 0 && frame % cfg_.hashInterval == 0; }

  // ---------------------------------------------------------------- hashes
  // Stores the local hash of snapshot frame `frame` (ignored unless a hash frame inside the
  // history). Re-storing a frame makes it valid again; if its hash was already sent and the
  // value differs, it is re-sent by the next update() (counted in hashesResent).
  void onLocalHash(uint32_t frame, uint64_t hash);
  // A rollback to `targetFrame` invalidates the local hashes of frames > targetFrame until they
  // are re-stored; invalid hashes are neither sent nor compared.
  void onRollback(uint32_t targetFrame);
  // Feeds the executed actions of confirmed frame `frame` (must be called for 0, 1, 2, ... in
  // order within an episode; `actions[i]` is actor i's action, n <= 12). Returns false (and
  // ignores the call) when `frame` is not the next expected frame or n is out of range.
  bool onConfirmedActions(uint32_t frame, const uint8_t* actions, size_t n);

  // Sends every final, unsent (or changed) local hash of a hash frame f with f - 1 <=
  // confirmedFrame (confirmedFrame < 0: nothing confirmed yet), compares the pending remote
  // hashes whose local counterpart is final, emits END / READY (re-)sends and answers, and
  // pushes events ("hashBroadcast", "desync", "verified").
  void update(int64_t confirmedFrame, uint32_t currentFrame, bool p2pUsable, double nowMs, Outbox& out,
              EventQueue& events);
  // Only the answers to duplicate END / READY (and previous-episode END) messages, at once: the
  // engine calls it on receive, so a peer that stopped stepping (it ended its last episode) still
  // gives a peer that missed its END what it needs.
  void sendAnswers(Outbox& out, bool p2pUsable, double nowMs);

  // A remote hash (binary STATE_HASH: remoteCounts = nullptr; relay p2p_state_sync: its counts).
  //   UnknownPlayer  peer is not a remote player
  //   BadValue       frame is not a hash frame
  //   OutOfWindow    frame > currentFrame + windowFrames, or beyond the pending-hash capacity
  //   StaleEpisode   the peer's READY for the current episode has not arrived (after beginEpisode)
  //   Unverifiable   frame is older than the local hash history (counted, not a desync)
  //   Duplicate      same frame and hash already known (counts, if new, are kept for the diff)
  //   Ok             stored (a different hash for a known frame replaces it: the peer re-sent)
  RxResult onRemoteHash(int peer, uint32_t frame, uint64_t hash, const ActionCounts* remoteCounts,
                        uint32_t currentFrame, uint32_t windowFrames, double nowMs);
  // Parses a relay p2p_state_sync payload from `peer` and hands it to onRemoteHash().
  // BadRelayJson on a bad payload, SpoofedPlayer when its "from" is not `peer`, BadValue when
  // its game_id is not the configured one.
  RxResult onRelayStateSync(int peer, const char* text, size_t len, uint32_t currentFrame,
                            uint32_t windowFrames, double nowMs);

  // ---------------------------------------------------------------- episodes
  // Starts episode `episode` (initialDigest = digest of the initial state after reset): resets
  // the per-episode hash state, END state and verifiedFrame (session counters and the desync
  // list are kept), sends READY, and applies READYs that arrived early for this episode.
  void beginEpisode(uint32_t episode, uint64_t initialDigest, double nowMs);
  // A peer that joins episode `episode` in the middle (a rejoin by state transfer, at episode
  // frame `firstFrame`): begun, every peer's READY taken as in (the peers had this peer's READY
  // before it reloaded), no READY sent; confirmed actions are fed from firstFrame on, so the
  // action counts of its hashes are unknown (not sent) this episode.
  void joinEpisode(uint32_t episode, uint32_t firstFrame);
  // Every player's hash of hash frame `frame` (local at out[localPlayer]); false while one is missing.
  bool hashesAt(uint32_t frame, uint64_t* out) const;
  // The earliest hash frame >= `from` some peer's hash was reported to differ at, or 0 when none.
  uint32_t earliestDesyncFrom(uint32_t from) const;
  // The local env terminated at `terminalFrame`: END is sent by update() until every peer's
  // END arrived. Later calls in the same episode are ignored.
  void localEpisodeEnd(uint32_t terminalFrame, double nowMs);
  // Ok (first), Duplicate (same frame again), Conflict (another frame; the first is kept),
  // StaleEpisode (another episode), UnknownPlayer.
  RxResult onEpisodeEnd(int peer, uint32_t frame, uint32_t episode, double nowMs);
  // Ok (first for the current episode, or an early READY for the next one, kept until
  // beginEpisode), Duplicate, Conflict (other digest; the first is kept), StaleEpisode,
  // UnknownPlayer. A digest mismatch with our initial digest is reported by the next update()
  // as a desync at frame 0.
  RxResult onEpisodeReady(int peer, uint32_t episode, uint64_t digest, double nowMs);

  uint32_t episode() const { return episode_; }
  bool episodeBegun() const { return begun_; }
  bool localEnded() const { return localEnded_; }
  bool episodeEndSynced() const;  // local END and every peer's END of this episode are in
  uint32_t syncedEndFrame() const;  // min(local, peers' END frames) over the ENDs known so far
  int64_t peersEndFrame() const;    // min of the peers' END frames known so far, -1 when none
  bool peerEnded(int peer) const { return validPeer(peer) && peers_[peer].endIn; }
  bool allReady() const;            // begun and every peer's READY of this episode arrived

  // ---------------------------------------------------------------- stats
  uint32_t verifiedFrame() const { return verifiedFrame_; }
  uint32_t peerVerifiedFrame(int peer) const;
  uint64_t hashesSentCount() const { return hashesSent_; }
  uint64_t hashesResentCount() const { return hashesResent_; }
  uint64_t hashesReceivedCount() const { return hashesReceived_; }
  uint64_t matchCount() const { return matches_; }
  uint64_t unverifiableCount() const { return unverifiable_; }
  uint64_t desyncCount() const { return desyncs_; }
  uint64_t endMessagesSent() const { return endSent_; }
  uint64_t readyMessagesSent() const { return readySent_; }
  const std::vector<nlohmann::json>& desyncEvents() const { return desyncEvents_; }
  // {"hashesSent","hashesResent","hashesReceived","matches","verifiedFrame","unverifiable",
  //  "desyncEvents":[...], "desyncs","duplicates","outOfWindow","episode","allReady",
  //  "episodeEndSynced","syncedEndFrame","endMessagesSent","readyMessagesSent"}
  nlohmann::json toJson() const;

 private:
  struct LocalSlot {
    uint32_t frame = 0;  // 0 = empty
    uint64_t hash = 0;
    uint64_t sentHash = 0;
    bool hasHash = false;
    bool valid = false;
    bool sent = false;
    bool countsKnown = false;
    uint32_t matchedMask = 0;  // remote peers whose hash matched the current value
    ActionCounts counts;       // counts over frames 0..frame-1
  };
  struct RemoteSlot {
    uint32_t frame = 0;  // 0 = empty
    uint64_t hash = 0;
    bool hasCounts = false;
    bool compared = false;  // compared against comparedLocal
    bool everCompared = false;
    bool matchedOnce = false;
    bool desyncReported = false;
    uint64_t comparedLocal = 0;
    int desyncIndex = -1;  // index into desyncEvents_ of this (peer, frame)'s record, -1 if none
    ActionCounts counts;   // kept only until compared
  };
  struct Reply {
    uint32_t dups = 0;  // duplicates since the last answer
    uint32_t answered = 0;
    bool pending = false;
  };
  struct PeerState {
    // END of the current episode
    bool endIn = false;
    uint32_t endFrame = 0;
    bool endSentOnce = false;
    double endSentMs = 0;
    Reply endReply;
    Reply prevEndReply;  // END of the previous episode
    // READY of the current episode
    bool readyIn = false;
    bool readyChecked = false;
    uint64_t readyDigest = 0;
    bool readySentOnce = false;
    double readySentMs = 0;
    Reply readyReply;
    // early READY for the next episode
    bool earlyReady = false;
    uint32_t earlyEpisode = 0;
    uint64_t earlyDigest = 0;
    // verification
    uint32_t verified = 0;
  };

  bool validPeer(int peer) const { return peer >= 0 && peer < cfg_.numPlayers && peer != cfg_.localPlayer; }
  size_t slotIndex(uint32_t frame) const { return (frame / cfg_.hashInterval) % cfg_.hashHistory; }
  uint32_t oldestKept() const;
  LocalSlot* claimLocal(uint32_t frame);  // slot for `frame` (reset if it held an older frame), or null
  RemoteSlot& remote(int peer, uint32_t frame) { return remote_[static_cast<size_t>(peer) * cfg_.hashHistory + slotIndex(frame)]; }
  void resetEpisodeState();
  static void noteDuplicate(Reply& r);
  nlohmann::json senderId() const;
  bool sendBinary(Outbox& out, bool p2pUsable, int to, const uint8_t* bytes, size_t len);
  void sendEndReady(Outbox& out, bool p2pUsable, double nowMs, bool periodic);
  void compare(int peer, RemoteSlot& r, LocalSlot& l, uint32_t currentFrame, EventQueue& events);
  void recordDesync(const Event& ev, EventQueue& events, int* indexOut);

  StateSyncConfig cfg_;
  uint32_t remoteMask_ = 0;  // bit per remote peer

  // per-episode
  bool begun_ = false;
  uint32_t episode_ = 0;
  uint64_t localDigest_ = 0;
  bool localEnded_ = false;
  uint32_t localEndFrame_ = 0;
  bool prevEndValid_ = false;
  uint32_t prevEpisode_ = 0;
  uint32_t prevEndFrame_ = 0;
  std::vector<LocalSlot> local_;
  std::vector<RemoteSlot> remote_;  // numPlayers rows of hashHistory slots (local row unused)
  uint32_t newestLocal_ = 0;        // newest frame claimed in local_
  uint32_t sweptBelow_ = 0;         // remote slots below this frame were already swept
  uint32_t scanFrom_ = 0;           // update() has nothing left to do for hash frames below this
  ActionCounts running_;            // counts over frames 0..fedNext_-1
  uint32_t fedNext_ = 0;
  bool countsPartial_ = false;      // joined mid-episode: running_ lacks the frames before
  double nowMs_ = 0;                // the time of the call in progress (for the events)
  uint32_t verifiedFrame_ = 0;
  PeerState peers_[kMaxPlayers];

  // session counters
  uint64_t hashesSent_ = 0, hashesResent_ = 0, hashesReceived_ = 0, matches_ = 0;
  uint64_t unverifiable_ = 0, desyncs_ = 0, duplicates_ = 0, outOfWindow_ = 0;
  uint64_t endSent_ = 0, readySent_ = 0;
  std::vector<nlohmann::json> desyncEvents_;
};

}  // namespace p2psync
