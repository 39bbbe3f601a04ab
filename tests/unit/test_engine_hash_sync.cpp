// Engine-level state-hash sync: real SyncEngines over the harness Session (scripted link:
// drops, held-back packets, closed channels, per-path counters): hashes sent only once final,
// desync detection, END / READY under loss, p2p_state_sync relay messages both ways.
#include <catch2/catch_test_macros.hpp>

#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

TEST_CASE("engine sync: 10,000 frames over heavy loss and reordering, no desync, verifiedFrame near the end",
          "[statesync-engine]") {
  // relayHashes "fallback" (the default): a STATE_HASH lost on P2P is not re-sent and has no
  // relay copy, so ~70% of the hash frames are compared; "always": the reliable relay copy makes
  // every one of them compared.
  for (bool always : {false, true}) {
    CAPTURE(always);
    SessionOptions o;
    o.seed = 2024;
    o.link = LinkProfile{40, 30, 0.30, 0.25, 0.05, 20};  // 30% loss, 25% reordered, 5% duplicated
    if (always) o.extraConfig = ",\"relayHashes\":\"always\"";
    Session s(o);
    s.runFrames(10000);
    size_t common = 0;
    REQUIRE(s.logsIdentical(&common));
    CHECK(common > 9900);
    CHECK(s.totalDesyncs() == 0);
    uint64_t rollbacks = 0;
    for (auto& p : s.peers) {
      rollbacks += p->rollbacks;
      const SyncEngine& e = *p->engine;
      CHECK(e.stateSync().desyncCount() == 0);
      CHECK(e.stateSync().desyncEvents().empty());
      // verifiedFrame: within a few hash intervals plus the link latency of the newest frame
      const int64_t lag = e.frame() - e.verifiedFrame();
      INFO("peer " << p->index << " frame " << e.frame() << " verified " << e.verifiedFrame() << " confirmed "
                   << e.confirmedFrame() << " matches " << e.stateSync().matchCount());
      CHECK(e.verifiedFrame() > 0);
      CHECK(lag <= 4 * 5 + 10);
      CHECK(e.verifiedFrame() % 5 == 0);
      CHECK(e.stateSync().matchCount() >= (always ? 1900u : 1300u));
      CHECK(e.exportSessionMetrics()["sync"]["desyncEvents"].empty());
      CHECK(p->stepsPastEnd == 0);
    }
    CHECK(rollbacks > 1000);
  }
}

TEST_CASE("engine sync: a state altered at frame 400 is a desync at hash frame 405 on both peers",
          "[statesync-engine]") {
  // relayHashes "always": the relay copy (with the action counts) completes the desync record
  Session w(SessionOptions::scripted(2, ",\"relayHashes\":\"always\"", 11));
  w.net.profile().oneWayMs = 30;
  w.net.profile().jitterMs = 15;
  w.net.profile().loss = 0.2;
  w.net.profile().reorder = 0.1;
  w[1].corruptFrame = 400;  // also re-applied when a rollback replays frame 400
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 700; }, 5000));
  uint64_t rollbacks = w[0].rollbacks + w[1].rollbacks;
  CHECK(rollbacks > 20);

  json first[2];
  for (int i = 0; i < 2; ++i) {
    Peer& n = w[i];
    const auto desyncs = n.ofType("desync");
    INFO("peer " << i);
    REQUIRE_FALSE(desyncs.empty());
    uint32_t minFrame = UINT32_MAX;
    for (const json& d : desyncs) minFrame = std::min(minFrame, d["frame"].get<uint32_t>());
    CHECK(minFrame == 405);
    first[i] = desyncs.front();
    CHECK(first[i]["frame"] == 405);
    for (const char* k : {"frame", "localHash", "remoteHash", "peer", "actionCountDiff", "detectedAtFrame"})
      CHECK(first[i].contains(k));
    CHECK(first[i]["peer"] == 1 - i);
    CHECK(first[i]["localHash"] != first[i]["remoteHash"]);
    CHECK(first[i]["detectedAtFrame"].get<uint32_t>() >= 405);
    CHECK(first[i]["episode"] == 0);
    // verification stopped at the last good hash frame
    CHECK(n.engine->verifiedFrame() == 400);
    // the stored record (completed by the relay copy's counts): inputs agree, only the state differs
    const auto& recs = n.engine->stateSync().desyncEvents();
    REQUIRE_FALSE(recs.empty());
    CHECK(recs.front()["frame"] == 405);
    CHECK(recs.front()["actionCountDiff"] == json::object());
    CHECK(n.engine->exportSessionMetrics()["sync"]["desyncEvents"][0]["frame"] == 405);
  }
  // the two reports are mirror images
  CHECK(first[0]["localHash"] == first[1]["remoteHash"]);
  CHECK(first[0]["remoteHash"] == first[1]["localHash"]);
  const uint32_t c = static_cast<uint32_t>(std::min(w[0].engine->confirmedFrame(), w[1].engine->confirmedFrame()));
  CHECK(sameLogs(*w[0].engine, *w[1].engine, c - 200, c));
}

TEST_CASE("engine sync: a frame simulated with predicted inputs is never hashed or sent before it is confirmed",
          "[statesync-engine]") {
  Session w(SessionOptions::scripted(2, "", 5));
  w[1].changeProb = 0.6;  // the held-back player changes its action often: predictions go wrong
  w[0].changeProb = 0.3;
  // Phase 1: every input of player 1 to player 0 is held back (READY, PING, PONG, hashes pass).
  w.net.hold = [](const Packet& x) { return x.from == 1 && x.to == 0 && x.carriesInputs(); };
  w.runTicks(120);
  Peer& a = w[0];
  CHECK(a.engine->confirmedFrame() == -1);
  CHECK(a.engine->frame() == 30);  // ran on predictions up to the prediction limit, then stalled
  CHECK(a.stalls > 0);
  CHECK(a.lastStatus == Status::Stall);
  for (uint32_t f : {5u, 10u, 15u, 20u, 25u}) CHECK(a.engine->snapshot(f) != nullptr);  // hashed locally...
  CHECK(a.hashesSent.empty());                                                         // ...never sent
  CHECK(a.engine->stateSync().hashesSentCount() == 0);
  CHECK(a.ofType("hashBroadcast").empty());
  CHECK(a.engine->stateSync().hashesReceivedCount() > 0);  // player 1's hashes wait, uncompared
  CHECK(a.engine->stateSync().matchCount() == 0);
  CHECK(a.engine->stateSync().desyncCount() == 0);
  CHECK(a.engine->verifiedFrame() == -1);
  CHECK(w[1].engine->stateSync().hashesSentCount() > 0);

  // Phase 2: the inputs arrive; player 0 rolls back, replays, re-snapshots, then sends.
  w.net.hold = nullptr;
  w.net.release(w.now, 3);
  w.runTicks(240);
  CHECK(a.rollbacks >= 1);
  CHECK(a.engine->frame() > 120);
  const uint32_t upTo = static_cast<uint32_t>(std::min(w[0].engine->confirmedFrame(), w[1].engine->confirmedFrame()));
  const auto truth = truthHashes(*a.engine, upTo, 2);
  std::set<uint32_t> sentFrames;
  for (int i = 0; i < 2; ++i) {
    for (const Peer::SentHash& h : w[i].hashesSent) {
      INFO("peer " << i << " frame " << h.frame << " confirmed " << h.confirmedRel);
      CHECK(static_cast<int64_t>(h.frame) - 1 <= h.confirmedRel);  // every input of frames < f known
      if (h.frame <= upTo) CHECK(h.hash == truth.at(h.frame));     // and the hash is the true state's
      if (i == 0) sentFrames.insert(h.frame);
    }
  }
  for (uint32_t f : {5u, 10u, 15u, 20u, 25u, 30u}) CHECK(sentFrames.count(f) == 1);
  CHECK(a.engine->stateSync().hashesResentCount() == 0);  // nothing wrong was ever sent
  CHECK(a.engine->stateSync().desyncCount() == 0);
  CHECK(w[1].engine->stateSync().desyncCount() == 0);
  CHECK(a.engine->verifiedFrame() >= 100);
  CHECK(sameLogs(*w[0].engine, *w[1].engine, 0, upTo));
}

TEST_CASE("engine sync: END and READY under loss both ways, stale READY, READY digest mismatch, no echo",
          "[statesync-engine]") {
  Session w(SessionOptions::scripted(2, "", 21));
  w.net.profile().loss = 0.1;
  // Two of every three END / READY packets are lost, in each direction.
  std::map<std::pair<int, int>, uint64_t> erSeq;
  w.net.drop = [&erSeq](const Packet& x) {
    if (x.type() != kEnd && x.type() != kReady) return false;
    return erSeq[{x.from, x.to}]++ % 3 != 2;
  };
  auto endReady = [&w](int i) {
    const auto& c = w.net.counts(i).typeOut;
    return (c.count(kEnd) ? c.at(kEnd) : 0) + (c.count(kReady) ? c.at(kReady) : 0);
  };
  // Each page starts the next episode as soon as it has seen the episodeEnd event (not both at once).
  bool reset[2] = {false, false};
  auto resetOnEnd = [&](uint32_t episode, bool alterPeer1) {
    for (int i = 0; i < 2; ++i) {
      if (reset[i] || !w[i].hasEpisodeEnd(episode)) continue;
      INFO("peer " << i << " episode " << episode);
      CHECK(w[i].lastStatus == Status::Ended);
      CHECK(w[i].engine->stateSync().episodeEndSynced());
      w[i].game.endAtFrame = -1;
      REQUIRE(w[i].engine->resetEpisode(-1).empty());
      w[i].resetGame();
      if (alterPeer1 && i == 1) w[1].game.pos[0] = 42;  // a different initial state
      reset[i] = true;
      // nothing of the new episode is verified yet (not the previous episode's frame, shifted)
      CHECK(w[i].engine->verifiedFrame() == -1);
      CHECK(w[i].engine->exportSessionMetrics()["session"]["verifiedFrame"] == -1);
      w.stepPeer(static_cast<size_t>(i));
      CHECK(w[i].engine->planHeader()[plan::kVerifiedFrame] == -1);
    }
    return reset[0] && reset[1];
  };

  // ---- episode 0 ends after frame 150 on both
  for (int i = 0; i < 2; ++i) w[i].game.endAtFrame = 150;
  bool triedEarly = false;
  REQUIRE(w.runUntil(
      [&] {
        if (!triedEarly && w[0].engine->frame() >= 151 && !w[0].hasEpisodeEnd(0)) {
          triedEarly = true;
          CHECK_FALSE(w[0].engine->resetEpisode(-1).empty());  // not synced yet: refused, nothing changes
          CHECK(w[0].engine->episode() == 0);
        }
        if (w[0].hasEpisodeEnd(0) || w[1].hasEpisodeEnd(0)) {
          for (int i = 0; i < 2; ++i) {
            if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
            const auto ends = w[i].ofType("episodeEnd");
            REQUIRE(ends.size() == 1);
            CHECK(ends[0]["episode"] == 0);
            CHECK(ends[0]["frame"] == 150);
            CHECK(ends[0]["episodeFrame"] == 150);
            CHECK(w[i].engine->stateSync().syncedEndFrame() == 150);
            CHECK(w[i].engine->stateSync().endMessagesSent() >= 1);
            CHECK(w[i].engine->stateSync().endMessagesSent() <= 20);
          }
        }
        return resetOnEnd(0, false);
      },
      3000));
  CHECK(triedEarly);
  CHECK(w.net.counts(0).typeOut.at(kEnd) >= 3);  // losses forced re-sends / answers, both ways
  CHECK(w.net.counts(1).typeOut.at(kEnd) >= 3);
  for (int i = 0; i < 2; ++i) {
    CHECK(w[i].engine->stateSync().desyncCount() == 0);
    CHECK(w[i].stepsPastEnd == 0);  // no env stepped past the end of its episode
  }

  // ---- READY for episode 1 under the same losses
  auto allReadyIn = [&w](uint32_t ep) {
    for (int i = 0; i < 2; ++i)
      if (w[i].engine->stateSync().episode() != ep || !w[i].engine->stateSync().allReady()) return false;
    return true;
  };
  REQUIRE(w.runUntil([&] { return allReadyIn(1); }, 600));
  for (int i = 0; i < 2; ++i) {
    CHECK(w[i].engine->episode() == 1);
    CHECK(w[i].engine->episodeStart() == 150 + 1 + 64);
    CHECK(w[i].engine->stateSync().episode() == 1);
  }
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 215 + 100; }, 2000));
  for (int i = 0; i < 2; ++i) {
    CHECK(w[i].engine->verifiedFrame() > 215 + 50);
    CHECK(w[i].engine->stateSync().desyncCount() == 0);
    CHECK(w[i].stepsPastEnd == 0);  // no env stepped past the end of its episode
  }
  // no endless echo: once both sides have everything, no END / READY is sent any more
  const uint64_t er0 = endReady(0), er1 = endReady(1);
  INFO("END+READY packets: " << er0 << " / " << er1);
  CHECK(er0 + er1 <= 60);
  w.runTicks(300);
  CHECK(endReady(0) == er0);
  CHECK(endReady(1) == er1);

  // a stale READY (and END) of the previous episode is ignored; a repeated current READY is a duplicate
  {
    SyncEngine& e = *w[0].engine;
    const std::string init = ToyGame(2).state();
    const uint64_t digest = e.hashState(reinterpret_cast<const uint8_t*>(init.data()), init.size());
    const uint64_t staleBefore = e.metrics().rejectedCount(RxResult::StaleEpisode);
    Message m;
    m.type = MsgType::EpisodeReady;
    m.episode = 0;
    m.digest = digest ^ 0x55;  // even with another digest: ignored, no desync
    auto b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, w.now) == RxResult::StaleEpisode);
    m.episode = 1;
    m.digest = digest;
    b = enc(m);
    CHECK(e.receive(b.data(), b.size(), 1, Path::P2P, w.now) == RxResult::Duplicate);
    Message end;
    end.type = MsgType::EpisodeEnd;
    end.episode = 0;
    end.frame = 150;
    b = enc(end);
    CHECK(e.receive(b.data(), b.size(), 1, Path::Relay, w.now) == RxResult::StaleEpisode);
    w.runTicks(4);
    CHECK(e.stateSync().allReady());
    CHECK(e.stateSync().desyncCount() == 0);
    CHECK(w[0].ofType("desync").empty());
    CHECK(e.metrics().rejectedCount(RxResult::StaleEpisode) == staleBefore + 2);
  }

  // ---- episode 1 ends 40 frames from now; player 1 starts episode 2 from a different state
  reset[0] = reset[1] = false;
  const uint32_t end1 = std::max(w[0].engine->frame(), w[1].engine->frame()) - 215 + 40;
  for (int i = 0; i < 2; ++i) w[i].game.endAtFrame = end1;
  REQUIRE(w.runUntil([&] { return resetOnEnd(1, true); }, 3000));
  for (int i = 0; i < 2; ++i) CHECK(w[i].ofType("desync").empty());
  REQUIRE(w.runUntil([&] { return allReadyIn(2); }, 600));
  w.runTicks(6);
  for (int i = 0; i < 2; ++i) {
    const auto d = w[i].ofType("desync");
    INFO("peer " << i);
    REQUIRE_FALSE(d.empty());
    CHECK(d[0]["frame"] == 0);
    CHECK(d[0]["source"] == "ready");
    CHECK(d[0]["episode"] == 2);
    CHECK(d[0]["peer"] == 1 - i);
    CHECK(d[0]["localHash"] != d[0]["remoteHash"]);
    CHECK(d[0]["actionCountDiff"].is_null());
    CHECK(w[i].engine->episode() == 2);
    CHECK(w[i].engine->episodeStart() == 215 + end1 + 1 + 64);
  }
}

TEST_CASE("engine sync: p2p_state_sync relay messages, engine-made and hand-made, both ways",
          "[statesync-engine]") {
  const std::string extra = ",\"gameId\":\"room-7\",\"playerIds\":[\"alice\",\"bob\"]";
  const char* ids[2] = {"alice", "bob"};

  SECTION("the engine's messages parse and carry the action counts of frames 0..f-1") {
    Session w(SessionOptions::scripted(2, extra + ",\"relayHashes\":\"always\"", 3));
    std::vector<std::pair<int, std::string>> msgs;
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 90; }, 1000));
    for (int k = 0; k < 120; ++k) {
      w.tick();
      for (int i = 0; i < 2; ++i)
        for (const Packet& r : w[i].lastSent)
          if (r.kind == OutKind::RelayJson && r.event == RelayEvent::StateSync) msgs.emplace_back(i, r.text());
    }
    REQUIRE(msgs.size() >= 10);
    for (const auto& [i, text] : msgs) {
      INFO(text);
      StateSyncMsg s;
      REQUIRE(parseStateSync(text.data(), text.size(), s) == RxResult::Ok);
      CHECK(s.gameId == "room-7");
      CHECK(s.senderId == ids[i]);
      CHECK(s.frame % 5 == 0);
      const json j = json::parse(text);
      REQUIRE(j.contains("action_counts"));
      REQUIRE(j["action_counts"].is_object());
      // counts over frames 0..f-1: each actor took exactly f actions
      for (int actor = 0; actor < 2; ++actor) {
        uint64_t total = 0;
        for (int a = 0; a < 256; ++a) total += s.counts.get(actor, a);
        CHECK(total == s.frame);
      }
      // and they are the counts of the confirmed action log
      std::vector<uint8_t> log;
      REQUIRE(w[i].engine->actionLog(0, s.frame - 1, log, true) == s.frame);
      ActionCounts c;
      for (size_t k = 0; k < log.size(); ++k) c.add(static_cast<int>(k % 2), log[k]);
      CHECK(c == s.counts);
      // the hash is that of the true state
      const auto truth = truthHashes(*w[i].engine, s.frame, 2);
      CHECK(s.hash == truth.at(s.frame));
    }
  }

  SECTION("hand-made messages are accepted by receiveRelayJson, verified, and a wrong one is a desync") {
    Session w(SessionOptions::scripted(2, extra, 4));
    // the peers' own hashes never arrive: only hand-made ones
    w.net.drop = [](const Packet& x) {
      return x.type() == kStateHash || (x.kind == OutKind::RelayJson && x.event == RelayEvent::StateSync);
    };
    REQUIRE(w.runUntil([&] { return w.minFrame() >= 80; }, 1000));
    for (int to = 0; to < 2; ++to) {
      const int from = 1 - to;
      SyncEngine& e = *w[to].engine;
      INFO("to " << to);
      CHECK(e.verifiedFrame() == -1);
      CHECK(e.stateSync().hashesReceivedCount() == 0);
      const auto truth = truthHashes(e, 60, 2);
      std::vector<uint8_t> log;
      REQUIRE(e.actionLog(0, 49, log, true) == 50);
      ActionCounts counts50;
      for (size_t k = 0; k < log.size(); ++k) counts50.add(static_cast<int>(k % 2), log[k]);
      // built by hand (not with formatStateSync), fields in another order, "from" as the server adds it
      auto make = [&](uint32_t f, uint64_t h, const ActionCounts& c, const json& sender, const std::string& game, int fromField) {
        json counts = json::object();
        for (int actor = 0; actor < 2; ++actor)
          for (int act = 0; act < 256; ++act)
            if (c.get(actor, act)) counts[std::to_string(actor)][std::to_string(act)] = c.get(actor, act);
        json j = {{"state_hash", hex(h)}, {"frame_number", f}, {"action_counts", counts}, {"sender_id", sender}, {"game_id", game}};
        if (fromField >= 0) j["from"] = fromField;
        return j.dump();
      };
      auto give = [&](const std::string& text, int fromPeer) {
        return e.receiveRelayJson(RelayEvent::StateSync, text.data(), text.size(), fromPeer, w.now);
      };
      // a correct hash for frames 40..60: accepted and verified
      for (uint32_t f = 40; f <= 60; f += 5) {
        std::vector<uint8_t> lf;
        REQUIRE(e.actionLog(0, f - 1, lf, true) == f);
        ActionCounts cf;
        for (size_t k = 0; k < lf.size(); ++k) cf.add(static_cast<int>(k % 2), lf[k]);
        CHECK(give(make(f, truth.at(f), cf, ids[from], "room-7", from), from) == RxResult::Ok);
      }
      // rejections: other game, unknown or own sender, spoofed "from", not JSON
      CHECK(give(make(65, 1, counts50, ids[from], "room-8", from), from) == RxResult::BadValue);
      CHECK(give(make(65, 1, counts50, "carol", "room-7", -1), from) == RxResult::UnknownPlayer);
      CHECK(give(make(65, 1, counts50, ids[to], "room-7", -1), from) == RxResult::UnknownPlayer);
      CHECK(give(make(65, 1, counts50, ids[from], "room-7", to), from) == RxResult::SpoofedPlayer);
      CHECK(give("{\"game_id\":\"room-7\"}", from) == RxResult::BadRelayJson);
      CHECK(give(make(60, truth.at(60), counts50, ids[from], "room-7", from), from) == RxResult::Duplicate);
      // a wrong hash for frame 70 whose counts differ: actor `from` did action 4 twice more
      std::vector<uint8_t> l70;
      REQUIRE(e.actionLog(0, 69, l70, true) == 70);
      ActionCounts c70;
      for (size_t k = 0; k < l70.size(); ++k) c70.add(static_cast<int>(k % 2), l70[k]);
      ActionCounts bad70 = c70;
      bad70.set(from, 4, c70.get(from, 4) + 2);
      CHECK(give(make(70, truth.at(60) ^ 1, bad70, ids[from], "room-7", from), from) == RxResult::Ok);
      w.runTicks(3);
      CHECK(e.verifiedFrame() == 60);
      CHECK(e.stateSync().matchCount() == 5);
      const auto d = w[to].ofType("desync");
      REQUIRE(d.size() == 1);
      CHECK(d[0]["frame"] == 70);
      CHECK(d[0]["peer"] == from);
      CHECK(d[0]["remoteHash"] == hex(truth.at(60) ^ 1));
      CHECK(d[0]["actionCountDiff"] == json{{std::to_string(from), {{"4", -2}}}});
      const json m = e.exportSessionMetrics();
      CHECK(m["rejected"]["SPOOFED_PLAYER"] == 1);
      CHECK(m["rejected"]["UNKNOWN_PLAYER"] == 2);
      CHECK(m["rejected"]["BAD_RELAY_JSON"] == 1);
      CHECK(m["sync"]["desyncs"] == 1);
    }
  }
}


TEST_CASE("engine sync: relay action_counts are complete when the peer's first inputs arrive before the first advance",
          "[statesync-engine]") {
  // Player 1's page starts 150 ms after player 0's: player 0's inputs for the first frames are
  // already there at player 1's first advance, so frame 0 is confirmed by that advance. In the
  // next episode the same happens to whichever page resets later.
  Session w(SessionOptions::scripted(2, ",\"relayHashes\":\"always\"", 31));
  w.nextAt[1] = 150;
  for (int i = 0; i < 2; ++i) w[i].game.endAtFrame = 60;
  bool reset[2] = {false, false};
  REQUIRE(w.runUntil(
      [&] {
        for (int i = 0; i < 2; ++i) {
          if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
          w[i].game.endAtFrame = -1;
          REQUIRE(w[i].engine->resetEpisode(-1).empty());
          w[i].resetGame();
          reset[i] = true;
          if (i == 0) w.nextAt[1] += 150;  // player 1 begins episode 1 late as well
        }
        return reset[0] && reset[1] && w.minFrame() >= w[0].engine->episodeStart() + 60;
      },
      3000));
  for (int i = 0; i < 2; ++i) {
    INFO("peer " << i);
    uint64_t relayMsgs[2] = {0, 0};
    for (const Peer::SentHash& h : w[i].hashesSent) {
      if (!h.relay) continue;
      INFO("episode " << h.episode << " frame " << h.frame);
      CHECK(h.countsTotal == 2 * static_cast<int64_t>(h.frame));  // 2 actors x f frames
      ++relayMsgs[h.episode];
    }
    CHECK(relayMsgs[0] >= 10);
    CHECK(relayMsgs[1] >= 8);
    CHECK(w[i].engine->stateSync().desyncCount() == 0);
    CHECK(w[i].stepsPastEnd == 0);  // no env stepped past the end of its episode
  }
}

TEST_CASE("engine sync: 3 players, one channel closed: END and READY still reach the peer in fallback",
          "[statesync-engine]") {
  Session w(SessionOptions::scripted(3, "", 41));
  REQUIRE(w.runUntil([&] { return w.minFrame() >= 60; }, 1000));
  // the channel between players 0 and 2 closes; 0-1 and 1-2 stay up
  w.net.closeChannel(0, 2);
  w[0].engine->onChannelClosed(2, w.now);
  w[2].engine->onChannelClosed(0, w.now);
  for (int i = 0; i < 3; ++i) w[i].game.endAtFrame = 150;
  bool reset[3] = {false, false, false};
  const bool ended = w.runUntil(
      [&] {
        for (int i = 0; i < 3; ++i) {
          if (reset[i] || !w[i].hasEpisodeEnd(0)) continue;
          w[i].game.endAtFrame = -1;
          REQUIRE(w[i].engine->resetEpisode(-1).empty());
          w[i].resetGame();
          reset[i] = true;
        }
        return reset[0] && reset[1] && reset[2];
      },
      4000);
  for (int i = 0; i < 3; ++i) {
    INFO("peer " << i << " ended " << w[i].hasEpisodeEnd(0) << " synced " << w[i].engine->stateSync().episodeEndSynced()
                  << " END sent " << w[i].engine->stateSync().endMessagesSent());
    CHECK(w[i].hasEpisodeEnd(0));
  }
  REQUIRE(ended);
  REQUIRE(w.runUntil([&] { return w.minFrame() >= w[0].engine->episodeStart() + 60; }, 2000));
  for (int i = 0; i < 3; ++i) {
    INFO("peer " << i);
    CHECK(w[i].engine->stateSync().allReady());
    CHECK(w[i].engine->stateSync().episode() == 1);
    CHECK(w[i].engine->verifiedFrame() > static_cast<int64_t>(w[i].engine->episodeStart()) + 30);
    CHECK(w[i].engine->stateSync().desyncCount() == 0);
    CHECK(w[i].stepsPastEnd == 0);  // no env stepped past the end of its episode
  }
}

TEST_CASE("engine sync: an episode that ends after its first frame; the next one still ends properly",
          "[statesync-engine]") {
  Session w(SessionOptions::scripted(2, "", 51));
  for (int i = 0; i < 2; ++i) w[i].game.endAtFrame = 0;  // the env terminates right after frame 0
  uint32_t episode = 0;
  for (int round = 0; round < 2; ++round) {
    bool reset[2] = {false, false};
    INFO("round " << round);
    REQUIRE(w.runUntil(
        [&] {
          for (int i = 0; i < 2; ++i) {
            if (reset[i] || !w[i].hasEpisodeEnd(episode)) continue;
            REQUIRE(w[i].engine->resetEpisode(-1).empty());
            w[i].resetGame();
            w[i].game.endAtFrame = 30;
            reset[i] = true;
            if (i == 0) w.nextAt[1] += 200;  // player 1 begins the next episode late
          }
          return reset[0] && reset[1];
        },
        2000));
    ++episode;
  }
  for (int i = 0; i < 2; ++i) {
    INFO("peer " << i);
    const auto ends = w[i].ofType("episodeEnd");
    REQUIRE(ends.size() == 2);
    CHECK(ends[0]["episode"] == 0);
    CHECK(ends[0]["episodeFrame"] == 0);
    CHECK(ends[1]["episode"] == 1);
    CHECK(ends[1]["episodeFrame"] == 30);
    CHECK(ends[1]["frame"] == 65 + 30);
    CHECK(w[i].engine->episode() == 2);
    CHECK(w[i].engine->stateSync().desyncCount() == 0);
    CHECK(w[i].stepsPastEnd == 0);  // no env stepped past the end of its episode
  }
}
