// Research metrics: counters and fixed-bucket histograms the sync engine feeds as it runs, and
// their JSON export (web/session-metrics.schema.json: p2pMetrics, inputs, rollbacks, quality.*,
// rejected). Every recording call is O(1) and allocation-free except the bounded rollback event
// list. No clocks: times come in as arguments.
//
// Conventions
//   Path::P2P = DataChannel, Path::Relay = Socket.IO relay ("SocketIO" in the reference names).
//   Session totals never reset; beginEpisode() resets only the per-episode counters
//   (rollbacks, rollback frames, stalls, waits, inputs received per path).
//   Lag histogram buckets (ms): [0,5) [5,10) [10,20) [20,50) [50,100) [100,200) [200,500) [500,inf);
//   negative lags count as 0, non-finite ones are ignored. p50/p95 of a lag histogram are approximate: the bucket holding the
//   ceil(p*count)-th sample, linearly interpolated inside it, clamped to the observed min/max.
//   Rollback depth histogram: an array of 64 counts, index i = depth i+1, the last (index 63) =
//   depth >= 64 (depth 0 counts as 1). p99Frames = the depth of the ceil(0.99*count)-th
//   rollback by that histogram (maxFrames when it falls in the 64+ bucket); null without
//   rollbacks. Rollback events keep the FIRST maxRollbackEvents; later ones are counted in
//   eventsDropped.
//   Late-input margin: 65 counts for margins -32..32 (index = margin + 32), values clamped.
//
// Episode summary line (reference format, one decimal like JS toFixed(1), ties rounded up):
//   [Episode] Complete at frame N | Rewards: {...} | InputBuf: n | Rollbacks: r | Syncs: s | P2P: a/b (x.y%)
//   + " | Fallback at frame F" when fallback was triggered.
//   a = session inputsReceivedViaP2P, b = a + session inputsReceivedViaSocketIO (the same
//   counters as p2pMetrics); "P2P: N/A" when b == 0. r = this episode's rollback count.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "outbox.hpp"  // Path
#include "result.hpp"

namespace p2psync {

class Metrics {
 public:
  static constexpr int kLagBuckets = 8;
  static constexpr std::array<double, kLagBuckets - 1> kLagBoundsMs = {5, 10, 20, 50, 100, 200, 500};
  static constexpr int kMarginMin = -32;
  static constexpr int kMarginMax = 32;
  static constexpr int kMarginBins = kMarginMax - kMarginMin + 1;  // 65
  static constexpr int kDepthBins = 64;                            // depth 1..63, 64+

  enum class ConnectionType : uint8_t { Unknown = 0, Direct = 1, Relay = 2 };

  explicit Metrics(size_t maxRollbackEvents = 256);

  // ---- inputs / packets
  // newInputs: inputs sent on `path` for the first time; entries: all input entries written,
  // redundant copies included.
  void inputSent(Path path, uint32_t newInputs, uint32_t entries);
  void packetSent(Path path);
  void packetReceived(Path path);
  // One received input entry (a remote player's action for a frame). firstDelivery: no path had
  // delivered it before; otherwise it is a duplicate on `path`.
  void inputReceived(Path path, bool firstDelivery);
  // The other path delivered an input `lagMs` after `firstPath` did.
  void otherPathLag(Path firstPath, double lagMs);
  // Frames between an input's arrival and its use (positive = before use, negative = late).
  void inputMargin(int32_t framesBeforeUse);

  // ---- rollbacks
  // frame: first mispredicted frame; currentFrame: frame when detected; depth: frames rolled
  // back (replayed). Pushes {type:"rollback", ...the event fields} into `events` when given.
  void rollback(uint32_t frame, uint32_t currentFrame, uint32_t depth, int player, int predictedAction,
                int actualAction, double timeMs, EventQueue* events = nullptr);

  // ---- other counters
  void stall();
  void wait();
  void rejected(RxResult code);  // RxResult::Ok is ignored
  void inputRequestSent();
  void inputResponseSent();
  void gapFilled(uint32_t n);

  // "direct" | "relay" | "unknown"; anything else is refused (returns false, unchanged).
  bool setConnectionType(std::string_view type);
  const char* connectionType() const;

  void beginEpisode();

  // ---- reads
  uint64_t inputsSent(Path p) const { return sent_[idx(p)]; }
  uint64_t inputsReceived(Path p) const { return received_[idx(p)]; }
  uint64_t duplicates(Path p) const { return dups_[idx(p)]; }
  uint64_t rollbackCount() const { return rollbacks_; }
  uint64_t episodeRollbacks() const { return ep_.rollbacks; }
  uint32_t maxRollbackFrames() const { return maxDepth_; }
  uint64_t stalls() const { return stalls_; }
  uint64_t waits() const { return waits_; }
  uint64_t rejectedCount(RxResult code) const;
  int64_t p99RollbackFrames() const;  // -1 without rollbacks

  // ---- export
  // Exactly {inputsReceivedViaP2P, inputsReceivedViaSocketIO, inputsSentViaP2P,
  // inputsSentViaSocketIO, p2pFallbackTriggered, p2pFallbackFrame, connectionType};
  // fallbackFrame < 0 -> null. (Pass Health::fallbackTriggered()/fallbackFrame().)
  nlohmann::json p2pMetricsJson(bool fallbackTriggered, int64_t fallbackFrame) const;
  std::string episodeSummary(uint32_t frame, const std::string& rewardsJson, uint32_t inputBufferSize,
                             uint32_t syncs, bool fallbackTriggered, int64_t fallbackFrame) const;
  nlohmann::json inputsJson() const;     // export "inputs"
  nlohmann::json rollbacksJson() const;  // export "rollbacks"
  nlohmann::json rejectedJson() const;   // export "rejected": {CODE: n}, non-zero codes only
  nlohmann::json episodeJson() const;    // per-episode counters (not part of the export schema)
  // {"inputs", "rollbacks", "stalls", "waits", "rejected", "connectionType"}
  nlohmann::json toJson() const;

 private:
  struct Lag {
    uint64_t count = 0;
    double sum = 0, min = 0, max = 0;
    std::array<uint64_t, kLagBuckets> buckets{};
  };
  struct Episode {
    uint64_t rollbacks = 0, framesReplayed = 0, stalls = 0, waits = 0;
    uint32_t maxFrames = 0;
    std::array<uint64_t, 2> received{};
  };
  struct RollbackEvent {
    uint32_t frame, currentFrame, depth;
    int player, predicted, actual;
    double timeMs;
  };

  static size_t idx(Path p) { return p == Path::P2P ? 0 : 1; }
  static double lagPercentile(const Lag& l, int pct);
  static nlohmann::json lagJson(const Lag& l);

  std::array<uint64_t, 2> sent_{}, entries_{}, pktSent_{}, pktRecv_{}, received_{}, dups_{};
  uint64_t requests_ = 0, responses_ = 0, gapsFilled_ = 0;
  std::array<Lag, 2> lag_{};  // by the path that delivered first
  std::array<uint64_t, kMarginBins> margin_{};

  uint64_t rollbacks_ = 0, framesReplayed_ = 0;
  uint32_t maxDepth_ = 0;
  std::array<uint64_t, kDepthBins> depthHist_{};
  size_t maxEvents_;
  std::vector<RollbackEvent> events_;
  uint64_t eventsDropped_ = 0;

  uint64_t stalls_ = 0, waits_ = 0;
  std::array<uint64_t, static_cast<size_t>(RxResult::Count_)> rejected_{};
  ConnectionType conn_ = ConnectionType::Unknown;
  Episode ep_;
};

}  // namespace p2psync
