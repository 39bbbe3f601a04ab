// Research metrics: counters, the exact episode summary line, p2pMetrics field names, the
// other-path lag histogram, margin clamping, rollback p99 and bounded rollback events.
#include <catch2/catch_test_macros.hpp>

#include <set>
#include <string>
#include <vector>

#include "metrics.hpp"
#include "test_util.hpp"

using namespace p2psync;
using json = nlohmann::json;

namespace {

std::set<std::string> keysOf(const json& j) {
  std::set<std::string> k;
  for (auto it = j.begin(); it != j.end(); ++it) k.insert(it.key());
  return k;
}

void received(Metrics& m, Path p, int n) {
  for (int i = 0; i < n; ++i) m.inputReceived(p, true);
}

}  // namespace

TEST_CASE("metrics: input, packet and request counters", "[metrics]") {
  Metrics m;
  m.inputSent(Path::P2P, 1, 10);
  m.inputSent(Path::P2P, 1, 10);
  m.inputSent(Path::Relay, 1, 1);
  m.inputSent(Path::P2P, 0, 3);
  m.packetSent(Path::P2P);
  m.packetSent(Path::P2P);
  m.packetSent(Path::Relay);
  m.packetReceived(Path::Relay);
  m.inputReceived(Path::P2P, true);
  m.inputReceived(Path::P2P, true);
  m.inputReceived(Path::P2P, false);
  m.inputReceived(Path::Relay, false);
  m.inputReceived(Path::Relay, false);
  m.inputReceived(Path::Relay, true);
  m.inputRequestSent();
  m.inputResponseSent();
  m.inputResponseSent();
  m.gapFilled(7);
  m.gapFilled(3);
  m.stall();
  m.wait();
  m.wait();

  json in = m.inputsJson();
  CHECK(in["sentViaP2P"] == 2);
  CHECK(in["sentViaSocketIO"] == 1);
  CHECK(in["entriesSentViaP2P"] == 23);
  CHECK(in["entriesSentViaSocketIO"] == 1);
  CHECK(in["packetsSentViaP2P"] == 2);
  CHECK(in["packetsSentViaSocketIO"] == 1);
  CHECK(in["packetsReceivedViaP2P"] == 0);
  CHECK(in["packetsReceivedViaSocketIO"] == 1);
  CHECK(in["receivedViaP2P"] == 2);
  CHECK(in["receivedViaSocketIO"] == 1);
  CHECK(in["duplicatesViaP2P"] == 1);
  CHECK(in["duplicatesViaSocketIO"] == 2);
  CHECK(in["requestsSent"] == 1);
  CHECK(in["responsesSent"] == 2);
  CHECK(in["gapsFilled"] == 10);
  CHECK(in["firstDelivery"]["p2p"] == 2);
  CHECK(in["firstDelivery"]["relay"] == 1);
  CHECK(keysOf(in) == std::set<std::string>{
      "sentViaP2P", "sentViaSocketIO", "receivedViaP2P", "receivedViaSocketIO", "duplicatesViaP2P",
      "duplicatesViaSocketIO", "entriesSentViaP2P", "entriesSentViaSocketIO", "packetsSentViaP2P",
      "packetsSentViaSocketIO", "packetsReceivedViaP2P", "packetsReceivedViaSocketIO", "requestsSent",
      "responsesSent", "gapsFilled", "firstDelivery", "lateMargin"});

  json all = m.toJson();
  CHECK(keysOf(all) == std::set<std::string>{"inputs", "rollbacks", "stalls", "waits", "rejected", "connectionType"});
  CHECK(all["stalls"] == 1);
  CHECK(all["waits"] == 2);
  CHECK(all["connectionType"] == "unknown");
  CHECK(all["rejected"].is_object());
  CHECK(all["rejected"].empty());
}

TEST_CASE("metrics: p2pMetricsJson has exactly the reference field names", "[metrics]") {
  Metrics m;
  received(m, Path::P2P, 3);
  received(m, Path::Relay, 2);
  m.inputSent(Path::P2P, 5, 50);
  m.inputSent(Path::Relay, 4, 4);
  json j = m.p2pMetricsJson(false, -1);
  CHECK(keysOf(j) == std::set<std::string>{"inputsReceivedViaP2P", "inputsReceivedViaSocketIO", "inputsSentViaP2P",
                                           "inputsSentViaSocketIO", "p2pFallbackTriggered", "p2pFallbackFrame",
                                           "connectionType"});
  CHECK(j["inputsReceivedViaP2P"] == 3);
  CHECK(j["inputsReceivedViaSocketIO"] == 2);
  CHECK(j["inputsSentViaP2P"] == 5);
  CHECK(j["inputsSentViaSocketIO"] == 4);
  CHECK(j["p2pFallbackTriggered"] == false);
  CHECK(j["p2pFallbackFrame"].is_null());
  CHECK(j["connectionType"] == "unknown");

  CHECK(m.setConnectionType("relay"));
  j = m.p2pMetricsJson(true, 120);
  CHECK(j["p2pFallbackTriggered"] == true);
  CHECK(j["p2pFallbackFrame"] == 120);
  CHECK(j["connectionType"] == "relay");
  CHECK(j.dump() ==
        R"({"connectionType":"relay","inputsReceivedViaP2P":3,"inputsReceivedViaSocketIO":2,)"
        R"("inputsSentViaP2P":5,"inputsSentViaSocketIO":4,"p2pFallbackFrame":120,"p2pFallbackTriggered":true})");
}

TEST_CASE("metrics: connection type accepts only direct, relay, unknown", "[metrics]") {
  Metrics m;
  CHECK(std::string(m.connectionType()) == "unknown");
  CHECK(m.setConnectionType("direct"));
  CHECK(std::string(m.connectionType()) == "direct");
  CHECK_FALSE(m.setConnectionType("turn"));
  CHECK_FALSE(m.setConnectionType(""));
  CHECK_FALSE(m.setConnectionType("Direct"));
  CHECK(std::string(m.connectionType()) == "direct");
  CHECK(m.setConnectionType("unknown"));
  CHECK(std::string(m.connectionType()) == "unknown");
}

TEST_CASE("metrics: the episode summary line, exactly", "[metrics]") {
  Metrics m;
  const std::string rewards = R"({"0":1.5,"1":-2})";

  SECTION("nothing received: N/A") {
    CHECK(m.episodeSummary(0, "{}", 0, 0, false, -1) ==
          "[Episode] Complete at frame 0 | Rewards: {} | InputBuf: 0 | Rollbacks: 0 | Syncs: 0 | P2P: N/A");
    CHECK(m.episodeSummary(450, rewards, 12, 3, true, 200) ==
          "[Episode] Complete at frame 450 | Rewards: {\"0\":1.5,\"1\":-2} | InputBuf: 12 | Rollbacks: 0 | "
          "Syncs: 3 | P2P: N/A | Fallback at frame 200");
  }

  SECTION("scripted episode, with and without fallback") {
    received(m, Path::P2P, 95);
    received(m, Path::Relay, 5);
    m.inputReceived(Path::Relay, false);  // duplicates do not count
    for (int i = 0; i < 3; ++i) m.rollback(10, 12, 2, 1, 0, 1, 100);
    CHECK(m.episodeSummary(450, rewards, 12, 3, false, -1) ==
          "[Episode] Complete at frame 450 | Rewards: {\"0\":1.5,\"1\":-2} | InputBuf: 12 | Rollbacks: 3 | "
          "Syncs: 3 | P2P: 95/100 (95.0%)");
    CHECK(m.episodeSummary(450, rewards, 12, 3, true, 200) ==
          "[Episode] Complete at frame 450 | Rewards: {\"0\":1.5,\"1\":-2} | InputBuf: 12 | Rollbacks: 3 | "
          "Syncs: 3 | P2P: 95/100 (95.0%) | Fallback at frame 200");

    // Rollbacks are per episode; the P2P ratio uses the session counters (as p2pMetrics).
    m.beginEpisode();
    m.rollback(500, 503, 3, 1, 0, 2, 200);
    received(m, Path::P2P, 1);
    CHECK(m.episodeSummary(900, "{}", 4, 7, false, -1) ==
          "[Episode] Complete at frame 900 | Rewards: {} | InputBuf: 4 | Rollbacks: 1 | Syncs: 7 | "
          "P2P: 96/101 (95.0%)");
    CHECK(m.rollbackCount() == 4);
    CHECK(m.episodeRollbacks() == 1);
  }

  SECTION("one decimal like JS toFixed(1)") {
    auto pct = [](int a, int b) {
      Metrics x;
      received(x, Path::P2P, a);
      received(x, Path::Relay, b - a);
      std::string s = x.episodeSummary(1, "{}", 0, 0, false, -1);
      return s.substr(s.find("P2P: ") + 5);
    };
    CHECK(pct(1, 3) == "1/3 (33.3%)");
    CHECK(pct(2, 3) == "2/3 (66.7%)");
    CHECK(pct(1, 8) == "1/8 (12.5%)");
    CHECK(pct(1, 400) == "1/400 (0.3%)");     // 0.25: JS rounds the tie up (printf: 0.2)
    CHECK(pct(49, 400) == "49/400 (12.3%)");  // 12.25
    CHECK(pct(3, 400) == "3/400 (0.8%)");     // 0.75
    CHECK(pct(7, 400) == "7/400 (1.8%)");     // 1.7500000000000002
    CHECK(pct(0, 5) == "0/5 (0.0%)");
    CHECK(pct(5, 5) == "5/5 (100.0%)");
  }
}

TEST_CASE("metrics: other-path lag histogram and approximate percentiles", "[metrics]") {
  Metrics m;
  json empty = m.inputsJson()["firstDelivery"]["relayLagAfterP2P"];
  CHECK(empty["count"] == 0);
  CHECK(empty["meanMs"].is_null());
  CHECK(empty["maxMs"].is_null());
  CHECK(empty["p50Ms"].is_null());
  CHECK(empty["p95Ms"].is_null());
  CHECK(empty["histogram"]["counts"] == json::array({0, 0, 0, 0, 0, 0, 0, 0}));
  CHECK(empty["histogram"]["boundsMs"] == json::array({5, 10, 20, 50, 100, 200, 500}));

  for (double v : {-3.0, 0.0, 4.9, 5.0, 9.0, 15.0, 30.0, 70.0, 150.0, 300.0, 900.0}) m.otherPathLag(Path::P2P, v);
  m.otherPathLag(Path::P2P, NAN);  // ignored
  m.otherPathLag(Path::Relay, 12);
  json l = m.inputsJson()["firstDelivery"]["relayLagAfterP2P"];
  CHECK(l["count"] == 11);
  CHECK(l["histogram"]["counts"] == json::array({3, 2, 1, 1, 1, 1, 1, 1}));
  CHECK(l["maxMs"].get<double>() == 900);
  CHECK(l["meanMs"].get<double>() == (0 + 0 + 4.9 + 5 + 9 + 15 + 30 + 70 + 150 + 300 + 900) / 11.0);
  // p50: 6th of 11 -> bucket [10,20) holds the 6th (cum 5 before, 1 inside) -> 10 + 10 * 1/1 = 20
  CHECK(l["p50Ms"].get<double>() == 20);
  // p95: ceil(10.45) = 11th -> the 500+ bucket, interpolated up to the observed max
  CHECK(l["p95Ms"].get<double>() == 900);

  json r = m.inputsJson()["firstDelivery"]["p2pLagAfterRelay"];
  CHECK(r["count"] == 1);
  CHECK(r["histogram"]["counts"] == json::array({0, 0, 1, 0, 0, 0, 0, 0}));
  CHECK(r["p50Ms"].get<double>() == 12);  // clamped to the observed value
  CHECK(r["p95Ms"].get<double>() == 12);
  CHECK(r["meanMs"].get<double>() == 12);

  Metrics u;  // 100 lags spread evenly over [20,50): interpolation recovers the shape
  for (int i = 0; i < 100; ++i) u.otherPathLag(Path::P2P, 20 + 0.3 * i);
  json ul = u.inputsJson()["firstDelivery"]["relayLagAfterP2P"];
  CHECK(ul["p50Ms"].get<double>() == 20 + 30 * 0.50);
  CHECK(ul["p95Ms"].get<double>() == 20 + 30 * 0.95);
}

TEST_CASE("metrics: late-input margin is clamped to [-32, 32]", "[metrics]") {
  Metrics m;
  m.inputMargin(-1000);
  m.inputMargin(-33);
  m.inputMargin(-32);
  m.inputMargin(-1);
  m.inputMargin(0);
  m.inputMargin(5);
  m.inputMargin(32);
  m.inputMargin(33);
  m.inputMargin(INT32_MAX);
  m.inputMargin(INT32_MIN);
  json lm = m.inputsJson()["lateMargin"];
  CHECK(lm["min"] == -32);
  CHECK(lm["max"] == 32);
  REQUIRE(lm["counts"].size() == 65);
  CHECK(lm["counts"][0] == 4);   // -32 and below
  CHECK(lm["counts"][31] == 1);  // -1
  CHECK(lm["counts"][32] == 1);  // 0
  CHECK(lm["counts"][37] == 1);  // 5
  CHECK(lm["counts"][64] == 3);  // 32 and above
  uint64_t total = 0;
  for (const json& c : lm["counts"]) total += c.get<uint64_t>();
  CHECK(total == 10);
}

TEST_CASE("metrics: rollback stats, p99 from the histogram, bounded events", "[metrics]") {
  Metrics m(4);
  CHECK(m.p99RollbackFrames() == -1);
  json r0 = m.rollbacksJson();
  CHECK(r0["p99Frames"].is_null());
  CHECK(r0["count"] == 0);
  CHECK(r0["maxFrames"] == 0);
  CHECK(r0["depthHistogram"].size() == 64);

  EventQueue q(4096);
  for (int i = 0; i < 99; ++i) m.rollback(100 + i, 101 + i, 1, 1, 0, 3, 1000.0 + i, i == 0 ? &q : nullptr);
  m.rollback(300, 310, 10, 2, 4, 1, 5000);
  CHECK(m.rollbackCount() == 100);
  CHECK(m.p99RollbackFrames() == 1);  // rank 99 of 100
  m.rollback(400, 410, 10, 2, 4, 1, 6000);
  CHECK(m.p99RollbackFrames() == 10);  // rank ceil(99.99) = 100 of 101

  json r = m.rollbacksJson();
  CHECK(keysOf(r) == std::set<std::string>{"count", "maxFrames", "p99Frames", "framesReplayed", "depthHistogram",
                                           "events", "eventsDropped"});
  CHECK(r["count"] == 101);
  CHECK(r["maxFrames"] == 10);
  CHECK(r["p99Frames"] == 10);
  CHECK(r["framesReplayed"] == 99 + 20);
  CHECK(r["depthHistogram"][0] == 99);
  CHECK(r["depthHistogram"][9] == 2);
  REQUIRE(r["events"].size() == 4);  // the first four are kept
  CHECK(r["eventsDropped"] == 97);
  json e = r["events"][0];
  CHECK(keysOf(e) == std::set<std::string>{"frame", "currentFrame", "rollbackFrames", "playerIndex",
                                           "predictedAction", "actualAction", "timeMs"});
  CHECK(e["frame"] == 100);
  CHECK(e["currentFrame"] == 101);
  CHECK(e["rollbackFrames"] == 1);
  CHECK(e["playerIndex"] == 1);
  CHECK(e["predictedAction"] == 0);
  CHECK(e["actualAction"] == 3);
  CHECK(e["timeMs"].get<double>() == 1000);
  CHECK(r["events"][3]["frame"] == 103);

  const std::vector<json> evs = p2psync::test::takeEvents(q);
  REQUIRE(evs.size() == 1);
  const json ev = evs[0];
  CHECK(ev["type"] == "rollback");
  CHECK(ev["frame"] == 100);
  CHECK(ev["rollbackFrames"] == 1);
  CHECK(ev["playerIndex"] == 1);
  CHECK(ev["actualAction"] == 3);

  // very deep rollbacks land in the 64+ bucket; p99 there reports the max
  Metrics d;
  d.rollback(0, 100, 100, 1, 0, 1, 0);
  d.rollback(0, 70, 70, 1, 0, 1, 0);
  d.rollback(0, 0, 0, 1, 0, 1, 0);  // depth 0 counts in the first bucket
  json dj = d.rollbacksJson();
  CHECK(dj["depthHistogram"][63] == 2);
  CHECK(dj["depthHistogram"][0] == 1);
  CHECK(dj["p99Frames"] == 100);
  CHECK(dj["maxFrames"] == 100);

  // per-episode counters reset, session totals persist
  d.beginEpisode();
  CHECK(d.episodeRollbacks() == 0);
  CHECK(d.rollbackCount() == 3);
  CHECK(d.rollbacksJson()["count"] == 3);
}

TEST_CASE("metrics: rejections are counted by result name", "[metrics]") {
  Metrics m;
  m.rejected(RxResult::Ok);  // ignored
  m.rejected(RxResult::Truncated);
  m.rejected(RxResult::Truncated);
  m.rejected(RxResult::SpoofedPlayer);
  m.rejected(RxResult::UnsolicitedPong);
  m.rejected(RxResult::Count_);  // ignored
  json r = m.rejectedJson();
  CHECK(r == json{{"TRUNCATED", 2}, {"SPOOFED_PLAYER", 1}, {"UNSOLICITED_PONG", 1}});
  CHECK(m.rejectedCount(RxResult::Truncated) == 2);
  CHECK(m.rejectedCount(RxResult::Ok) == 0);
}

TEST_CASE("metrics: per-episode counters", "[metrics]") {
  Metrics m;
  m.stall();
  m.wait();
  received(m, Path::P2P, 2);
  m.rollback(1, 4, 3, 1, 0, 1, 0);
  json e = m.episodeJson();
  CHECK(e["rollbacks"] == 1);
  CHECK(e["maxFrames"] == 3);
  CHECK(e["framesReplayed"] == 3);
  CHECK(e["stalls"] == 1);
  CHECK(e["waits"] == 1);
  CHECK(e["receivedViaP2P"] == 2);
  m.beginEpisode();
  e = m.episodeJson();
  CHECK(e["rollbacks"] == 0);
  CHECK(e["stalls"] == 0);
  CHECK(e["receivedViaP2P"] == 0);
  CHECK(m.stalls() == 1);
  CHECK(m.waits() == 1);
  CHECK(m.inputsReceived(Path::P2P) == 2);
}
