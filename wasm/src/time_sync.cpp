#include "time_sync.hpp"

#include <algorithm>
#include <cmath>

namespace p2psync {

TimeSync::TimeSync(int numPlayers, int window, double threshold, int minSpacing)
    : peers_(static_cast<size_t>(numPlayers)), samples_(static_cast<size_t>(window), 0.0), threshold_(threshold), minSpacing_(minSpacing) {}

void TimeSync::reset() {
  for (Peer& p : peers_) p = Peer{};
  std::fill(samples_.begin(), samples_.end(), 0.0);
  next_ = filled_ = 0;
  sinceWait_ = 0;
  avg_ = 0;
  lastNow_ = -1;  // the pause between episodes is not a frame interval (frameMs_ is kept)
}

void TimeSync::onHeader(int peer, Frame headerFrame, double nowMs) {
  Peer& p = peers_[static_cast<size_t>(peer)];
  if (!p.seen || headerFrame >= p.header) {
    p.seen = true;
    p.header = headerFrame;
    p.atMs = nowMs;
  }
}

double TimeSync::framesBehind(Frame localTarget, const std::vector<double>& oneWayMs, int localPeer) const {
  if (frameMs_ <= 0) return 0;
  double most = 0;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (static_cast<int>(i) == localPeer || !peers_[i].seen) continue;
    const double ow = i < oneWayMs.size() && std::isfinite(oneWayMs[i]) ? oneWayMs[i] : 0.0;
    most = std::max(most, static_cast<double>(peers_[i].header) + ow / frameMs_ - static_cast<double>(localTarget));
  }
  return most;
}

bool TimeSync::update(double nowMs, Frame localTarget, const std::vector<double>& oneWayMs, int localPeer) {
  // Frame duration: a smoothed interval between advance calls (the page's frame clock).
  if (lastNow_ >= 0 && nowMs > lastNow_) {
    double dt = nowMs - lastNow_;
    // update() is not called while stalled, so one interval may span a stall or a paused page:
    // clamp it (a lasting change of the frame rate is still followed, by up to 10% per frame).
    if (intervals_ > 0) dt = std::min(dt, 2.0 * frameMs_);
    frameMs_ = intervals_ == 0 ? dt : frameMs_ * 0.9 + dt * 0.1;
    ++intervals_;
  }
  lastNow_ = nowMs;
  ++sinceWait_;
  if (intervals_ < 2 || frameMs_ <= 0) return false;
  bool any = false;
  double adv = -1e9;
  for (size_t i = 0; i < peers_.size(); ++i) {
    if (static_cast<int>(i) == localPeer || !peers_[i].seen) continue;
    double ow = i < oneWayMs.size() && std::isfinite(oneWayMs[i]) ? oneWayMs[i] : 0.0;
    double remoteNow = static_cast<double>(peers_[i].header) + (nowMs - peers_[i].atMs + ow) / frameMs_;
    adv = std::max(adv, static_cast<double>(localTarget) - remoteNow);
    any = true;
  }
  if (!any) return false;
  samples_[next_] = adv;
  next_ = (next_ + 1) % samples_.size();
  if (filled_ < samples_.size()) ++filled_;
  double sum = 0;
  for (size_t i = 0; i < filled_; ++i) sum += samples_[i];
  avg_ = sum / static_cast<double>(filled_);
  if (filled_ < samples_.size() / 2 || avg_ <= threshold_ || sinceWait_ < minSpacing_) return false;
  sinceWait_ = 0;
  // Waiting one frame lowers the advantage by one: account for it in the window at once so a
  // single lead is not waited off twice.
  for (size_t i = 0; i < filled_; ++i) samples_[i] -= 1.0;
  avg_ -= 1.0;
  return true;
}

}  // namespace p2psync
