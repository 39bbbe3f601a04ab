#include "input_buffer.hpp"

namespace p2psync {

InputBuffer::InputBuffer(int capacity) : slots_(static_cast<size_t>(capacity)), mask_(static_cast<uint32_t>(capacity - 1)) {}

void InputBuffer::reset(uint32_t start) {
  for (Slot& s : slots_) s = Slot{};
  knownUpTo_ = static_cast<int64_t>(start) - 1;
  newest_ = knownUpTo_;
  haveAction_ = false;
}

InputBuffer::Insert InputBuffer::insert(uint32_t frame, uint8_t action, Path path, double nowMs, uint32_t windowLo,
                                        double& otherPathLagMs) {
  otherPathLagMs = -1;
  Slot& s = slots_[frame & mask_];
  const uint8_t bit = static_cast<uint8_t>(1u << static_cast<unsigned>(path));
  if (s.known && s.frame == frame) {
    if (s.action != action) return Insert::Conflict;
    if (!(s.paths & bit)) {
      s.paths |= bit;
      otherPathLagMs = nowMs - s.firstMs;
    }
    return Insert::Duplicate;
  }
  if (static_cast<int64_t>(frame) <= knownUpTo_) return Insert::OutOfWindow;  // evicted past
  if (frame < windowLo) return Insert::OutOfWindow;
  if (static_cast<uint64_t>(frame) >= static_cast<uint64_t>(windowLo) + slots_.size()) return Insert::OutOfWindow;
  // The slot holds nothing or a frame < windowLo: reuse it.
  s.frame = frame;
  s.action = action;
  s.known = 1;
  s.firstPath = static_cast<uint8_t>(path);
  s.paths = bit;
  s.firstMs = nowMs;
  if (static_cast<int64_t>(frame) > newest_) newest_ = frame;
  while (true) {
    uint32_t next = static_cast<uint32_t>(knownUpTo_ + 1);
    const Slot& n = slots_[next & mask_];
    if (!(n.known && n.frame == next)) break;
    knownUpTo_ = next;
    knownUpToAction_ = n.action;
    haveAction_ = true;
  }
  return Insert::New;
}

uint8_t InputBuffer::predict(uint32_t frame, PredictionMethod m, uint8_t defaultAction) const {
  if (m == PredictionMethod::DefaultAction) return defaultAction;
  // The most recent known input before `frame` (inputs past a gap count too).
  int64_t lo = knownUpTo_ > static_cast<int64_t>(frame) - static_cast<int64_t>(slots_.size())
                   ? knownUpTo_
                   : static_cast<int64_t>(frame) - static_cast<int64_t>(slots_.size());
  for (int64_t f = static_cast<int64_t>(frame) - 1; f > lo; --f) {
    const Slot& s = slots_[static_cast<uint32_t>(f) & mask_];
    if (s.known && s.frame == static_cast<uint32_t>(f)) return s.action;
  }
  return haveAction_ ? knownUpToAction_ : defaultAction;
}

}  // namespace p2psync
