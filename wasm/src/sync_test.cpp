#include "sync_test.hpp"

namespace p2psync {

namespace {
constexpr size_t kMaxReports = 64;
}

SyncTest::SyncTest(int distance, int ringFrames)
    : distance_(distance),
      mask_(static_cast<uint32_t>(ringFrames - 1)),
      first_(distance > 0 ? static_cast<size_t>(ringFrames) : 0) {}

Frame SyncTest::forcedTarget(Frame current, Frame episodeStart) const {
  if (distance_ <= 0 || current < episodeStart + distance_) return kNoFrame;
  return current - distance_;
}

void SyncTest::onMisprediction(Frame frame) {
  for (Entry& e : first_)
    if (e.frame > frame) e.frame = kNoFrame;
}

void SyncTest::onSnapshot(Frame frame, uint64_t hash, Frame episodeStart, Frame currentFrame, EventQueue& events) {
  if (distance_ <= 0) return;
  Entry& e = first_[static_cast<size_t>(frame) & mask_];
  if (e.frame != frame) {
    e = Entry{frame, hash};
    return;
  }
  if (e.hash == hash || reported_) return;
  reported_ = true;
  Event ev(EventType::Nondeterminism);
  ev.num(Field::kFrame, static_cast<double>(frame))
      .hex(Field::kFirstHash, e.hash)
      .hex(Field::kReplayHash, hash)
      .num(Field::kEpisodeFrame, static_cast<double>(frame - episodeStart))
      .num(Field::kCheckDistance, distance_)
      .num(Field::kDetectedAtFrame, static_cast<double>(currentFrame));
  if (reports_.size() < kMaxReports) reports_.push_back(ev.toJson());
  events.push(ev);
}

void SyncTest::reset() {
  for (Entry& e : first_) e.frame = kNoFrame;
  reported_ = false;
}

}  // namespace p2psync
