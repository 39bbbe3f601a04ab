// The outgoing side of a plan: packets and relay messages to send, plus event records, laid out
// in one byte arena that JS reads through a typed-array view of WASM memory.
//
// Record layout (little-endian, 4-byte aligned):
//   u8 kind      (OutKind)
//   u8 path      (Path: 0 = p2p, 1 = relay)
//   i8 to        (remote player index, -1 = every remote peer)
//   u8 event     (RelayEvent, for kind RelayJson / RelayPacket)
//   u32 length   (payload bytes)
//   payload      (binary packet, or UTF-8 JSON text), padded to 4 bytes
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace p2psync {

enum class Path : uint8_t { P2P = 0, Relay = 1 };

enum class OutKind : uint8_t {
  Packet = 0,     // binary wire packet on `path`
  RelayJson = 1,  // Socket.IO event `event` with a JSON payload
  Event = 2,      // engine event (JSON object) for the page; path/to unused
};

enum class RelayEvent : uint8_t {
  None = 0,
  PlayerAction = 1,  // "pyodide_player_action" {player_id, action, frame_number, timestamp}
  StateSync = 2,     // "p2p_state_sync" {game_id, sender_id, frame_number, state_hash, action_counts}
  Packet = 3,        // "p2psync_packet" {to, bytes}: a binary wire packet carried by the relay
};

class Outbox {
 public:
  explicit Outbox(size_t capacity = 64 * 1024) : buf_(capacity) {}

  void clear() { used_ = 0; count_ = 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return used_; }
  uint32_t count() const { return count_; }
  uint64_t dropped() const { return dropped_; }

  // Appends one record. Returns false (and counts a drop) when the arena is full: the arena is
  // fixed-size, so a burst can never grow memory.
  bool push(OutKind kind, Path path, int to, RelayEvent ev, const uint8_t* payload, size_t len) {
    size_t need = 8 + ((len + 3) & ~size_t(3));
    if (used_ + need > buf_.size()) { ++dropped_; return false; }
    uint8_t* p = buf_.data() + used_;
    p[0] = static_cast<uint8_t>(kind);
    p[1] = static_cast<uint8_t>(path);
    p[2] = static_cast<uint8_t>(static_cast<int8_t>(to));
    p[3] = static_cast<uint8_t>(ev);
    uint32_t l = static_cast<uint32_t>(len);
    std::memcpy(p + 4, &l, 4);  // WASM and x86 are little-endian
    if (len) std::memcpy(p + 8, payload, len);
    used_ += need;
    ++count_;
    return true;
  }
  bool packet(Path path, int to, const uint8_t* bytes, size_t len) {
    return push(OutKind::Packet, path, to, path == Path::Relay ? RelayEvent::Packet : RelayEvent::None, bytes, len);
  }
  bool relayJson(RelayEvent ev, int to, std::string_view json) {
    return push(OutKind::RelayJson, Path::Relay, to, ev, reinterpret_cast<const uint8_t*>(json.data()), json.size());
  }
  bool event(std::string_view json) {
    return push(OutKind::Event, Path::P2P, -1, RelayEvent::None, reinterpret_cast<const uint8_t*>(json.data()), json.size());
  }

 private:
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint32_t count_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace p2psync
