#include "snapshot_store.hpp"

#include <cstring>

namespace p2psync {

SnapshotStore::SnapshotStore(size_t bytes, int slots) : arena_(bytes), ring_(static_cast<size_t>(slots)) {}

void SnapshotStore::clear() {
  for (Entry& e : ring_) e = Entry{};
  head_ = count_ = writePos_ = 0;
}

void SnapshotStore::evictOldest() {
  Entry& e = ring_[head_];
  if (e.live) ++evictions_;
  e.live = false;
  head_ = (head_ + 1) % ring_.size();
  --count_;
}

const SnapshotStore::Entry* SnapshotStore::save(uint32_t frame, const uint8_t* data, size_t len, uint64_t hash) {
  if (len > arena_.size()) return nullptr;
  // Replaced or invalidated snapshots at the old end free their slots first.
  while (count_ > 0 && !ring_[head_].live) {
    head_ = (head_ + 1) % ring_.size();
    --count_;
  }
  // A frame saved again replaces its earlier copy.
  for (size_t i = 0; i < count_; ++i) {
    Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame == frame) e.live = false;
  }
  if (writePos_ + len > arena_.size()) {
    // Wrap: everything between the write head and the end of the arena is the oldest data.
    while (count_ > 0 && ring_[head_].offset >= writePos_) evictOldest();
    writePos_ = 0;
  }
  // Evict the oldest entries that overlap [writePos_, writePos_ + len), and keep a free slot.
  while (count_ > 0) {
    const Entry& o = ring_[head_];
    bool overlaps = o.offset < writePos_ + len && writePos_ < static_cast<size_t>(o.offset) + o.length;
    if (!overlaps && count_ < ring_.size()) break;
    evictOldest();
  }
  Entry& e = ring_[(head_ + count_) % ring_.size()];
  e.frame = frame;
  e.offset = static_cast<uint32_t>(writePos_);
  e.length = static_cast<uint32_t>(len);
  e.hash = hash;
  e.live = true;
  if (len) std::memcpy(arena_.data() + writePos_, data, len);
  writePos_ += len;
  ++count_;
  return &e;
}

const SnapshotStore::Entry* SnapshotStore::find(uint32_t frame) const {
  for (size_t i = count_; i-- > 0;) {
    const Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame == frame) return &e;
  }
  return nullptr;
}

const SnapshotStore::Entry* SnapshotStore::latestAtOrBefore(uint32_t frame) const {
  const Entry* best = nullptr;
  for (size_t i = 0; i < count_; ++i) {
    const Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame <= frame && (!best || e.frame > best->frame)) best = &e;
  }
  return best;
}

void SnapshotStore::invalidateAfter(uint32_t frame) {
  for (size_t i = 0; i < count_; ++i) {
    Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame > frame) e.live = false;
  }
}

size_t SnapshotStore::liveCount() const {
  size_t n = 0;
  for (size_t i = 0; i < count_; ++i) n += ring_[(head_ + i) % ring_.size()].live;
  return n;
}

}  // namespace p2psync
