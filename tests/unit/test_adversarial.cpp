// The adversarial-peer suite: every attack is sent into a LIVE session (the harness Session: real
// engines, the toy game, the lossy P2P link and the ordered relay) at peer 0, and each case
// asserts that
//   * the attack is rejected with its named error (and counted under that name);
//   * the honest peers stay in sync: identical confirmed action logs, 0 desyncs, state hashes
//     still verified near the end;
//   * memory stays bounded: every engine's memoryBytes() is what it was at construction.
// The attacker speaks through a peer's transport (fromPeer = that peer's index, as a DataChannel
// or the relay's server-attached "from" identifies it), or claims an index that does not exist.
#include <catch2/catch_test_macros.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace {

std::string nameOf(RxResult r) { return rxResultName(r); }

// A valid-looking message of every type (INPUT / INPUT_RESPONSE as `player`, near `frame`).
std::vector<std::pair<const char*, std::vector<uint8_t>>> everyType(int player, uint32_t frame) {
  std::vector<std::pair<const char*, std::vector<uint8_t>>> v;
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = static_cast<uint16_t>(player);
  m.frame = frame;
  m.count = 3;
  for (uint16_t i = 0; i < 3; ++i) m.inputs[i] = FrameAction{frame - 2 + i, 1};
  v.emplace_back("INPUT", enc(m));
  m = Message{};
  m.type = MsgType::InputResponse;
  m.playerIndex = static_cast<uint16_t>(player);
  m.count = 2;
  m.inputs[0] = FrameAction{frame - 1, 1};
  m.inputs[1] = FrameAction{frame, 1};
  v.emplace_back("INPUT_RESPONSE", enc(m));
  m = Message{};
  m.type = MsgType::Ping;
  m.timestamp = 1000.5;
  v.emplace_back("PING", enc(m));
  m.type = MsgType::Pong;
  v.emplace_back("PONG", enc(m));
  m = Message{};
  m.type = MsgType::Keepalive;
  v.emplace_back("KEEPALIVE", enc(m));
  m = Message{};
  m.type = MsgType::EpisodeEnd;
  m.frame = 10;
  v.emplace_back("EPISODE_END", enc(m));
  m = Message{};
  m.type = MsgType::EpisodeReady;
  m.digest = 0x0123456789abcdefull;
  v.emplace_back("EPISODE_READY", enc(m));
  m = Message{};
  m.type = MsgType::StateHash;
  m.frame = 5;
  m.digest = 42;
  v.emplace_back("STATE_HASH", enc(m));
  m = Message{};
  m.type = MsgType::InputRequest;
  m.start = frame - 5;
  m.end = frame;
  v.emplace_back("INPUT_REQUEST", enc(m));
  m = Message{};
  m.type = MsgType::FocusState;
  m.focused = 1;
  m.frame = frame;
  v.emplace_back("FOCUS_STATE", enc(m));
  return v;
}

void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

// A live session, warmed up; the victim is peer 0.
struct Live {
  Session s;
  std::vector<size_t> mem;
  Frame logBase = 0;  // frames in no episode's log (the gap before a later episode)

  static SessionOptions options(int players, uint64_t seed) {
    SessionOptions o;
    o.players = players;
    o.seed = seed;
    o.link = LinkProfile{30, 20, 0.10, 0.05, 0.02, 20};
    return o;
  }

  explicit Live(int players = 2, uint32_t warmup = 300, uint64_t seed = 11) : s(options(players, seed)) {
    for (auto& p : s.peers) mem.push_back(p->engine->memoryBytes());
    s.runFrames(warmup);
  }

  SyncEngine& victim() { return *s.peers[0]->engine; }
  uint32_t frame() { return static_cast<uint32_t>(victim().frame()); }

  // Delivers attacker bytes to the victim as if they came from `from`; replies go out.
  RxResult send(const std::vector<uint8_t>& b, int from, Path via = Path::P2P) {
    const RxResult r = s[0].rxBytes(b, from, s.now, via);
    s.flush(0);
    return r;
  }
  RxResult relay(RelayEvent ev, const std::string& text, int from) {
    Packet p;
    p.from = from;
    p.to = 0;
    p.path = Path::Relay;
    p.kind = OutKind::RelayJson;
    p.event = ev;
    p.bytes.assign(text.begin(), text.end());
    const RxResult r = s[0].receive(p, s.now);
    s.flush(0);
    return r;
  }

  // Expects `r` to be `name` and counted under it.
  void expect(RxResult r, const char* name) {
    CHECK(nameOf(r) == name);
  }

  // Runs `more` frames after the attack, then: identical logs, no desync, hashes verified,
  // memory unchanged.
  void finish(uint32_t more = 300) {
    const Frame target = s.minFrame() + more;
    s.runFrames(target);
    size_t common = 0;
    CHECK(s.logsIdentical(&common));
    CHECK(common + logBase + 60 >= target);
    CHECK(s.totalDesyncs() == 0);
    for (size_t i = 0; i < s.peers.size(); ++i) {
      SyncEngine& e = *s.peers[i]->engine;
      CHECK(e.stateSync().desyncCount() == 0);
      CHECK(e.verifiedFrame() + 100 > target);
      CHECK(e.memoryBytes() == mem[i]);
      CHECK(s.peers[i]->nondeterminism == 0);
      CHECK(s.peers[i]->stepsPastEnd == 0);
      CHECK(e.exportSessionMetrics()["session"]["badStepReports"] == 0);
    }
  }
};

}  // namespace

TEST_CASE("adversarial: a truncated packet of every type is TRUNCATED (a 0-byte one EMPTY)", "[adversarial]") {
  Live L;
  for (auto& [type, bytes] : everyType(1, L.frame())) {
    INFO(type);
    for (size_t cut = 1; cut < bytes.size(); ++cut) {
      std::vector<uint8_t> b(bytes.begin(), bytes.begin() + static_cast<long>(cut));
      const uint64_t before = L.victim().metrics().rejectedCount(RxResult::Truncated);
      L.expect(L.send(b, 1, cut % 2 ? Path::P2P : Path::Relay), "TRUNCATED");
      CHECK(L.victim().metrics().rejectedCount(RxResult::Truncated) == before + 1);
      L.s.tick();  // stay within the per-frame receive budget
    }
    L.expect(L.send({}, 1), "EMPTY");
  }
  L.finish();
}

TEST_CASE("adversarial: INPUT count 0 and 255, INPUT_RESPONSE count 0 and 257 are BAD_COUNT", "[adversarial]") {
  Live L;
  std::vector<uint8_t> input = everyType(1, L.frame())[0].second;
  input[7] = 0;
  L.expect(L.send(input, 1), "BAD_COUNT");
  input[7] = 255;
  L.expect(L.send(input, 1), "BAD_COUNT");
  input.resize(9 + 5 * 255, 0);  // even with the bytes for 255 entries
  L.expect(L.send(input, 1), "BAD_COUNT");
  std::vector<uint8_t> resp = everyType(1, L.frame())[1].second;
  resp[3] = 0;
  resp[4] = 0;
  L.expect(L.send(resp, 1), "BAD_COUNT");
  resp[3] = 0x01;
  resp[4] = 0x01;  // 257
  resp.resize(5 + 5 * 257, 0);
  CHECK(resp.size() <= kMaxPacketBytes + 5);
  RxResult r = L.send(resp, 1);
  CHECK((nameOf(r) == "BAD_COUNT" || nameOf(r) == "OVERSIZED"));
  L.finish();
}

TEST_CASE("adversarial: a trailing byte on every type is TRAILING_BYTES; a huge packet OVERSIZED", "[adversarial]") {
  Live L;
  for (auto& [type, bytes] : everyType(1, L.frame())) {
    INFO(type);
    std::vector<uint8_t> b = bytes;
    b.push_back(0);
    L.expect(L.send(b, 1), "TRAILING_BYTES");
    L.s.tick();
  }
  std::vector<uint8_t> huge(64 * 1024, 0x01);
  L.expect(L.send(huge, 1), "OVERSIZED");
  L.finish();
}

TEST_CASE("adversarial: unknown types, non-zero flags, non-monotonic frames, entry after the header", "[adversarial]") {
  Live L;
  for (uint8_t t : {0x00, 0x08, 0x11, 0x19, 0x7f, 0xff}) {
    std::vector<uint8_t> b = {t, 0, 0, 0, 0, 0, 0, 0, 0};
    L.expect(L.send(b, 1), "UNKNOWN_TYPE");
  }
  std::vector<uint8_t> input = everyType(1, L.frame())[0].second;
  for (uint8_t flags : {0x02, 0x80, 0xff}) {  // 0x01 is kInputUnfocused
    std::vector<uint8_t> b = input;
    b[8] = flags;
    L.expect(L.send(b, 1), "BAD_FLAGS");
  }
  L.s.tick();
  const uint32_t f = L.frame();
  std::vector<uint8_t> b = input;
  put32(b, 9, f);      // entries f, f-1, f
  put32(b, 14, f - 1);
  put32(b, 19, f);
  put32(b, 3, f);
  L.expect(L.send(b, 1), "NON_MONOTONIC_FRAMES");
  put32(b, 9, f - 1);  // f-1, f-1, f: a repeated frame
  L.expect(L.send(b, 1), "NON_MONOTONIC_FRAMES");
  std::vector<uint8_t> resp = everyType(1, f)[1].second;
  put32(resp, 5, f);
  put32(resp, 10, f);
  L.expect(L.send(resp, 1), "NON_MONOTONIC_FRAMES");
  b = input;
  put32(b, 3, f - 5);  // header older than the entries
  put32(b, 9, f - 2);
  put32(b, 14, f - 1);
  put32(b, 19, f);
  L.expect(L.send(b, 1), "FRAME_AFTER_HEADER");
  L.finish();
}

TEST_CASE("adversarial: playerIndex of another peer is SPOOFED_PLAYER; of a nonexistent player UNKNOWN_PLAYER", "[adversarial]") {
  Live L(3);
  const uint32_t f = L.frame();
  // Peer 2 claims to be peer 1 (INPUT and INPUT_RESPONSE), and to be the victim itself.
  L.expect(L.send(everyType(1, f)[0].second, 2), "SPOOFED_PLAYER");
  L.expect(L.send(everyType(1, f)[1].second, 2), "SPOOFED_PLAYER");
  L.expect(L.send(everyType(0, f)[0].second, 2), "SPOOFED_PLAYER");
  // Players that do not exist, as playerIndex or as the sender.
  for (int idx : {3, 4, 255, 65535}) L.expect(L.send(everyType(idx, f)[0].second, 1), "UNKNOWN_PLAYER");
  for (int from : {-1, 0, 3, 7, 1000}) L.expect(L.send(everyType(1, f)[0].second, from), "UNKNOWN_PLAYER");
  // Relay: peer 2 sends peer 1's action (the server-attached "from" says 2), or names no player.
  L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(1, 1, f + 2, 5.0), 2), "SPOOFED_PLAYER");
  L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(9, 1, f + 2, 5.0), 1), "UNKNOWN_PLAYER");
  // A payload "from" that disagrees with the sender the caller knows never wins.
  L.expect(L.relay(RelayEvent::PlayerAction, R"({"player_id":1,"action":1,"frame_number":)" + std::to_string(f + 2) +
                                                  R"(,"timestamp":5,"from":1})", 2), "SPOOFED_PLAYER");
  L.expect(L.victim().receiveRelayInput(1, f + 2, 1, L.s.now, 2), "SPOOFED_PLAYER");
  L.expect(L.victim().receiveRelayInput(0, f + 2, 1, L.s.now, 0), "UNKNOWN_PLAYER");  // the victim itself
  L.finish();
}

TEST_CASE("adversarial: frame 2^32-1 and a frame far in the past are OUT_OF_WINDOW", "[adversarial]") {
  Live L(2, 600);
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = 1;
  m.frame = std::numeric_limits<uint32_t>::max();
  m.count = 2;
  m.inputs[0] = FrameAction{m.frame - 1, 3};
  m.inputs[1] = FrameAction{m.frame, 3};
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  m.type = MsgType::InputResponse;
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(1, 3, m.frame, 5.0), 1), "OUT_OF_WINDOW");
  // Far in the past: older than the input ring (256 frames), with an action that differs.
  const uint32_t past = L.frame() - 400;
  m = Message{};
  m.type = MsgType::Input;
  m.playerIndex = 1;
  m.frame = past;
  m.count = 1;
  m.inputs[0] = FrameAction{past, 4};
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  m.inputs[0].action = 0;
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(1, 4, past, 5.0), 1), "OUT_OF_WINDOW");
  L.finish();
}

TEST_CASE("adversarial: a conflicting action for a confirmed frame is CONFLICT and changes nothing", "[adversarial]") {
  Live L;
  SyncEngine& v = L.victim();
  const uint32_t f = static_cast<uint32_t>(v.confirmedFrame() - 3);
  uint8_t real = 0;
  REQUIRE(v.inputKnown(1, f, real));
  std::vector<uint8_t> logBefore;
  REQUIRE(v.actionLog(f - 5, f, logBefore) == 6);
  const int64_t confirmedBefore = v.confirmedFrame();
  const uint8_t fake = static_cast<uint8_t>((real + 1) % 5);
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = 1;
  m.frame = f;
  m.count = 1;
  m.inputs[0] = FrameAction{f, fake};
  L.expect(L.send(enc(m), 1), "CONFLICT");
  m.type = MsgType::InputResponse;
  L.expect(L.send(enc(m), 1, Path::Relay), "CONFLICT");
  L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(1, fake, f, 5.0), 1), "CONFLICT");
  uint8_t after = 0;
  CHECK(v.inputKnown(1, f, after));
  CHECK(after == real);
  std::vector<uint8_t> logAfter;
  v.actionLog(f - 5, f, logAfter);
  CHECK(logAfter == logBefore);
  CHECK(v.confirmedFrame() >= confirmedBefore);
  CHECK(v.metrics().rejectedCount(RxResult::Conflict) >= 3);
  L.finish();
}

TEST_CASE("adversarial: NaN / Inf / negative PING and PONG timestamps are BAD_TIMESTAMP; a PONG never pinged UNSOLICITED_PONG", "[adversarial]") {
  Live L;
  const double bad[] = {std::numeric_limits<double>::quiet_NaN(), -std::numeric_limits<double>::quiet_NaN(),
                        std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(), -1.0, -1e-300};
  for (uint8_t type : {0x02, 0x03}) {
    for (double t : bad) {
      std::vector<uint8_t> b(9);
      b[0] = type;
      uint64_t u;
      std::memcpy(&u, &t, 8);
      for (int i = 0; i < 8; ++i) b[1 + static_cast<size_t>(i)] = static_cast<uint8_t>(u >> (56 - 8 * i));
      L.expect(L.send(b, 1), "BAD_TIMESTAMP");
    }
    L.s.tick();
  }
  Message pong;
  pong.type = MsgType::Pong;
  for (double t : {12345.678, 0.0, 1e300, L.s.now + 1000}) {
    pong.timestamp = t;
    L.expect(L.send(enc(pong), 1), "UNSOLICITED_PONG");
  }
  CHECK(L.victim().health().unsolicitedPongs(1) + L.victim().health().duplicatePongs(1) >= 4);
  L.finish();
}

TEST_CASE("adversarial: INPUT_REQUEST for 2^32 frames is BAD_RANGE; a request outside the history answers nothing", "[adversarial]") {
  Live L;
  std::vector<uint8_t> b = {0x12, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff};
  L.expect(L.send(b, 1), "BAD_RANGE");
  put32(b, 1, L.frame());
  put32(b, 5, L.frame() + 256);  // 257 frames
  L.expect(L.send(b, 1), "BAD_RANGE");
  put32(b, 1, 10);
  put32(b, 5, 5);  // start > end
  L.expect(L.send(b, 1), "BAD_RANGE");
  // 256 frames far in the future: valid shape, nothing to answer.
  put32(b, 1, 0xffffff00u);
  put32(b, 5, 0xffffffffu);
  L.expect(L.send(b, 1), "OUT_OF_WINDOW");
  CHECK(L.victim().replies().count() == 0);
  L.finish();
}

TEST_CASE("adversarial: STATE_HASH for a future frame is OUT_OF_WINDOW, for an evicted frame UNVERIFIABLE", "[adversarial]") {
  Live L(2, 1000);
  SyncEngine& v = L.victim();
  const uint32_t interval = static_cast<uint32_t>(v.config().effectiveHashInterval());
  const uint32_t rel = static_cast<uint32_t>(v.frame() - v.episodeStart());
  Message m;
  m.type = MsgType::StateHash;
  m.digest = 0xbadbadbadbadull;
  m.frame = (rel + 10000) / interval * interval;
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  m.frame = std::numeric_limits<uint32_t>::max() / interval * interval;
  L.expect(L.send(enc(m), 1), "OUT_OF_WINDOW");
  m.frame = interval;  // long evicted from the 120-entry history
  L.expect(L.send(enc(m), 1), "UNVERIFIABLE");
  m.frame = 0;
  L.expect(L.send(enc(m), 1), "BAD_VALUE");
  m.frame = interval * 3 + 1;  // not a hash frame
  L.expect(L.send(enc(m), 1), "BAD_VALUE");
  // The relay copy of the same attacks.
  auto sync = [&](uint32_t frame) {
    return formatStateSync(v.config().gameId, 1, frame, 0xbadbadbadbadull, ActionCounts{});
  };
  L.expect(L.relay(RelayEvent::StateSync, sync((rel + 10000) / interval * interval), 1), "OUT_OF_WINDOW");
  L.expect(L.relay(RelayEvent::StateSync, sync(interval), 1), "UNVERIFIABLE");
  L.finish();
}

TEST_CASE("adversarial: EPISODE_READY / EPISODE_END for a past episode are STALE_EPISODE", "[adversarial]") {
  Live L(2, 200);
  // A real episode change on both peers: every env ends after frame 250; each page starts the
  // next episode as soon as it sees the episodeEnd event.
  const Frame endFrame = 250;
  for (auto& p : L.s.peers) p->game.endAtFrame = endFrame;
  L.s.autoReset = true;
  REQUIRE(L.s.runUntil([&] { return L.s[0].engine->episode() == 1 && L.s[1].engine->episode() == 1; }, 20000));
  for (auto& p : L.s.peers) p->game.endAtFrame = -1;  // episode 1 does not end
  CHECK(L.s.resetErrors.empty());
  for (const auto& ends : L.s.ends) {
    REQUIRE(ends.size() == 1);
    CHECK(ends[0].frame == endFrame);
  }
  SyncEngine& v = L.victim();
  REQUIRE(v.episode() == 1);
  REQUIRE(L.s.peers[1]->engine->episode() == 1);
  CHECK(v.episodeStart() == endFrame + 1 + 64);
  // Both peers logged the same old episode, frames 0..250; the logs go on with the new one.
  REQUIRE(L.s.logsIdentical());
  L.logBase = v.episodeStart() - (endFrame + 1);
  L.s.runFrames(v.episodeStart() + 200);

  Message m;
  m.type = MsgType::EpisodeReady;
  m.episode = 0;
  m.digest = 0x1111222233334444ull;
  L.expect(L.send(enc(m), 1), "STALE_EPISODE");
  m.episode = std::numeric_limits<uint32_t>::max();
  L.expect(L.send(enc(m), 1), "STALE_EPISODE");
  m.type = MsgType::EpisodeEnd;
  m.episode = 0;
  m.frame = 10;
  L.expect(L.send(enc(m), 1), "STALE_EPISODE");
  // Inputs of the old episode's frames cannot land in the new one.
  Message in;
  in.type = MsgType::Input;
  in.playerIndex = 1;
  in.frame = endFrame;
  in.count = 1;
  in.inputs[0] = FrameAction{endFrame, 4};
  RxResult r = L.send(enc(in), 1);
  CHECK((nameOf(r) == "STALE_EPISODE" || nameOf(r) == "OUT_OF_WINDOW"));
  L.finish();
}

TEST_CASE("adversarial: 100,000 valid-looking packets in one frame: FLOOD after the budget, honest traffic next frame", "[adversarial]") {
  Live L;
  SyncEngine& v = L.victim();
  const int budget = v.config().maxPacketsPerPeerPerFrame;
  const uint32_t f = L.frame();
  // A valid INPUT of peer 1 for frames it already sent (duplicates), a KEEPALIVE and a PING.
  uint8_t a = 0;
  REQUIRE(v.inputKnown(1, static_cast<uint32_t>(v.confirmedFrame()), a));
  Message m;
  m.type = MsgType::Input;
  m.playerIndex = 1;
  m.frame = static_cast<uint32_t>(v.confirmedFrame());
  m.count = 1;
  m.inputs[0] = FrameAction{m.frame, a};
  const std::vector<uint8_t> pkts[] = {enc(m), std::vector<uint8_t>{0x04}, everyType(1, f)[2].second};
  const uint64_t floodBefore = v.metrics().rejectedCount(RxResult::Flood);
  int flooded = 0, other = 0;
  for (int k = 0; k < 100000; ++k) {
    RxResult r = L.send(pkts[k % 3], 1, k % 2 ? Path::P2P : Path::Relay);
    if (r == RxResult::Flood) ++flooded;
    else ++other;
  }
  // Honest deliveries since the victim's last advance may already have used a few of the budget.
  CHECK(other <= budget);
  CHECK(other >= budget - 8);
  CHECK(flooded == 100000 - other);
  CHECK(v.metrics().rejectedCount(RxResult::Flood) == floodBefore + static_cast<uint64_t>(flooded));
  // The relay path has its own (larger) budget, also bounded.
  int relayFlooded = 0;
  for (int k = 0; k < 100000; ++k)
    if (v.receiveRelayInput(1, m.frame, a, L.s.now, 1) == RxResult::Flood) ++relayFlooded;
  CHECK(relayFlooded >= 100000 - 4 * budget);
  CHECK(v.memoryBytes() == L.mem[0]);
  // Next frame: the budget is fresh and peer 1's honest packets are accepted again.
  L.s.runFrames(f + 2);
  CHECK(nameOf(L.send(std::vector<uint8_t>{0x04}, 1)) == "OK");
  L.finish();
}

TEST_CASE("adversarial: malformed and oversized relay JSON is BAD_RELAY_JSON", "[adversarial]") {
  Live L;
  const std::string f = std::to_string(L.frame() + 1);
  const std::vector<std::string> actions = {
      "",
      "{",
      "null",
      "[1,2,3]",
      "\"text\"",
      R"({"player_id":1,"action":1,"frame_number":)" + f + "}",                                         // missing timestamp
      R"({"player_id":1,"action":1,"frame_number":)" + f + R"(,"timestamp":1,"extra":true})",           // unknown key
      R"({"player_id":1,"action":256,"frame_number":)" + f + R"(,"timestamp":1})",                      // action out of range
      R"({"player_id":1,"action":-1,"frame_number":)" + f + R"(,"timestamp":1})",
      R"({"player_id":1,"action":1.5,"frame_number":)" + f + R"(,"timestamp":1})",
      R"({"player_id":1,"action":1,"frame_number":4294967296,"timestamp":1})",                          // frame > u32
      R"({"player_id":1,"action":1,"frame_number":-5,"timestamp":1})",
      R"({"player_id":1,"action":1,"frame_number":)" + f + R"(,"timestamp":-1})",
      R"({"player_id":1,"action":1,"frame_number":)" + f + R"(,"timestamp":1e999})",
      R"({"player_id":[1],"action":1,"frame_number":)" + f + R"(,"timestamp":1})",
      R"({"player_id":"","action":1,"frame_number":)" + f + R"(,"timestamp":1})",
      R"({"player_id":1,"action":1,"frame_number":)" + f + R"(,"timestamp":1,"from":"1"})",
      R"({"player_id":1,"action":1,"frame_number":)" + f + R"(,"timestamp":1,"from":256})",
      "{\"player_id\":\"" + std::string(2000, 'x') + "\",\"action\":1,\"frame_number\":1,\"timestamp\":1}",  // oversized
      std::string(5000, '[') + std::string(5000, ']'),
      std::string("{\"player_id\":1,\"action\":1,\"frame_number\":1,\"timestamp\":1}\0", 58),  // NUL-terminated
      std::string("{\"player_id\":1,\"action\":1,\"frame_number\":1,\"timestamp\":1}\0junk", 62),
  };
  for (const std::string& t : actions) {
    INFO(t.substr(0, 120));
    L.expect(L.relay(RelayEvent::PlayerAction, t, 1), "BAD_RELAY_JSON");
  }
  const std::string good = formatStateSync(L.victim().config().gameId, 1, 5, 1, ActionCounts{});
  json big = json::parse(good);
  for (int a = 0; a < 12; ++a)
    for (int x = 0; x < 256; ++x) big["action_counts"][std::to_string(a)][std::to_string(x)] = 1000000 + x;
  const std::vector<std::string> syncs = {
      "",
      "{}",
      good.substr(0, good.size() - 1),
      big.dump(),  // > 8 KiB
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123456789ABCDEF","action_counts":{}})",
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123","action_counts":{}})",
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123456789abcdef","action_counts":{"12":{"1":1}}})",
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123456789abcdef","action_counts":{"01":{"1":1}}})",
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123456789abcdef","action_counts":{"0":{"1":-1}}})",
      R"({"game_id":"p2psync","sender_id":1,"frame_number":5,"state_hash":"0123456789abcdef","action_counts":[]})",
      "{\"game_id\":\"" + std::string(65, 'g') + R"(","sender_id":1,"frame_number":5,"state_hash":"0123456789abcdef","action_counts":{}})",
  };
  CHECK(big.dump().size() > kMaxStateSyncJson);
  for (const std::string& t : syncs) {
    INFO(t.substr(0, 120));
    L.expect(L.relay(RelayEvent::StateSync, t, 1), "BAD_RELAY_JSON");
  }
  // Events that are not relay JSON at all.
  L.expect(L.relay(RelayEvent::None, good, 1), "BAD_RELAY_JSON");
  L.expect(L.relay(RelayEvent::Packet, good, 1), "BAD_RELAY_JSON");
  L.expect(L.relay(static_cast<RelayEvent>(200), good, 1), "BAD_RELAY_JSON");
  CHECK(L.victim().metrics().rejectedCount(RxResult::BadRelayJson) >= actions.size() + syncs.size() + 3);
  L.finish();
}

TEST_CASE("adversarial: every attack at once, repeated over a long session, leaves honest peers in sync", "[adversarial]") {
  Live L(3, 200, 23);
  Rng rng(99);
  for (int round = 0; round < 60; ++round) {
    const uint32_t f = L.frame();
    static const int kClaims[] = {0, 1, 3, 4};  // never the attacker's own index
    auto types = everyType(kClaims[rng.below(4)], f + static_cast<uint32_t>(rng.below(40)) - 20);
    for (auto& [type, bytes] : types) {
      std::vector<uint8_t> b = bytes;
      switch (rng.below(4)) {
        case 0: b.resize(static_cast<size_t>(rng.below(static_cast<int>(b.size())))); break;
        case 1: b.push_back(static_cast<uint8_t>(rng.below(256))); break;
        case 2: b[static_cast<size_t>(rng.below(static_cast<int>(b.size())))] ^= static_cast<uint8_t>(1 + rng.below(255)); break;
        default: break;
      }
      // The attacker speaks through its own transport (peer 2) or as nonexistent peers, never
      // through an honest one. What a lying-but-valid peer 2 may legitimately claim about itself
      // (its own inputs, state hashes, episode END / READY) is a different matter: a desync
      // report is the designed answer to that, so such packets are left out here.
      const int from = rng.chance(0.7) ? 2 : 3 + rng.below(5);
      Message m;
      if (from == 2 && decode(b.data(), b.size(), m) == DecodeError::Ok &&
          (((m.type == MsgType::Input || m.type == MsgType::InputResponse) && m.playerIndex == 2) ||
           m.type == MsgType::StateHash || m.type == MsgType::EpisodeEnd || m.type == MsgType::EpisodeReady))
        continue;
      RxResult r = L.send(b, from, rng.chance(0.5) ? Path::P2P : Path::Relay);
      CHECK(nameOf(r) != "UNKNOWN");
    }
    // Relay: peer 2 sends actions in the name of the others.
    L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(1, rng.below(5), f + 3, 1.0), 2), "SPOOFED_PLAYER");
    L.expect(L.relay(RelayEvent::PlayerAction, formatPlayerAction(0, rng.below(5), f + 3, 1.0), 2), "UNKNOWN_PLAYER");
    for (int k = 0; k < 10; ++k) L.s.tick();
  }
  L.finish();
}

TEST_CASE("adversarial: an EPISODE_END earlier than confirmed frames never makes the next episode reuse them", "[adversarial]") {
  // Player 2 lies to peers 0 and 1 that the episode ended at frame 3 while every env really ends
  // at 310: the synced end is the minimum of every END, so the next episode would start at frame
  // 68, inside the 310 frames already confirmed (frame numbers reused, the confirmed frame going
  // back). The reset is refused instead; the honest peers' logs stay identical.
  Live L(3, 300, 5);
  Message m;
  m.type = MsgType::EpisodeEnd;
  m.frame = 3;
  m.episode = 0;
  std::vector<int64_t> confirmedAtLie(3);
  for (int v = 0; v < 2; ++v) {
    confirmedAtLie[static_cast<size_t>(v)] = L.s.peers[static_cast<size_t>(v)]->engine->confirmedFrame();
    const std::vector<uint8_t> b = enc(m);
    CHECK(nameOf(L.s.peers[static_cast<size_t>(v)]->engine->receive(b.data(), b.size(), 2, Path::P2P, L.s.now)) == "OK");
  }
  for (auto& p : L.s.peers) p->game.endAtFrame = 310;
  std::vector<int64_t> confirmedAtEnd(3, -1);
  std::vector<std::string> refusal(3);
  for (int guard = 0; guard < 600; ++guard) {
    L.s.tick();
    for (size_t i = 0; i < 3; ++i) {
      SyncEngine& e = *L.s.peers[i]->engine;
      if (e.episode() == 1) continue;
      const int64_t before = e.confirmedFrame();
      const std::string err = e.resetEpisode(-1);
      if (err.empty()) {
        CHECK(e.episodeStart() > before);  // never inside confirmed frames
        L.s.peers[i]->resetGame();
      } else if (err.find("inconsistent EPISODE_END") != std::string::npos) {
        refusal[i] = err;
        confirmedAtEnd[i] = before;
      }
    }
  }
  // The lie reached peers 0 and 1 after they had confirmed frame 3 without ending there: each
  // reports the mismatch and adopts the END (so every peer still ends on one frame).
  for (size_t i = 0; i < 2; ++i) {
    const auto errs = L.s.peers[i]->ofType("error");
    REQUIRE_FALSE(errs.empty());
    CHECK(errs[0]["reason"] == "end-mismatch");
    CHECK(errs[0]["episodeFrame"] == 3);
    CHECK(L.s.peers[i]->engine->terminalFrame() == 3);
    CHECK(L.s.peers[i]->stepsPastEnd == 0);
  }
  CHECK_FALSE(refusal[0].empty());
  CHECK_FALSE(refusal[1].empty());
  for (size_t i = 0; i < 2; ++i) {
    SyncEngine& e = *L.s.peers[i]->engine;
    CHECK(e.episode() == 0);
    CHECK(e.confirmedFrame() >= confirmedAtLie[i]);  // no frame planned past the END, none unconfirmed
    CHECK(e.confirmedFrame() >= 290);
    CHECK(e.memoryBytes() == L.mem[i]);
  }
  size_t common = 0;
  CHECK(L.s.logsIdentical(&common));
  CHECK(common >= 300);
  CHECK(L.s.peers[0]->desyncs + L.s.peers[1]->desyncs == 0);
}
