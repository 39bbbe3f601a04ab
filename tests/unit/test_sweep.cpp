// The sweep: whole sessions of 2-4 players over lossy link profiles, several seeds, input delay
// 0 and 2, with an env that ends its episode on a state condition (player 0's distance from the
// start: a late input can move the end), over 3 episodes, each page starting the next episode as
// soon as it sees the episodeEnd event. Every run must finish in bounded virtual time (no
// deadlock), every episode must end on the same frame on every peer (the frame where the
// confirmed inputs really end it), and the confirmed action logs must be identical.
#include <catch2/catch_test_macros.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;

namespace {

struct Profile {
  const char* name;
  LinkProfile link;
};

constexpr int kEpisodes = 3;
constexpr int kDistance = 100; // |pos of player 0| that ends an episode (actions move it by 1 or 7)

// The frame (episode-relative) at which the env really ends, from the confirmed log of one episode.
int64_t trueEnd(const std::vector<uint8_t>& log, size_t from, int actors) {
  ToyGame g(actors);
  g.endAtDistance = kDistance;
  for (size_t k = from; k + static_cast<size_t>(actors) <= log.size(); k += static_cast<size_t>(actors)) {
    g.step(log.data() + k, actors);
    if (g.done()) return static_cast<int64_t>(g.frame) - 1;
  }
  return -1;
}

// terminal events beyond one per episode: predicted ends that a rollback refuted (or moved)
uint64_t g_refutedEnds = 0;

void runSweepCase(int players, const Profile& prof, uint64_t seed, int delay) {
  INFO("players " << players << ", profile " << prof.name << ", seed " << seed << ", inputDelay " << delay);
  SessionOptions o;
  o.players = players;
  o.seed = seed;
  o.link = prof.link;
  o.extraConfig = ",\"inputDelay\":" + std::to_string(delay);
  Session s(o);
  s.autoReset = true;
  for (auto& p : s.peers) {
    p->game.endAtDistance = kDistance;
    p->maxEventsKept = 2000;
  }
  auto allEnded = [&] {
    for (const auto& e : s.ends)
      if (e.size() < static_cast<size_t>(kEpisodes)) return false;
    return true;
  };
  // Bounded: 3 episodes of a few hundred frames take well under 2 minutes of game time.
  const bool finished = s.runUntil(allEnded, 8000 * players);
  INFO("virtual time " << s.now << " ms");
  for (int i = 0; i < players; ++i) INFO("peer " << i << ": " << s.ends[static_cast<size_t>(i)].size() << " episodes ended, frame " << s[i].engine->frame());
  REQUIRE(finished);
  CHECK(s.resetErrors.empty());
  const int actors = players;
  size_t offset = 0;  // into the logs: the first frame of episode k
  for (int k = 0; k < kEpisodes; ++k) {
    INFO("episode " << k);
    const Session::EpisodeEnd& e0 = s.ends[0][static_cast<size_t>(k)];
    CHECK(e0.episode == static_cast<uint32_t>(k));
    CHECK_FALSE(e0.truncated);
    for (int i = 1; i < players; ++i) {
      const Session::EpisodeEnd& ei = s.ends[static_cast<size_t>(i)][static_cast<size_t>(k)];
      CHECK(ei.episode == e0.episode);
      CHECK(ei.frame == e0.frame);  // the same frame on every peer
      CHECK(ei.episodeFrame == e0.episodeFrame);
    }
    // ... the frame where the confirmed inputs really end the episode
    REQUIRE(s.logs[0].size() >= offset);
    CHECK(trueEnd(s.logs[0], offset, actors) == e0.episodeFrame);
    offset += static_cast<size_t>(e0.episodeFrame + 1) * static_cast<size_t>(actors);
  }
  // identical confirmed action logs over the three episodes (and whatever followed)
  for (int i = 0; i < players; ++i) REQUIRE(s.logs[static_cast<size_t>(i)].size() >= offset);
  size_t common = 0;
  CHECK(s.logsIdentical(&common));
  CHECK(common * static_cast<size_t>(actors) >= offset);
  if (std::getenv("SWEEP_VERBOSE"))
    std::printf("%d players %-32s seed %llu delay %d: ends %lld %lld %lld, rollbacks %llu, t=%.0f ms\n", players, prof.name,
                static_cast<unsigned long long>(seed), delay, static_cast<long long>(s.ends[0][0].episodeFrame),
                static_cast<long long>(s.ends[0][1].episodeFrame), static_cast<long long>(s.ends[0][2].episodeFrame),
                static_cast<unsigned long long>(s[0].rollbacks), s.now);
  for (size_t i = 0; i < s.peers.size(); ++i) {
    const uint64_t terminals = s.peers[i]->count("terminal"), ends = s.ends[i].size();
    if (terminals > ends) g_refutedEnds += terminals - ends;
  }
  for (auto& p : s.peers) {
    CHECK(p->stepsPastEnd == 0);  // no env ever stepped past the end of its episode
    CHECK(p->desyncs == 0);
    CHECK(p->count("error") == 0);  // no end-mismatch, no missing snapshot
    CHECK(p->engine->exportSessionMetrics()["session"]["badStepReports"] == 0);
    CHECK(p->engine->episode() >= static_cast<uint32_t>(kEpisodes));
  }
}

}  // namespace

TEST_CASE("sweep: 2-4 players x lossy links x seeds x input delay 0/2, 3 episodes ended by the game state", "[sweep]") {
  const Profile profiles[] = {
      {"150+-60ms 30% loss", LinkProfile{150, 120, 0.30, 0.05, 0.02, 20}},
      {"60+-30ms 10% loss, reordering", LinkProfile{60, 60, 0.10, 0.20, 0.05, 20}},
      {"20ms 2% loss", LinkProfile{20, 10, 0.02, 0.02, 0.01, 20}},
  };
  for (int players = 2; players <= 4; ++players)
    for (const Profile& prof : profiles)
      for (uint64_t seed : {1u, 2u, 3u})
        for (int delay : {0, 2}) runSweepCase(players, prof, seed * 1000 + static_cast<uint64_t>(players * 10 + delay), delay);
  // The sweep did exercise ends reached on a predicted timeline and then refuted by a rollback.
  CHECK(g_refutedEnds > 10);
  if (std::getenv("SWEEP_VERBOSE")) std::printf("refuted predicted ends: %llu\n", static_cast<unsigned long long>(g_refutedEnds));
}
