// Engine events (rollback, stall, desync, fallback, ...) for the page. A component builds an
// `Event` (a type and up to kMaxFields named fields) and pushes it into the EventQueue, which
// stores it as a binary record in a fixed byte arena that JS reads through a view of WASM memory.
// No JSON on this path: JSON is built only where an event is also kept for the metrics export.
//
// Record layout (little-endian, 4-byte aligned; declared here once, exported to JS by
// layoutJson() in plan.cpp):
//   u8  type            (EventType)
//   u8  fieldCount
//   u16 recordBytes     (header + fields + text, padded to 4)
//   fieldCount x 16 bytes:
//     u8  field         (Field)
//     u8  kind          (FieldKind)
//     u16 textLength    (Text / Json: bytes of text)
//     u32 textOffset    (Text / Json: from the start of the record)
//     f64 value         (Number: the value; Bool: 0/1; Hex64: the u64's bits as two u32, hi then lo)
//   text bytes
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace p2psync {

#define P2PSYNC_EVENT_TYPES(X)                                                                          \
  X(Rollback, "rollback") X(Stall, "stall") X(StallEnd, "stallEnd") X(Desync, "desync")                 \
  X(Verified, "verified") X(HashBroadcast, "hashBroadcast") X(Fallback, "fallback")                      \
  X(Recovery, "recovery") X(Interrupted, "interrupted") X(Disconnected, "disconnected")                  \
  X(Reconnected, "reconnected") X(Nondeterminism, "nondeterminism") X(Error, "error") X(Focus, "focus")  \
  X(EpisodeEnd, "episodeEnd") X(Terminal, "terminal") X(EpisodeStart, "episodeStart")                     \
  X(EndTimeout, "endTimeout") X(Pause, "pause") X(Resume, "resume") X(InputDelay, "inputDelay")            \
  X(Rejoin, "rejoin") X(StateLoaded, "stateLoaded") X(Resync, "resync") X(TransferError, "transferError")   \
  X(TransferSent, "transferSent") X(StateRequest, "stateRequest")

#define P2PSYNC_EVENT_FIELDS(X)                                                                          \
  X(Frame, "frame") X(CurrentFrame, "currentFrame") X(RollbackFrames, "rollbackFrames")                  \
  X(PlayerIndex, "playerIndex") X(PredictedAction, "predictedAction") X(ActualAction, "actualAction")    \
  X(TimeMs, "timeMs") X(ConfirmedFrame, "confirmedFrame") X(Reason, "reason") X(LocalHash, "localHash")   \
  X(RemoteHash, "remoteHash") X(Peer, "peer") X(ActionCountDiff, "actionCountDiff")                        \
  X(DetectedAtFrame, "detectedAtFrame") X(Episode, "episode") X(Source, "source") X(Hash, "hash")         \
  X(Player, "player") X(Resend, "resend") X(LatencyMs, "latencyMs") X(FallbackMs, "fallbackMs")          \
  X(SilentMs, "silentMs") X(DownMs, "downMs") X(From, "from") X(FirstHash, "firstHash")                  \
  X(ReplayHash, "replayHash") X(EpisodeFrame, "episodeFrame") X(CheckDistance, "checkDistance")          \
  X(Focused, "focused") X(Bytes, "bytes") X(Truncated, "truncated") X(Peers, "peers")                    \
  X(InputDelay, "inputDelay") X(StartFrame, "startFrame") X(Frames, "frames")                           \
  X(LastInputFrame, "lastInputFrame") X(AttachmentBytes, "attachmentBytes") X(Chunks, "chunks")          \
  X(Resent, "resent") X(Hashes, "hashes")

#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class EventType : uint8_t { P2PSYNC_EVENT_TYPES(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY
#define P2PSYNC_ENUM_ENTRY(name, text) k##name,
enum class Field : uint8_t { P2PSYNC_EVENT_FIELDS(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY

#define P2PSYNC_FIELD_KINDS(X) X(Number, "number") X(Bool, "bool") X(Null, "null") X(Hex64, "hex64") X(Text, "text") X(Json, "json")
#define P2PSYNC_ENUM_ENTRY(name, text) name,
enum class FieldKind : uint8_t { P2PSYNC_FIELD_KINDS(P2PSYNC_ENUM_ENTRY) Count_ };
#undef P2PSYNC_ENUM_ENTRY

const char* eventTypeName(EventType t);
const char* fieldName(Field f);
const char* fieldKindName(FieldKind k);

namespace eventrec {
constexpr size_t kHeaderBytes = 4;
constexpr size_t kFieldBytes = 16;
constexpr size_t kType = 0, kFieldCount = 1, kRecordBytes = 2;
constexpr size_t kFieldId = 0, kFieldKind = 1, kTextLength = 2, kTextOffset = 4, kValue = 8;
}  // namespace eventrec

// One event being built. Fixed capacity; text (reasons, JSON details) is bounded.
class Event {
 public:
  static constexpr int kMaxFields = 12;
  static constexpr size_t kMaxText = 2048;

  explicit Event(EventType t) : type_(t) {}
  Event& num(Field f, double v);        // non-finite -> null
  Event& flag(Field f, bool v);
  Event& null(Field f);
  Event& hex(Field f, uint64_t v);      // JS sees 16 lowercase hex chars
  Event& text(Field f, std::string_view s);
  Event& json(Field f, const nlohmann::json& v);  // JS sees the parsed value

  EventType type() const { return type_; }
  // The same event as a JSON object ({"type": name, ...fields}), for exports and tests.
  nlohmann::json toJson() const;
  // Bytes of its record.
  size_t recordSize() const;
  // Writes its record at `out` (recordSize() bytes).
  void write(uint8_t* out) const;

 private:
  struct Entry {
    Field field;
    FieldKind kind;
    double value;
    uint64_t bits;
    uint32_t textOff, textLen;
  };
  Entry& add(Field f, FieldKind k);
  EventType type_;
  int count_ = 0;
  Entry entries_[kMaxFields]{};
  std::string text_;
};

// Decodes one record (the inverse of Event::write) into JSON; `len` bytes available. Returns a
// discarded value on a malformed record. For tests and the native tools.
nlohmann::json eventRecordToJson(const uint8_t* rec, size_t len, size_t* recordBytes = nullptr);

// The pending events of one engine call, as records in a fixed byte arena. Past its capacity new
// events are counted as dropped instead of stored.
class EventQueue {
 public:
  explicit EventQueue(size_t capacityBytes) : buf_(capacityBytes) {}
  void push(const Event& ev);
  void clear() { used_ = 0; count_ = 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return used_; }
  size_t capacity() const { return buf_.size(); }
  uint32_t count() const { return count_; }
  uint64_t dropped() const { return dropped_; }
  // Calls fn(json) for each pending record (tests, native tools).
  template <typename Fn>
  void forEachJson(Fn&& fn) const {
    size_t off = 0;
    while (off + eventrec::kHeaderBytes <= used_) {
      size_t n = 0;
      nlohmann::json j = eventRecordToJson(buf_.data() + off, used_ - off, &n);
      if (n == 0) break;
      fn(j);
      off += n;
    }
  }

 private:
  std::vector<uint8_t> buf_;
  size_t used_ = 0;
  uint32_t count_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace p2psync
