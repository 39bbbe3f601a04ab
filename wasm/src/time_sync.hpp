// Time sync: the same game for every participant. A peer that runs ahead of another sees that
// peer's inputs arrive later (so it predicts and rolls back more), while the other sees its inputs
// arrive early: the network becomes a confound. TimeSync balances the frame advantage so that
// every pair sees remote inputs arrive with the same lateness.
//
// Measure: the input margin — for each remote peer p, how many frames before use p's inputs
// arrive here (frame - next frame to plan, at first delivery; an exponential moving average).
// Each peer reports to p its margin of p's inputs (QUALITY messages). For the pair (me, p):
//   lead = (margin p measures of my inputs - margin I measure of p's inputs) / 2
// is how many frames I run ahead of p (with symmetric links: margin_me(p) = D - lead - latency,
// margin_p(me) = D + lead - latency). It needs no clock or latency estimate, cancels what both
// sides share (latency, the input delay when both use the same one) and, when the peers use
// different input delays, balances exactly what matters: how late inputs arrive.
//
// Two corrections:
//  * Pacing (sub-frame): the mean lead over the peers, as a small stretch or shrink of this
//    peer's next frame interval (pacingMs: at most 10% of a frame; the page's frame loop applies
//    it, as the simulator's does). A lead of a fraction of a frame matters: with inputs arriving
//    just in time, 0.3 frames decide which side predicts. Proportional and gentle (the lead is
//    gone in about 20 frames), so it does not oscillate and nobody sees it.
//  * WAIT (whole frames): when the largest lead over the peers exceeds `deadband` (default 1
//    frame), WAIT one frame, at most once every minSpacing frames and less often the smaller the
//    lead (30/lead frames, at most 30): WAITs stay rare and spread out.
//
// After a stall (an outage, a paused peer) the first deliveries are the backlog: inputs late
// because the link was down, not because a peer runs ahead. hold(n) ignores margins for the next n
// running frames (they are not reported either, and nobody WAITs): the averages from before the
// stall, on both sides alike, stay until fresh samples come.
//
// It also keeps the frame duration (for catch-up and the input-delay choice) and the newest INPUT
// header of each peer (framesBehind: how far this peer fell behind, for catch-up).
#pragma once
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "frame.hpp"

namespace p2psync {

struct TimeSyncConfig {
  double deadband = 1.0;     // frames of lead tolerated before a WAIT
  int minSpacing = 6;        // frames between two WAITs at least
  int emaFrames = 16;        // margin samples averaged (EMA 1/emaFrames)
  double reportStaleMs = 3000;  // a peer's report older than this is not used
};

class TimeSync {
 public:
  static constexpr int kMarginMin = -32, kMarginMax = 32;
  static constexpr int kLeadBins = 64;        // |lead| histogram, 1/8 frame per bin
  TimeSync(int numPlayers, int localPeer, const TimeSyncConfig& cfg);

  void reset();  // a new episode: margins and reports restart (stats are kept)
  // Ignore margins (and never WAIT) for the next `frames` running frames.
  void hold(int frames) { holdFrames_ = std::max(holdFrames_, frames); }
  bool holding() const { return holdFrames_ > 0; }

  // The first delivery of peer's input for `frame` while the next frame to plan is `current`.
  void onMargin(int peer, Frame frame, Frame current);
  // The peer's report: the margin it measures of this peer's inputs.
  void onReport(int peer, double marginFrames, double nowMs);
  bool hasMargin(int peer) const;
  double margin(int peer) const;  // my average margin of peer's inputs (frames)

  void onHeader(int peer, Frame headerFrame, double nowMs);
  // Frames this peer is behind the peer furthest ahead: each peer's newest INPUT header (its
  // target frame) advanced by the one-way delay it took to arrive, minus `localTarget`; 0 when it
  // is not behind (or before the frame duration is known).
  double framesBehind(Frame localTarget, const std::vector<double>& oneWayMs) const;

  // Called once per advance (measures the frame duration). running: a frame may run now (not
  // stalled/ended); returns true when this frame should be a WAIT.
  bool update(double nowMs, bool running);

  double frameMs() const { return frameMs_; }
  // The stretch (> 0) or shrink (< 0) of this peer's next frame interval, in ms (0 without data).
  double pacingMs(double nowMs) const;
  // The lead over `peer` (frames; > 0: this peer runs ahead), NaN without both margins.
  double lead(int peer, double nowMs) const;

  // Per-peer statistics of the lead over the session (sampled every update with data).
  struct LeadStats {
    uint64_t samples = 0;
    double sum = 0;
    uint64_t beyondOne = 0;  // |lead| > 1 frame
    std::array<uint32_t, kLeadBins> hist{};  // |lead| in 1/8 frames, last bin = 8+
  };
  const LeadStats& leadStats(int peer) const { return stats_[static_cast<size_t>(peer)]; }
  static double p95(const LeadStats& s);

 private:
  struct Peer {
    bool seen = false;
    Frame header = 0;
    double atMs = 0;
    bool hasMargin = false;
    double margin = 0;
    bool hasReport = false;
    double report = 0;
    double reportMs = 0;
  };
  TimeSyncConfig cfg_;
  int local_;
  std::vector<Peer> peers_;
  std::vector<LeadStats> stats_;
  int sinceWait_ = 1 << 20;
  int holdFrames_ = 0;
  double lastNow_ = -1, frameMs_ = 0;
  int intervals_ = 0;
};

}  // namespace p2psync
