// Frame-advantage balancing. From each remote peer's newest INPUT header frame, the time it
// arrived and the one-way latency, estimate the frame that peer is at now; if this peer runs
// ahead of the slowest one on average over a window, recommend a WAIT frame (rate limited).
// Both peers run the same rule, so only the one ahead waits and the frame counters converge.
// Assumes the peers use the same input delay (the header frame is the sender's frame + delay).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "frame.hpp"

namespace p2psync {

class TimeSync {
 public:
  TimeSync(int numPlayers, int window, double threshold, int minSpacing);
  void reset();
  void onHeader(int peer, Frame headerFrame, double nowMs);
  // Called once per advance. `localTarget` is this peer's newest target frame (frame + delay).
  // Returns true when this frame should be a WAIT.
  bool update(double nowMs, Frame localTarget, const std::vector<double>& oneWayMs, int localPeer);
  // Frames this peer is behind the peer furthest ahead: each peer's newest INPUT header (its
  // target frame) advanced by the one-way delay it took to arrive, minus `localTarget`; 0 when it
  // is not behind (or before the frame duration is known). Not extrapolated further: a peer that
  // stalled waiting for this one is not counted as running on.
  double framesBehind(Frame localTarget, const std::vector<double>& oneWayMs, int localPeer) const;
  double averageAdvantage() const { return avg_; }
  double frameMs() const { return frameMs_; }

 private:
  struct Peer { bool seen = false; Frame header = 0; double atMs = 0; };
  std::vector<Peer> peers_;
  std::vector<double> samples_;
  size_t next_ = 0, filled_ = 0;
  double threshold_;
  int minSpacing_;
  int sinceWait_ = 0;
  double lastNow_ = -1, frameMs_ = 0, avg_ = 0;
  int intervals_ = 0;
};

}  // namespace p2psync
