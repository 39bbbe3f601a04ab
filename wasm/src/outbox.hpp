// The outgoing side of a plan: packets and relay messages to send, laid out in one byte arena
// that JS reads through a typed-array view of WASM memory. This header is the only declaration
// of the record format (JS reads it from layoutJson(); C++ readers use Outbox::forEach).
//
// Record layout (little-endian, 4-byte aligned):
//   u8 kind      (OutKind)
//   u8 path      (Path: 0 = p2p, 1 = relay)
//   i8 to        (remote player index, -1 = every remote peer)
//   u8 event     (RelayEvent, for relay records)
//   u32 length   (payload bytes)
//   payload      (binary packet, or UTF-8 JSON text), padded to 4 bytes
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <vector>

namespace p2psync {

#define P2PSYNC_PATHS(X) X(P2P, "p2p") X(Relay, "relay")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class Path : uint8_t { P2PSYNC_PATHS(P2PSYNC_ENUM_ENTRY) };
#undef P2PSYNC_ENUM_ENTRY

#define P2PSYNC_OUT_KINDS(X) X(Packet, "packet") X(RelayJson, "relayJson")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class OutKind : uint8_t { P2PSYNC_OUT_KINDS(P2PSYNC_ENUM_ENTRY) };
#undef P2PSYNC_ENUM_ENTRY

// Socket.IO events of relay records (names as the server speaks them).
//   PlayerAction "pyodide_player_action" {player_id, action, frame_number, timestamp}
//   StateSync    "p2p_state_sync" {game_id, sender_id, frame_number, state_hash, action_counts}
//   Packet       "p2psync_packet" {to, bytes}: a binary wire packet carried by the relay
#define P2PSYNC_RELAY_EVENTS(X) \
  X(None, "") X(PlayerAction, "pyodide_player_action") X(StateSync, "p2p_state_sync") X(Packet, "p2psync_packet")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class RelayEvent : uint8_t { P2PSYNC_RELAY_EVENTS(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY

namespace outrec {
constexpr size_t kHeaderBytes = 8;
constexpr size_t kKind = 0, kPath = 1, kTo = 2, kEvent = 3, kLength = 4;
inline size_t recordBytes(size_t payload) { return kHeaderBytes + ((payload + 3) & ~size_t(3)); }
}  // namespace outrec

struct OutRecord {
  OutKind kind;
  Path path;
  int to;
  RelayEvent event;
  const uint8_t* data;
  uint32_t length;
};

class Outbox {
 public:
  explicit Outbox(size_t capacity) : buf_(capacity) {}

  void clear() { used_ = 0; count_ = 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return used_; }
  size_t capacity() const { return buf_.size(); }
  uint32_t count() const { return count_; }
  uint64_t dropped() const { return dropped_; }

  // Appends one record. Returns false (and counts a drop) when the arena is full: the arena is
  // fixed-size, so a burst can never grow memory.
  bool push(OutKind kind, Path path, int to, RelayEvent ev, const uint8_t* payload, size_t len) {
    const size_t need = outrec::recordBytes(len);
    if (used_ + need > buf_.size()) { ++dropped_; return false; }
    uint8_t* p = buf_.data() + used_;
    std::memset(p, 0, need);
    p[outrec::kKind] = static_cast<uint8_t>(kind);
    p[outrec::kPath] = static_cast<uint8_t>(path);
    p[outrec::kTo] = static_cast<uint8_t>(static_cast<int8_t>(to));
    p[outrec::kEvent] = static_cast<uint8_t>(ev);
    const uint32_t l = static_cast<uint32_t>(len);
    std::memcpy(p + outrec::kLength, &l, 4);  // WASM and x86 are little-endian
    if (len) std::memcpy(p + outrec::kHeaderBytes, payload, len);
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

  // Calls fn(const OutRecord&) for every record at or after byte offset `from`.
  template <typename Fn>
  void forEach(Fn&& fn, size_t from = 0) const { forEachIn(buf_.data(), used_, fn, from); }

  // The same over any arena in this format (e.g. a copy).
  template <typename Fn>
  static void forEachIn(const uint8_t* base, size_t used, Fn&& fn, size_t from = 0) {
    size_t off = from;
    while (off + outrec::kHeaderBytes <= used) {
      const uint8_t* p = base + off;
      uint32_t len;
      std::memcpy(&len, p + outrec::kLength, 4);
      OutRecord r{static_cast<OutKind>(p[outrec::kKind]), static_cast<Path>(p[outrec::kPath]),
                  static_cast<int8_t>(p[outrec::kTo]), static_cast<RelayEvent>(p[outrec::kEvent]),
                  p + outrec::kHeaderBytes, len};
      fn(r);
      off += outrec::recordBytes(len);
    }
  }

 private:
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint32_t count_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace p2psync
