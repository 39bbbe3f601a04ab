// Sync-test mode (GGPO's SyncTestSession): every frame the engine forces a rollback of
// `distance` frames and the replay re-saves every snapshot; a snapshot whose hash differs from
// the one saved the first time that frame was simulated means the env is not deterministic.
// Owned by the sync engine; plain C++20, bounded (one hash per frame of the input ring).
#pragma once
#include <cstdint>
#include <vector>

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "frame.hpp"

namespace p2psync {

class SyncTest {
 public:
  // distance 0: disabled. ringFrames: a power of two, at least the replay window.
  SyncTest(int distance, int ringFrames);

  bool enabled() const { return distance_ > 0; }
  int distance() const { return distance_; }
  // The frame the engine must roll back to before running `current`, or kNoFrame.
  Frame forcedTarget(Frame current, Frame episodeStart) const;
  // A real misprediction at `frame`: first-run hashes of later frames were built on wrong inputs
  // and are re-recorded by the replay.
  void onMisprediction(Frame frame);
  // The hash of a saved snapshot. The first save of a frame records it; a later one that differs
  // is reported once per episode (event + export).
  void onSnapshot(Frame frame, uint64_t hash, Frame episodeStart, Frame currentFrame, EventQueue& events);
  void reset();  // a new episode
  const std::vector<nlohmann::json>& reports() const { return reports_; }

 private:
  struct Entry {
    Frame frame = kNoFrame;
    uint64_t hash = 0;
  };
  int distance_;
  uint32_t mask_;
  std::vector<Entry> first_;
  bool reported_ = false;
  std::vector<nlohmann::json> reports_;  // at most one per episode, capped
};

}  // namespace p2psync
