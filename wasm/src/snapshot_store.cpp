#include "snapshot_store.hpp"

#include <cstring>

namespace p2psync {

SnapshotStore::SnapshotStore(size_t bytes, int slots) : arena_(bytes), ring_(static_cast<size_t>(slots)) {}

void SnapshotStore::clear() {
  for (Entry& e : ring_) e = Entry{};
  head_ = count_ = writePos_ = 0;
}

void SnapshotStore::compact() {
  // Keeps the live entries in insertion (= arena) order, at the front of the ring.
  size_t n = 0;
  for (size_t i = 0; i < count_; ++i) {
    const Entry e = ring_[(head_ + i) % ring_.size()];
    if (e.live) ring_[(head_ + n++) % ring_.size()] = e;
  }
  for (size_t i = n; i < count_; ++i) ring_[(head_ + i) % ring_.size()] = Entry{};
  count_ = n;
}

void SnapshotStore::evictOldest() {
  Entry& e = ring_[head_];
  if (e.live) ++evictions_;
  e.live = false;
  head_ = (head_ + 1) % ring_.size();
  --count_;
}

const SnapshotStore::Entry* SnapshotStore::save(Frame frame, const uint8_t* data, size_t len, uint64_t hash) {
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
  // A full ring whose dead entries (replaced or invalidated) sit behind live ones: drop them
  // first, so re-saving the same frames over and over never evicts a live snapshot.
  if (count_ == ring_.size()) compact();
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

const SnapshotStore::Entry* SnapshotStore::find(Frame frame) const {
  for (size_t i = count_; i-- > 0;) {
    const Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame == frame) return &e;
  }
  return nullptr;
}

const SnapshotStore::Entry* SnapshotStore::latestAtOrBefore(Frame frame) const {
  const Entry* best = nullptr;
  for (size_t i = 0; i < count_; ++i) {
    const Entry& e = ring_[(head_ + i) % ring_.size()];
    if (e.live && e.frame <= frame && (!best || e.frame > best->frame)) best = &e;
  }
  return best;
}

void SnapshotStore::invalidateAfter(Frame frame) {
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
