// The plan: what one SyncEngine::advance() asks the driver to do, as an ordered list of requests
// (GGRS-style), plus a header of plan words. It lives in one byte arena of the engine that JS
// reads through typed-array views of WASM memory. This header is the only declaration of the
// layout; JS reads it from layoutJson() (exported by the module), never from a hand-kept copy.
//
// Requests, in the order to execute them:
//   Load F      restore the env to the snapshot of frame F (engine.snapshot(F))
//   Save F      the env's current state is the pre-step state of frame F: hand it to the engine
//               (saveSnapshot, or with the step report of frame F)
//   Advance F   step the env once with the request's actions (players then bots); flags: Replay
//               (re-simulating a frame after a rollback) ; then report the step to the engine
//               (SyncEngine::stepped) — it answers whether to go on with the plan
// e.g. a rollback:  Load S, Save S?, Advance S (replay), ..., Save F?, Advance F
// A step that ends the episode (the env says terminated or truncated) makes the engine void the
// rest of the plan: stepped() returns false and the driver stops there.
//
// Request record (kRequestBytes, little-endian):
//   u8 kind, u8 flags, u16 predictedMask (bit p: player p's action is predicted),
//   i32 frame, i32 episodeFrame, u8 actions[kMaxActors]
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "config.hpp"
#include "frame.hpp"

namespace p2psync {

#define P2PSYNC_STATUSES(X) X(Run, "RUN") X(Stall, "STALL") X(Wait, "WAIT") X(Ended, "ENDED") X(Starting, "STARTING") X(Joining, "JOINING")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class Status : int32_t { P2PSYNC_STATUSES(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY

#define P2PSYNC_REQUEST_KINDS(X) X(None, "none") X(Load, "load") X(Save, "save") X(Advance, "advance")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class RequestKind : uint8_t { P2PSYNC_REQUEST_KINDS(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY

// Request flags.
constexpr uint8_t kRequestReplay = 1;

// Step report flags (driver -> engine, SyncEngine::stepped).
constexpr uint8_t kStepTerminated = 1;  // the env's episode ended (a terminal state)
constexpr uint8_t kStepTruncated = 2;   // the env cut the episode (a time limit)
constexpr uint8_t kStepRewards = 4;     // the step-result area holds this step's rewards

#define P2PSYNC_PLAN_WORDS(X)                                                                        \
  X(Status, "status") X(Frame, "frame") X(Episode, "episode") X(EpisodeStart, "episodeStart")       \
  X(ConfirmedFrame, "confirmedFrame") X(VerifiedFrame, "verifiedFrame") X(RequestCount, "requestCount") \
  X(RollbackTarget, "rollbackTarget") X(LoadFrame, "loadFrame") X(ReplayCount, "replayCount")       \
  X(OutBytes, "outBytes") X(OutCount, "outCount") X(ReplyBytes, "replyBytes") X(ReplyCount, "replyCount") \
  X(EventBytes, "eventBytes") X(EventCount, "eventCount") X(EventRead, "eventRead")                  \
  X(NumActors, "numActors") X(TerminalFrame, "terminalFrame") X(InputDelay, "inputDelay")          \
  X(RowBytes, "rowBytes") X(RowCount, "rowCount") X(RowRead, "rowRead") X(RowSize, "rowSize")       \
  X(Paused, "paused") X(PacingUs, "pacingUs")

namespace plan {
#define P2PSYNC_ENUM_ENTRY(name, text) k##name,
enum Word : int { P2PSYNC_PLAN_WORDS(P2PSYNC_ENUM_ENTRY) kWordCount_ };
#undef P2PSYNC_ENUM_ENTRY
constexpr int kHeaderWords = 32;
static_assert(kWordCount_ <= kHeaderWords);
constexpr size_t kHeaderBytes = kHeaderWords * 4;

constexpr size_t kRequestBytes = 24;
constexpr size_t kReqKind = 0, kReqFlags = 1, kReqPredictedMask = 2, kReqFrame = 4, kReqEpisodeFrame = 8,
                 kReqActions = 12;
static_assert(kReqActions + kMaxActors <= kRequestBytes);

// After the requests: the step-result area (f64 rewards per actor, written by the driver before
// stepped() with kStepRewards) and the bot input (numBots bytes, written before advance()).
constexpr size_t kResultBytes = 8 * kMaxActors;
constexpr size_t kBotBytes = 16;
static_assert(kBotBytes >= kMaxBots);

// Requests one plan can hold: a Load, then Save + Advance for every frame of the longest replay
// (the input ring) and of the frames run now.
inline size_t requestCapacity(const EngineConfig& c) {
  return 1 + 2 * (static_cast<size_t>(c.bufferFrames) + static_cast<size_t>(kMaxFramesPerAdvance));
}
inline size_t requestsOffset() { return kHeaderBytes; }
inline size_t resultOffset(const EngineConfig& c) { return requestsOffset() + requestCapacity(c) * kRequestBytes; }
inline size_t botOffset(const EngineConfig& c) { return resultOffset(c) + kResultBytes; }
inline size_t arenaBytes(const EngineConfig& c) { return botOffset(c) + kBotBytes; }
}  // namespace plan

const char* statusName(Status s);
const char* requestKindName(RequestKind k);

// Appends requests to a plan arena.
class PlanWriter {
 public:
  PlanWriter(uint8_t* base, size_t capacity) : base_(base), cap_(capacity) {}
  void clear() { n_ = 0; }
  size_t count() const { return n_; }
  bool add(RequestKind kind, uint8_t flags, uint16_t predictedMask, Frame frame, Frame episodeFrame,
           const uint8_t* actions, int numActors) {
    if (n_ >= cap_) return false;
    uint8_t* r = base_ + plan::requestsOffset() + n_ * plan::kRequestBytes;
    std::memset(r, 0, plan::kRequestBytes);
    r[plan::kReqKind] = static_cast<uint8_t>(kind);
    r[plan::kReqFlags] = flags;
    std::memcpy(r + plan::kReqPredictedMask, &predictedMask, 2);
    const int32_t f = static_cast<int32_t>(frame), ef = static_cast<int32_t>(episodeFrame);
    std::memcpy(r + plan::kReqFrame, &f, 4);
    std::memcpy(r + plan::kReqEpisodeFrame, &ef, 4);
    if (actions) std::memcpy(r + plan::kReqActions, actions, static_cast<size_t>(numActors));
    ++n_;
    return true;
  }

 private:
  uint8_t* base_;
  size_t cap_;
  size_t n_ = 0;
};

// A request of a plan arena, read back (native driver, tests).
struct RequestView {
  RequestKind kind;
  uint8_t flags;
  uint16_t predictedMask;
  Frame frame;
  Frame episodeFrame;
  const uint8_t* actions;
  bool replay() const { return (flags & kRequestReplay) != 0; }
};
inline RequestView readRequest(const uint8_t* base, size_t i) {
  const uint8_t* r = base + plan::requestsOffset() + i * plan::kRequestBytes;
  uint16_t mask;
  int32_t f, ef;
  std::memcpy(&mask, r + plan::kReqPredictedMask, 2);
  std::memcpy(&f, r + plan::kReqFrame, 4);
  std::memcpy(&ef, r + plan::kReqEpisodeFrame, 4);
  return RequestView{static_cast<RequestKind>(r[plan::kReqKind]), r[plan::kReqFlags], mask, f, ef, r + plan::kReqActions};
}

// The binary layouts of the plan, outbox and event records and every enum/name table JS needs,
// as one JSON object (read once when the module loads).
std::string layoutJson();

}  // namespace p2psync
