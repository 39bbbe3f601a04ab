// Health checker + fallback monitor, in virtual time: RTT statistics from scripted pongs
// (duplicated, out-of-order, never-sent), status thresholds, gaps, liveness events, every
// fallback trigger, stickiness and (configured) recovery.
#include <catch2/catch_test_macros.hpp>
#include <catch2/matchers/catch_matchers_floating_point.hpp>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "health.hpp"
#include "test_util.hpp"

using namespace p2psync;
using Catch::Matchers::WithinAbs;
using json = nlohmann::json;
using p2psync::test::ofType;

namespace {

// The events pushed so far (binary records, read back as JSON), then an empty queue.
std::vector<json> drain(EventQueue& q) { return p2psync::test::takeEvents(q); }
constexpr size_t kEventBytes = 64 * 1024;

// Sends one ping at `t` and has `peer` answer it `rtt` ms later.
void sample(Health& h, int peer, double t, double rtt) {
  REQUIRE(h.pingDue(t));
  REQUIRE(h.onPong(peer, t, t + rtt) == RxResult::Ok);
}

// Peer 1 of a 2-player session gets `n` samples of `rtt`, one ping every 500 ms from t0.
double feed(Health& h, double t0, int n, double rtt, int peer = 1) {
  double t = t0;
  for (int i = 0; i < n; ++i, t += 500) sample(h, peer, t, rtt);
  return t;
}

json peerJson(const Health& h, int peer) {
  const json all = h.toJson();  // keep the temporary alive for the loop
  for (const json& p : all["peers"])
    if (p["peer"] == peer) return p;
  return nullptr;
}

}  // namespace

TEST_CASE("health: pingDue follows the interval and starts true", "[health]") {
  Health h(2, 0);
  CHECK(std::isnan(h.lastPingMs()));
  CHECK(h.pingDue(1000));
  CHECK(h.lastPingMs() == 1000);
  CHECK_FALSE(h.pingDue(1000));
  CHECK_FALSE(h.pingDue(1499.9));
  CHECK(h.pingDue(1500));
  CHECK_FALSE(h.pingDue(1900));
  CHECK(h.pingDue(2100));
  CHECK(h.lastPingMs() == 2100);
  CHECK_FALSE(h.pingDue(NAN));
}

TEST_CASE("health: RTT average over the last 10, percentiles over the last 100", "[health]") {
  Health h(2, 0);
  double t = feed(h, 0, 90, 200);
  t = feed(h, t, 10, 40);
  CHECK(h.sampleCount(1) == 100);
  CHECK_THAT(h.rttAvgMs(1), WithinAbs(40, 1e-9));
  CHECK_THAT(h.latencyMs(1), WithinAbs(20, 1e-9));
  json p = peerJson(h, 1);
  CHECK(p["rttAvgMs"].get<double>() == 40);
  CHECK(p["latencyMs"].get<double>() == 20);
  CHECK(p["p50Ms"].get<double>() == 200);
  CHECK(p["p95Ms"].get<double>() == 200);
  CHECK(p["minMs"].get<double>() == 40);
  CHECK(p["maxMs"].get<double>() == 200);
  CHECK(p["samples"] == 100);
  // one step 200 -> 40 among 99 consecutive differences
  CHECK_THAT(p["jitterMs"].get<double>(), WithinAbs(160.0 / 99, 1e-9));

  // 50 more samples of 10: the window now holds 50 x 200 + 10 x 40 + ... no: the last 100 are
  // 40 x 200, 10 x 40, 50 x 10.
  feed(h, t, 50, 10);
  p = peerJson(h, 1);
  CHECK(p["samples"] == 150);
  CHECK(p["rttAvgMs"].get<double>() == 10);
  CHECK(p["minMs"].get<double>() == 10);
  CHECK(p["maxMs"].get<double>() == 200);
  CHECK(p["p50Ms"].get<double>() == 10);   // 50th smallest of 100
  CHECK(p["p95Ms"].get<double>() == 200);  // 95th smallest
}

TEST_CASE("health: nearest-rank percentiles and jitter on distinct samples", "[health]") {
  Health h(2, 0);
  // 1..100 in a scrambled order (37 is coprime with 100)
  double t = 0;
  for (int i = 0; i < 100; ++i, t += 500) sample(h, 1, t, ((i * 37) % 100) + 1);
  json p = peerJson(h, 1);
  CHECK(p["p50Ms"].get<double>() == 50);
  CHECK(p["p95Ms"].get<double>() == 95);
  CHECK(p["minMs"].get<double>() == 1);
  CHECK(p["maxMs"].get<double>() == 100);

  Health j(2, 0);
  t = 0;
  for (int i = 0; i < 6; ++i, t += 500) sample(j, 1, t, i % 2 ? 30 : 10);
  CHECK_THAT(peerJson(j, 1)["jitterMs"].get<double>(), WithinAbs(20, 1e-9));
  CHECK_THAT(j.rttAvgMs(1), WithinAbs(20, 1e-9));

  Health one(2, 0);
  sample(one, 1, 0, 42);
  CHECK(peerJson(one, 1)["jitterMs"].is_null());
  CHECK(peerJson(one, 1)["p95Ms"].get<double>() == 42);
}

TEST_CASE("health: duplicated, out-of-order and never-sent pongs", "[health]") {
  Health h(2, 0);
  REQUIRE(h.pingDue(0));
  REQUIRE(h.pingDue(500));
  REQUIRE(h.pingDue(1000));

  // out of order: the newest answered first; each sample is now - ts
  CHECK(h.onPong(1, 1000, 1030) == RxResult::Ok);
  CHECK(h.onPong(1, 0, 1040) == RxResult::Ok);
  CHECK(h.sampleCount(1) == 2);
  CHECK_THAT(h.rttAvgMs(1), WithinAbs((30.0 + 1040.0) / 2, 1e-9));

  // duplicate
  CHECK(h.onPong(1, 1000, 1050) == RxResult::UnsolicitedPong);
  CHECK(h.duplicatePongs(1) == 1);
  CHECK(h.unsolicitedPongs(1) == 0);

  // never sent
  CHECK(h.onPong(1, 750, 1050) == RxResult::UnsolicitedPong);
  CHECK(h.onPong(1, NAN, 1050) == RxResult::UnsolicitedPong);
  CHECK(h.unsolicitedPongs(1) == 2);
  CHECK(h.duplicatePongs(1) == 1);
  CHECK(h.sampleCount(1) == 2);

  // still outstanding
  CHECK(h.onPong(1, 500, 1100) == RxResult::Ok);
  CHECK(h.sampleCount(1) == 3);

  // too old: 16 newer pings evict the one sent at t=2000
  Health old(2, 0);
  double t = 2000;
  for (int i = 0; i < 17; ++i, t += 500) REQUIRE(old.pingDue(t));
  CHECK(old.onPong(1, 2000, t) == RxResult::UnsolicitedPong);
  CHECK(old.unsolicitedPongs(1) == 1);
  CHECK(old.onPong(1, 2500, t) == RxResult::Ok);  // the oldest still remembered

  json p = peerJson(h, 1);
  CHECK(p["unsolicitedPongs"] == 2);
  CHECK(p["duplicatePongs"] == 1);
}

TEST_CASE("health: one ping is answered once per peer; the local player and strangers are not peers", "[health]") {
  Health h(3, 1);
  REQUIRE(h.pingDue(0));
  CHECK(h.onPong(0, 0, 20) == RxResult::Ok);
  CHECK(h.onPong(2, 0, 30) == RxResult::Ok);
  CHECK(h.onPong(2, 0, 31) == RxResult::UnsolicitedPong);
  CHECK(h.duplicatePongs(2) == 1);
  CHECK(h.duplicatePongs(0) == 0);
  CHECK(h.onPong(1, 0, 20) == RxResult::UnknownPlayer);
  CHECK(h.onPong(3, 0, 20) == RxResult::UnknownPlayer);
  CHECK(h.onPong(-1, 0, 20) == RxResult::UnknownPlayer);
  json peers = h.toJson()["peers"];
  REQUIRE(peers.size() == 2);
  CHECK(peers[0]["peer"] == 0);
  CHECK(peers[1]["peer"] == 2);
}

TEST_CASE("health: status thresholds on latency = rtt / 2", "[health]") {
  auto statusFor = [](double rtt) {
    Health h(2, 0);
    feed(h, 0, 10, rtt);
    return std::string(h.status(1));
  };
  CHECK(std::string(Health(2, 0).status(1)) == "good");  // no samples
  CHECK(statusFor(20) == "good");
  CHECK(statusFor(200) == "good");      // latency 100: not > 100
  CHECK(statusFor(201) == "warning");   // 100.5
  CHECK(statusFor(400) == "warning");   // 200: not > 200
  CHECK(statusFor(402) == "critical");  // 201
}

TEST_CASE("health: gapCount counts forward jumps of INPUT header frames", "[health]") {
  Health h(2, 0);
  h.onInputHeader(1, 50);  // baseline
  CHECK(h.gapCount(1) == 0);
  h.onInputHeader(1, 51);
  h.onInputHeader(1, 51);  // repeat
  CHECK(h.gapCount(1) == 0);
  h.onInputHeader(1, 53);  // 52 missing
  CHECK(h.gapCount(1) == 1);
  h.onInputHeader(1, 52);  // late, backwards: no gap
  h.onInputHeader(1, 54);  // last is still 53: contiguous
  CHECK(h.gapCount(1) == 1);
  h.onInputHeader(1, 60);
  CHECK(h.gapCount(1) == 2);
  h.onInputHeader(1, 0xFFFFFFFFu);
  CHECK(h.gapCount(1) == 3);
  h.onInputHeader(0, 10);  // local: ignored
  h.onInputHeader(0, 99);
  CHECK(h.gapCount(0) == 0);

  h.onPacket(1, 0);
  h.onPacket(1, 1);
  CHECK(peerJson(h, 1)["packetsReceived"] == 2);
  CHECK(peerJson(h, 1)["gapCount"] == 3);
}

TEST_CASE("health: liveness interrupted, disconnected, reconnected with timestamps", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  // The silence clock starts at the first update, not at construction.
  h.update(100000, 0, q);
  CHECK(drain(q).empty());
  CHECK(h.liveness(1) == Liveness::Alive);

  h.update(100749, 1, q);
  CHECK(drain(q).empty());
  h.update(100750, 2, q);
  auto evs = drain(q);
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["type"] == "interrupted");
  CHECK(evs[0]["peer"] == 1);
  CHECK(evs[0]["timeMs"].get<double>() == 100750);
  CHECK(evs[0]["silentMs"].get<double>() == 750);
  CHECK(h.liveness(1) == Liveness::Interrupted);
  CHECK(h.p2pUsable(1));  // interrupted is not disconnected

  h.update(104000, 3, q);
  CHECK(drain(q).empty());  // no repeat
  h.update(105000, 4, q);
  evs = drain(q);
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["type"] == "disconnected");
  CHECK(evs[0]["timeMs"].get<double>() == 105000);
  CHECK(evs[0]["silentMs"].get<double>() == 5000);
  CHECK(h.liveness(1) == Liveness::Disconnected);
  CHECK_FALSE(h.p2pUsable(1));

  h.onPacket(1, 105250, &q);
  evs = drain(q);
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["type"] == "reconnected");
  CHECK(evs[0]["peer"] == 1);
  CHECK(evs[0]["timeMs"].get<double>() == 105250);
  CHECK(evs[0]["downMs"].get<double>() == 5250);
  CHECK(evs[0]["from"] == "disconnected");
  CHECK(h.liveness(1) == Liveness::Alive);
  CHECK(h.p2pUsable(1));

  // Interrupted again, then a packet without a queue: held until the next update.
  h.update(106000, 5, q);
  CHECK(ofType(drain(q), "interrupted").size() == 1);
  h.onPacket(1, 106100);
  CHECK(q.count() == 0);
  h.update(106200, 6, q);
  evs = drain(q);
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["type"] == "reconnected");
  CHECK(evs[0]["downMs"].get<double>() == 850);
  CHECK(evs[0]["from"] == "interrupted");

  json p = peerJson(h, 1);
  CHECK(p["liveness"] == "alive");
  CHECK(p["interruptions"] == 2);
  CHECK(p["disconnections"] == 1);
  CHECK(p["lastPacketMs"].get<double>() == 106100);
}

TEST_CASE("health: a long silence crosses both thresholds in one update", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  h.onPacket(1, 0);  // clock starts at the first packet when it comes before any update
  h.update(9000, 0, q);
  auto evs = drain(q);
  REQUIRE(evs.size() == 2);
  CHECK(evs[0]["type"] == "interrupted");
  CHECK(evs[1]["type"] == "disconnected");
  CHECK(evs[1]["silentMs"].get<double>() == 9000);
}

TEST_CASE("health: packets keep a peer alive", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  for (double t = 0; t < 20000; t += 100) {
    h.onPacket(1, t, &q);
    h.update(t + 50, 0, q);
  }
  CHECK(q.count() == 0);
  CHECK(peerJson(h, 1)["interruptions"] == 0);
}

TEST_CASE("health: fallback on critical latency (> 200 ms)", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  CHECK_FALSE(h.fallbackTriggered());
  CHECK(h.fallbackFrame() == -1);
  double t = feed(h, 0, 10, 450);  // latency 225
  h.update(t, 77, q);
  auto evs = ofType(drain(q), "fallback");
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["peer"] == 1);
  CHECK(evs[0]["frame"] == 77);
  CHECK(evs[0]["reason"] == "latency-critical");
  CHECK(evs[0]["timeMs"].get<double>() == t);
  CHECK(evs[0]["latencyMs"].get<double>() == 225);
  CHECK(h.fallbackTriggered());
  CHECK(h.fallbackFrame() == 77);
  CHECK(h.inFallback(1));
  CHECK(h.anyFallback());
  CHECK_FALSE(h.p2pUsable(1));
  CHECK(h.channelOpen(1));

  json f = h.toJson()["fallback"];
  CHECK(f["triggered"] == true);
  CHECK(f["frame"] == 77);
  CHECK(f["reason"] == "latency-critical");
  CHECK(f["peer"] == 1);
  CHECK(f["timeMs"].get<double>() == t);
  CHECK(f["events"].size() == 1);
  CHECK(f["recoveries"] == 0);
  CHECK(peerJson(h, 1)["fallbackReason"] == "latency-critical");
}

TEST_CASE("health: fallback on latency > 300 ms", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  double t = feed(h, 0, 3, 700);  // latency 350
  h.update(t, 5, q);
  auto evs = ofType(drain(q), "fallback");
  REQUIRE(evs.size() == 1);
  CHECK(evs[0]["reason"] == "latency-high");
  CHECK(evs[0]["latencyMs"].get<double>() == 350);
  CHECK(h.fallbackFrame() == 5);
}

TEST_CASE("health: no fallback without samples or with good latency", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  for (double t = 0; t < 3000; t += 100) {
    h.onPacket(1, t);
    h.update(t, 1, q);
  }
  CHECK(ofType(drain(q), "fallback").empty());
  double t = feed(h, 3000, 10, 400);  // latency exactly 200: warning only
  h.onPacket(1, t);
  h.update(t, 2, q);
  CHECK(ofType(drain(q), "fallback").empty());
  CHECK_FALSE(h.fallbackTriggered());
  json f = h.toJson()["fallback"];
  CHECK(f["frame"].is_null());
  CHECK(f["reason"].is_null());
  CHECK(f["peer"].is_null());
  CHECK(f["timeMs"].is_null());
}

TEST_CASE("health: fallback on channel closed and on connection failed", "[health]") {
  SECTION("channel closed") {
    Health h(2, 0);
    EventQueue q(kEventBytes);
    h.onChannelClosed(1, 1234, 42, &q);
    auto evs = drain(q);
    REQUIRE(evs.size() == 1);
    CHECK(evs[0]["type"] == "fallback");
    CHECK(evs[0]["reason"] == "channel-closed");
    CHECK(evs[0]["frame"] == 42);
    CHECK(evs[0]["timeMs"].get<double>() == 1234);
    CHECK(evs[0]["latencyMs"].is_null());
    CHECK_FALSE(h.channelOpen(1));
    CHECK_FALSE(h.p2pUsable(1));
    CHECK(h.fallbackFrame() == 42);
    // closing again does not re-trigger
    h.onChannelClosed(1, 1300, 43, &q);
    CHECK(q.count() == 0);
  }
  SECTION("connection failed, held until update") {
    Health h(2, 0);
    EventQueue q(kEventBytes);
    h.onConnectionFailed(1, 500, 9);
    CHECK(q.count() == 0);
    CHECK(h.inFallback(1));
    h.update(600, 10, q);
    auto evs = ofType(drain(q), "fallback");
    REQUIRE(evs.size() == 1);
    CHECK(evs[0]["reason"] == "connection-failed");
    CHECK(evs[0]["frame"] == 9);
    CHECK(h.toJson()["fallback"]["reason"] == "connection-failed");
  }
}

TEST_CASE("health: the session keeps the first fallback frame; fallback is per peer", "[health]") {
  Health h(3, 0);
  EventQueue q(kEventBytes);
  h.onChannelClosed(2, 100, 10, &q);
  CHECK(h.inFallback(2));
  CHECK_FALSE(h.inFallback(1));
  CHECK(h.p2pUsable(1));
  h.onConnectionFailed(1, 200, 20, &q);
  CHECK(drain(q).size() == 2);
  CHECK(h.fallbackFrame() == 10);
  json f = h.toJson()["fallback"];
  CHECK(f["peer"] == 2);
  CHECK(f["reason"] == "channel-closed");
  CHECK(f["events"].size() == 2);
}

TEST_CASE("health: fallback is sticky without recovery", "[health]") {
  Health h(2, 0);
  EventQueue q(kEventBytes);
  double t = feed(h, 0, 10, 700);
  h.update(t, 1, q);
  REQUIRE(h.inFallback(1));
  drain(q);
  // 60 s of perfect latency, an open channel and steady packets
  h.onChannelOpen(1, t);
  for (int i = 0; i < 120; ++i, t += 500) {
    sample(h, 1, t, 10);
    h.onPacket(1, t + 10);
    h.update(t + 10, 2, q);
  }
  CHECK(h.latencyMs(1) == 5);
  CHECK(h.inFallback(1));
  CHECK_FALSE(h.p2pUsable(1));
  CHECK(drain(q).empty());
  CHECK(h.recoveries() == 0);

  Health c(2, 0);
  c.onChannelClosed(1, 0, 0, &q);
  c.onChannelOpen(1, 10);
  CHECK(c.channelOpen(1));
  CHECK(c.inFallback(1));
  CHECK_FALSE(c.p2pUsable(1));
}

TEST_CASE("health: recovery when configured", "[health]") {
  HealthConfig cfg;
  cfg.recovery = true;
  cfg.recoveryHealthyForMs = 5000;
  cfg.recoveryLatencyBelowMs = 100;
  Health h(2, 0, cfg);
  EventQueue q(kEventBytes);
  double t = 0;
  for (int i = 0; i < 10; ++i, t += 500) {
    sample(h, 1, t, 700);
    h.onPacket(1, t + 1);
    h.update(t + 1, 100 + i, q);
  }
  REQUIRE(h.inFallback(1));
  const double fallbackAt = 1001;  // the update after the third sample (minSamplesForDegraded)
  drain(q);

  // Good samples (rtt 20). The 10-sample average drops below 200 (latency < 100) on the 7th:
  // (3 * 700 + 7 * 20) / 10 = 224 -> no; 8th: (2*700 + 8*20)/10 = 156 -> latency 78 -> yes.
  double streakStart = -1;
  double recoveredAt = -1;
  json recovery;
  for (int i = 0; i < 40 && recoveredAt < 0; ++i, t += 500) {
    sample(h, 1, t, 20);
    if (streakStart < 0 && h.latencyMs(1) < 100) streakStart = t + 20;
    h.onPacket(1, t + 20);
    h.update(t + 20, 200 + i, q);
    for (const json& e : drain(q))
      if (e["type"] == "recovery") { recovery = e; recoveredAt = t + 20; }
  }
  REQUIRE(recoveredAt > 0);
  CHECK(recoveredAt - streakStart == 5000);
  CHECK(recovery["peer"] == 1);
  CHECK(recovery["timeMs"].get<double>() == recoveredAt);
  CHECK(recovery["fallbackMs"].get<double>() == recoveredAt - fallbackAt);
  CHECK(recovery["frame"].is_number_integer());
  CHECK_FALSE(h.inFallback(1));
  CHECK(h.p2pUsable(1));
  CHECK_FALSE(h.anyFallback());
  CHECK(h.recoveries() == 1);
  // the session flags are historical
  CHECK(h.fallbackTriggered());
  CHECK(h.fallbackFrame() == 102);
  json f = h.toJson()["fallback"];
  CHECK(f["recoveries"] == 1);
  CHECK(f["events"].size() == 2);
  CHECK(f["events"][1]["type"] == "recovery");
  CHECK(peerJson(h, 1)["fallbackReason"].is_null());

  // degraded again -> a new fallback event; the session frame stays the first one
  for (int i = 0; i < 10; ++i, t += 500) { sample(h, 1, t, 900); h.onPacket(1, t + 1); }
  h.update(t, 999, q);
  CHECK(ofType(drain(q), "fallback").size() == 1);
  CHECK(h.inFallback(1));
  CHECK(h.fallbackFrame() == 102);
}

TEST_CASE("health: recovery needs an open channel and fresh samples", "[health]") {
  HealthConfig cfg;
  cfg.recovery = true;
  EventQueue q(kEventBytes);

  SECTION("closed channel: no recovery until reopened") {
    Health h(2, 0, cfg);
    h.onChannelClosed(1, 0, 3, &q);
    double t = 0;
    for (int i = 0; i < 30; ++i, t += 500) {
      sample(h, 1, t, 10);
      h.onPacket(1, t + 10);
      h.update(t + 10, 4, q);
    }
    CHECK(ofType(drain(q), "recovery").empty());
    h.onChannelOpen(1, t);
    double reopened = t;
    double recoveredAt = -1;
    for (int i = 0; i < 30 && recoveredAt < 0; ++i, t += 500) {
      sample(h, 1, t, 10);
      h.onPacket(1, t + 10);
      h.update(t + 10, 5, q);
      if (!ofType(drain(q), "recovery").empty()) recoveredAt = t + 10;
    }
    REQUIRE(recoveredAt > 0);
    CHECK(recoveredAt - reopened >= 5000);
    CHECK(h.p2pUsable(1));
  }

  SECTION("no pongs: the streak goes stale") {
    Health h(2, 0, cfg);
    double t = feed(h, 0, 10, 700);
    h.update(t, 1, q);
    REQUIRE(h.inFallback(1));
    t = feed(h, t, 10, 10);  // latency now low, streak started
    for (int i = 0; i < 40; ++i, t += 250) {  // 10 s of packets but no pongs
      h.onPacket(1, t);
      h.update(t, 2, q);
    }
    CHECK(ofType(drain(q), "recovery").empty());
    CHECK(h.inFallback(1));
  }

  SECTION("an interruption breaks the streak") {
    Health h(2, 0, cfg);
    double t = feed(h, 0, 10, 700);
    h.update(t, 1, q);
    REQUIRE(h.inFallback(1));
    drain(q);
    // good pongs every 500 ms but other packets only until 2 s in: the peer is interrupted
    // (onPacket is only called for the first 4 steps), so no recovery.
    for (int i = 0; i < 30; ++i, t += 500) {
      sample(h, 1, t, 10);
      if (i < 4) h.onPacket(1, t + 10);
      h.update(t + 10, 2, q);
    }
    auto evs = drain(q);
    CHECK(ofType(evs, "recovery").empty());
    CHECK(ofType(evs, "interrupted").size() == 1);
    CHECK(h.inFallback(1));
  }
}

TEST_CASE("health: toJson fields, nulls without samples, never NaN", "[health]") {
  Health h(4, 2);
  h.onPacket(0, 5);
  h.pingDue(0);
  h.onPong(3, 0, 30);
  json j = h.toJson();
  REQUIRE(j["peers"].size() == 3);
  const std::set<std::string> want = {
      "peer", "rttAvgMs", "latencyMs", "p50Ms", "p95Ms", "jitterMs", "minMs", "maxMs", "samples",
      "status", "packetsReceived", "gapCount", "unsolicitedPongs", "stalePongs", "duplicatePongs", "liveness",
      "interruptions", "disconnections", "lastPacketMs", "channelOpen", "inFallback", "fallbackReason"};
  for (const json& p : j["peers"]) {
    std::set<std::string> keys;
    for (auto it = p.begin(); it != p.end(); ++it) keys.insert(it.key());
    CHECK(keys == want);
  }
  json p0 = j["peers"][0];
  CHECK(p0["peer"] == 0);
  CHECK(p0["rttAvgMs"].is_null());
  CHECK(p0["latencyMs"].is_null());
  CHECK(p0["p50Ms"].is_null());
  CHECK(p0["jitterMs"].is_null());
  CHECK(p0["samples"] == 0);
  CHECK(p0["status"] == "good");
  CHECK(p0["lastPacketMs"].get<double>() == 5);
  CHECK(p0["channelOpen"] == true);
  CHECK(p0["inFallback"] == false);
  CHECK(p0["fallbackReason"].is_null());
  CHECK(j["peers"][1]["lastPacketMs"].is_null());
  json p3 = j["peers"][2];
  CHECK(p3["peer"] == 3);
  CHECK(p3["rttAvgMs"].get<double>() == 30);
  CHECK(p3["latencyMs"].get<double>() == 15);

  const std::set<std::string> wantF = {"triggered", "frame", "reason", "timeMs", "peer", "events",
                                       "eventsDropped", "recoveries"};
  std::set<std::string> keysF;
  for (auto it = j["fallback"].begin(); it != j["fallback"].end(); ++it) keysF.insert(it.key());
  CHECK(keysF == wantF);

  // garbage times never leak NaN into the export
  h.onPong(3, 0, NAN);
  h.onPacket(1, NAN);
  EventQueue q(kEventBytes);
  h.update(NAN, 0, q);
  h.update(INFINITY, 0, q);
  std::string dump = h.toJson().dump();
  CHECK(dump.find("NaN") == std::string::npos);
  CHECK(dump.find("nan") == std::string::npos);
  CHECK(dump.find("inf") == std::string::npos);
}

TEST_CASE("health: held events are bounded", "[health]") {
  Health h(4, 0, HealthConfig{}, 2);
  EventQueue q(kEventBytes);
  h.update(0, 0, q);
  h.update(1000, 0, q);  // peers 1..3 interrupted (pushed directly)
  CHECK(ofType(drain(q), "interrupted").size() == 3);
  h.onPacket(1, 1001);  // three reconnected events, held: two fit
  h.onPacket(2, 1002);
  h.onPacket(3, 1003);
  CHECK(h.heldEventsDropped() == 1);
  h.update(1100, 0, q);
  auto evs = drain(q);
  REQUIRE(evs.size() == 2);
  CHECK(evs[0]["peer"] == 1);
  CHECK(evs[1]["peer"] == 2);
  // the fallback history is bounded by the same cap
  h.onChannelClosed(1, 1200, 1, &q);
  h.onChannelClosed(2, 1200, 1, &q);
  h.onChannelClosed(3, 1200, 1, &q);
  CHECK(drain(q).size() == 3);  // events still reach the queue
  json f = h.toJson()["fallback"];
  CHECK(f["events"].size() == 2);
  CHECK(f["eventsDropped"] == 1);
}

TEST_CASE("health: one early outlier does not trigger the sticky fallback", "[health]") {
  EventQueue q(kEventBytes);
  Health h(2, 0, HealthConfig{});
  double t = 0;
  sample(h, 1, t, 450);  // latency 225: critical on its own
  h.onPacket(1, t + 1);
  h.update(t + 1, 5, q);
  CHECK_FALSE(h.inFallback(1));
  for (int i = 0; i < 9; ++i) {
    t += 500;
    sample(h, 1, t, 300);
    h.onPacket(1, t + 1);
    h.update(t + 1, 6 + i, q);
  }
  CHECK_FALSE(h.anyFallback());  // average 315 ms: latency 157 = warning
  CHECK(std::string(h.status(1)) == "warning");
  // three critical samples do trigger it
  Health h2(2, 0, HealthConfig{});
  for (int i = 0; i < 3; ++i) {
    sample(h2, 1, i * 500.0, 450);
    h2.onPacket(1, i * 500.0 + 1);
    h2.update(i * 500.0 + 1, static_cast<uint32_t>(i), q);
  }
  CHECK(h2.inFallback(1));
}
