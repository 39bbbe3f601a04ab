#include "time_sync.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace p2psync {

TimeSync::TimeSync(int numPlayers, int localPeer, const TimeSyncConfig& cfg)
    : cfg_(cfg), local_(localPeer), peers_(static_cast<size_t>(numPlayers)), stats_(static_cast<size_t>(numPlayers)) {}

void TimeSync::reset() {
  for (Peer& p : peers_) p = Peer{};
  sinceWait_ = 1 << 20;
  holdFrames_ = 0;
  lastNow_ = -1;  // the pause between episodes is not a frame interval (frameMs_ is kept)
}

void TimeSync::onMargin(int peer, Frame frame, Frame current) {
  if (holdFrames_ > 0) return;
  Peer& p = peers_[static_cast<size_t>(peer)];
  const double m = static_cast<double>(std::clamp<Frame>(frame - current, kMarginMin, kMarginMax));
  if (!p.hasMargin) {
    p.margin = m;
    p.hasMargin = true;
  } else {
    p.margin += (m - p.margin) / std::max(1, cfg_.emaFrames);
  }
}

void TimeSync::onReport(int peer, double marginFrames, double nowMs) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (!std::isfinite(marginFrames)) return;
  p.hasReport = true;
  p.report = std::clamp<double>(marginFrames, kMarginMin, kMarginMax);
  p.reportMs = nowMs;
}

bool TimeSync::hasMargin(int peer) const { return peers_[static_cast<size_t>(peer)].hasMargin; }
double TimeSync::margin(int peer) const { return peers_[static_cast<size_t>(peer)].margin; }

void TimeSync::onHeader(int peer, Frame headerFrame, double nowMs) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (!p.seen || headerFrame >= p.header) {
    p.seen = true;
    p.header = headerFrame;
    p.atMs = nowMs;
  }
}

double TimeSync::framesBehind(Frame localTarget, const std::vector<double>& oneWayMs) const {
  if (frameMs_ <= 0) return 0;
  double most = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (static_cast<int>(i) == local_ || !peers_[i].seen) continue;
    const double ow = i < oneWayMs.size() && std::isfinite(oneWayMs[i]) ? oneWayMs[i] : 0.0;
    most = std::max(most, static_cast<double>(peers_[i].header) + ow / frameMs_ - static_cast<double>(localTarget));
  }
  return most;
}

double TimeSync::lead(int peer, double nowMs) const {
  const Peer& p = peers_[static_cast<size_t>(peer)];
  if (!p.hasMargin || !p.hasReport || nowMs - p.reportMs > cfg_.reportStaleMs) return std::numeric_limits<double>::quiet_NaN();
  return (p.report - p.margin) / 2;
}

bool TimeSync::update(double nowMs, bool running) {
  // Frame duration: a smoothed interval between advance calls (the page's frame clock).
  if (lastNow_ >= 0 && nowMs > lastNow_) {
    double dt = nowMs - lastNow_;
    // One interval may span a stall or a paused page: clamp it (a lasting change of the frame
    // rate is still followed, by up to 10% per frame).
    if (intervals_ > 0) dt = std::min(dt, 2.0 * frameMs_);
    frameMs_ = intervals_ == 0 ? dt : frameMs_ * 0.9 + dt * 0.1;
    ++intervals_;
  }
  lastNow_ = nowMs;
  ++sinceWait_;
  if (holdFrames_ > 0) {
    if (running) --holdFrames_;
    return false;
  }
  double most = -std::numeric_limits<double>::infinity();
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (static_cast<int>(i) == local_) continue;
    const double l = lead(static_cast<int>(i), nowMs);
    if (std::isnan(l)) continue;
    LeadStats& s = stats_[i];
    ++s.samples;
    s.sum += l;
    if (std::fabs(l) > 1) ++s.beyondOne;
    ++s.hist[std::min<size_t>(static_cast<size_t>(std::fabs(l) * 8), kLeadBins - 1)];
    most = std::max(most, l);
  }
  if (!running || !(most > cfg_.deadband)) return false;
  // Less often the smaller the lead: a 1-frame lead waits once in 30 frames (one second at 30 fps).
  const int spacing = std::clamp(static_cast<int>(std::ceil(30.0 / most)), std::max(1, cfg_.minSpacing), 30);
  if (sinceWait_ < spacing) return false;
  sinceWait_ = 0;
  return true;
}

double TimeSync::pacingMs(double nowMs) const {
  if (frameMs_ <= 0) return 0;
  double sum = 0;
  int n = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (static_cast<int>(i) == local_) continue;
    const double l = lead(static_cast<int>(i), nowMs);
    if (std::isnan(l)) continue;
    sum += l;
    ++n;
  }
  if (n == 0) return 0;
  const double mean = sum / n;
  if (std::fabs(mean) < 0.05) return 0;
  return std::clamp(mean * frameMs_ / 20.0, -0.1 * frameMs_, 0.1 * frameMs_);
}

double TimeSync::p95(const LeadStats& s) {
  if (s.samples == 0) return 0;
  const uint64_t rank = (s.samples * 95 + 99) / 100;
  uint64_t cum = 0;
  for (int b = 0; b < kLeadBins; ++b) {
    cum += s.hist[static_cast<size_t>(b)];
    if (cum >= rank) return (b + 1) / 8.0;
  }
  return kLeadBins / 8.0;
}

}  // namespace p2psync
