// State transfer (state_transfer.hpp, sync_engine_transfer.cpp): the blob and its checks, the
// chunked transfer over a lossy link, a page that reloads and rejoins, desync recovery.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "harness.hpp"
#include "state_hash.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

namespace {

std::vector<uint8_t> sampleBlob(int numPlayers = 2, uint8_t reason = kTransferRejoin, const std::string& state = R"({"frame":40,"pos":[3,-2]})",
                                const std::string& attachment = "rows", size_t maxBytes = 1 << 20) {
  std::vector<uint8_t> blob;
  TransferWriter w(blob);
  w.header(reason, numPlayers, 0, 2, 300, 340, 352, 3, 1234.5, {2, 3, 3});
  w.state(reinterpret_cast<const uint8_t*>(state.data()), state.size(), hashBytes(reinterpret_cast<const uint8_t*>(state.data()), state.size()));
  for (int p = 0; p < numPlayers; ++p)
    w.inputs(340, static_cast<uint16_t>(5 + p), [&](Frame f, uint8_t& a, bool& u) {
      a = static_cast<uint8_t>(f % 5 + p);
      u = f == 342;
    });
  w.bots(340, 0, 0, [](Frame) -> const uint8_t* { return nullptr; });
  w.attachment(reinterpret_cast<const uint8_t*>(attachment.data()), attachment.size());
  REQUIRE(w.finish(maxBytes));
  return blob;
}

// Re-seals a blob after an edit (a forged blob with a valid hash).
void reseal(std::vector<uint8_t>& b) {
  const uint64_t h = hashBytes(b.data(), b.size() - 8);
  for (int i = 0; i < 8; ++i) b[b.size() - 8 + static_cast<size_t>(i)] = static_cast<uint8_t>(h >> (56 - 8 * i));
}

}  // namespace

TEST_CASE("transfer blob: written, parsed back field by field", "[transfer]") {
  const std::vector<uint8_t> b = sampleBlob();
  TransferView v;
  REQUIRE(parseTransfer(b.data(), b.size(), 2, 0, v) == TransferError::Ok);
  CHECK(v.reason == kTransferRejoin);
  CHECK(v.episode == 2);
  CHECK(v.episodeStart == 300);
  CHECK(v.snapshotFrame == 340);
  CHECK(v.senderFrame == 352);
  CHECK(v.inputDelay == 3);
  CHECK(v.downMs == 1234.5);
  REQUIRE(v.delayCount == 3);
  CHECK(std::vector<uint8_t>(v.delays, v.delays + 3) == std::vector<uint8_t>{2, 3, 3});
  CHECK(std::string(reinterpret_cast<const char*>(v.state), v.stateLen) == R"({"frame":40,"pos":[3,-2]})");
  CHECK(v.stateHash == hashBytes(v.state, v.stateLen));
  for (int p = 0; p < 2; ++p) {
    CHECK(v.inputs[p].from == 340);
    REQUIRE(v.inputs[p].count == 5 + p);
    for (int i = 0; i < v.inputs[p].count; ++i) {
      CHECK(v.inputs[p].entries[2 * i] == (340 + i) % 5 + p);
      CHECK(v.inputs[p].entries[2 * i + 1] == (340 + i == 342 ? 1 : 0));
    }
  }
  CHECK(v.botCount == 0);
  CHECK(std::string(reinterpret_cast<const char*>(v.attachment), v.attachmentLen) == "rows");
}

TEST_CASE("transfer blob: every flipped byte, every truncation and every forged field is refused by name", "[transfer]") {
  const std::vector<uint8_t> b = sampleBlob();
  TransferView v;
  std::map<std::string, int> seen;
  for (size_t i = 0; i < b.size(); ++i) {
    std::vector<uint8_t> c = b;
    c[i] ^= 0x5A;
    const TransferError e = parseTransfer(c.data(), c.size(), 2, 0, v);
    INFO("byte " << i);
    CHECK(e != TransferError::Ok);
    ++seen[transferErrorName(e)];
  }
  CHECK(seen["bad-magic"] == 4);
  CHECK(seen["bad-hash"] == static_cast<int>(b.size()) - 4);
  for (size_t n = 0; n < b.size(); ++n) CHECK(parseTransfer(b.data(), n, 2, 0, v) != TransferError::Ok);
  // another session's shape
  CHECK(parseTransfer(b.data(), b.size(), 3, 0, v) == TransferError::BadShape);
  CHECK(parseTransfer(b.data(), b.size(), 2, 1, v) == TransferError::BadShape);
  // forged with a valid hash: each field checked
  auto forged = [&](size_t at, uint8_t value) {
    std::vector<uint8_t> c = b;
    c[at] = value;
    reseal(c);
    return transferErrorName(parseTransfer(c.data(), c.size(), 2, 0, v));
  };
  CHECK(std::string(forged(4, 9)) == "bad-version");
  CHECK(std::string(forged(5, 7)) == "bad-shape");                // reason
  CHECK(std::string(forged(18, 0)) == "bad-frames");              // snapshotFrame 340 -> 84 < episodeStart 300
  CHECK(std::string(forged(24, 31)) == "bad-shape");              // inputDelay > 30
  CHECK(std::string(forged(25, 1)) == "bad-shape");               // reserved
  {
    // stateLen 0 (and the state's bytes then read as what follows: any error but Ok)
    std::vector<uint8_t> c = b;
    const size_t lenAt = 4 + 4 + 16 + 4 + 8 + 2 + 3 + 8;
    for (int k = 0; k < 4; ++k) c[lenAt + static_cast<size_t>(k)] = 0;
    reseal(c);
    CHECK(parseTransfer(c.data(), c.size(), 2, 0, v) != TransferError::Ok);
  }
  {
    // an unfocused flag other than 0/1
    std::vector<uint8_t> c = b;
    const std::string state = R"({"frame":40,"pos":[3,-2]})";
    const size_t firstEntry = 4 + 4 + 16 + 4 + 8 + 2 + 3 + 8 + 4 + state.size() + 6;
    c[firstEntry + 1] = 2;
    reseal(c);
    CHECK(parseTransfer(c.data(), c.size(), 2, 0, v) == TransferError::BadShape);
  }
  {
    // a byte more before the hash
    std::vector<uint8_t> c = b;
    c.insert(c.end() - 8, 0);
    reseal(c);
    CHECK(parseTransfer(c.data(), c.size(), 2, 0, v) == TransferError::TrailingBytes);
  }
  // the writer refuses a blob over the limit
  std::vector<uint8_t> big;
  TransferWriter w(big);
  const std::string state(5000, 'x');
  w.header(kTransferRejoin, 2, 0, 0, 0, 0, 0, 2, 0, {});
  w.state(reinterpret_cast<const uint8_t*>(state.data()), state.size(), 1);
  CHECK_FALSE(w.finish(4096));
  CHECK(big.empty());
}

TEST_CASE("chunked transfer: a 300 KB blob over 20% loss and reordering; strays refused without allocating", "[transfer]") {
  std::vector<uint8_t> blob(300 * 1024 + 77);
  Rng rng(5);
  for (uint8_t& x : blob) x = static_cast<uint8_t>(rng.below(256));
  const std::vector<uint8_t> original = blob;
  TransferOut out;
  out.start(42, std::move(blob), 0);
  REQUIRE(out.chunks() == 301);
  TransferIn in;
  in.expect(42, 1, 0);
  struct Flight {
    double at;
    uint32_t index;
    std::vector<uint8_t> data;
  };
  std::vector<Flight> wire;
  double now = 0;
  int ticks = 0;
  while (!in.complete() && ticks < 2000) {
    ++ticks;
    now += 33;
    out.pump(now, 150, 32, [&](uint32_t index, const uint8_t* d, size_t len) {
      if (rng.chance(0.2)) return;  // lost
      wire.push_back({now + 20 + rng.uniform() * 60, index, std::vector<uint8_t>(d, d + len)});
    });
    std::vector<Flight> later;
    for (Flight& f : wire) {
      if (f.at > now) {
        later.push_back(std::move(f));
        continue;
      }
      Message m;
      m.type = MsgType::StateChunk;
      m.transferId = 42;
      m.total = static_cast<uint32_t>(original.size());
      m.index = f.index;
      m.data = f.data.data();
      m.dataLen = static_cast<uint16_t>(f.data.size());
      const RxResult r = in.onChunk(1, m, 1 << 20, now);
      CHECK((r == RxResult::Ok || r == RxResult::Duplicate));
    }
    wire = std::move(later);
    if (rng.chance(0.8)) out.onAck(in.firstMissing(), in.bitmap(), now);  // the ACKs are lossy too
  }
  REQUIRE(in.complete());
  CHECK(std::equal(original.begin(), original.end(), in.data()));
  CHECK(out.resent() > 0);
  CHECK(ticks < 200);

  // strays: nothing expected, another transfer, another sender, too large — no allocation
  TransferIn idle;
  static const uint8_t bytes[4] = {1, 2, 3, 4};
  Message m;
  m.type = MsgType::StateChunk;
  m.transferId = 9;
  m.total = 4;
  m.dataLen = 4;
  m.data = bytes;
  CHECK(idle.onChunk(1, m, 1 << 20, 0) == RxResult::TransferUnexpected);
  CHECK(idle.bytes() == 0);
  idle.expect(9, 2, 0);
  CHECK(idle.onChunk(1, m, 1 << 20, 0) == RxResult::TransferUnexpected);  // from player 1, not 2
  m.total = (1u << 20) + 4;
  CHECK(idle.onChunk(2, m, 1 << 20, 0) == RxResult::TransferTooLarge);
  CHECK(idle.bytes() == 0);
  m.total = 4;
  CHECK(idle.onChunk(2, m, 1 << 20, 0) == RxResult::Ok);
  CHECK(idle.complete());
  CHECK(idle.onChunk(2, m, 1 << 20, 0) == RxResult::Duplicate);
  static const uint8_t other[4] = {1, 2, 3, 5};
  m.data = other;
  CHECK(idle.onChunk(2, m, 1 << 20, 0) == RxResult::TransferCorrupt);  // contradicts what arrived
  m.total = 8;
  m.dataLen = 8;
  static const uint8_t eight[8] = {};
  m.data = eight;
  CHECK(idle.onChunk(2, m, 1 << 20, 0) == RxResult::TransferCorrupt);  // another size
}

// ------------------------------------------------------------------------------------- rejoin

namespace {

// Peer `who` reloads at frame `atFrame`: nothing from or to it for `downMs`, then a fresh page.
void reloadAt(Session& w, size_t who, Frame atFrame, double downMs) {
  w.runFrames(atFrame);
  const double until = w.now + downMs;
  w.net.drop = [&w, who, until](const Packet& p) {
    return (p.from == static_cast<int>(who) || p.to == static_cast<int>(who)) && w.now < until;
  };
  w.pausedUntil[who] = until;
  while (w.now < until) w.tick();
  w.net.drop = nullptr;
  w.reloadPeer(who);
}

std::vector<json> ofType(Peer& p, const std::string& type) {
  std::vector<json> v;
  for (const json& e : p.events)
    if (e["type"] == type) v.push_back(e);
  return v;
}

}  // namespace

TEST_CASE("rejoin: a page reloads mid-episode and rejoins 3 s later (2 and 3 players, lossy link)", "[transfer][engine]") {
  for (int players : {2, 3}) {
    CAPTURE(players);
    LinkProfile link{50, 20, 0.05, 0.02, 0.01, 20};
    Session w(SessionOptions::over(players, "", link, 60 + static_cast<uint64_t>(players)));
    reloadAt(w, 1, 200, 3000);
    Peer& back = w[1];
    CHECK(back.engine->joining());
    // the others stalled at the prediction limit while it was away
    CHECK(w[0].stalls > 30);
    const Frame target = w[0].engine->frame() + 600;
    w.runFrames(target);
    for (size_t i = 0; i < w.peers.size(); ++i) w.collect(i);
    // the rejoiner loaded a peer's state and went on in the same episode, numbered the same way
    const auto loaded = ofType(back, "stateLoaded");
    REQUIRE(loaded.size() == 1);
    CHECK(loaded[0]["reason"] == "rejoin");
    CHECK(loaded[0]["peer"] == 0);
    CHECK(loaded[0]["episode"] == 0);
    const Frame S = loaded[0]["frame"].get<Frame>();
    CHECK(S >= 150);
    CHECK(S <= 230);
    CHECK(back.engine->episode() == 0);
    CHECK(back.engine->frame() >= target);
    // every peer recorded the rejoin: the others with the rejoiner's last input and the time away
    for (int i = 0; i < players; ++i) {
      const auto r = ofType(w[i], "rejoin");
      INFO("peer " << i);
      REQUIRE(r.size() == 1);
      CHECK(r[0]["peer"] == 1);
      CHECK(r[0]["reason"] == "reload");
      if (i != 1) {
        CHECK(r[0]["downMs"].get<double>() >= 2900);
        CHECK(r[0]["lastInputFrame"].get<Frame>() >= S - 1);
      }
    }
    // the same inputs everywhere from the rejoin on, no desync, hashes verified after it
    size_t common = 0;
    REQUIRE(w.logsIdentical(&common));
    CHECK(static_cast<Frame>(common) > target - 60);
    CHECK(w.totalDesyncs() == 0);
    CHECK(w.events("desync") == 0);
    for (auto& p : w.peers) CHECK(p->engine->verifiedFrame() > S + 300);
    CHECK(back.engine->confirmedFrame() > S + 300);
    CHECK(ofType(w[0], "transferSent").size() == 1);
    CHECK(w[0].engine->exportSessionMetrics()["session"]["transfers"]["sent"] == 1);
    CHECK(back.engine->exportSessionMetrics()["session"]["transfers"]["received"] == 1);
    CHECK(back.engine->transferBytes() < 4096);  // the buffers are freed
  }
}

TEST_CASE("rejoin: the source vanishes mid-transfer; the rejoiner asks the next peer", "[transfer][engine]") {
  LinkProfile link{30, 10, 0.02, 0, 0, 20};
  Session w(SessionOptions::over(3, "", link, 77));
  // a large state (100 KB: 98 chunks, more than one advance sends) makes the transfer take a while
  for (auto& p : w.peers) p->game.padBytes = 100000;
  reloadAt(w, 2, 150, 2000);
  // player 0 (the first source) goes silent as soon as the first chunk left it
  bool cut = false;
  w.onDeliver = [&](const Packet& p) {
    if (p.from == 0 && p.to == 2 && p.type() == static_cast<int>(MsgType::StateChunk)) cut = true;
  };
  w.net.drop = [&](const Packet& p) { return cut && (p.from == 0 || p.to == 0) && (p.from == 2 || p.to == 2); };
  REQUIRE(w.runUntil([&] { return !w[2].engine->joining(); }, 2000));
  const auto loaded = ofType(w[2], "stateLoaded");
  REQUIRE(loaded.size() == 1);
  CHECK(loaded[0]["peer"] == 1);  // from the next peer
}

TEST_CASE("rejoin: a forged or damaged transfer is refused, counted and asked for again", "[transfer][engine]") {
  LinkProfile link{30, 10, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 91));
  reloadAt(w, 1, 120, 1000);
  // flip a byte of the first chunk once: the blob hash fails, the rejoiner rejects and asks again
  bool flipped = false;
  w.onDeliver = [&](const Packet& p) {
    if (!flipped && p.to == 1 && p.type() == static_cast<int>(MsgType::StateChunk)) {
      flipped = true;
      Packet& q = const_cast<Packet&>(p);
      q.bytes[20] ^= 0xFF;
    }
  };
  REQUIRE(w.runUntil([&] { return !w[1].engine->joining(); }, 3000));
  CHECK(flipped);
  const auto errs = ofType(w[1], "transferError");
  REQUIRE(errs.size() == 1);
  CHECK(errs[0]["reason"] == "bad-hash");
  CHECK(w[1].engine->exportSessionMetrics()["rejected"]["TRANSFER_CORRUPT"] == 1);
  CHECK(ofType(w[0], "transferError").size() == 1);  // the sender heard the rejection
  w.runFrames(w[0].engine->frame() + 200);
  CHECK(w.events("desync") == 0);
}

TEST_CASE("transfer messages from a peer are untrusted: strays, floods and junk change nothing", "[transfer][engine]") {
  LinkProfile link{25, 0, 0, 0, 0, 20};
  Session w(SessionOptions::over(2, "", link, 3));
  w.runFrames(100);
  SyncEngine& e = *w[0].engine;
  const size_t mem = e.memoryBytes();
  auto send = [&](const Message& m) {
    const auto b = enc(m);
    return w[0].rxBytes(b, 1, w.now);
  };
  static const uint8_t bytes[1024] = {};
  Message chunk;
  chunk.type = MsgType::StateChunk;
  chunk.transferId = 5;
  chunk.total = 64u << 20;
  chunk.index = 3;
  chunk.dataLen = 1024;
  chunk.data = bytes;
  CHECK(send(chunk) == RxResult::TransferUnexpected);  // nothing asked for: no 64 MB buffer
  Message ack;
  ack.type = MsgType::StateAck;
  ack.transferId = 5;
  ack.index = 1;
  CHECK(send(ack) == RxResult::TransferUnexpected);
  // a resync request for another episode, then requests in a burst: one build per second
  Message req;
  req.type = MsgType::StateRequest;
  req.transferId = 11;
  req.reason = kTransferResync;
  req.source = 0;
  req.episode = 4;
  CHECK(send(req) == RxResult::StaleEpisode);
  req.episode = 0;
  req.frame = 50;
  CHECK(send(req) == RxResult::Ok);
  CHECK(send(req) == RxResult::Duplicate);
  w.runTicks(3);  // built at its next advance
  req.transferId = 12;
  CHECK(send(req) == RxResult::Flood);
  CHECK(e.memoryBytes() > mem);  // one transfer being sent
  // nobody acknowledges it: dropped after 10 s, memory back
  w.net.drop = [](const Packet& p) { return p.type() == static_cast<int>(MsgType::StateChunk); };
  w.runTicks(800);
  CHECK(e.memoryBytes() == mem);
  CHECK(ofType(w[0], "transferError").size() == 1);
  w.net.drop = nullptr;
  w.runFrames(w.minFrame() + 100);
  CHECK(w.events("desync") == 0);
}

// ------------------------------------------------------------------------------------- resync

TEST_CASE("resync: after a desync every peer agrees on one state and the diverged peer loads it", "[transfer][engine]") {
  struct Case {
    int players;
    size_t corrupt;
    int source;
  };
  for (const Case c : {Case{3, 2, 0}, Case{3, 0, 1}, Case{2, 1, 0}, Case{2, 0, 0}}) {
    CAPTURE(c.players, c.corrupt);
    LinkProfile link{30, 10, 0.03, 0, 0, 20};
    Session w(SessionOptions::over(c.players, ",\"desyncPolicy\":\"resync\"", link, 200 + c.corrupt));
    w[static_cast<int>(c.corrupt)].corruptFrame = 100;
    w.runFrames(600);
    // detected, then resolved the same way everywhere
    CHECK(w.events("desync") > 0);
    Frame H = kNoFrame;
    for (int i = 0; i < c.players; ++i) {
      const auto r = ofType(w[i], "resync");
      INFO("peer " << i);
      REQUIRE(r.size() == 1);
      CHECK(r[0]["source"] == c.source);
      // (a source asked before its own hash comparison saw the desync records "requested")
      if (!(i == c.source && r[0]["reason"] == "requested")) CHECK(r[0]["reason"] == (c.players == 3 ? "majority" : "lowest-index"));
      if (H == kNoFrame) H = r[0]["frame"].get<Frame>();
      CHECK(r[0]["frame"] == H);
    }
    CHECK(H > 100);
    CHECK(H <= 110);
    // the peers not in the winning group loaded the source's state of H
    for (int i = 0; i < c.players; ++i) {
      const auto loaded = ofType(w[i], "stateLoaded");
      const bool loser = c.players == 3 ? static_cast<size_t>(i) == c.corrupt : i != c.source;
      INFO("peer " << i);
      CHECK(loaded.size() == (loser ? 1u : 0u));
      if (loser) {
        CHECK(loaded[0]["reason"] == "resync");
        CHECK(loaded[0]["peer"] == c.source);
        CHECK(loaded[0]["frame"] == H);
      }
    }
    // equal again: hashes verified well past the desync, and no desync after it
    for (auto& p : w.peers) CHECK(p->engine->verifiedFrame() > H + 300);
    for (auto& p : w.peers)
      for (const json& d : ofType(*p, "desync")) CHECK(d["frame"].get<Frame>() <= H);
    // the games' states of a common frame are the same
    std::set<std::string> states;
    const Frame f = w.minConfirmed() / 5 * 5 - 10;
    for (auto& p : w.peers) {
      const SnapshotStore::Entry* s = p->engine->snapshot(f);
      REQUIRE(s != nullptr);
      states.insert(std::string(reinterpret_cast<const char*>(p->engine->snapshotBytes(*s)), s->length));
    }
    CHECK(states.size() == 1);
  }
}

TEST_CASE("desyncPolicy report (the default): a desync is reported and nothing is loaded", "[transfer][engine]") {
  LinkProfile link{30, 10, 0.03, 0, 0, 20};
  Session w(SessionOptions::over(3, "", link, 204));
  w[2].corruptFrame = 100;
  w.runFrames(400);
  CHECK(w.events("desync") > 0);
  CHECK(w.events("resync") == 0);
  CHECK(w.events("stateLoaded") == 0);
}
