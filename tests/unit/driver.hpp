// The C++ frame driver: runs one SyncEngine plan against an env, request by request, the way
// web/driver.js does in JS. Every native user of the engine (Catch2 tests, soak, native bench,
// engine fuzz target, traffic dump) drives frames through runPlan(); none reads the plan layout
// or the outbox/event record formats by hand (Outbox::forEach, drainEvents).
//
// An Env provides:
//   bool load(const uint8_t* state, size_t len)             restore a snapshot (false: corrupt)
//   std::string state()                                      the current state (pre-step of the next frame)
//   StepOutcome step(const uint8_t* actions, int numActors, const RequestView& req)
//                                                            step once; say whether the episode ended
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include <nlohmann/json.hpp>

#include "sync_engine.hpp"

namespace p2psync::test {

struct StepOutcome {
  bool terminated = false;
  bool truncated = false;
};

struct PlanStats {
  int loads = 0, saves = 0, steps = 0, replayed = 0;
  bool rolledBack = false;
  bool cut = false;  // the engine voided the rest of the plan (a step ended the episode)
};

template <typename Env>
PlanStats runPlan(SyncEngine& e, Env& env) {
  PlanStats st;
  const size_t n = e.requestCount();
  for (size_t i = 0; i < n; ++i) {
    const RequestView r = e.request(i);
    switch (r.kind) {
      case RequestKind::Load: {
        const SnapshotStore::Entry* s = e.snapshot(r.frame);
        if (!s || !env.load(e.snapshotBytes(*s), s->length)) throw std::runtime_error("runPlan: no snapshot to load");
        ++st.loads;
        st.rolledBack = true;
        break;
      }
      case RequestKind::Save: {
        const std::string s = env.state();
        e.saveSnapshot(r.frame, reinterpret_cast<const uint8_t*>(s.data()), s.size());
        ++st.saves;
        break;
      }
      case RequestKind::Advance: {
        const StepOutcome o = env.step(r.actions, e.numActors(), r);
        ++st.steps;
        if (r.replay()) ++st.replayed;
        const uint8_t flags = static_cast<uint8_t>((o.terminated ? kStepTerminated : 0) | (o.truncated ? kStepTruncated : 0));
        if (!e.stepped(r.frame, flags)) {
          st.cut = i + 1 < n;
          return st;
        }
        break;
      }
      default:
        throw std::runtime_error("runPlan: unknown request kind");
    }
  }
  return st;
}

// Hands every unread engine event to fn(const nlohmann::json&) and marks them read.
template <typename Fn>
void drainEvents(SyncEngine& e, Fn&& fn) {
  const int32_t* H = e.planHeader();
  const size_t from = static_cast<size_t>(H[plan::kEventRead]);
  const size_t to = e.events().size();
  size_t off = from;
  while (off + eventrec::kHeaderBytes <= to) {
    size_t len = 0;
    const nlohmann::json j = eventRecordToJson(e.events().data() + off, to - off, &len);
    if (len == 0) throw std::runtime_error("drainEvents: malformed event record");
    fn(j);
    off += len;
  }
  e.consumeEvents();
}

}  // namespace p2psync::test
