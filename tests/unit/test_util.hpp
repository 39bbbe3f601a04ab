// Small helpers shared by the Catch2 suite, the native tools and the fuzz targets: records of an
// outbox (read only through Outbox::forEach), the events of a bare EventQueue (component tests),
// wire encode/decode, config strings, and Catch printers for the engine's enums.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "outbox.hpp"
#include "plan.hpp"
#include "protocol.hpp"
#include "result.hpp"

namespace p2psync::test {

// One outbox record, copied out.
struct Rec {
  OutKind kind;
  Path path;
  int to;
  RelayEvent ev;
  std::vector<uint8_t> bytes;
  std::string text() const { return std::string(bytes.begin(), bytes.end()); }
  // The wire message type of a binary packet, -1 for relay JSON.
  int type() const { return kind == OutKind::Packet && !bytes.empty() ? bytes[0] : -1; }
};

inline std::vector<Rec> records(const Outbox& box) {
  std::vector<Rec> v;
  box.forEach([&](const OutRecord& r) { v.push_back(Rec{r.kind, r.path, r.to, r.event, std::vector<uint8_t>(r.data, r.data + r.length)}); });
  return v;
}

// Every pending event of a bare EventQueue (the components' tests), then empties it.
inline std::vector<nlohmann::json> takeEvents(EventQueue& q) {
  std::vector<nlohmann::json> v;
  q.forEachJson([&](const nlohmann::json& j) { v.push_back(j); });
  if (v.size() != q.count()) throw std::runtime_error("takeEvents: malformed event arena");
  q.clear();
  return v;
}

inline std::vector<nlohmann::json> ofType(const std::vector<nlohmann::json>& evs, const std::string& type) {
  std::vector<nlohmann::json> v;
  for (const nlohmann::json& e : evs)
    if (e.value("type", "") == type) v.push_back(e);
  return v;
}

inline std::vector<uint8_t> enc(const Message& m) {
  std::vector<uint8_t> b(kMaxPacketBytes + 16);
  const size_t n = encode(m, b.data(), b.size());
  if (n == 0) throw std::runtime_error("enc: message does not encode");
  b.resize(n);
  return b;
}

inline Message dec(const std::vector<uint8_t>& b) {
  Message m;
  if (decode(b.data(), b.size(), m) != DecodeError::Ok) throw std::runtime_error("dec: packet does not decode");
  return m;
}

inline bool decodes(const std::vector<uint8_t>& b, Message& m) { return decode(b.data(), b.size(), m) == DecodeError::Ok; }

inline std::string hex(uint64_t d) {
  char b[17];
  digestToHex(d, b);
  return std::string(b, 16);
}

// {"numPlayers":n,"localPlayerIndex":local<extra>}
inline std::string cfg(int players, int local, const std::string& extra = "") {
  return "{\"numPlayers\":" + std::to_string(players) + ",\"localPlayerIndex\":" + std::to_string(local) + extra + "}";
}

constexpr int kInput = static_cast<int>(MsgType::Input);
constexpr int kPing = static_cast<int>(MsgType::Ping);
constexpr int kPong = static_cast<int>(MsgType::Pong);
constexpr int kEnd = static_cast<int>(MsgType::EpisodeEnd);
constexpr int kReady = static_cast<int>(MsgType::EpisodeReady);
constexpr int kStateHash = static_cast<int>(MsgType::StateHash);
constexpr int kInputRequest = static_cast<int>(MsgType::InputRequest);
constexpr int kInputResponse = static_cast<int>(MsgType::InputResponse);

}  // namespace p2psync::test

#ifdef CATCH_TEST_MACROS_HPP_INCLUDED  // Catch2 tests (include it first)
namespace Catch {
template <>
struct StringMaker<p2psync::RxResult> {
  static std::string convert(p2psync::RxResult r) { return p2psync::rxResultName(r); }
};
template <>
struct StringMaker<p2psync::Status> {
  static std::string convert(p2psync::Status s) { return p2psync::statusName(s); }
};
template <>
struct StringMaker<p2psync::RequestKind> {
  static std::string convert(p2psync::RequestKind k) { return p2psync::requestKindName(k); }
};
}  // namespace Catch
#endif
