// The sync engine: input delay, prediction, rollback/replay plans, snapshots, confirmed frames,
// stall, time sync and sync-test mode, plus the health checker, metrics and state-hash sync it
// owns. One `advance` call per frame returns a plan; the engine never steps the env, never reads
// a clock (time comes in as nowMs) and never throws.
//
// Frames are numbered across the whole session: an episode starts where the previous one's
// inputs can no longer reach (see resetEpisode), so a stale packet of an old episode can never be
// taken for an input of the new one.
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config.hpp"
#include "events.hpp"
#include "health.hpp"
#include "input_buffer.hpp"
#include "metrics.hpp"
#include "outbox.hpp"
#include "protocol.hpp"
#include "relay.hpp"
#include "result.hpp"
#include "snapshot_store.hpp"
#include "state_sync.hpp"
#include "time_sync.hpp"

namespace p2psync {

enum class Status : int32_t { Run = 0, Stall = 1, Wait = 2, Ended = 3 };

// Layout of the plan header (int32 words), read by JS through an Int32Array view.
enum PlanWord : int {
  kStatus = 0,
  kFrame,            // frame to execute now (when RUN)
  kEpisodeFrame,     // kFrame - episode start
  kSaveSnapshot,     // 1: save the pre-step state of kFrame before stepping
  kPredictedMask,    // bit p: player p's action for kFrame is predicted
  kRollback,         // 1: load snapshot kLoadFrame and replay kReplayCount frames first
  kRollbackTarget,   // earliest mispredicted frame T
  kLoadFrame,        // snapshot frame S <= T
  kReplayCount,      // frames S .. S+count-1
  kConfirmedFrame,   // newest frame whose inputs are known and simulated for all players (-1: none)
  kVerifiedFrame,    // newest hash frame verified against every peer (-1: none)
  kOutBytes,         // bytes used in the outbox
  kOutCount,         // records in the outbox
  kReplyBytes,       // bytes used in the reply box (written by receive)
  kReplyCount,
  kEpisode,
  kNumActors,
  kEventCount,       // event records in the outbox
  kEpisodeStart,     // first frame of the current episode
  kPlanWords = 32
};

class SyncEngine {
 public:
  // Use create(): it validates the config. On error returns nullptr and sets `error`.
  static std::unique_ptr<SyncEngine> create(const char* configJson, size_t len, std::string& error);
  explicit SyncEngine(const EngineConfig& cfg);

  const EngineConfig& config() const { return cfg_; }

  // ---- per frame
  // Bot actions are read from botInput() (numBots bytes), written by the caller beforehand.
  Status advance(double nowMs, uint8_t localAction, double bufferedAmount);

  // ---- receiving (never steps anything)
  RxResult receive(const uint8_t* data, size_t len, int fromPeer, Path via, double nowMs);
  RxResult receiveRelayInput(int playerIndex, uint32_t frame, int action, double nowMs, int fromPeer);
  // event: RelayEvent::PlayerAction or RelayEvent::StateSync, payload = JSON text
  RxResult receiveRelayJson(RelayEvent event, const char* text, size_t len, int fromPeer, double nowMs);

  // ---- snapshots
  bool saveSnapshot(uint32_t frame, const uint8_t* data, size_t len);
  const SnapshotStore::Entry* snapshot(uint32_t frame) const { return snapshots_.find(frame); }
  const uint8_t* snapshotBytes(const SnapshotStore::Entry& e) const { return snapshots_.bytes(e); }
  uint64_t hashState(const uint8_t* data, size_t len) const;

  // ---- connection events from the page
  void onChannelOpen(int peer, double nowMs);
  void onChannelClosed(int peer, double nowMs);
  void onConnectionFailed(int peer, double nowMs);
  bool setConnectionType(const std::string& type);

  // ---- episodes
  // The local env terminated after stepping `frame`.
  void endEpisode(uint32_t frame, double nowMs);
  // Starts the next episode. Returns "" or an error (e.g. the episode end is not synced yet).
  std::string resetEpisode(int inputDelay /* -1 = keep */);

  // ---- reading
  const int32_t* planHeader() const { return reinterpret_cast<const int32_t*>(plan_.data()); }
  uint8_t* planBase() { return plan_.data(); }
  size_t curActionsOffset() const { return kPlanWords * 4; }
  size_t replayActionsOffset() const { return kPlanWords * 4 + 16; }
  size_t resnapOffset() const { return replayActionsOffset() + static_cast<size_t>(replayCap_) * static_cast<size_t>(numActors_); }
  size_t botInputOffset() const { return resnapOffset() + static_cast<size_t>(replayCap_); }
  uint8_t* botInput() { return plan_.data() + botInputOffset(); }
  const Outbox& outbox() const { return out_; }
  const Outbox& replies() const { return reply_; }
  uint8_t* rxBuffer() { return rx_.data(); }
  size_t rxCapacity() const { return rx_.size(); }

  uint32_t frame() const { return cur_; }
  int64_t confirmedFrame() const { return confirmed_; }
  int64_t verifiedFrame() const;
  uint32_t episode() const { return episode_; }
  uint32_t episodeStart() const { return episodeStart_; }
  int numActors() const { return numActors_; }
  // Executed actions of frames [from, to] (numActors bytes each) into `out`; returns frames written.
  // Only frames still in the ring, and only confirmed ones when `confirmedOnly`.
  size_t actionLog(uint32_t from, uint32_t to, std::vector<uint8_t>& out, bool confirmedOnly = true) const;

  nlohmann::json p2pMetrics() const;
  nlohmann::json exportSessionMetrics() const;
  std::string episodeSummary(const std::string& rewardsJson) const;
  size_t memoryBytes() const;  // bytes the engine holds (fixed after construction)

  // Invariant-check hooks for tests/fuzzing.
  bool inputKnown(int player, uint32_t frame, uint8_t& action) const { return inputs_[static_cast<size_t>(player)].get(frame, action); }
  const Metrics& metrics() const { return metrics_; }
  const Health& health() const { return health_; }
  const StateSync& stateSync() const { return stateSync_; }

 private:
  struct FrameRecord {
    uint32_t frame = 0;
    bool valid = false;
    uint16_t predictedMask = 0;
    std::array<uint8_t, kMaxActors> actions{};
  };
  struct Misprediction {
    int64_t frame = -1;
    int player = -1;
    int predicted = 0, actual = 0;
  };

  FrameRecord& record(uint32_t f) { return records_[f & ringMask_]; }
  const FrameRecord& record(uint32_t f) const { return records_[f & ringMask_]; }
  uint32_t windowLo() const;
  bool isSnapshotFrame(uint32_t f) const;
  void fillActions(uint32_t f, FrameRecord& r, const uint8_t* bots);
  void onRemoteInput(int player, uint32_t frame, uint8_t action, Path via, double nowMs, RxResult& agg);
  RxResult handleMessage(const Message& m, int fromPeer, Path via, double nowMs);
  void beginReceive();
  RxResult endReceive(RxResult r);
  RxResult relayInput(int playerIndex, uint32_t frame, int action, double nowMs, int fromPeer);
  void recomputeConfirmed();
  void sendInputs(double nowMs, double bufferedAmount, bool newInput);
  void requestGaps(double nowMs);
  void emitPacket(Outbox& box, Path path, int to, const Message& m);
  bool p2pUsableAny() const;
  void flushEvents();
  void feedConfirmedActions();

  EngineConfig cfg_;
  int numActors_;
  int local_;
  uint32_t ringMask_;
  int replayCap_;

  std::vector<InputBuffer> inputs_;  // per player
  std::vector<FrameRecord> records_;
  SnapshotStore snapshots_;
  TimeSync timeSync_;
  Health health_;
  Metrics metrics_;
  StateSync stateSync_;
  EventQueue events_;
  Outbox out_;
  Outbox reply_;
  std::vector<uint8_t> plan_;
  std::vector<uint8_t> rx_;
  std::array<uint8_t, kMaxPacketBytes + 16> scratch_{};
  std::unique_ptr<Message> msg_;         // decode target (large: kept off the stack)
  std::unique_ptr<Message> scratchMsg_;  // INPUT_RESPONSE being built

  uint32_t cur_ = 0;               // next frame to execute
  uint32_t episode_ = 0;
  uint32_t episodeStart_ = 0;
  int64_t confirmed_ = -1;
  int64_t pendingRollback_ = -1;   // earliest mispredicted frame not yet planned
  int64_t lastMissingTarget_ = -1; // rollback target whose snapshot was missing (reported once)
  Misprediction firstMiss_;
  int64_t localEndFrame_ = -1;     // local env terminated after this frame (not yet confirmed)
  bool localEndSent_ = false;
  bool endEventEmitted_ = false;
  int64_t relaySentUpTo_ = -1;       // newest local input given to the relay
  bool started_ = false;
  bool stalled_ = false;
  double lastNowMs_ = 0;
  std::vector<double> lastRequestMs_;
  std::vector<uint32_t> budget_;   // packets accepted from each peer since the last advance
  std::vector<double> oneWay_;
  std::vector<int64_t> lastHeader_;  // newest INPUT header frame per peer
  // Sync-test: first-run hashes by frame.
  struct TestHash { uint32_t frame = 0; uint64_t hash = 0; bool valid = false; };
  std::vector<TestHash> testHashes_;
  bool nondeterminismReported_ = false;
  std::vector<nlohmann::json> nondeterminism_;
  int64_t countedUpTo_ = -1;  // confirmed frames fed to state sync
  std::vector<nlohmann::json> episodeSummaries_;
  uint64_t snapshotMisses_ = 0;
};

}  // namespace p2psync
