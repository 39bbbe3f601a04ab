// Bounded store of the env's state snapshots (the JSON text from get_state()), inside WASM
// memory. A circular byte arena of `bytes` plus at most `slots` entries; the oldest snapshots
// are evicted first. Saving a frame again replaces the earlier copy. Each entry carries the
// state's hash, computed once at save time.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "frame.hpp"

namespace p2psync {

class SnapshotStore {
 public:
  struct Entry {
    Frame frame = kNoFrame;
    uint32_t offset = 0;
    uint32_t length = 0;
    uint64_t hash = 0;
    bool live = false;
  };

  SnapshotStore(size_t bytes, int slots);

  void clear();
  // Copies `len` bytes for `frame`. Returns the entry, or nullptr when it cannot fit at all.
  const Entry* save(Frame frame, const uint8_t* data, size_t len, uint64_t hash);
  const Entry* find(Frame frame) const;
  // The newest live snapshot with frame <= `frame`, or nullptr.
  const Entry* latestAtOrBefore(Frame frame) const;
  // Marks snapshots of frames > `frame` as stale (their state was built on mispredicted inputs).
  void invalidateAfter(Frame frame);
  const uint8_t* bytes(const Entry& e) const { return arena_.data() + e.offset; }
  size_t liveCount() const;
  size_t capacityBytes() const { return arena_.size(); }
  uint64_t evictions() const { return evictions_; }

 private:
  void evictOldest();
  void compact();
  std::vector<uint8_t> arena_;
  std::vector<Entry> ring_;  // insertion order: ring_[(head_ + i) % slots]
  size_t head_ = 0, count_ = 0;
  size_t writePos_ = 0;
  uint64_t evictions_ = 0;
};

}  // namespace p2psync
