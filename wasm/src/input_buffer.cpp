#include "input_buffer.hpp"

#include <algorithm>

namespace p2psync {

InputBuffer::InputBuffer(int capacity) : slots_(static_cast<size_t>(capacity)), mask_(static_cast<size_t>(capacity - 1)) {}

void InputBuffer::reset(Frame start) {
  for (Slot& s : slots_) s = Slot{};
  knownUpTo_ = start - 1;
  newest_ = knownUpTo_;
  haveAction_ = false;
}

InputBuffer::Insert InputBuffer::insert(Frame frame, uint8_t action, Path path, double nowMs, Frame windowLo,
                                        double& otherPathLagMs, bool unfocused) {
  otherPathLagMs = -1;
  Slot& s = slot(frame);
  const uint8_t bit = static_cast<uint8_t>(1u << static_cast<unsigned>(path));
  if (s.known && s.frame == frame) {
    if (s.action != action) return Insert::Conflict;
    if (!(s.paths & bit)) {
      s.paths |= bit;
      otherPathLagMs = nowMs - s.firstMs;
    }
    return Insert::Duplicate;
  }
  if (frame <= knownUpTo_) return Insert::OutOfWindow;  // evicted past
  if (frame < windowLo) return Insert::OutOfWindow;
  if (frame >= windowLo + static_cast<Frame>(slots_.size())) return Insert::OutOfWindow;
  // The slot holds nothing or a frame < windowLo: reuse it.
  s.frame = frame;
  s.action = action;
  s.known = 1;
  s.firstPath = static_cast<uint8_t>(path);
  s.paths = bit;
  s.unfocused = unfocused ? 1 : 0;
  s.firstMs = nowMs;
  if (frame > newest_) newest_ = frame;
  while (true) {
    const Slot& n = slot(knownUpTo_ + 1);
    if (!(n.known && n.frame == knownUpTo_ + 1)) break;
    ++knownUpTo_;
    knownUpToAction_ = n.action;
    haveAction_ = true;
  }
  return Insert::New;
}

uint8_t InputBuffer::predict(Frame frame, PredictionMethod m, uint8_t defaultAction) const {
  if (m == PredictionMethod::DefaultAction) return defaultAction;
  // The most recent known input before `frame` (inputs past a gap count too).
  const Frame lo = std::max<Frame>(knownUpTo_, frame - static_cast<Frame>(slots_.size()));
  for (Frame f = frame - 1; f > lo; --f) {
    const Slot& s = slot(f);
    if (s.known && s.frame == f) return s.action;
  }
  return haveAction_ ? knownUpToAction_ : defaultAction;
}

}  // namespace p2psync
