#include "plan.hpp"

#include <nlohmann/json.hpp>

#include "events.hpp"
#include "outbox.hpp"
#include "protocol.hpp"
#include "research_data.hpp"
#include "result.hpp"

namespace p2psync {

namespace {
#define P2PSYNC_NAME_ENTRY(name, text) text,
constexpr const char* kStatusNames[] = {P2PSYNC_STATUSES(P2PSYNC_NAME_ENTRY)};
constexpr const char* kRequestKindNames[] = {P2PSYNC_REQUEST_KINDS(P2PSYNC_NAME_ENTRY)};
constexpr const char* kWordNames[] = {P2PSYNC_PLAN_WORDS(P2PSYNC_NAME_ENTRY)};
constexpr const char* kPathNames[] = {P2PSYNC_PATHS(P2PSYNC_NAME_ENTRY)};
constexpr const char* kOutKindNames[] = {P2PSYNC_OUT_KINDS(P2PSYNC_NAME_ENTRY)};
constexpr const char* kRelayEventNames[] = {P2PSYNC_RELAY_EVENTS(P2PSYNC_NAME_ENTRY)};
#undef P2PSYNC_NAME_ENTRY

template <size_t N>
nlohmann::json names(const char* const (&a)[N]) {
  nlohmann::json j = nlohmann::json::array();
  for (const char* s : a) j.push_back(s);
  return j;
}
}  // namespace

const char* statusName(Status s) {
  auto i = static_cast<size_t>(s);
  return i < static_cast<size_t>(Status::Count_) ? kStatusNames[i] : "UNKNOWN";
}
const char* requestKindName(RequestKind k) {
  auto i = static_cast<size_t>(k);
  return i < static_cast<size_t>(RequestKind::Count_) ? kRequestKindNames[i] : "unknown";
}

std::string layoutJson() {
  using nlohmann::json;
  json words = json::object();
  for (int i = 0; i < plan::kWordCount_; ++i) words[kWordNames[i]] = i;
  json rx = json::array();
  for (int i = 0; i < static_cast<int>(RxResult::Count_); ++i) rx.push_back(rxResultName(static_cast<RxResult>(i)));
  json dec = json::array();
  for (int i = 0; i < static_cast<int>(DecodeError::Count_); ++i) dec.push_back(decodeErrorName(static_cast<DecodeError>(i)));
  json types = json::array(), fields = json::array(), kinds = json::array();
  for (int i = 0; i < static_cast<int>(EventType::Count_); ++i) types.push_back(eventTypeName(static_cast<EventType>(i)));
  for (int i = 0; i < static_cast<int>(Field::Count_); ++i) fields.push_back(fieldName(static_cast<Field>(i)));
  for (int i = 0; i < static_cast<int>(FieldKind::Count_); ++i) kinds.push_back(fieldKindName(static_cast<FieldKind>(i)));
  json j;
  j["plan"] = json{{"headerWords", plan::kHeaderWords},
                   {"words", words},
                   {"requestBytes", plan::kRequestBytes},
                   {"request", json{{"kind", plan::kReqKind},
                                    {"flags", plan::kReqFlags},
                                    {"predictedMask", plan::kReqPredictedMask},
                                    {"frame", plan::kReqFrame},
                                    {"episodeFrame", plan::kReqEpisodeFrame},
                                    {"actions", plan::kReqActions}}},
                   {"resultBytes", plan::kResultBytes},
                   {"botBytes", plan::kBotBytes}};
  j["status"] = names(kStatusNames);
  j["requestKinds"] = names(kRequestKindNames);
  j["requestFlags"] = json{{"replay", kRequestReplay}};
  j["stepFlags"] = json{{"terminated", kStepTerminated}, {"truncated", kStepTruncated}, {"rewards", kStepRewards}};
  j["outbox"] = json{{"headerBytes", outrec::kHeaderBytes}, {"kind", outrec::kKind},     {"path", outrec::kPath},
                     {"to", outrec::kTo},                   {"event", outrec::kEvent},   {"length", outrec::kLength},
                     {"align", 4}};
  j["outKinds"] = names(kOutKindNames);
  j["paths"] = names(kPathNames);
  j["relayEvents"] = names(kRelayEventNames);
  j["event"] = json{{"headerBytes", eventrec::kHeaderBytes}, {"fieldBytes", eventrec::kFieldBytes},
                    {"type", eventrec::kType},               {"fieldCount", eventrec::kFieldCount},
                    {"recordBytes", eventrec::kRecordBytes}, {"fieldId", eventrec::kFieldId},
                    {"fieldKind", eventrec::kFieldKind},     {"textLength", eventrec::kTextLength},
                    {"textOffset", eventrec::kTextOffset},   {"value", eventrec::kValue}};
  j["row"] = json{{"frame", rowrec::kFrame},
                  {"episodeFrame", rowrec::kEpisodeFrame},
                  {"episode", rowrec::kEpisode},
                  {"predictedMask", rowrec::kPredictedMask},
                  {"unfocusedMask", rowrec::kUnfocusedMask},
                  {"rollbacks", rowrec::kRollbacks},
                  {"flags", rowrec::kFlags},
                  {"inputDelay", rowrec::kInputDelay},
                  {"firstSteppedMs", rowrec::kFirstSteppedMs},
                  {"actions", rowrec::kActions},
                  {"rewards", rowrec::kRewards}};
  j["rowFlags"] = json{{"terminated", kRowTerminated}, {"truncated", kRowTruncated}, {"rewards", kRowRewards}};
  j["eventTypes"] = types;
  j["fields"] = fields;
  j["fieldKinds"] = kinds;
  j["rxResults"] = rx;
  j["decodeErrors"] = dec;
  j["messageTypes"] = json{{"INPUT", MsgType::Input},
                           {"PING", MsgType::Ping},
                           {"PONG", MsgType::Pong},
                           {"KEEPALIVE", MsgType::Keepalive},
                           {"EPISODE_END", MsgType::EpisodeEnd},
                           {"EPISODE_READY", MsgType::EpisodeReady},
                           {"STATE_HASH", MsgType::StateHash},
                           {"INPUT_REQUEST", MsgType::InputRequest},
                           {"INPUT_RESPONSE", MsgType::InputResponse},
                           {"FOCUS_STATE", MsgType::FocusState},
                           {"QUALITY", MsgType::Quality},
                           {"STATE_REQUEST", MsgType::StateRequest},
                           {"STATE_CHUNK", MsgType::StateChunk},
                           {"STATE_ACK", MsgType::StateAck}};
  j["limits"] = json{{"maxPlayers", kMaxPlayers},
                     {"maxBots", kMaxBots},
                     {"maxActors", kMaxActors},
                     {"maxFramesPerAdvance", kMaxFramesPerAdvance},
                     {"maxInputsPerPacket", kMaxInputsPerPacket},
                     {"maxResponseInputs", kMaxResponseInputs},
                     {"maxPacketBytes", kMaxPacketBytes},
                     {"maxInputDelay", kMaxInputDelay},
                     {"transferChunkBytes", kTransferChunkBytes}};
  return j.dump();
}

}  // namespace p2psync
