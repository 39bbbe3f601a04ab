// Engine events (rollback, stall, desync, fallback, ...): JSON objects queued during a call and
// handed to JS in the next plan. Bounded: past `capacity` pending events, new ones are counted
// as dropped instead of stored.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2psync {

class EventQueue {
 public:
  explicit EventQueue(size_t capacity = 256) : capacity_(capacity) { pending_.reserve(16); }
  void setCapacity(size_t c) { capacity_ = c; }

  // `ev` must be an object with a "type" string member.
  void push(const nlohmann::json& ev) {
    if (pending_.size() >= capacity_) { ++dropped_; return; }
    pending_.push_back(ev.dump());
  }
  const std::vector<std::string>& pending() const { return pending_; }
  void clear() { pending_.clear(); }
  uint64_t dropped() const { return dropped_; }

 private:
  size_t capacity_;
  std::vector<std::string> pending_;
  uint64_t dropped_ = 0;
};

}  // namespace p2psync
