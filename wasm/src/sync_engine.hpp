// The sync engine: input delay, prediction, rollback/replay, snapshots, confirmed frames, the
// episode end, stall, time sync and sync-test mode, plus the health checker, metrics and
// state-hash sync it owns. It never steps the env, never reads a clock (time comes in as nowMs)
// and never throws.
//
// Per frame the driver makes one advance() call and gets an ordered plan (plan.hpp): Load, Save,
// Advance requests to execute in order. It reports every Advance it executes with stepped(),
// saying whether that step ended the episode; the engine answers whether to go on. The engine
// keeps the earliest terminal frame on the current timeline, forgets it when a rollback reaches
// it (the replay reports it again), sends EPISODE_END once it is confirmed and never plans a
// frame past it.
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
#include "frame.hpp"
#include "health.hpp"
#include "input_buffer.hpp"
#include "metrics.hpp"
#include "outbox.hpp"
#include "plan.hpp"
#include "protocol.hpp"
#include "relay.hpp"
#include "research_data.hpp"
#include "result.hpp"
#include "snapshot_store.hpp"
#include "state_sync.hpp"
#include "state_transfer.hpp"
#include "sync_test.hpp"
#include "time_sync.hpp"

namespace p2psync {

class SyncEngine {
 public:
  // Use create(): it validates the config. On error returns nullptr and sets `error`.
  static std::unique_ptr<SyncEngine> create(const char* configJson, size_t len, std::string& error);
  explicit SyncEngine(const EngineConfig& cfg);

  const EngineConfig& config() const { return cfg_; }

  // ---- per frame
  // Plans this tick. Bot actions are read from botInput() (numBots bytes), written beforehand.
  Status advance(double nowMs, uint8_t localAction, double bufferedAmount);
  // The driver executed the Advance request of `frame` (in plan order). flags: kStepTerminated /
  // kStepTruncated when that step ended the episode, kStepRewards when stepRewards() holds its
  // rewards. Returns true to go on with the plan, false when the plan ends here (the rest of it
  // is void). A report out of order is refused (false, counted).
  bool stepped(Frame frame, uint8_t flags);
  // Saves the pre-step state of `frame` (a Save request). Returns false if refused.
  bool saveSnapshot(Frame frame, const uint8_t* data, size_t len);

  // ---- receiving (never steps anything)
  RxResult receive(const uint8_t* data, size_t len, int fromPeer, Path via, double nowMs);
  RxResult receiveRelayInput(int playerIndex, Frame frame, int action, double nowMs, int fromPeer);
  // event: RelayEvent::PlayerAction or RelayEvent::StateSync, payload = JSON text
  RxResult receiveRelayJson(RelayEvent event, const char* text, size_t len, int fromPeer, double nowMs);

  // ---- snapshots
  const SnapshotStore::Entry* snapshot(Frame frame) const { return snapshots_.find(frame); }
  const uint8_t* snapshotBytes(const SnapshotStore::Entry& e) const { return snapshots_.bytes(e); }
  uint64_t hashState(const uint8_t* data, size_t len) const;

  // ---- the local page's focus (visibilitychange): stamped on the local inputs chosen from now on
  // (they carry it to every peer), and announced with FOCUS_STATE on both paths (replies()).
  void setFocus(bool focused, double nowMs);
  bool focused() const { return localFocused_; }

  // ---- connection events from the page
  void onChannelOpen(int peer, double nowMs);
  void onChannelClosed(int peer, double nowMs);
  void onConnectionFailed(int peer, double nowMs);
  bool setConnectionType(const std::string& type);

  // ---- episodes
  // Starts the next episode. Returns "" or an error (e.g. the episode end is not synced yet).
  std::string resetEpisode(int inputDelay /* -1 = keep */);

  // ---- state transfer (state_transfer.hpp): rejoin after a reload, desync recovery
  // A peer's STATE_REQUEST for this peer's state arrived (event stateRequest): build the transfer
  // now with `attachment` (the page's, e.g. its research rows; opaque). Without this call the
  // engine builds it at the next advance() with no attachment. False: no such request pending.
  bool serveState(int peer, const uint8_t* attachment, size_t len, double nowMs);
  // The attachment of the last transfer this peer loaded (event stateLoaded).
  const std::vector<uint8_t>& transferAttachment() const { return attachment_; }
  bool joining() const { return joining_; }

  // ---- the plan arena (plan.hpp) and the other arenas JS reads
  uint8_t* planData() { return plan_.data(); }
  const uint8_t* planData() const { return plan_.data(); }
  const int32_t* planHeader() const { return reinterpret_cast<const int32_t*>(plan_.data()); }
  size_t requestCount() const { return static_cast<size_t>(planHeader()[plan::kRequestCount]); }
  RequestView request(size_t i) const { return readRequest(plan_.data(), i); }
  uint8_t* botInput() { return plan_.data() + plan::botOffset(cfg_); }
  double* stepRewards() { return reinterpret_cast<double*>(plan_.data() + plan::resultOffset(cfg_)); }
  const Outbox& outbox() const { return out_; }
  const Outbox& replies() const { return reply_; }
  const EventQueue& events() const { return events_; }
  const RowQueue& rows() const { return rows_; }
  // Marks every pending event / row as read (JS does the same by writing kEventRead / kRowRead).
  void consumeEvents() { header()[plan::kEventRead] = static_cast<int32_t>(events_.size()); }
  void consumeRows() { header()[plan::kRowRead] = static_cast<int32_t>(rows_.size()); }
  uint8_t* rxBuffer() { return rx_.data(); }
  size_t rxCapacity() const { return rx_.size(); }

  Frame frame() const { return cur_; }
  Frame confirmedFrame() const { return confirmed_; }
  Frame verifiedFrame() const;
  Frame terminalFrame() const { return terminal_; }
  uint32_t episode() const { return episode_; }
  Frame episodeStart() const { return episodeStart_; }
  int numActors() const { return numActors_; }
  // Executed actions of frames [from, to] (numActors bytes each) into `out`; returns frames written.
  // Only frames still in the ring, and only confirmed ones when `confirmedOnly`.
  size_t actionLog(Frame from, Frame to, std::vector<uint8_t>& out, bool confirmedOnly = true) const;

  nlohmann::json p2pMetrics() const;
  nlohmann::json exportSessionMetrics() const;
  std::string episodeSummary(const std::string& rewardsJson) const;
  // Bytes the engine holds: fixed after construction, plus the state transfers in progress
  // (transferBytes: each at most config maxTransferBytes, freed when done).
  size_t memoryBytes() const;
  size_t transferBytes() const;

  // Invariant-check hooks for tests/fuzzing.
  bool inputKnown(int player, Frame frame, uint8_t& action) const { return inputs_[static_cast<size_t>(player)].get(frame, action); }
  const Metrics& metrics() const { return metrics_; }
  const Health& health() const { return health_; }
  const StateSync& stateSync() const { return stateSync_; }
  const TimeSync& timeSync() const { return timeSync_; }

 private:
  class Call;
  friend class Call;
  struct FrameRecord {
    Frame frame = kNoFrame;
    uint16_t predictedMask = 0;
    std::array<uint8_t, kMaxActors> actions{};
    // research data (research_data.hpp)
    uint16_t firstPredictedMask = 0;  // when the frame was first planned
    uint16_t rollbacks = 0;           // real rollbacks that re-simulated it
    uint8_t stepFlags = 0;            // kRow* of its last simulation
    double firstMs = 0;
    std::array<double, kMaxActors> rewards{};
  };
  struct Misprediction {
    Frame frame = kNoFrame;
    int player = -1;
    int predicted = 0, actual = 0;
  };

  int32_t* header() { return reinterpret_cast<int32_t*>(plan_.data()); }
  FrameRecord& record(Frame f) { return records_[static_cast<size_t>(f) & ringMask_]; }
  const FrameRecord& record(Frame f) const { return records_[static_cast<size_t>(f) & ringMask_]; }
  InputBuffer& inputs(int player) { return inputs_[static_cast<size_t>(player)]; }
  const InputBuffer& inputs(int player) const { return inputs_[static_cast<size_t>(player)]; }
  Frame windowLo() const;
  bool isSnapshotFrame(Frame f) const;
  // The newest frame that may be simulated this episode: the terminal frame, the truncation
  // limit and the peers' confirmed END frames (kMaxWireFrame: none known).
  Frame lastPlannableFrame() const;
  void fillActions(Frame f, FrameRecord& r, const uint8_t* bots);
  void recomputeConfirmed();
  bool p2pUsableAny() const;
  bool p2pUsableAll() const;
  void emitPacket(Outbox& box, Path path, int to, const Message& m);

  // advance() phases, in order
  void beginCall();
  void beginAdvance(double nowMs);
  void noteLocalGap(double nowMs);
  void planRollback(double nowMs);
  void planLoadAndReplay(Frame S, Frame target, Frame last, bool countRollback);
  Status decideStatus(double nowMs);
  void planFrames(double nowMs, uint8_t localAction);
  void sendInputs(double nowMs, double bufferedAmount);
  void requestGaps(double nowMs);
  void sendPings(double nowMs);
  void syncEpisodeEnd(double nowMs);
  void syncState(double nowMs);
  void emitEpisodeEnd(double nowMs);
  void emitRows();
  void finishPlan(Status status);
  int framesToRun();

  // stepped() helpers
  void markTerminal(Frame f, bool truncated, double nowMs);
  void voidPlanAfter(Frame f);

  // receiving
  void onRemoteInput(int player, Frame frame, uint8_t action, bool unfocused, Path via, double nowMs, RxResult& agg);
  void onRemoteFocus(int peer, bool focused, Frame frame, double nowMs);
  void sendFocus(Outbox& box, int to);
  void updatePause(double nowMs);
  // input delay: QUALITY reports, the auto delay's proposal and agreement
  void sendQuality(Outbox& box);
  void onQuality(int peer, const Message& m, double nowMs);
  int proposeDelay() const;
  bool agreeDelay(double nowMs);
  bool startBarrier(double nowMs);
  void applyDelay(int delay, double nowMs, const char* how);
  RxResult handleMessage(const Message& m, int fromPeer, Path via, double nowMs);
  void beginReceive();
  RxResult endReceive(RxResult r);
  RxResult relayInput(int playerIndex, Frame frame, int action, double nowMs, int fromPeer, bool unfocused = false);
  void feedConfirmedActions();
  // state transfer
  void pumpTransfers(double nowMs);
  void requestState(int source, uint8_t reason, uint32_t frame, double nowMs, Outbox& box);
  void sendStateRequest(double nowMs, Outbox& box);
  void sendStateAck(uint8_t status, double nowMs, Outbox& box);
  RxResult onStateRequest(int peer, const Message& m, double healthBeforeMs, double nowMs);
  RxResult onStateChunk(int peer, const Message& m, double nowMs);
  RxResult onStateAck(int peer, const Message& m, double nowMs);
  bool buildTransfer(int peer, const uint8_t* attachment, size_t len, double nowMs);
  void finishTransfer(double nowMs);
  void applyRejoin(const TransferView& v, double nowMs);
  // The timeline starts over at `start` (a new episode, or a loaded transfer): frame counters,
  // the pending rollback and terminal frame, inputs, records, snapshots, time sync, sync test.
  void restartTimelineAt(Frame start);
  void applyResync(const TransferView& v, double nowMs);
  void checkResync(double nowMs);
  bool resyncRule(const uint64_t* hs, int& winner, uint32_t& losers, const char*& reason) const;
  void pushResync(uint32_t H, int source, uint32_t losers, uint64_t hash, const char* reason, double nowMs);
  void answerOwnInputs(int peer, Path via);
  int nextSource(int after) const;

  EngineConfig cfg_;
  int numActors_;
  int local_;
  size_t ringMask_;
  int replayCap_;

  std::vector<InputBuffer> inputs_;  // per player
  std::vector<FrameRecord> records_;
  SnapshotStore snapshots_;
  TimeSync timeSync_;
  Health health_;
  Metrics metrics_;
  StateSync stateSync_;
  SyncTest syncTest_;
  EventQueue events_;
  RowQueue rows_;
  Outbox out_;
  Outbox reply_;
  std::vector<uint8_t> plan_;
  PlanWriter writer_;
  std::vector<uint8_t> rx_;
  std::array<uint8_t, kMaxPacketBytes + 16> scratch_{};
  std::unique_ptr<Message> msg_;         // decode target (large: kept off the stack)
  std::unique_ptr<Message> scratchMsg_;  // INPUT_RESPONSE being built

  Frame cur_ = 0;                    // next frame to plan
  uint32_t episode_ = 0;
  Frame episodeStart_ = 0;
  Frame confirmed_ = kNoFrame;       // newest frame whose inputs are known and simulated
  Frame simulated_ = kNoFrame;       // newest frame stepped (reported) on the current timeline
  Frame nextReport_ = kNoFrame;      // the frame of the next Advance request to be reported
  Frame planLast_ = kNoFrame;        // the frame of the plan's last Advance request
  Frame pendingRollback_ = kNoFrame; // earliest mispredicted frame not yet planned
  Frame lastMissingTarget_ = kNoFrame;  // rollback target whose snapshot was missing (reported once)
  Misprediction firstMiss_;
  Frame terminal_ = kNoFrame;        // earliest frame whose step ended the episode (current timeline)
  bool terminalTruncated_ = false;
  bool endSent_ = false;             // terminal_ confirmed and handed to state sync (frozen)
  bool endEventEmitted_ = false;
  bool endMismatchReported_ = false;
  double endSentMs_ = 0;             // when the local END went to state sync
  bool endTimedOut_ = false;         // the episode ended by endTimeoutMs, not by every peer's END
  Frame rowsUpTo_ = kNoFrame;        // newest frame whose research row was emitted
  uint64_t rowsLost_ = 0;            // confirmed frames whose record left the ring before its row went out
  // focus
  // input delay (auto): proposals per peer for an episode, margin histograms per peer
  struct Proposal {
    bool valid = false;
    uint32_t episode = 0;
    int delay = 0;
  };
  static constexpr int kXMin = -48, kXMax = 32;  // margin - delay, frames
  bool delayAgreed_ = true;
  int delayProposal_ = -1;           // this peer's proposal for the current episode (-1: not yet)
  int nextProposal_ = -1;            // its proposal for the next episode (made when the END goes out)
  double delayGateMs_ = -1;          // when this episode began waiting for the agreement
  double proposalMs_ = -1;           // when this peer's proposal was made
  std::vector<Proposal> proposals_;
  std::vector<std::array<uint32_t, kXMax - kXMin + 1>> xHist_;
  std::vector<uint32_t> xSamples_;
  std::vector<int> delayByEpisode_;
  double lastQualityMs_ = -1e18;
  bool started_ep_ = false;          // the episode's start barrier was passed
  double readyWaitMs_ = -1;          // when this episode began waiting for the peers' READY
  bool localFocused_ = true;
  bool returning_ = false;           // back in focus and still catching up with the others
  Frame localFocusFrame_ = 0;        // the first local input frame of the current focus state
  bool focusAnnounced_ = false;      // the local focus changed at least once this session
  std::vector<int8_t> remoteFocused_;  // per peer: 1 focused, 0 not (last FOCUS_STATE)
  uint32_t pausedMask_ = 0;          // focusPolicy pause: players whose page is hidden
  double pausedSinceMs_ = 0;
  Frame pausedAtFrame_ = 0;
  Frame relaySentUpTo_ = kNoFrame;   // newest local input given to the relay
  Frame p2pSentUpTo_ = kNoFrame;     // newest local input sent on P2P
  bool started_ = false;
  bool stalled_ = false;
  double lastNowMs_ = 0;
  std::vector<double> lastRequestMs_;
  std::vector<uint32_t> budget_;     // packets accepted from each peer since the last advance
  std::vector<double> oneWay_;
  std::vector<Frame> lastHeader_;    // newest INPUT header frame per peer
  Frame countedUpTo_ = kNoFrame;     // confirmed frames fed to state sync
  std::vector<nlohmann::json> episodeSummaries_;
  uint64_t snapshotMisses_ = 0;
  uint64_t badReports_ = 0;          // stepped() calls out of plan order
  uint64_t unreportedSteps_ = 0;     // Advance requests never reported before the next advance()
  // state transfer
  bool joining_ = false;             // rejoin: waiting for a transfer (status JOINING)
  TransferIn tin_;                   // the transfer this peer waits for
  uint8_t tinReason_ = 0;
  uint32_t tinFrame_ = 0;            // resync: the episode-relative hash frame asked for
  double tinRequestMs_ = -1e18;      // the last STATE_REQUEST sent
  double tinAckMs_ = -1e18;          // the last STATE_ACK sent
  uint32_t tinAcked_ = 0;            // chunks received when it went
  uint32_t transferSeq_ = 0;
  struct PendingServe {
    uint32_t id = 0;
    uint8_t reason = 0;
    uint32_t frame = 0;
    double downMs = 0;
    double sinceMs = 0;
  };
  std::vector<PendingServe> pendingServe_;  // per peer: a request to build
  std::vector<TransferOut> touts_;          // per peer: the transfer being sent
  std::vector<double> lastBuildMs_;
  std::vector<uint32_t> rejoinSeen_;        // per peer: the last rejoin request id seen
  std::vector<double> lastInputMs_;         // per peer: when its last input packet arrived
  std::vector<Frame> remoteFocusFrame_;     // per peer: the frame of the newest focus change applied
  std::vector<uint8_t> attachment_;
  struct OwnInput {
    Frame frame;
    uint8_t action;
    bool unfocused;
  };
  std::vector<OwnInput> ownStash_;          // this peer's inputs from before its reload, from the peers
  uint32_t ownAnswered_ = 0;                // peers whose copy of them arrived
  bool holdOwnInputs_ = false;              // after a rejoin: no new local input until they are in
  double rejoinedMs_ = -1;
  Frame loadPending_ = kNoFrame;            // a transferred state to load at the next plan
  std::vector<uint8_t> transferBots_;       // bot actions of frames transferBotsFrom_.. (numBots each)
  Frame transferBotsFrom_ = 0;
  uint32_t resyncFrom_ = 1;                 // hash frames below this were handled by desyncPolicy resync
  uint64_t resyncs_ = 0, transfersIn_ = 0, transfersOut_ = 0, transferErrors_ = 0;
};

// Every public entry point runs inside a Call: it empties the event arena once the reader has
// read all of it (the kEventRead word), and publishes the arena's size when it returns.
class SyncEngine::Call {
 public:
  explicit Call(SyncEngine& e) : e_(e) {
    int32_t* H = e_.header();
    if (static_cast<size_t>(H[plan::kEventRead]) >= e_.events_.size()) {
      e_.events_.clear();
      H[plan::kEventRead] = 0;
    }
    if (static_cast<size_t>(H[plan::kRowRead]) >= e_.rows_.size()) {
      e_.rows_.clear();
      H[plan::kRowRead] = 0;
    }
  }
  ~Call() {
    int32_t* H = e_.header();
    H[plan::kEventBytes] = static_cast<int32_t>(e_.events_.size());
    H[plan::kEventCount] = static_cast<int32_t>(e_.events_.count());
    H[plan::kRowBytes] = static_cast<int32_t>(e_.rows_.size());
    H[plan::kRowCount] = static_cast<int32_t>(e_.rows_.count());
  }
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

 private:
  SyncEngine& e_;
};

}  // namespace p2psync
