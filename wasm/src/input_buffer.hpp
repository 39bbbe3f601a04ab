// One player's inputs: a ring of `capacity` frames (power of two), sized from config.
// Tracks which frames are known (confirmed), the contiguous known prefix, and for each input
// which path delivered it first and when (for the first-delivery metric).
#pragma once
#include <cstdint>
#include <vector>

#include "config.hpp"
#include "frame.hpp"
#include "outbox.hpp"

namespace p2psync {

class InputBuffer {
 public:
  enum class Insert : uint8_t { New, Duplicate, Conflict, OutOfWindow };

  struct Slot {
    Frame frame = kNoFrame;
    uint8_t action = 0;
    uint8_t known = 0;
    uint8_t firstPath = 0;
    uint8_t paths = 0;  // bit per Path that delivered it
    uint8_t unfocused = 0;  // the player's page was not focused when it chose this input
    double firstMs = 0;
  };

  explicit InputBuffer(int capacity = 256);

  // Forgets everything; frames < `start` count as known (the episode starts at `start`).
  void reset(Frame start);

  // Stores `action` for `frame`. `windowLo` is the oldest frame the engine still needs; frames
  // in [windowLo, windowLo + capacity) are storable. A frame that is already known is a
  // Duplicate (same action) or a Conflict (different action) as long as it is still held,
  // whatever the window. When a duplicate comes by a new path, `otherPathLagMs` is set to the
  // delay behind the first delivery (else it is left < 0).
  Insert insert(Frame frame, uint8_t action, Path path, double nowMs, Frame windowLo, double& otherPathLagMs,
                bool unfocused = false);

  bool get(Frame frame, uint8_t& action) const {
    const Slot& s = slot(frame);
    if (s.known && s.frame == frame) { action = s.action; return true; }
    return false;
  }
  // The input's focus bit (false when the frame is not held).
  bool unfocused(Frame frame) const {
    const Slot& s = slot(frame);
    return s.known && s.frame == frame && s.unfocused;
  }
  bool known(Frame frame) const {
    const Slot& s = slot(frame);
    return s.known && s.frame == frame;
  }
  // True when `frame` is held with `action` and `path` already delivered it: insert() would
  // return Duplicate and change nothing (the redundant entries of every INPUT packet).
  bool heldBy(Frame frame, uint8_t action, Path path) const {
    const Slot& s = slot(frame);
    return s.known && s.frame == frame && s.action == action && (s.paths & (1u << static_cast<unsigned>(path)));
  }
  // Highest frame F such that every frame < F+1 is known; start-1 when none (as int64).
  Frame knownUpTo() const { return knownUpTo_; }
  Frame newestKnown() const { return newest_; }

  // The action to use for an unknown `frame`.
  uint8_t predict(Frame frame, PredictionMethod m, uint8_t defaultAction) const;

  int capacity() const { return static_cast<int>(slots_.size()); }

 private:
  Slot& slot(Frame f) { return slots_[static_cast<size_t>(f) & mask_]; }
  const Slot& slot(Frame f) const { return slots_[static_cast<size_t>(f) & mask_]; }
  std::vector<Slot> slots_;
  size_t mask_;
  Frame knownUpTo_ = kNoFrame;
  Frame newest_ = kNoFrame;
  uint8_t knownUpToAction_ = 0;
  bool haveAction_ = false;
};

}  // namespace p2psync
