// Wire codec tests: hand-written golden vectors, round trips, every decode error, encode refusals.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "protocol.hpp"

using namespace p2psync;
using Bytes = std::vector<uint8_t>;

namespace {

// Message is ~2 KiB; keep it off the stack in loops.
std::unique_ptr<Message> newMsg(MsgType t) {
  auto m = std::make_unique<Message>();
  m->type = t;
  return m;
}

DecodeError dec(const Bytes& b, Message& m) { return decode(b.data(), b.size(), m); }
DecodeError dec(const Bytes& b) {
  auto m = std::make_unique<Message>();
  return dec(b, *m);
}

Bytes enc(const Message& m) {
  Bytes out(kMaxPacketBytes + 16, 0xAA);
  size_t n = encode(m, out.data(), out.size());
  out.resize(n);
  return out;
}

std::string errName(DecodeError e) { return decodeErrorName(e); }

// Compares the fields meaningful for a.type.
bool sameMessage(const Message& a, const Message& b) {
  if (a.type != b.type) return false;
  auto sameInputs = [&] {
    if (a.count != b.count) return false;
    for (int i = 0; i < a.count; ++i)
      if (a.inputs[i].frame != b.inputs[i].frame || a.inputs[i].action != b.inputs[i].action)
        return false;
    return true;
  };
  switch (a.type) {
    case MsgType::Input:
      return a.playerIndex == b.playerIndex && a.frame == b.frame && a.flags == b.flags &&
             sameInputs();
    case MsgType::InputResponse:
      return a.playerIndex == b.playerIndex && sameInputs();
    case MsgType::Ping:
    case MsgType::Pong: {
      uint64_t x, y;
      std::memcpy(&x, &a.timestamp, 8);
      std::memcpy(&y, &b.timestamp, 8);
      return x == y;
    }
    case MsgType::Keepalive:
      return true;
    case MsgType::EpisodeEnd:
      return a.frame == b.frame && a.episode == b.episode;
    case MsgType::EpisodeReady:
      return a.episode == b.episode && a.digest == b.digest;
    case MsgType::StateHash:
      return a.frame == b.frame && a.digest == b.digest;
    case MsgType::InputRequest:
      return a.start == b.start && a.end == b.end;
    case MsgType::FocusState:
      return a.focused == b.focused && a.frame == b.frame;
    case MsgType::Quality:
      return a.episode == b.episode && a.delay == b.delay && a.flags == b.flags && a.margin == b.margin &&
             a.frame == b.frame;
    case MsgType::StateRequest:
      return a.transferId == b.transferId && a.reason == b.reason && a.source == b.source && a.episode == b.episode &&
             a.frame == b.frame;
    case MsgType::StateChunk:
      return a.transferId == b.transferId && a.total == b.total && a.index == b.index && a.dataLen == b.dataLen &&
             std::memcmp(a.data, b.data, a.dataLen) == 0;
    case MsgType::StateAck:
      return a.transferId == b.transferId && a.status == b.status && a.index == b.index && a.bitmap == b.bitmap;
  }
  return false;
}

struct Golden {
  const char* name;
  Bytes bytes;
  std::shared_ptr<Message> msg;
};

std::shared_ptr<Message> mk(MsgType t) {
  auto m = std::make_shared<Message>();
  m->type = t;
  return m;
}

// Every vector below is written out by hand from the wire-format table, not produced by encode().
std::vector<Golden> goldens() {
  std::vector<Golden> g;
  {
    auto m = mk(MsgType::Input);
    m->playerIndex = 1;
    m->frame = 7;
    m->count = 2;
    m->inputs[0] = {6, 2};
    m->inputs[1] = {7, 3};
    g.push_back({"input",
                 {0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x02, 0x00,  //
                  0x00, 0x00, 0x00, 0x06, 0x02,                          //
                  0x00, 0x00, 0x00, 0x07, 0x03},
                 m});
  }
  {
    // byte order: distinct bytes in every position; entry frame below header frame
    auto m = mk(MsgType::Input);
    m->playerIndex = 0x0102;
    m->frame = 0x0A0B0C0D;
    m->count = 1;
    m->inputs[0] = {0x0A0B0C0C, 0xFF};
    g.push_back({"input_single",
                 {0x01, 0x01, 0x02, 0x0A, 0x0B, 0x0C, 0x0D, 0x01, 0x00,  //
                  0x0A, 0x0B, 0x0C, 0x0C, 0xFF},
                 m});
  }
  {
    // PING 1234.5 = 0x40934A0000000000
    auto m = mk(MsgType::Ping);
    m->timestamp = 1234.5;
    g.push_back({"ping", {0x02, 0x40, 0x93, 0x4A, 0x00, 0x00, 0x00, 0x00, 0x00}, m});
  }
  {
    // PONG 0.5 = 0x3FE0000000000000
    auto m = mk(MsgType::Pong);
    m->timestamp = 0.5;
    g.push_back({"pong", {0x03, 0x3F, 0xE0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, m});
  }
  {
    // PONG 1700000000000.25 ms = 0x4278BCFE56800400 (.25 is mantissa bit 10)
    auto m = mk(MsgType::Pong);
    m->timestamp = 1700000000000.25;
    g.push_back({"pong_epoch", {0x03, 0x42, 0x78, 0xBC, 0xFE, 0x56, 0x80, 0x04, 0x00}, m});
  }
  {
    auto m = mk(MsgType::Keepalive);
    g.push_back({"keepalive", {0x04}, m});
  }
  {
    auto m = mk(MsgType::EpisodeEnd);
    m->frame = 600;  // 0x258
    m->episode = 3;
    g.push_back({"episode_end", {0x05, 0x00, 0x00, 0x02, 0x58, 0x00, 0x00, 0x00, 0x03}, m});
  }
  {
    auto m = mk(MsgType::EpisodeReady);
    m->episode = 2;
    m->digest = 0x0123456789ABCDEFull;
    g.push_back({"episode_ready",
                 {0x06, 0x00, 0x00, 0x00, 0x02, 0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF},
                 m});
  }
  {
    auto m = mk(MsgType::StateHash);
    m->frame = 300;  // 0x12C
    m->digest = 0xFEDCBA9876543210ull;
    g.push_back({"state_hash",
                 {0x07, 0x00, 0x00, 0x01, 0x2C, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10},
                 m});
  }
  {
    // 10..265 inclusive = 256 frames (the maximum)
    auto m = mk(MsgType::InputRequest);
    m->start = 10;
    m->end = 265;  // 0x109
    g.push_back({"input_request", {0x12, 0x00, 0x00, 0x00, 0x0A, 0x00, 0x00, 0x01, 0x09}, m});
  }
  {
    auto m = mk(MsgType::InputResponse);
    m->playerIndex = 2;
    m->count = 3;
    m->inputs[0] = {100, 1};
    m->inputs[1] = {101, 0};
    m->inputs[2] = {103, 255};
    g.push_back({"input_response",
                 {0x13, 0x00, 0x02, 0x00, 0x03,  //
                  0x00, 0x00, 0x00, 0x64, 0x01,  //
                  0x00, 0x00, 0x00, 0x65, 0x00,  //
                  0x00, 0x00, 0x00, 0x67, 0xFF},
                 m});
  }
  {
    auto m = mk(MsgType::FocusState);
    m->focused = 1;
    m->frame = 0x01020304;
    g.push_back({"focus_state", {0x14, 0x01, 0x01, 0x02, 0x03, 0x04}, m});
  }
  {
    auto m = mk(MsgType::FocusState);
    m->focused = 0;
    m->frame = 0xFFFFFFFF;
    g.push_back({"focus_state_blur", {0x14, 0x00, 0xFF, 0xFF, 0xFF, 0xFF}, m});
  }
  {
    // transfer 0x01000002, rejoin, from player 1, episode 3, frame 0
    auto m = mk(MsgType::StateRequest);
    m->transferId = 0x01000002;
    m->reason = kTransferRejoin;
    m->source = 1;
    m->episode = 3;
    m->frame = 0;
    g.push_back({"state_request", {0x16, 0x01, 0x00, 0x00, 0x02, 0x01, 0x01, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00}, m});
  }
  {
    // the last chunk (index 1) of a 1027-byte transfer: 3 bytes
    static const uint8_t tail[3] = {0xAA, 0xBB, 0xCC};
    auto m = mk(MsgType::StateChunk);
    m->transferId = 7;
    m->total = 1027;  // 0x403
    m->index = 1;
    m->dataLen = 3;
    m->data = tail;
    g.push_back({"state_chunk", {0x17, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x04, 0x03, 0x00, 0x00, 0x00, 0x01, 0x00, 0x03, 0xAA, 0xBB, 0xCC}, m});
  }
  {
    // receiving: chunks 0..4 in, 5 missing, 6 and 8 in (bits 0 and 2)
    auto m = mk(MsgType::StateAck);
    m->transferId = 7;
    m->status = kAckReceiving;
    m->index = 5;
    m->bitmap = 0x5;
    g.push_back({"state_ack", {0x18, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x05}, m});
  }
  {
    // an input chosen while the page was hidden: flags 0x01 (kInputUnfocused)
    auto m = mk(MsgType::Input);
    m->playerIndex = 1;
    m->frame = 7;
    m->flags = kInputUnfocused;
    m->count = 1;
    m->inputs[0] = {7, 4};
    g.push_back({"input_unfocused", {0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x00, 0x00, 0x07, 0x04}, m});
  }
  {
    // INPUT_RESPONSE of unfocused inputs: bit 15 of the count
    auto m = mk(MsgType::InputResponse);
    m->playerIndex = 0;
    m->flags = kInputUnfocused;
    m->count = 1;
    m->inputs[0] = {9, 2};
    g.push_back({"input_response_unfocused", {0x13, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00, 0x00, 0x09, 0x02}, m});
  }
  {
    // episode 2, proposal 3, margin -1.5 frames (-24/16 = 0xFFE8), next frame 0x01020304
    auto m = mk(MsgType::Quality);
    m->episode = 2;
    m->delay = 3;
    m->flags = kQualityMargin | kQualityProposal;
    m->margin = -24;
    m->frame = 0x01020304;
    g.push_back({"quality",
                 {0x15, 0x00, 0x00, 0x00, 0x02, 0x03, 0x03, 0xFF, 0xE8, 0x01, 0x02, 0x03, 0x04},
                 m});
  }
  {
    // margin only (no proposal): +2.25 frames = 36/16
    auto m = mk(MsgType::Quality);
    m->episode = 0;
    m->delay = 0;
    m->flags = kQualityMargin;
    m->margin = 36;
    m->frame = 0;
    g.push_back({"quality_margin",
                 {0x15, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x24, 0x00, 0x00, 0x00, 0x00},
                 m});
  }
  return g;
}

// Deterministic PRNG for round-trip sweeps.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    return s;
  }
  uint32_t u32() { return static_cast<uint32_t>(next()); }
};

}  // namespace

TEST_CASE("golden vectors decode to the expected message and encode back", "[protocol]") {
  for (const auto& g : goldens()) {
    INFO(g.name);
    auto m = newMsg(MsgType::Keepalive);
    REQUIRE(errName(dec(g.bytes, *m)) == "OK");
    CHECK(sameMessage(*g.msg, *m));
    CHECK(encodedSize(*g.msg) == g.bytes.size());
    CHECK(enc(*g.msg) == g.bytes);
  }
}

TEST_CASE("golden vectors cover every message type", "[protocol]") {
  const MsgType all[] = {MsgType::Input,        MsgType::Ping,         MsgType::Pong,
                         MsgType::Keepalive,    MsgType::EpisodeEnd,   MsgType::EpisodeReady,
                         MsgType::StateHash,    MsgType::InputRequest, MsgType::InputResponse,
                         MsgType::FocusState,   MsgType::Quality,      MsgType::StateRequest,
                         MsgType::StateChunk,   MsgType::StateAck};
  auto gs = goldens();
  for (MsgType t : all) {
    bool found = false;
    for (const auto& g : gs) found = found || g.msg->type == t;
    INFO(static_cast<int>(t));
    CHECK(found);
  }
}

TEST_CASE("every proper prefix of a golden vector is TRUNCATED (EMPTY at length 0)",
          "[protocol]") {
  for (const auto& g : goldens()) {
    for (size_t len = 0; len < g.bytes.size(); ++len) {
      INFO(g.name << " prefix " << len);
      Bytes prefix(g.bytes.begin(), g.bytes.begin() + static_cast<long>(len));
      CHECK(errName(dec(prefix)) == (len == 0 ? "EMPTY" : "TRUNCATED"));
    }
  }
}

TEST_CASE("every golden vector plus a trailing byte is TRAILING_BYTES", "[protocol]") {
  for (const auto& g : goldens()) {
    for (uint8_t extra : {0x00, 0x01, 0xFF}) {
      INFO(g.name << " + " << int(extra));
      Bytes b = g.bytes;
      b.push_back(extra);
      CHECK(errName(dec(b)) == "TRAILING_BYTES");
    }
  }
}

TEST_CASE("maximum-size INPUT and INPUT_RESPONSE", "[protocol]") {
  SECTION("INPUT with 15 entries") {
    Bytes b = {0x01, 0x00, 0x03, 0x00, 0x00, 0x01, 0x00, 0x0F, 0x00};  // player 3, frame 256
    for (uint32_t f = 242; f <= 256; ++f) {
      b.insert(b.end(), {0x00, 0x00, uint8_t(f >> 8), uint8_t(f & 0xFF), uint8_t(f % 7)});
    }
    REQUIRE(b.size() == 9 + 5 * 15);
    auto m = newMsg(MsgType::Keepalive);
    REQUIRE(errName(dec(b, *m)) == "OK");
    CHECK(m->type == MsgType::Input);
    CHECK(m->playerIndex == 3);
    CHECK(m->frame == 256);
    REQUIRE(m->count == 15);
    CHECK(m->inputs[0].frame == 242);
    CHECK(m->inputs[14].frame == 256);
    CHECK(m->inputs[14].action == 256 % 7);
    CHECK(enc(*m) == b);
  }
  SECTION("INPUT_RESPONSE with 256 entries") {
    Bytes b = {0x13, 0x00, 0x01, 0x01, 0x00};  // player 1, n = 256
    for (uint32_t f = 1000; f < 1256; ++f) {
      b.insert(b.end(), {0x00, 0x00, uint8_t(f >> 8), uint8_t(f & 0xFF), uint8_t(f)});
    }
    REQUIRE(b.size() == kMaxPacketBytes);
    auto m = newMsg(MsgType::Keepalive);
    REQUIRE(errName(dec(b, *m)) == "OK");
    CHECK(m->type == MsgType::InputResponse);
    REQUIRE(m->count == 256);
    CHECK(m->inputs[255].frame == 1255);
    CHECK(m->inputs[255].action == uint8_t(1255));
    CHECK(enc(*m) == b);
    for (size_t len = 1; len < b.size(); ++len) {
      Bytes p(b.begin(), b.begin() + static_cast<long>(len));
      INFO(len);
      CHECK(dec(p) == DecodeError::Truncated);
    }
  }
}

TEST_CASE("random messages of every type round-trip", "[protocol]") {
  Rng rng{0x9E3779B97F4A7C15ull};
  auto m = newMsg(MsgType::Keepalive);
  auto back = newMsg(MsgType::Keepalive);
  for (int iter = 0; iter < 3000; ++iter) {
    *m = Message{};
    static uint8_t chunkBytes[kTransferChunkBytes];
    switch (iter % 14) {
      case 0: {
        m->type = MsgType::Input;
        m->playerIndex = static_cast<uint16_t>(rng.u32());
        m->count = static_cast<uint16_t>(1 + rng.u32() % kMaxInputsPerPacket);
        uint32_t f = rng.u32() % 1000000;
        for (int i = 0; i < m->count; ++i) {
          f += 1 + rng.u32() % 3;
          m->inputs[i] = {f, static_cast<uint8_t>(rng.u32())};
        }
        m->frame = f + rng.u32() % 4;
        break;
      }
      case 1:
      case 2: {
        m->type = iter % 10 == 1 ? MsgType::Ping : MsgType::Pong;
        m->timestamp = static_cast<double>(rng.u32()) * 1000.0 + (rng.u32() % 1000) / 8.0;
        break;
      }
      case 3:
        m->type = MsgType::Keepalive;
        break;
      case 4:
        m->type = MsgType::EpisodeEnd;
        m->frame = rng.u32();
        m->episode = rng.u32();
        break;
      case 5:
        m->type = MsgType::EpisodeReady;
        m->episode = rng.u32();
        m->digest = rng.next();
        break;
      case 6:
        m->type = MsgType::StateHash;
        m->frame = rng.u32();
        m->digest = rng.next();
        break;
      case 7:
        m->type = MsgType::InputRequest;
        m->start = rng.u32() % 0xFFFFFF00u;
        m->end = m->start + rng.u32() % kMaxRequestFrames;
        break;
      case 8: {
        m->type = MsgType::InputResponse;
        m->playerIndex = static_cast<uint16_t>(rng.u32());
        m->count = static_cast<uint16_t>(1 + rng.u32() % kMaxResponseInputs);
        uint32_t f = rng.u32() % 1000000;
        for (int i = 0; i < m->count; ++i) {
          f += 1 + rng.u32() % 5;
          m->inputs[i] = {f, static_cast<uint8_t>(rng.u32())};
        }
        break;
      }
      case 9:
        m->type = MsgType::FocusState;
        m->focused = rng.u32() & 1;
        m->frame = rng.u32();
        break;
      case 10:
        m->type = MsgType::Quality;
        m->episode = rng.u32();
        m->delay = static_cast<uint8_t>(rng.u32() % (kMaxInputDelay + 1));
        m->flags = static_cast<uint8_t>(rng.u32() % 4);
        m->margin = static_cast<int16_t>(rng.u32());
        m->frame = rng.u32();
        break;
      case 11:
        m->type = MsgType::StateRequest;
        m->transferId = 1 + rng.u32() % 0xFFFFFFFEu;
        m->reason = rng.u32() % 2 ? kTransferRejoin : kTransferResync;
        m->source = static_cast<uint8_t>(rng.u32());
        m->episode = rng.u32();
        m->frame = rng.u32();
        break;
      case 12: {
        m->type = MsgType::StateChunk;
        m->transferId = 1 + rng.u32() % 0xFFFFFFFEu;
        m->total = 1 + rng.u32() % (1u << 24);
        const uint32_t chunks = (m->total + kTransferChunkBytes - 1) / kTransferChunkBytes;
        m->index = rng.u32() % chunks;
        m->dataLen = static_cast<uint16_t>(std::min<uint64_t>(kTransferChunkBytes, m->total - static_cast<uint64_t>(m->index) * kTransferChunkBytes));
        for (size_t i = 0; i < m->dataLen; ++i) chunkBytes[i] = static_cast<uint8_t>(rng.u32());
        m->data = chunkBytes;
        break;
      }
      case 13:
        m->type = MsgType::StateAck;
        m->transferId = 1 + rng.u32() % 0xFFFFFFFEu;
        m->status = static_cast<uint8_t>(rng.u32() % 3);
        m->index = rng.u32();
        m->bitmap = rng.u32();
        break;
    }
    INFO("iter " << iter);
    REQUIRE(validateForEncode(*m) == nullptr);
    Bytes b = enc(*m);
    REQUIRE(b.size() == encodedSize(*m));
    REQUIRE(b.size() > 0);
    REQUIRE(errName(dec(b, *back)) == "OK");
    REQUIRE(sameMessage(*m, *back));
  }
}

TEST_CASE("round trip of edge values", "[protocol]") {
  auto back = newMsg(MsgType::Keepalive);
  SECTION("timestamps") {
    for (double t : {0.0, -0.0, 1e-300, std::numeric_limits<double>::denorm_min(),
                     std::numeric_limits<double>::max(), 1234.5, 9007199254740993.0}) {
      auto m = newMsg(MsgType::Ping);
      m->timestamp = t;
      Bytes b = enc(*m);
      REQUIRE(b.size() == 9);
      REQUIRE(dec(b, *back) == DecodeError::Ok);
      CHECK(sameMessage(*m, *back));
    }
  }
  SECTION("INPUT_REQUEST at the top of the u32 range") {
    auto m = newMsg(MsgType::InputRequest);
    m->start = 0xFFFFFF00u;
    m->end = 0xFFFFFFFFu;  // exactly 256 frames
    Bytes b = enc(*m);
    CHECK(b == Bytes{0x12, 0xFF, 0xFF, 0xFF, 0x00, 0xFF, 0xFF, 0xFF, 0xFF});
    REQUIRE(dec(b, *back) == DecodeError::Ok);
    CHECK(sameMessage(*m, *back));
  }
  SECTION("single-frame INPUT_REQUEST") {
    Bytes b = {0x12, 0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x05};
    REQUIRE(dec(b, *back) == DecodeError::Ok);
    CHECK(back->start == 5);
    CHECK(back->end == 5);
  }
}

TEST_CASE("every decode error code from a crafted input", "[protocol]") {
  CHECK(errName(decode(nullptr, 0, *newMsg(MsgType::Keepalive))) == "EMPTY");
  CHECK(errName(dec(Bytes{})) == "EMPTY");

  for (uint8_t t : {0x00, 0x08, 0x11, 0x19, 0x80, 0xFF}) {
    INFO(int(t));
    CHECK(errName(dec(Bytes{t})) == "UNKNOWN_TYPE");
    CHECK(errName(dec(Bytes{t, 0, 0, 0, 0, 0, 0, 0, 0})) == "UNKNOWN_TYPE");
  }

  CHECK(errName(dec(Bytes{1, 0, 1})) == "TRUNCATED");
  CHECK(errName(dec(Bytes{0x04, 0x00})) == "TRAILING_BYTES");

  SECTION("BAD_COUNT") {
    // INPUT count 0, 16 and 255 with only the 9-byte header present: BAD_COUNT, not TRUNCATED
    for (uint8_t n : {0, 16, 255}) {
      INFO(int(n));
      CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, n, 0})) == "BAD_COUNT");
    }
    // INPUT_RESPONSE n 0, 257, 65535 with only its 5-byte header
    CHECK(errName(dec(Bytes{0x13, 0, 1, 0x00, 0x00})) == "BAD_COUNT");
    CHECK(errName(dec(Bytes{0x13, 0, 1, 0x01, 0x01})) == "BAD_COUNT");
    CHECK(errName(dec(Bytes{0x13, 0, 1, 0xFF, 0xFF})) == "BAD_COUNT");
  }
  SECTION("BAD_FLAGS") {
    CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 1, 0x02, 0, 0, 0, 7, 3})) == "BAD_FLAGS");  // 0x01: kInputUnfocused
    CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 1, 0x80, 0, 0, 0, 7, 3})) == "BAD_FLAGS");
    // QUALITY: only kQualityMargin | kQualityProposal
    CHECK(errName(dec(Bytes{0x15, 0, 0, 0, 0, 3, 0x04, 0, 0, 0, 0, 0, 0})) == "BAD_FLAGS");
    CHECK(errName(dec(Bytes{0x15, 0, 0, 0, 0, 3, 0x03, 0, 0, 0, 0, 0, 0})) == "OK");
  }
  SECTION("NON_MONOTONIC_FRAMES") {
    // INPUT frames 7, 6 (descending)
    CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 0,  //
                            0, 0, 0, 7, 1, 0, 0, 0, 6, 1})) == "NON_MONOTONIC_FRAMES");
    // INPUT frames 6, 6 (duplicate)
    CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 0,  //
                            0, 0, 0, 6, 1, 0, 0, 0, 6, 2})) == "NON_MONOTONIC_FRAMES");
    // INPUT_RESPONSE frames 5, 9, 8
    CHECK(errName(dec(Bytes{0x13, 0, 1, 0, 3,  //
                            0, 0, 0, 5, 1, 0, 0, 0, 9, 1, 0, 0, 0, 8, 1})) ==
          "NON_MONOTONIC_FRAMES");
    // INPUT_RESPONSE frames 5, 5
    CHECK(errName(dec(Bytes{0x13, 0, 1, 0, 2, 0, 0, 0, 5, 1, 0, 0, 0, 5, 1})) ==
          "NON_MONOTONIC_FRAMES");
  }
  SECTION("FRAME_AFTER_HEADER") {
    // header frame 7, entries 6, 8
    CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 0,  //
                            0, 0, 0, 6, 1, 0, 0, 0, 8, 1})) == "FRAME_AFTER_HEADER");
    // header frame 0, entry 1
    CHECK(errName(dec(Bytes{0x01, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0})) ==
          "FRAME_AFTER_HEADER");
  }
  SECTION("BAD_TIMESTAMP") {
    const Bytes bad[] = {
        {0x7F, 0xF8, 0, 0, 0, 0, 0, 0},        // quiet NaN
        {0x7F, 0xF0, 0, 0, 0, 0, 0, 1},        // signalling NaN
        {0xFF, 0xF8, 0, 0, 0, 0, 0, 0},        // negative NaN
        {0x7F, 0xF0, 0, 0, 0, 0, 0, 0},        // +Inf
        {0xFF, 0xF0, 0, 0, 0, 0, 0, 0},        // -Inf
        {0xBF, 0xF0, 0, 0, 0, 0, 0, 0},        // -1.0
        {0x80, 0x00, 0, 0, 0, 0, 0, 1},        // -denorm_min
    };
    for (uint8_t t : {0x02, 0x03}) {
      for (const auto& ts : bad) {
        Bytes b{t};
        b.insert(b.end(), ts.begin(), ts.end());
        CHECK(errName(dec(b)) == "BAD_TIMESTAMP");
      }
      // -0.0 is not negative: accepted, and re-encodes identically
      Bytes negZero{t, 0x80, 0, 0, 0, 0, 0, 0, 0};
      auto m = newMsg(MsgType::Keepalive);
      CHECK(errName(dec(negZero, *m)) == "OK");
      CHECK(enc(*m) == negZero);
    }
  }
  SECTION("BAD_RANGE") {
    CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 5, 0, 0, 0, 4})) == "BAD_RANGE");  // start > end
    CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 0, 0, 0, 1, 0})) == "BAD_RANGE");  // 0..256: 257
    CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF})) == "BAD_RANGE");
    CHECK(errName(dec(Bytes{0x12, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0})) == "BAD_RANGE");
    CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 0, 0, 0, 0, 0xFF})) == "OK");  // 0..255: 256
  }
  SECTION("BAD_VALUE") {
    CHECK(errName(dec(Bytes{0x14, 0x02, 0, 0, 0, 1})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x14, 0xFF, 0, 0, 0, 1})) == "BAD_VALUE");
    // QUALITY: a proposed input delay above 30 frames
    CHECK(errName(dec(Bytes{0x15, 0, 0, 0, 0, 31, 0x02, 0, 0, 0, 0, 0, 0})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x15, 0, 0, 0, 0, 30, 0x02, 0, 0, 0, 0, 0, 0})) == "OK");
    // STATE_REQUEST: transfer id 0, a reason other than rejoin/resync
    CHECK(errName(dec(Bytes{0x16, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x16, 0, 0, 0, 1, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x16, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0})) == "OK");
    // STATE_ACK: transfer id 0, status 3
    CHECK(errName(dec(Bytes{0x18, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x18, 0, 0, 0, 1, 3, 0, 0, 0, 0, 0, 0, 0, 0})) == "BAD_VALUE");
    // STATE_CHUNK: transfer id 0, total 0
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 9})) == "BAD_VALUE");
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 9})) == "BAD_VALUE");
  }
  SECTION("STATE_CHUNK: counts and ranges") {
    // n = 0 and n = 1025: BAD_COUNT (before the length is looked at)
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0})) == "BAD_COUNT");
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0x10, 0, 0, 0, 0, 0, 0x04, 0x01})) == "BAD_COUNT");
    // header only / short payload: TRUNCATED; one byte more: TRAILING_BYTES
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0})) == "TRUNCATED");
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2, 9})) == "TRUNCATED");
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 2, 9, 9, 9})) == "TRAILING_BYTES");
    // chunk 1 of a 2-byte transfer: BAD_RANGE; 3 bytes of a 2-byte transfer's chunk 0: BAD_COUNT
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 2, 9, 9})) == "BAD_RANGE");
    CHECK(errName(dec(Bytes{0x17, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 0, 0, 3, 9, 9, 9})) == "BAD_COUNT");
    // a full chunk of a longer transfer must be 1024 bytes
    Bytes b = {0x17, 0, 0, 0, 1, 0, 0, 0x08, 0x00, 0, 0, 0, 0, 0x03, 0xFF};
    b.resize(15 + 1023, 7);
    CHECK(errName(dec(b)) == "BAD_COUNT");
    b = {0x17, 0, 0, 0, 1, 0, 0, 0x08, 0x00, 0, 0, 0, 0, 0x04, 0x00};
    b.resize(15 + 1024, 7);
    CHECK(errName(dec(b)) == "OK");
  }
}

TEST_CASE("decode error precedence", "[protocol]") {
  // INPUT: TRUNCATED header beats everything
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 0})) == "TRUNCATED");
  // BAD_COUNT beats BAD_FLAGS
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 0, 1})) == "BAD_COUNT");
  // BAD_FLAGS beats a truncated body
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 2})) == "BAD_FLAGS");
  // BAD_COUNT with trailing bytes
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 16, 0, 1, 2, 3, 4, 5, 6})) == "BAD_COUNT");
  // TRAILING_BYTES beats NON_MONOTONIC_FRAMES
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 0,  //
                          0, 0, 0, 7, 1, 0, 0, 0, 6, 1, 0})) == "TRAILING_BYTES");
  // NON_MONOTONIC_FRAMES beats FRAME_AFTER_HEADER, even when the first entry is after the header
  CHECK(errName(dec(Bytes{0x01, 0, 1, 0, 0, 0, 7, 2, 0,  //
                          0, 0, 0, 9, 1, 0, 0, 0, 8, 1})) == "NON_MONOTONIC_FRAMES");
  // INPUT_RESPONSE: BAD_COUNT beats TRUNCATED body; TRAILING beats NON_MONOTONIC
  CHECK(errName(dec(Bytes{0x13, 0, 1, 0x01, 0x01, 0, 0, 0})) == "BAD_COUNT");
  CHECK(errName(dec(Bytes{0x13, 0, 1, 0, 2, 0, 0, 0, 5, 1, 0, 0, 0, 5, 1, 9})) ==
        "TRAILING_BYTES");
  // fixed-size types: length checks beat value checks
  CHECK(errName(dec(Bytes{0x02, 0x7F, 0xF8, 0, 0})) == "TRUNCATED");
  CHECK(errName(dec(Bytes{0x02, 0x7F, 0xF8, 0, 0, 0, 0, 0, 0, 0})) == "TRAILING_BYTES");
  CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 5, 0, 0, 0})) == "TRUNCATED");
  CHECK(errName(dec(Bytes{0x12, 0, 0, 0, 5, 0, 0, 0, 4, 0})) == "TRAILING_BYTES");
  CHECK(errName(dec(Bytes{0x14, 0x02, 0, 0, 0})) == "TRUNCATED");
  CHECK(errName(dec(Bytes{0x14, 0x02, 0, 0, 0, 1, 1})) == "TRAILING_BYTES");
}

TEST_CASE("decodeErrorName spells every code", "[protocol]") {
  const char* expect[] = {"OK",        "EMPTY",     "UNKNOWN_TYPE",         "TRUNCATED",
                          "TRAILING_BYTES", "BAD_COUNT", "BAD_FLAGS", "NON_MONOTONIC_FRAMES",
                          "FRAME_AFTER_HEADER", "BAD_TIMESTAMP", "BAD_RANGE", "BAD_VALUE"};
  for (int i = 0; i <= static_cast<int>(DecodeError::BadValue); ++i) {
    CHECK(std::string(decodeErrorName(static_cast<DecodeError>(i))) == expect[i]);
  }
}

TEST_CASE("encode refuses invalid messages and names the field", "[protocol]") {
  auto check = [](const Message& m, const char* field) {
    const char* got = validateForEncode(m);
    REQUIRE(got != nullptr);
    CHECK(std::string(got) == field);
    CHECK(encodedSize(m) == 0);
    Bytes buf(kMaxPacketBytes + 16, 0xAA);
    CHECK(encode(m, buf.data(), buf.size()) == 0);
    CHECK(buf == Bytes(kMaxPacketBytes + 16, 0xAA));  // nothing written
  };
  auto input = [] {
    auto m = newMsg(MsgType::Input);
    m->playerIndex = 0;
    m->frame = 20;
    m->count = 2;
    m->inputs[0] = {18, 1};
    m->inputs[1] = {19, 1};
    return m;
  };

  {
    auto m = input();
    m->count = 0;
    check(*m, "count");
  }
  {
    // 16 inputs: refused, never truncated to 15
    auto m = input();
    m->frame = 100;
    m->count = 16;
    for (int i = 0; i < 16; ++i) m->inputs[i] = {static_cast<uint32_t>(80 + i), 0};
    check(*m, "count");
  }
  {
    auto m = input();
    m->flags = 2;  // 0 or kInputUnfocused
    check(*m, "flags");
  }
  {
    auto m = input();
    m->inputs[1].frame = 18;  // not strictly ascending
    check(*m, "inputs.frame");
  }
  {
    auto m = input();
    m->inputs[1].frame = 21;  // after header frame
    check(*m, "inputs.frame");
  }
  {
    auto m = newMsg(MsgType::InputResponse);
    m->count = 0;
    check(*m, "count");
    m->count = 257;
    for (int i = 0; i < 256; ++i) m->inputs[i] = {static_cast<uint32_t>(i), 0};
    check(*m, "count");
    m->count = 2;
    m->inputs[1].frame = 0;
    check(*m, "inputs.frame");
  }
  for (MsgType t : {MsgType::Ping, MsgType::Pong}) {
    for (double ts : {std::nan(""), std::numeric_limits<double>::infinity(),
                      -std::numeric_limits<double>::infinity(), -1.0, -1e-300}) {
      auto m = newMsg(t);
      m->timestamp = ts;
      check(*m, "timestamp");
    }
  }
  {
    auto m = newMsg(MsgType::InputRequest);
    m->start = 5;
    m->end = 4;
    check(*m, "range");
    m->start = 0;
    m->end = 256;
    check(*m, "range");
    m->end = 0xFFFFFFFF;
    check(*m, "range");
  }
  {
    auto m = newMsg(MsgType::FocusState);
    m->focused = 2;
    check(*m, "focused");
  }
  {
    auto m = newMsg(MsgType::Quality);
    m->flags = 4;
    check(*m, "flags");
    m->flags = kQualityProposal;
    m->delay = kMaxInputDelay + 1;
    check(*m, "delay");
  }
  {
    auto m = newMsg(MsgType::StateRequest);
    m->transferId = 0;
    m->reason = kTransferRejoin;
    check(*m, "transferId");
    m->transferId = 1;
    m->reason = 0;
    check(*m, "reason");
  }
  {
    static const uint8_t bytes[4] = {1, 2, 3, 4};
    auto m = newMsg(MsgType::StateChunk);
    m->transferId = 0;
    m->total = 4;
    m->dataLen = 4;
    m->data = bytes;
    check(*m, "transferId");
    m->transferId = 9;
    m->total = 0;
    check(*m, "total");
    m->total = 4;
    m->index = 1;
    check(*m, "index");
    m->index = 0;
    m->dataLen = 3;
    check(*m, "count");
    m->dataLen = 4;
    m->data = nullptr;
    check(*m, "count");
  }
  {
    auto m = newMsg(MsgType::StateAck);
    m->transferId = 0;
    check(*m, "transferId");
    m->transferId = 1;
    m->status = 3;
    check(*m, "status");
  }
  {
    auto m = newMsg(MsgType::Keepalive);
    m->type = static_cast<MsgType>(0x99);
    check(*m, "type");
    m->type = static_cast<MsgType>(0x00);
    check(*m, "type");
  }
}

TEST_CASE("encode with too small a buffer returns 0 and writes nothing", "[protocol]") {
  for (const auto& g : goldens()) {
    INFO(g.name);
    const size_t need = g.bytes.size();
    for (size_t cap = 0; cap < need; ++cap) {
      Bytes buf(need + 4, 0xAA);
      CHECK(encode(*g.msg, buf.data(), cap) == 0);
      CHECK(buf == Bytes(need + 4, 0xAA));
    }
    Bytes exact(need, 0xAA);
    CHECK(encode(*g.msg, exact.data(), need) == need);
    CHECK(exact == g.bytes);
    CHECK(encode(*g.msg, nullptr, 100) == 0);
  }
}

TEST_CASE("digest hex helpers", "[protocol]") {
  char hex[17];
  digestToHex(0x0123456789ABCDEFull, hex);
  CHECK(std::string(hex) == "0123456789abcdef");
  digestToHex(0, hex);
  CHECK(std::string(hex) == "0000000000000000");
  digestToHex(~0ull, hex);
  CHECK(std::string(hex) == "ffffffffffffffff");

  uint64_t d = 0;
  CHECK(hexToDigest("0123456789abcdef", 16, d));
  CHECK(d == 0x0123456789ABCDEFull);
  CHECK(hexToDigest("FEDCBA9876543210", 16, d));
  CHECK(d == 0xFEDCBA9876543210ull);
  CHECK(hexToDigest("fEdCbA9876543210", 16, d));
  CHECK(d == 0xFEDCBA9876543210ull);

  d = 42;
  CHECK_FALSE(hexToDigest("0123456789abcde", 15, d));
  CHECK_FALSE(hexToDigest("0123456789abcdef0", 17, d));
  CHECK_FALSE(hexToDigest("0123456789abcdeg", 16, d));
  CHECK_FALSE(hexToDigest("0x23456789abcdef", 16, d));
  CHECK_FALSE(hexToDigest(" 123456789abcdef", 16, d));
  CHECK_FALSE(hexToDigest("", 0, d));
  CHECK_FALSE(hexToDigest(nullptr, 16, d));
  CHECK(d == 42);  // untouched on failure

  Rng rng{12345};
  for (int i = 0; i < 200; ++i) {
    uint64_t v = rng.next(), w = 0;
    digestToHex(v, hex);
    REQUIRE(hexToDigest(hex, 16, w));
    CHECK(w == v);
  }
}
