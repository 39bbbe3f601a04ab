// Engine configuration, read from the plain JS object (as JSON text) with nlohmann_json.
// An unknown key or a bad value is an error naming the key.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2psync {

enum class PredictionMethod : uint8_t { PreviousSubmitted = 0, DefaultAction = 1 };
enum class SendPolicy : uint8_t { Dual = 0, P2PFirst = 1 };
// What the others do while a participant's page is hidden: keep predicting its inputs (up to
// maxPredictionFrames, then stall), or pause everyone until it is back (mug's
// pause_on_partner_background).
enum class FocusPolicy : uint8_t { Predict = 0, Pause = 1 };
// After a desync: report it and go on diverged (the reference's behaviour), or agree on one
// peer's state (the majority hash, then the lowest index) and load it by state transfer.
enum class DesyncPolicy : uint8_t { Report = 0, Resync = 1 };

constexpr int kMaxPlayers = 4;
constexpr int kMaxBots = 8;
constexpr int kMaxActors = kMaxPlayers + kMaxBots;
// Frames one advance() may run at once (a peer that fell behind catches up by several per tick).
constexpr int kMaxFramesPerAdvance = 8;

struct EngineConfig {
  int numPlayers = 2;
  int localPlayerIndex = -1;  // required
  int numBots = 0;
  int inputDelay = 2;
  PredictionMethod predictionMethod = PredictionMethod::PreviousSubmitted;
  uint8_t defaultAction = 0;
  int snapshotInterval = 5;
  // How far the local frame may run past the newest frame confirmed for all players.
  // 30 frames = 1 s at 30 fps: covers the `bad` profile (300 ms RTT + jitter + delay) without
  // stalling, and bounds the replay a late input can cost (and the snapshots kept). 0 = only the
  // buffer capacity limits it (the reference's behaviour).
  int maxPredictionFrames = 30;
  int redundancy = 10;
  SendPolicy sendPolicy = SendPolicy::P2PFirst;
  double congestionBytes = 16384;
  bool timeSync = true;
  int timeSyncWindow = 16;          // input-margin samples averaged (time_sync.hpp)
  double timeSyncThreshold = 1.0;   // frames of lead tolerated before a WAIT (pacing handles less)
  int timeSyncMinSpacing = 6;       // at most one WAIT every N frames (fewer for smaller leads)
  // inputDelay "auto": every episode the peers agree on the smallest delay (max over the peers'
  // proposals) at which targetOnTime of the remote inputs arrive before they are needed, within
  // [autoDelayMin, autoDelayMax]; chosen from the measured input margins, or from the RTT before
  // there are any.
  bool autoDelay = false;
  int autoDelayMin = 0;
  int autoDelayMax = 8;
  double autoDelayTargetOnTime = 0.95;
  double delayAgreementTimeoutMs = 3000;
  // An episode's first frame waits for every peer's READY (its start barrier) at most this long.
  double readyTimeoutMs = 5000;
  int syncTestDistance = 0;         // > 0: sync-test mode
  int bufferFrames = 256;           // per-player input ring (power of two)
  int snapshotSlots = 64;
  size_t snapshotBytes = 4u << 20;
  int hashInterval = 0;             // 0 = snapshotInterval
  int hashHistory = 120;
  int canonicalizeDigits = 0;       // 0 = off
  double pingIntervalMs = 500;
  double interruptMs = 750;
  double disconnectMs = 5000;
  bool fallbackRecovery = false;
  double recoveryHealthyForMs = 5000;
  double recoveryLatencyBelowMs = 100;
  std::string gameId = "p2psync";
  std::vector<nlohmann::json> playerIds;  // per player; default: the index
  int maxEvents = 256;
  int maxPacketsPerPeerPerFrame = 64;  // receive budget per peer between two advances (flood guard)
  int maxEpisodeFrames = 0;         // > 0: an episode is truncated after this many frames
  bool relayHashesAlways = false;   // copy state hashes to the relay even while P2P is usable
  // After the local END, a peer's END that has not arrived within this time no longer holds the
  // episode: it ends with an endTimeout event naming the missing peers (mug waits 5 s too).
  double endTimeoutMs = 5000;
  FocusPolicy focusPolicy = FocusPolicy::Predict;
  // Catch-up: a peer that fell more than catchUpThreshold frames behind the others runs several
  // frames per advance, so that it is back within about catchUpWithinMs.
  bool catchUp = true;
  int catchUpThreshold = 2;
  double catchUpWithinMs = 1000;
  // State transfer (state_transfer.hpp): a reloaded page starts with rejoin = true (it asks a
  // live peer for the state instead of starting episode 0); the largest transfer accepted or
  // sent; chunks sent per advance per transfer.
  bool rejoin = false;
  size_t maxTransferBytes = 8u << 20;
  int transferChunksPerFrame = 32;
  DesyncPolicy desyncPolicy = DesyncPolicy::Report;

  int numActors() const { return numPlayers + numBots; }
  int effectiveHashInterval() const { return hashInterval > 0 ? hashInterval : snapshotInterval; }
  // Frames the engine may run ahead of the confirmed frame before it stalls.
  int predictionLimit() const;
  nlohmann::json toJson() const;
};

// Parses `text` (a JSON object) into `out`. Returns "" on success, else "config.<key>: <why>".
std::string parseConfig(const char* text, size_t len, EngineConfig& out);

}  // namespace p2psync
