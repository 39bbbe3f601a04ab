// Research data: one row per confirmed frame, the same on every peer (but the local wall-clock
// column). The engine fills a FrameRow from its per-frame record when the frame is confirmed —
// its inputs are final and its last simulation was reported — and appends it to a RowQueue, a
// fixed byte arena that JS reads through a view of WASM memory (read cursor: plan word kRowRead).
//
// Row record (little-endian; rowBytes(numActors) bytes; declared here once, exported to JS by
// layoutJson()):
//   i32 frame            session-wide frame
//   i32 episodeFrame     frame - episodeStart
//   u32 episode
//   u16 predictedMask    bit p: player p's action was predicted when the frame was first stepped
//   u16 unfocusedMask    bit p: player p's page was not focused when it chose this frame's input
//   u16 rollbacks        rollbacks (mispredictions) that re-simulated this frame
//   u8  flags            kRowTerminated | kRowTruncated | kRowRewards (of the frame's last simulation)
//   u8  inputDelay       the episode's input delay
//   u32 pad
//   f64 firstSteppedMs   the local time (nowMs of advance) when the frame was first planned — local only
//   u8  actions[kMaxActors]   players then bots
//   pad to 48
//   f64 rewards[numActors]    of the frame's last simulation (0 without kRowRewards)
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "config.hpp"
#include "frame.hpp"

namespace p2psync {

constexpr uint8_t kRowTerminated = 1;
constexpr uint8_t kRowTruncated = 2;
constexpr uint8_t kRowRewards = 4;

namespace rowrec {
constexpr size_t kFrame = 0, kEpisodeFrame = 4, kEpisode = 8, kPredictedMask = 12, kUnfocusedMask = 14, kRollbacks = 16,
                 kFlags = 18, kInputDelay = 19, kFirstSteppedMs = 24, kActions = 32, kRewards = 48;
static_assert(kActions + kMaxActors <= kRewards);
inline size_t rowBytes(int numActors) { return kRewards + 8 * static_cast<size_t>(numActors); }
}  // namespace rowrec

struct FrameRow {
  Frame frame = 0;
  Frame episodeFrame = 0;
  uint32_t episode = 0;
  uint16_t predictedMask = 0;
  uint16_t unfocusedMask = 0;
  uint16_t rollbacks = 0;
  uint8_t flags = 0;
  uint8_t inputDelay = 0;
  double firstSteppedMs = 0;
  uint8_t actions[kMaxActors] = {};
  double rewards[kMaxActors] = {};
};

// Fixed-capacity arena of row records. push() refuses (returns false) when full: the engine
// keeps the row pending and retries once the reader has read (it never drops a row silently).
class RowQueue {
 public:
  RowQueue(int numActors, size_t capacityRows)
      : numActors_(numActors), rowBytes_(rowrec::rowBytes(numActors)), buf_(rowBytes_ * capacityRows) {}
  bool push(const FrameRow& r) {
    if (used_ + rowBytes_ > buf_.size()) return false;
    uint8_t* p = buf_.data() + used_;
    std::memset(p, 0, rowBytes_);
    const int32_t f = static_cast<int32_t>(r.frame), ef = static_cast<int32_t>(r.episodeFrame);
    std::memcpy(p + rowrec::kFrame, &f, 4);
    std::memcpy(p + rowrec::kEpisodeFrame, &ef, 4);
    std::memcpy(p + rowrec::kEpisode, &r.episode, 4);
    std::memcpy(p + rowrec::kPredictedMask, &r.predictedMask, 2);
    std::memcpy(p + rowrec::kUnfocusedMask, &r.unfocusedMask, 2);
    std::memcpy(p + rowrec::kRollbacks, &r.rollbacks, 2);
    p[rowrec::kFlags] = r.flags;
    p[rowrec::kInputDelay] = r.inputDelay;
    std::memcpy(p + rowrec::kFirstSteppedMs, &r.firstSteppedMs, 8);
    std::memcpy(p + rowrec::kActions, r.actions, static_cast<size_t>(numActors_));
    std::memcpy(p + rowrec::kRewards, r.rewards, 8 * static_cast<size_t>(numActors_));
    used_ += rowBytes_;
    ++count_;
    return true;
  }
  void clear() { used_ = 0; count_ = 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return used_; }
  size_t capacity() const { return buf_.size(); }
  size_t rowBytes() const { return rowBytes_; }
  uint32_t count() const { return count_; }

 private:
  int numActors_;
  size_t rowBytes_;
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint32_t count_ = 0;
};

// Reads back row i of an arena (native driver, tests).
inline FrameRow readRow(const uint8_t* base, size_t rowBytes, int numActors, size_t i) {
  const uint8_t* p = base + i * rowBytes;
  FrameRow r;
  int32_t f, ef;
  std::memcpy(&f, p + rowrec::kFrame, 4);
  std::memcpy(&ef, p + rowrec::kEpisodeFrame, 4);
  r.frame = f;
  r.episodeFrame = ef;
  std::memcpy(&r.episode, p + rowrec::kEpisode, 4);
  std::memcpy(&r.predictedMask, p + rowrec::kPredictedMask, 2);
  std::memcpy(&r.unfocusedMask, p + rowrec::kUnfocusedMask, 2);
  std::memcpy(&r.rollbacks, p + rowrec::kRollbacks, 2);
  r.flags = p[rowrec::kFlags];
  r.inputDelay = p[rowrec::kInputDelay];
  std::memcpy(&r.firstSteppedMs, p + rowrec::kFirstSteppedMs, 8);
  std::memcpy(r.actions, p + rowrec::kActions, static_cast<size_t>(numActors));
  std::memcpy(r.rewards, p + rowrec::kRewards, 8 * static_cast<size_t>(numActors));
  return r;
}

}  // namespace p2psync
