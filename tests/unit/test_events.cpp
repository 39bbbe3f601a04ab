// Binary event records (events.hpp): every field kind through a record and back, text and JSON
// fields, limits, a full arena counting drops, malformed records; the engine's kEventRead word
// (the arena is emptied only once the reader has read all of it); and outbox records read
// through Outbox::forEach / forEachIn.
#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

TEST_CASE("events: every field kind round-trips through a binary record", "[events]") {
  Event ev(EventType::Desync);
  ev.num(Field::kFrame, 405)
      .num(Field::kLatencyMs, 12.5)
      .num(Field::kPeer, -3)
      .flag(Field::kTruncated, true)
      .flag(Field::kFocused, false)
      .null(Field::kActionCountDiff)
      .hex(Field::kLocalHash, 0x0123456789abcdefull)
      .hex(Field::kRemoteHash, 0xfedcba9876543210ull)
      .text(Field::kReason, "a \"quoted\" reason\nwith é")
      .json(Field::kPeers, json{{"1", {{"4", -2}}}, {"list", {1, 2.5, "x", nullptr}}})
      .num(Field::kTimeMs, std::numeric_limits<double>::infinity())  // non-finite: null
      .num(Field::kBytes, 9007199254740993.0);                       // beyond 2^53: stays a double
  CHECK(ev.type() == EventType::Desync);
  const size_t n = ev.recordSize();
  CHECK(n % 4 == 0);
  std::vector<uint8_t> rec(n + 8, 0xee);
  ev.write(rec.data());
  CHECK(rec[eventrec::kType] == static_cast<uint8_t>(EventType::Desync));
  CHECK(rec[eventrec::kFieldCount] == 12);
  uint16_t len;
  std::memcpy(&len, rec.data() + eventrec::kRecordBytes, 2);
  CHECK(len == n);
  CHECK(rec[n] == 0xee);  // nothing written past the record
  size_t used = 0;
  const json j = eventRecordToJson(rec.data(), n, &used);
  CHECK(used == n);
  CHECK(j["type"] == "desync");
  CHECK(j["frame"] == 405);
  CHECK(j["frame"].is_number_integer());  // integral numbers read back as integers
  CHECK(j["latencyMs"] == 12.5);
  CHECK(j["peer"] == -3);
  CHECK(j["truncated"] == true);
  CHECK(j["focused"] == false);
  CHECK(j["actionCountDiff"].is_null());
  CHECK(j["localHash"] == "0123456789abcdef");
  CHECK(j["remoteHash"] == "fedcba9876543210");
  CHECK(j["reason"] == "a \"quoted\" reason\nwith é");
  CHECK(j["peers"] == json{{"1", {{"4", -2}}}, {"list", {1, 2.5, "x", nullptr}}});
  CHECK(j["timeMs"].is_null());
  CHECK(j["bytes"].is_number_float());
  CHECK(j.size() == 13);
  CHECK(ev.toJson() == j);
}

TEST_CASE("events: limits of one event, malformed records", "[events]") {
  // text beyond kMaxText is cut; a JSON field that does not fit is null
  Event big(EventType::Error);
  big.text(Field::kReason, std::string(Event::kMaxText + 100, 'r'));
  big.json(Field::kPeers, json::array({std::string(100, 'x')}));
  const json j = big.toJson();
  CHECK(j["reason"].get<std::string>().size() == Event::kMaxText);
  CHECK(j["peers"].is_null());
  // fields past kMaxFields are dropped, the first ones kept
  Event many(EventType::Focus);
  for (int i = 0; i < Event::kMaxFields + 3; ++i) many.num(static_cast<Field>(i), i);
  const json m = many.toJson();
  CHECK(m.size() == static_cast<size_t>(Event::kMaxFields) + 1);
  CHECK(m["frame"] == 0);
  // malformed: too short, a length past the buffer, a text past the record
  Event ev(EventType::Stall);
  ev.num(Field::kFrame, 7).text(Field::kReason, "prediction-limit");
  std::vector<uint8_t> rec(ev.recordSize());
  ev.write(rec.data());
  size_t used = 99;
  CHECK(eventRecordToJson(rec.data(), 3, &used).is_discarded());
  CHECK(used == 0);
  CHECK(eventRecordToJson(rec.data(), rec.size() - 1).is_discarded());
  std::vector<uint8_t> bad = rec;
  const uint32_t far = 4000;
  std::memcpy(bad.data() + eventrec::kHeaderBytes + eventrec::kFieldBytes + eventrec::kTextOffset, &far, 4);
  CHECK(eventRecordToJson(bad.data(), bad.size()).is_discarded());
  bad = rec;
  bad[eventrec::kHeaderBytes + eventrec::kFieldKind] = 99;  // unknown field kind
  CHECK(eventRecordToJson(bad.data(), bad.size()).is_discarded());
}

TEST_CASE("events: a full arena counts the events it drops; forEachJson reads what it holds", "[events]") {
  EventQueue q(256);
  Event ev(EventType::Focus);
  ev.num(Field::kPeer, 1).flag(Field::kFocused, true).num(Field::kFrame, 3);  // 4 + 3 * 16 = 52 bytes
  REQUIRE(ev.recordSize() == 52);
  for (int i = 0; i < 7; ++i) q.push(ev);
  CHECK(q.count() == 4);  // 4 x 52 = 208 of 256 bytes
  CHECK(q.size() == 208);
  CHECK(q.dropped() == 3);
  int seen = 0;
  q.forEachJson([&](const json& j) {
    CHECK(j == json{{"type", "focus"}, {"peer", 1}, {"focused", true}, {"frame", 3}});
    ++seen;
  });
  CHECK(seen == 4);
  q.clear();
  CHECK(q.count() == 0);
  q.push(ev);
  CHECK(q.count() == 1);
  CHECK(q.dropped() == 3);  // a session counter
}

TEST_CASE("events: the engine's arena is emptied only once the reader marked all of it read (kEventRead)", "[events]") {
  std::string err;
  const std::string c = cfg(2, 0, ",\"maxEvents\":8");
  auto e = SyncEngine::create(c.data(), c.size(), err);
  REQUIRE(e);
  auto focus = [&](uint32_t frame) {
    Message m;
    m.type = MsgType::FocusState;
    m.focused = frame % 2 == 0 ? 1 : 0;  // alternating: every message is a change (an event)
    m.frame = frame;
    const auto b = enc(m);
    return e->receive(b.data(), b.size(), 1, Path::P2P, 10);
  };
  auto readWord = [&] { return e->planHeader()[plan::kEventRead]; };
  // the session's first event (its input delay, fixed) is read before the test begins
  std::vector<std::string> initial;
  drainEvents(*e, [&](const json& j) { initial.push_back(j["type"].get<std::string>()); });
  REQUIRE(initial == std::vector<std::string>{"inputDelay"});
  REQUIRE(focus(1) == RxResult::Ok);
  REQUIRE(focus(2) == RxResult::Ok);
  CHECK(e->events().count() == 2);
  CHECK(e->planHeader()[plan::kEventCount] == 2);
  CHECK(static_cast<size_t>(e->planHeader()[plan::kEventBytes]) == e->events().size());
  const size_t first = e->events().size() / 2;
  // unread events stay (a reader that is late loses nothing), new ones are appended
  REQUIRE(focus(3) == RxResult::Ok);
  CHECK(e->events().count() == 3);
  // the reader has read the first record only: still kept
  int32_t* H = reinterpret_cast<int32_t*>(e->planData());
  H[plan::kEventRead] = static_cast<int32_t>(first);
  REQUIRE(focus(4) == RxResult::Ok);
  CHECK(e->events().count() == 4);
  std::vector<uint32_t> frames;
  drainEvents(*e, [&](const json& j) { frames.push_back(j["frame"].get<uint32_t>()); });
  CHECK(frames == std::vector<uint32_t>{2, 3, 4});  // from the read mark on
  CHECK(static_cast<size_t>(readWord()) == e->events().size());
  // everything read: the next call starts an empty arena
  REQUIRE(focus(5) == RxResult::Ok);
  CHECK(e->events().count() == 1);
  CHECK(readWord() == 0);
  frames.clear();
  drainEvents(*e, [&](const json& j) { frames.push_back(j["frame"].get<uint32_t>()); });
  CHECK(frames == std::vector<uint32_t>{5});
  // a reader that never reads: the arena (maxEvents x 128 bytes) fills, the rest is counted
  for (uint32_t f = 10; f < 40; ++f) focus(f);
  CHECK(e->events().size() <= 8 * 128);
  CHECK(e->events().count() == static_cast<uint32_t>(e->events().size() / 68));
  CHECK(e->exportSessionMetrics()["events"]["dropped"].get<uint64_t>() == 30 - e->events().count());
}

TEST_CASE("outbox: records of every kind and length read back through forEach / forEachIn", "[outbox]") {
  Outbox box(128);
  const uint8_t bytes[] = {1, 2, 3, 4, 5, 6, 7};
  CHECK(box.packet(Path::P2P, -1, bytes, 5));
  CHECK(box.packet(Path::Relay, 2, bytes, 4));
  CHECK(box.relayJson(RelayEvent::StateSync, -1, "{\"a\":1}"));
  CHECK(box.push(OutKind::Packet, Path::P2P, 3, RelayEvent::None, nullptr, 0));
  CHECK(box.count() == 4);
  CHECK(box.size() == (8 + 8) + (8 + 4) + (8 + 8) + 8);
  std::vector<OutRecord> seen;
  std::vector<std::vector<uint8_t>> data;
  box.forEach([&](const OutRecord& r) {
    seen.push_back(r);
    data.emplace_back(r.data, r.data + r.length);
  });
  REQUIRE(seen.size() == 4);
  CHECK(seen[0].kind == OutKind::Packet);
  CHECK(seen[0].path == Path::P2P);
  CHECK(seen[0].to == -1);
  CHECK(seen[0].event == RelayEvent::None);
  CHECK(data[0] == std::vector<uint8_t>{1, 2, 3, 4, 5});
  CHECK(seen[1].path == Path::Relay);
  CHECK(seen[1].to == 2);
  CHECK(seen[1].event == RelayEvent::Packet);
  CHECK(data[1] == std::vector<uint8_t>{1, 2, 3, 4});
  CHECK(seen[2].kind == OutKind::RelayJson);
  CHECK(seen[2].event == RelayEvent::StateSync);
  CHECK(std::string(data[2].begin(), data[2].end()) == "{\"a\":1}");
  CHECK(seen[3].to == 3);
  CHECK(seen[3].length == 0);
  // from an offset, and over a copy of the arena
  int n = 0;
  box.forEach([&](const OutRecord&) { ++n; }, 16);
  CHECK(n == 3);
  std::vector<uint8_t> copy(box.data(), box.data() + box.size());
  n = 0;
  Outbox::forEachIn(copy.data(), copy.size(), [&](const OutRecord& r) { n += r.kind == OutKind::RelayJson; });
  CHECK(n == 1);
  CHECK(records(box).size() == 4);
  // full: refused and counted, nothing partial written
  const std::vector<uint8_t> big(100, 9);
  CHECK_FALSE(box.packet(Path::P2P, -1, big.data(), big.size()));
  CHECK(box.dropped() == 1);
  CHECK(box.count() == 4);
  box.clear();
  CHECK(box.size() == 0);
  CHECK(box.packet(Path::P2P, -1, big.data(), big.size()));
}
