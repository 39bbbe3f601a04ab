// Frame numbers. The engine numbers frames across the whole session (an episode starts where
// the previous one's inputs can no longer reach); the wire carries them as u32. Inside the core a
// frame is a signed 64-bit `Frame`, so "none yet" (-1) and differences need no casts; the wire
// codec, the state-sync hash frames (episode-relative u32) and the plan records convert at
// their edges.
#pragma once
#include <cstdint>

namespace p2psync {

using Frame = int64_t;
constexpr Frame kNoFrame = -1;
constexpr Frame kMaxWireFrame = 0xffffffffLL;

inline uint32_t wireFrame(Frame f) { return static_cast<uint32_t>(f); }

}  // namespace p2psync
