// Connection health per remote peer: RTT statistics from PING/PONG, liveness (interrupted /
// disconnected / reconnected) and the P2P fallback monitor.
//
// Peers are player indices 0..numPlayers-1; the local player is not a peer (calls naming it, or
// an index out of range, are ignored). No clocks: every time is a `nowMs` argument.
// Memory is fixed at construction: per-peer state, a 16-slot ping ring, a 100-sample RTT window
// per peer and bounded event lists.
//
// RTT
//   pingDue(now) is true when pingIntervalMs has elapsed since the last ping (the first call is
//   always true); it then records `now` as an outstanding ping for every remote peer: the engine
//   broadcasts one PING carrying `now` as its timestamp. The last 16 pings are remembered with
//   one answered bit per peer. onPong(peer, ts, now) accepts ts only if it equals an outstanding,
//   not yet answered ping of that peer; the RTT sample is now - ts (out-of-order pongs are fine).
//   Otherwise it returns UnsolicitedPong and counts it: `duplicatePongs` when that peer already
//   answered that ping, `unsolicitedPongs` when no remembered ping has that timestamp (never
//   sent, or evicted from the ring).
//   rttAvgMs = mean of the last 10 samples; latencyMs = rttAvgMs / 2 (reference semantics).
//   Over a window of the last 100 samples: p50Ms, p95Ms (nearest rank: the ceil(p*n)-th smallest),
//   jitterMs (mean |x[i] - x[i-1]| over consecutive samples in arrival order, null below 2
//   samples), minMs, maxMs. `samples` = total valid samples ever. Stats without samples are null.
//   status: "critical" if latency > 200 ms, "warning" if > 100 ms, else "good" (also with no
//   samples).
//
// Liveness
//   onPacket(peer, now) for every valid packet from the peer. The silence clock of a peer starts
//   at the first update() (or its first packet, if earlier). update() makes a peer silent for
//   >= interruptMs "interrupted" (event interrupted), for >= disconnectMs "disconnected" (event
//   disconnected; both events in the same update if both thresholds were crossed). A packet from
//   an interrupted or disconnected peer emits reconnected {downMs = now - last packet (or clock
//   start), from: "interrupted"|"disconnected"}.
//
// Fallback (reference _checkP2PHealth semantics, made per peer)
//   A peer with >= 1 RTT sample is degraded when latency > 300 ms (reason "latency-high") or its
//   status is critical, i.e. latency > 200 ms (reason "latency-critical"; the > 300 test is made
//   first so both reasons can occur). update() puts a degraded peer into fallback;
//   onChannelClosed / onConnectionFailed do so at once ("channel-closed" / "connection-failed").
//   Entering fallback emits {type:"fallback", peer, frame, reason, timeMs, latencyMs} and, the
//   first time in the session, sets p2pFallbackTriggered / p2pFallbackFrame (session-level and
//   historical: they stay set after a recovery, like the reference flag).
//   Sticky unless cfg.recovery: then a peer in fallback whose channel is open and alive returns
//   to P2P once its latency has stayed < recoveryLatencyBelowMs for recoveryHealthyForMs, with
//   fresh samples: the healthy streak starts at the first pong received in fallback with latency
//   below the threshold, and is broken by a pong above it, a channel close, the peer becoming
//   interrupted, or no pong for max(3 * pingIntervalMs, interruptMs). Emits {type:"recovery",
//   peer, frame, timeMs, fallbackMs}.
//   Channels start open; onChannelOpen re-opens one. p2pUsable(peer) = channel open AND not in
//   fallback AND not disconnected.
//
// Events
//   update() pushes its events into the EventQueue it is given. The other calls that can produce
//   an event (onPacket, onChannelClosed, onConnectionFailed) take an optional EventQueue*: with
//   nullptr the event is held (bounded by maxEvents) and pushed by the next update().
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "frame.hpp"
#include "result.hpp"

namespace p2psync {

struct HealthConfig {
  double pingIntervalMs = 500;
  double interruptMs = 750;
  double disconnectMs = 5000;
  bool recovery = false;
  double recoveryHealthyForMs = 5000;
  double recoveryLatencyBelowMs = 100;
  // RTT samples needed before latency can trigger a fallback: one early outlier (jitter, a
  // reordered packet) must not make the sticky fallback fire on a link that is only slow.
  int minSamplesForDegraded = 3;
};

enum class Liveness : uint8_t { Alive = 0, Interrupted = 1, Disconnected = 2 };
const char* livenessName(Liveness l);

class Health {
 public:
  static constexpr int kMaxPlayers = 16;      // peers are tracked in bitmasks
  static constexpr int kPingSlots = 16;       // outstanding pings remembered
  static constexpr int kAvgSamples = 10;      // rttAvgMs / latencyMs window
  static constexpr int kWindowSamples = 100;  // p50 / p95 / jitter / min / max window
  static constexpr double kWarningLatencyMs = 100;
  static constexpr double kCriticalLatencyMs = 200;
  static constexpr double kHighLatencyMs = 300;

  // numPlayers is clamped to [1, kMaxPlayers]. maxEvents bounds the held events and the
  // fallback/recovery history kept for toJson().
  Health(int numPlayers, int localPlayerIndex, const HealthConfig& cfg = {}, size_t maxEvents = 256);

  const HealthConfig& config() const { return cfg_; }
  int numPlayers() const { return numPlayers_; }
  int localPlayerIndex() const { return local_; }
  bool isPeer(int peer) const { return peer >= 0 && peer < numPlayers_ && peer != local_; }

  // ---- RTT
  bool pingDue(double nowMs);
  bool pingDue(double nowMs, double intervalMs);  // the same with another interval
  double lastPingMs() const { return lastPingMs_; }  // NaN before the first ping
  RxResult onPong(int peer, double ts, double nowMs);  // Ok, UnsolicitedPong or UnknownPlayer

  // ---- packets
  void onPacket(int peer, double nowMs, EventQueue* events = nullptr);
  void onInputHeader(int peer, uint32_t headerFrame);

  // ---- channel state
  void onChannelOpen(int peer, double nowMs);
  // The peer's page reloaded and rejoined: a new connection. Its fallback and liveness state start
  // over (the session-level fallback flag and the counters stay); RTT samples restart.
  void resetPeer(int peer, double nowMs);
  void onChannelClosed(int peer, double nowMs, Frame frame, EventQueue* events = nullptr);
  void onConnectionFailed(int peer, double nowMs, Frame frame, EventQueue* events = nullptr);

  // Liveness + fallback/recovery checks; flushes held events first.
  void update(double nowMs, Frame frame, EventQueue& events);

  // ---- queries (invalid peers: NaN / false / defaults)
  double rttAvgMs(int peer) const;   // NaN without samples
  double latencyMs(int peer) const;  // NaN without samples
  double rttPercentileMs(int peer, int pct) const;  // over the sample window; NaN without samples
  const char* status(int peer) const;
  Liveness liveness(int peer) const;
  bool channelOpen(int peer) const;
  bool inFallback(int peer) const;
  bool p2pUsable(int peer) const;
  bool anyFallback() const;
  uint64_t unsolicitedPongs(int peer) const;
  // A round trip that spans a frozen page (this one, or the peer's) measures the freeze, not the
  // link: this page stopped running at `t` and is back — the pings sent before `t` give no sample.
  // (A pong from a peer that went silent — interrupted or disconnected — gives none either: its
  // page may have been frozen.) Counted as stalePongs.
  void discardPingsSentBefore(double t);
  uint64_t stalePongs(int peer) const;
  uint64_t duplicatePongs(int peer) const;
  uint64_t gapCount(int peer) const;
  uint64_t sampleCount(int peer) const;
  // When the last packet from `peer` arrived (or its silence clock started); NaN for a non-peer.
  double lastHeardMs(int peer) const;

  // Session-level fallback flags (for Metrics::p2pMetricsJson).
  bool fallbackTriggered() const { return triggered_; }
  int64_t fallbackFrame() const { return triggered_ ? fallbackFrame_ : -1; }
  uint64_t recoveries() const { return recoveries_; }
  uint64_t heldEventsDropped() const { return heldDropped_; }

  // {"peers":[...], "fallback":{...}}; see web/session-metrics.schema.json (quality.peers,
  // quality.fallback).
  nlohmann::json toJson() const;
  nlohmann::json peersJson() const;
  nlohmann::json fallbackJson() const;

 private:
  struct Peer {
    // RTT
    std::array<double, kWindowSamples> win{};  // ring, arrival order
    int winCount = 0;                          // valid entries (<= kWindowSamples)
    int winHead = 0;                           // next write position
    uint64_t samples = 0;
    double lastSampleMs = 0;
    uint64_t unsolicited = 0, duplicate = 0, stale = 0;
    // packets
    uint64_t packets = 0, gaps = 0;
    bool haveHeader = false;
    uint32_t lastHeader = 0;
    // liveness
    bool clockStarted = false;
    double lastHeardMs = 0;  // last packet, or the clock start
    bool anyPacket = false;
    double lastPacketMs = 0;
    Liveness live = Liveness::Alive;
    uint64_t interruptions = 0, disconnections = 0;
    // channel / fallback
    bool channelOpen = true;
    bool inFallback = false;
    const char* fallbackReason = nullptr;
    double fallbackSinceMs = 0;
    bool healthy = false;  // recovery streak running
    double healthySinceMs = 0;
  };
  struct PingSlot {
    bool used = false;
    bool stale = false;     // sent before this page stopped running: its round trip would include that
    uint32_t silentMask = 0;  // peers that went silent (interrupted) before answering it
    double ts = 0;
    uint32_t answered = 0;  // bit per peer
  };

  Peer* peer(int p) { return isPeer(p) ? &peers_[p] : nullptr; }
  const Peer* peer(int p) const { return isPeer(p) ? &peers_[p] : nullptr; }
  static double avgOf(const Peer& p);
  static const char* statusOf(double latency);
  void startClock(Peer& p, double nowMs);
  void emit(const Event& ev, EventQueue* events);
  void remember(const Event& ev);
  void enterFallback(int p, double nowMs, Frame frame, const char* reason, EventQueue* events);
  nlohmann::json peerJson(int p) const;

  HealthConfig cfg_;
  int numPlayers_;
  int local_;
  size_t maxEvents_;
  std::vector<Peer> peers_;
  std::array<PingSlot, kPingSlots> pings_{};
  int pingHead_ = 0;
  bool anyPing_ = false;
  double lastPingMs_;

  std::vector<Event> held_;  // events waiting for the next update()
  uint64_t heldDropped_ = 0;

  bool triggered_ = false;
  Frame fallbackFrame_ = 0;
  const char* fallbackReason_ = nullptr;
  double fallbackTimeMs_ = 0;
  int fallbackPeer_ = -1;
  uint64_t recoveries_ = 0;
  std::vector<nlohmann::json> history_;  // fallback + recovery events
  uint64_t historyDropped_ = 0;
};

}  // namespace p2psync
