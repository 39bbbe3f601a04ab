// The ordered plan (plan.hpp): Load / Save / Advance requests in execution order, the Replay
// flag and predicted masks, step reports (SyncEngine::stepped) in plan order only, the confirmed
// frame waiting for the step report, and a step that ends the episode voiding the rest of the
// plan; layoutJson() against the C++ declarations.
#include <catch2/catch_test_macros.hpp>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;
using nlohmann::json;

TEST_CASE("plan: a rollback is Load S, Advance S.. (replay, Save at snapshot frames), then Save? + Advance of the new frame", "[plan]") {
  Solo s;  // snapshots at 0, 5, 10, ...; player 1 predicted with its previous action
  s.stepTo(13);
  REQUIRE(s.inRange(0, 6, 0) == RxResult::Ok);  // what was predicted: no rollback
  CHECK(s.step() == Status::Run);
  CHECK_FALSE(s.a.plan.rollback());
  CHECK(s.a.plan.str() == "A13 ");
  CHECK(s.in({{7, 2}}) == RxResult::Ok);  // frame 7 was predicted 0
  CHECK(s.step() == Status::Run);
  const PlanCopy& p = s.a.plan;
  CHECK(p.str() == "L5 A5r A6r A7r A8r A9r S10 A10r A11r A12r A13r A14 ");
  CHECK(p.rollbackTarget == 7);
  CHECK(p.loadFrame == 5);
  CHECK(p.replayCount == 9);
  CHECK(s.e().planHeader()[plan::kRequestCount] == 12);
  for (const PlanCopy::Req& r : p.requests) {
    INFO("frame " << r.frame);
    CHECK(r.episodeFrame == r.frame);  // episode 0 starts at frame 0
    if (r.kind != RequestKind::Advance) continue;
    CHECK(r.actions[0] == 0);  // the local player's inputs are always known
    if (r.frame <= 7) {
      CHECK(r.predictedMask == 0);
      CHECK(r.actions[1] == (r.frame == 7 ? 2 : 0));
    } else {  // not known yet: predicted with the previous input (2)
      CHECK(r.predictedMask == 0b10);
      CHECK(r.actions[1] == 2);
    }
  }
  CHECK(p.ran.loads == 1);
  CHECK(p.ran.saves == 1);
  CHECK(p.ran.steps == 10);
  CHECK(p.ran.replayed == 9);
  CHECK_FALSE(p.ran.cut);
  // what the game executed: the replayed frames with the inputs known now
  CHECK(s.a.executed.at(7) == std::vector<uint8_t>{0, 2});
  CHECK(s.a.executed.at(12) == std::vector<uint8_t>{0, 2});
  CHECK(s.e().exportSessionMetrics()["session"]["badStepReports"] == 0);
  CHECK(s.e().exportSessionMetrics()["session"]["unreportedSteps"] == 0);
}

TEST_CASE("plan: stepped() is accepted only for the next Advance of the plan; others are refused and counted", "[plan]") {
  Solo s;
  REQUIRE(s.inRange(0, 29, 0) == RxResult::Ok);
  s.stepTo(3);
  auto bad = [&] { return s.e().exportSessionMetrics()["session"]["badStepReports"].get<uint64_t>(); };
  CHECK(s.step(/*run=*/false) == Status::Run);  // plans frame 3
  REQUIRE(s.a.plan.str() == "A3 ");
  // not run yet: frame 3 is neither simulated nor confirmed, whatever inputs are known
  CHECK(s.e().confirmedFrame() == 2);
  CHECK_FALSE(s.e().stepped(4, 0));  // a frame of no request
  CHECK_FALSE(s.e().stepped(2, 0));  // reported already
  CHECK_FALSE(s.e().stepped(-1, kStepTerminated));
  CHECK(bad() == 3);
  CHECK(s.e().terminalFrame() == kNoFrame);  // a refused report changes nothing
  s.a.run();  // the driver reports frame 3
  CHECK(s.e().confirmedFrame() == 3);
  CHECK(bad() == 3);
  CHECK_FALSE(s.e().stepped(3, 0));  // twice
  CHECK(bad() == 4);

  // A plan that is never run: its Advances are taken as stepped by the next advance(), counted.
  Peer& a = s.a;
  SyncEngine& e = s.e();
  e.advance(s.now += kFrameMs, 0, 0);
  REQUIRE(e.requestCount() == 1);
  e.advance(s.now += kFrameMs, 0, 0);
  CHECK(e.exportSessionMetrics()["session"]["unreportedSteps"] == 1);
  Peer::Env env{a};
  runPlan(e, env);
  CHECK(e.exportSessionMetrics()["session"]["unreportedSteps"] == 1);
  CHECK(bad() == 4);
}

TEST_CASE("plan: a step that ends the episode mid-replay voids the rest of the plan (frames, snapshots)", "[plan]") {
  Solo s;
  s.a.game.endActor = 1;  // the episode ends when player 1 reaches |pos| >= 7 (action 3: +7)
  s.a.game.endAtDistance = 7;
  s.stepTo(13);  // player 1 predicted 0: no end
  REQUIRE(s.e().snapshot(10) != nullptr);
  REQUIRE(s.inRange(0, 7, 0) == RxResult::Ok);
  CHECK(s.in({{8, 3}}) == RxResult::Ok);  // late: the episode really ended at frame 8
  CHECK(s.step() == Status::Run);         // (the terminal frame is unknown when planning)
  const PlanCopy& p = s.a.plan;
  CHECK(p.str() == "L5 A5r A6r A7r A8r A9r S10 A10r A11r A12r A13 ");
  CHECK(p.ran.cut);
  CHECK(p.ran.steps == 4);  // 5, 6, 7, 8: the replay's step of 8 ended the episode
  CHECK(p.ran.saves == 0);
  CHECK(s.a.game.frame == 9);
  CHECK(s.a.game.done());
  CHECK(s.e().terminalFrame() == 8);
  CHECK(s.e().frame() == 9);  // frames 9.. are void
  CHECK(s.e().planHeader()[plan::kFrame] == 9);
  CHECK(s.e().planHeader()[plan::kTerminalFrame] == 8);
  CHECK(s.e().snapshot(10) == nullptr);  // built on the void timeline
  CHECK(s.e().snapshot(5) != nullptr);
  const auto t = s.a.ofType("terminal");
  REQUIRE(t.size() == 1);
  CHECK(t[0]["frame"] == 8);
  CHECK(t[0]["truncated"] == false);
  CHECK(s.step() == Status::Ended);
  CHECK(s.a.plan.requests.empty());
  CHECK(s.a.stepsPastEnd == 0);
  CHECK(s.e().exportSessionMetrics()["session"]["badStepReports"] == 0);
}

TEST_CASE("plan: no request past maxEpisodeFrames; the end is truncated", "[plan]") {
  Solo s(",\"timeSync\":false,\"catchUp\":false,\"maxEpisodeFrames\":30");
  REQUIRE(s.inRange(0, 40, 0) == RxResult::Ok);
  Frame newest = kNoFrame;
  for (int k = 0; k < 40; ++k) {
    s.step();
    for (const PlanCopy::Req& r : s.a.plan.requests) newest = std::max(newest, r.frame);
  }
  CHECK(newest == 29);
  CHECK(s.e().frame() == 30);
  CHECK(s.e().terminalFrame() == 29);
  CHECK(s.a.lastStatus == Status::Ended);
  const auto t = s.a.ofType("terminal");
  REQUIRE(t.size() == 1);
  CHECK(t[0]["truncated"] == true);
  Message end;
  end.type = MsgType::EpisodeEnd;
  end.frame = 29;
  end.episode = 0;
  CHECK(s.a.rxBytes(enc(end), 1, s.now) == RxResult::Ok);
  s.step();
  REQUIRE(s.a.episodeEnds.size() == 1);
  CHECK(s.a.episodeEnds[0]["frame"] == 29);
  CHECK(s.a.episodeEnds[0]["truncated"] == true);
}

TEST_CASE("layoutJson: the exported layout is the C++ one", "[plan]") {
  const json j = json::parse(layoutJson());
  const json& pl = j["plan"];
  CHECK(pl["headerWords"] == plan::kHeaderWords);
  const std::pair<const char*, int> words[] = {
      {"status", plan::kStatus}, {"frame", plan::kFrame}, {"episode", plan::kEpisode}, {"episodeStart", plan::kEpisodeStart},
      {"confirmedFrame", plan::kConfirmedFrame}, {"verifiedFrame", plan::kVerifiedFrame}, {"requestCount", plan::kRequestCount},
      {"rollbackTarget", plan::kRollbackTarget}, {"loadFrame", plan::kLoadFrame}, {"replayCount", plan::kReplayCount},
      {"outBytes", plan::kOutBytes}, {"outCount", plan::kOutCount}, {"replyBytes", plan::kReplyBytes},
      {"replyCount", plan::kReplyCount}, {"eventBytes", plan::kEventBytes}, {"eventCount", plan::kEventCount},
      {"eventRead", plan::kEventRead}, {"numActors", plan::kNumActors}, {"terminalFrame", plan::kTerminalFrame},
      {"inputDelay", plan::kInputDelay}};
  for (auto [name, index] : words) {
    INFO(name);
    CHECK(pl["words"][name] == index);
  }
  CHECK(pl["words"].size() == static_cast<size_t>(plan::kWordCount_));
  CHECK(pl["requestBytes"] == plan::kRequestBytes);
  CHECK(pl["request"] == json{{"kind", plan::kReqKind}, {"flags", plan::kReqFlags}, {"predictedMask", plan::kReqPredictedMask},
                              {"frame", plan::kReqFrame}, {"episodeFrame", plan::kReqEpisodeFrame}, {"actions", plan::kReqActions}});
  CHECK(pl["resultBytes"] == plan::kResultBytes);
  CHECK(pl["botBytes"] == plan::kBotBytes);
  for (int i = 0; i < static_cast<int>(Status::Count_); ++i) CHECK(j["status"][static_cast<size_t>(i)] == statusName(static_cast<Status>(i)));
  for (int i = 0; i < static_cast<int>(RequestKind::Count_); ++i)
    CHECK(j["requestKinds"][static_cast<size_t>(i)] == requestKindName(static_cast<RequestKind>(i)));
  CHECK(j["requestKinds"][static_cast<size_t>(RequestKind::Advance)] == "advance");
  CHECK(j["requestFlags"]["replay"] == kRequestReplay);
  CHECK(j["stepFlags"] == json{{"terminated", kStepTerminated}, {"truncated", kStepTruncated}, {"rewards", kStepRewards}});
  CHECK(j["outbox"]["headerBytes"] == outrec::kHeaderBytes);
  CHECK(j["outbox"]["kind"] == outrec::kKind);
  CHECK(j["outbox"]["path"] == outrec::kPath);
  CHECK(j["outbox"]["to"] == outrec::kTo);
  CHECK(j["outbox"]["event"] == outrec::kEvent);
  CHECK(j["outbox"]["length"] == outrec::kLength);
  CHECK(j["outbox"]["align"] == 4);
  CHECK(outrec::recordBytes(5) == outrec::kHeaderBytes + 8);
  CHECK(j["outKinds"][static_cast<size_t>(OutKind::RelayJson)] == "relayJson");
  CHECK(j["paths"][static_cast<size_t>(Path::Relay)] == "relay");
  CHECK(j["relayEvents"][static_cast<size_t>(RelayEvent::StateSync)] == "p2p_state_sync");
  CHECK(j["event"]["headerBytes"] == eventrec::kHeaderBytes);
  CHECK(j["event"]["fieldBytes"] == eventrec::kFieldBytes);
  CHECK(j["event"]["value"] == eventrec::kValue);
  CHECK(j["event"]["textOffset"] == eventrec::kTextOffset);
  CHECK(j["eventTypes"].size() == static_cast<size_t>(EventType::Count_));
  for (int i = 0; i < static_cast<int>(EventType::Count_); ++i)
    CHECK(j["eventTypes"][static_cast<size_t>(i)] == eventTypeName(static_cast<EventType>(i)));
  CHECK(j["fields"].size() == static_cast<size_t>(Field::Count_));
  for (int i = 0; i < static_cast<int>(Field::Count_); ++i) CHECK(j["fields"][static_cast<size_t>(i)] == fieldName(static_cast<Field>(i)));
  for (int i = 0; i < static_cast<int>(FieldKind::Count_); ++i)
    CHECK(j["fieldKinds"][static_cast<size_t>(i)] == fieldKindName(static_cast<FieldKind>(i)));
  CHECK(j["rxResults"].size() == static_cast<size_t>(RxResult::Count_));
  for (int i = 0; i < static_cast<int>(RxResult::Count_); ++i) CHECK(j["rxResults"][static_cast<size_t>(i)] == rxResultName(static_cast<RxResult>(i)));
  for (int i = 0; i < static_cast<int>(DecodeError::Count_); ++i)
    CHECK(j["decodeErrors"][static_cast<size_t>(i)] == decodeErrorName(static_cast<DecodeError>(i)));
  CHECK(j["messageTypes"]["EPISODE_END"] == static_cast<int>(MsgType::EpisodeEnd));
  CHECK(j["messageTypes"]["INPUT_RESPONSE"] == static_cast<int>(MsgType::InputResponse));
  CHECK(j["limits"]["maxActors"] == kMaxActors);
  CHECK(j["limits"]["maxPacketBytes"] == kMaxPacketBytes);
  CHECK(j["limits"]["maxFramesPerAdvance"] == kMaxFramesPerAdvance);
  // the plan arena holds the longest plan: a Load, then Save + Advance for every frame
  EngineConfig c;
  CHECK(plan::requestCapacity(c) == 1 + 2 * static_cast<size_t>(c.bufferFrames + kMaxFramesPerAdvance));
  CHECK(plan::arenaBytes(c) == plan::kHeaderBytes + plan::requestCapacity(c) * plan::kRequestBytes + plan::kResultBytes + plan::kBotBytes);
}
