// Whole-session properties: two to four engines over the in-memory lossy link.
#include <catch2/catch_test_macros.hpp>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;

TEST_CASE("two engines over a lossy, reordering link: identical action logs, no desync", "[session]") {
  SessionOptions o;
  o.seed = 42;
  o.link = LinkProfile{40, 20, 0.15, 0.05, 0.02, 20};
  Session s(o);
  s.runFrames(3000);
  size_t common = 0;
  REQUIRE(s.logsIdentical(&common));
  CHECK(common > 2900);
  CHECK(s.totalDesyncs() == 0);
  uint64_t rollbacks = 0;
  for (auto& p : s.peers) rollbacks += p->rollbacks;
  CHECK(rollbacks > 50);
  for (auto& p : s.peers) CHECK(p->engine->verifiedFrame() > 2800);
}
