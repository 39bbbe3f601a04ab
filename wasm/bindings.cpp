// The only file that knows Embind. It exposes the engine as `Engine` (wrapped by
// web/p2psync.js) and the codec/hash as free functions working on staging memory.
//
// Conventions: no C++ exception ever crosses into JS (errors are codes or strings); bulk data
// crosses as typed-array views of WASM memory at the addresses returned here, never as
// std::string (Embind converts strings as UTF-8 and would mangle binary data).
#include <emscripten/bind.h>
#include <emscripten/emscripten.h>
#include <malloc.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "plan.hpp"
#include "protocol.hpp"
#include "state_hash.hpp"
#include "sync_engine.hpp"

using namespace emscripten;
using namespace p2psync;

namespace {

// Message layout shared with web/p2psync.js (little-endian; exported by layout().message):
//   0 u8 type, 1 u8 flags, 2 u8 focused, 3 u8 delay, 4 u16 playerIndex, 6 u16 count,
//   8 u32 frame, 12 u32 episode, 16 u32 start, 20 u32 end, 24 f64 timestamp,
//   32 u32 digestHi, 36 u32 digestLo, 40 i16 margin, 42 u8 reason, 43 u8 source, 44 u8 status,
//   45..47 pad, 48 u32 transferId, 52 u32 total, 56 u32 index, 60 u32 bitmap,
//   64.. count x (u32 frame, u32 action), or for STATE_CHUNK its count bytes
namespace off {  // the byte offsets above: the one place they are written down
constexpr size_t type = 0, flags = 1, focused = 2, delay = 3, playerIndex = 4, count = 6, frame = 8, episode = 12,
                 start = 16, end = 20, timestamp = 24, digestHi = 32, digestLo = 36, margin = 40, reason = 42,
                 source = 43, status = 44, transferId = 48, total = 52, index = 56, bitmap = 60;
}  // namespace off
constexpr size_t kMsgHeader = 64;
constexpr size_t kMsgBytes = kMsgHeader + 8 * kMaxResponseInputs;

struct Staging {
  std::vector<uint8_t> bytes = std::vector<uint8_t>(64 * 1024);
  std::vector<uint8_t> msg = std::vector<uint8_t>(kMsgBytes);
  Message m;
  std::string text;
};
Staging& staging() {
  static Staging s;
  return s;
}

template <typename T>
T rd(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <typename T>
void wr(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

void readMsg(const uint8_t* s, Message& m) {
  m.type = static_cast<MsgType>(s[off::type]);
  m.flags = s[off::flags];
  m.focused = s[off::focused];
  m.delay = s[off::delay];
  m.margin = rd<int16_t>(s + off::margin);
  m.playerIndex = rd<uint16_t>(s + off::playerIndex);
  m.count = rd<uint16_t>(s + off::count);
  m.frame = rd<uint32_t>(s + off::frame);
  m.episode = rd<uint32_t>(s + off::episode);
  m.start = rd<uint32_t>(s + off::start);
  m.end = rd<uint32_t>(s + off::end);
  m.timestamp = rd<double>(s + off::timestamp);
  m.digest = (static_cast<uint64_t>(rd<uint32_t>(s + off::digestHi)) << 32) | rd<uint32_t>(s + off::digestLo);
  m.reason = s[off::reason];
  m.source = s[off::source];
  m.status = s[off::status];
  m.transferId = rd<uint32_t>(s + off::transferId);
  m.total = rd<uint32_t>(s + off::total);
  m.index = rd<uint32_t>(s + off::index);
  m.bitmap = rd<uint32_t>(s + off::bitmap);
  m.data = nullptr;
  m.dataLen = 0;
  if (m.type == MsgType::StateChunk) {
    m.dataLen = m.count > kTransferChunkBytes ? static_cast<uint16_t>(kTransferChunkBytes + 1) : m.count;  // too many: refused by validate
    m.data = s + kMsgHeader;
    m.count = 0;
    return;
  }
  if (m.count > kMaxResponseInputs) m.count = kMaxResponseInputs + 1;  // refused by validate
  for (size_t i = 0; i < m.count && i < kMaxResponseInputs; ++i) {
    m.inputs[i].frame = rd<uint32_t>(s + kMsgHeader + 8 * i);
    uint32_t a = rd<uint32_t>(s + kMsgHeader + 8 * i + 4);
    m.inputs[i].action = static_cast<uint8_t>(a);
  }
}

void writeMsg(const Message& m, uint8_t* s) {
  s[off::type] = static_cast<uint8_t>(m.type);
  s[off::flags] = m.flags;
  s[off::focused] = m.focused;
  s[off::delay] = m.delay;
  wr<int16_t>(s + off::margin, m.margin);
  wr<uint16_t>(s + off::playerIndex, m.playerIndex);
  wr<uint16_t>(s + off::count, m.count);
  wr<uint32_t>(s + off::frame, m.frame);
  wr<uint32_t>(s + off::episode, m.episode);
  wr<uint32_t>(s + off::start, m.start);
  wr<uint32_t>(s + off::end, m.end);
  wr<double>(s + off::timestamp, m.timestamp);
  wr<uint32_t>(s + off::digestHi, static_cast<uint32_t>(m.digest >> 32));
  wr<uint32_t>(s + off::digestLo, static_cast<uint32_t>(m.digest));
  s[off::reason] = m.reason;
  s[off::source] = m.source;
  s[off::status] = m.status;
  wr<uint32_t>(s + off::transferId, m.transferId);
  wr<uint32_t>(s + off::total, m.total);
  wr<uint32_t>(s + off::index, m.index);
  wr<uint32_t>(s + off::bitmap, m.bitmap);
  if (m.type == MsgType::StateChunk) {
    wr<uint16_t>(s + off::count, m.dataLen);
    std::memcpy(s + kMsgHeader, m.data, m.dataLen);
    return;
  }
  for (size_t i = 0; i < m.count; ++i) {
    wr<uint32_t>(s + kMsgHeader + 8 * i, m.inputs[i].frame);
    wr<uint32_t>(s + kMsgHeader + 8 * i + 4, m.inputs[i].action);
  }
}

// ---- free functions (codec, hash, layout)
uintptr_t stagingPtr() { return reinterpret_cast<uintptr_t>(staging().bytes.data()); }
uint32_t stagingCapacity() { return static_cast<uint32_t>(staging().bytes.size()); }
// Grows the staging buffer to at least n bytes (may grow WASM memory); returns its address.
uintptr_t stagingReserve(uint32_t n) {
  Staging& s = staging();
  if (s.bytes.size() < n) s.bytes.resize(n);
  return reinterpret_cast<uintptr_t>(s.bytes.data());
}
uintptr_t messagePtr() { return reinterpret_cast<uintptr_t>(staging().msg.data()); }

// Encodes the message in the message area into the staging bytes. Returns the length, or 0 and
// sets lastError() to the offending field.
std::string g_lastError;
uint32_t encodeStaged() {
  Staging& s = staging();
  readMsg(s.msg.data(), s.m);
  const char* bad = validateForEncode(s.m);
  if (bad) {
    g_lastError = bad;
    return 0;
  }
  size_t n = encode(s.m, s.bytes.data(), s.bytes.size());
  if (!n) g_lastError = "message";
  return static_cast<uint32_t>(n);
}
// Decodes `len` staged bytes into the message area. Returns a DecodeError value (0 = ok).
int decodeStaged(uint32_t len) {
  Staging& s = staging();
  if (len > s.bytes.size()) return static_cast<int>(DecodeError::Truncated);
  DecodeError e = decode(s.bytes.data(), len, s.m);
  if (e == DecodeError::Ok) writeMsg(s.m, s.msg.data());
  return static_cast<int>(e);
}
std::string lastError() { return g_lastError; }

// Every binary layout and name table JS needs (plan.hpp layoutJson), plus the staging message
// layout of this file. Read once when the module loads.
std::string layout() {
  nlohmann::json j = nlohmann::json::parse(layoutJson());
  j["message"] = nlohmann::json{{"headerBytes", kMsgHeader}, {"entryBytes", 8}, {"maxEntries", kMaxResponseInputs},
                                {"type", off::type}, {"flags", off::flags}, {"focused", off::focused},
                                {"delay", off::delay}, {"playerIndex", off::playerIndex}, {"count", off::count},
                                {"frame", off::frame}, {"episode", off::episode}, {"start", off::start},
                                {"end", off::end}, {"timestamp", off::timestamp}, {"digestHi", off::digestHi},
                                {"digestLo", off::digestLo}, {"margin", off::margin}, {"reason", off::reason},
                                {"source", off::source}, {"status", off::status}, {"transferId", off::transferId},
                                {"total", off::total}, {"index", off::index}, {"bitmap", off::bitmap}};
  return j.dump();
}

bool validFrame(double f) { return f >= 0 && f <= 4294967295.0; }

// ---- the engine handle
class Engine {
 public:
  Engine() = default;
  // Returns "" or an error naming the config key.
  std::string init(const std::string& configJson) {
    std::string err;
    e_ = SyncEngine::create(configJson.data(), configJson.size(), err);
    return err;
  }

  int advance(double nowMs, int localAction, double bufferedAmount) {
    return static_cast<int>(e_->advance(nowMs, static_cast<uint8_t>(localAction), bufferedAmount));
  }
  // The step of `frame` was executed. snapLen > 0: the staging bytes hold the pre-step state of
  // `frame` (a Save request of the plan), saved first. Returns 1 to go on with the plan, else 0.
  int stepped(double frame, int flags, uint32_t snapLen) {
    if (!validFrame(frame)) return 0;
    if (snapLen > 0 && snapLen <= staging().bytes.size()) e_->saveSnapshot(static_cast<Frame>(frame), staging().bytes.data(), snapLen);
    return e_->stepped(static_cast<Frame>(frame), static_cast<uint8_t>(flags)) ? 1 : 0;
  }
  int receive(uint32_t len, int fromPeer, int via, double nowMs) {
    const Path path = via ? Path::Relay : Path::P2P;
    return static_cast<int>(e_->receive(len > e_->rxCapacity() ? nullptr : e_->rxBuffer(), len, fromPeer, path, nowMs));
  }
  int receiveRelayInput(int player, double frame, int action, double nowMs, int fromPeer) {
    if (!validFrame(frame)) return static_cast<int>(RxResult::BadValue);
    return static_cast<int>(e_->receiveRelayInput(player, static_cast<Frame>(frame), action, nowMs, fromPeer));
  }
  int receiveRelayJson(int event, const std::string& text, int fromPeer, double nowMs) {
    return static_cast<int>(e_->receiveRelayJson(static_cast<RelayEvent>(event), text.data(), text.size(), fromPeer, nowMs));
  }
  // The snapshot bytes are in the staging buffer (stagingPtr()).
  bool saveSnapshot(double frame, uint32_t len) {
    if (!validFrame(frame) || len > staging().bytes.size()) return false;
    return e_->saveSnapshot(static_cast<Frame>(frame), staging().bytes.data(), len);
  }
  // Address of the snapshot of `frame` (0 if none); its length goes to snapshotLength().
  uintptr_t snapshotPtr(double frame) {
    snapLen_ = 0;
    if (!validFrame(frame)) return 0;
    const SnapshotStore::Entry* en = e_->snapshot(static_cast<Frame>(frame));
    if (!en) return 0;
    snapLen_ = en->length;
    return reinterpret_cast<uintptr_t>(e_->snapshotBytes(*en));
  }
  uint32_t snapshotLength() const { return snapLen_; }
  std::string hashState(uint32_t len) {
    if (len > staging().bytes.size()) return "";
    char hex[17];
    digestToHex(e_->hashState(staging().bytes.data(), len), hex);
    return std::string(hex, 16);
  }

  void setFocus(bool focused, double nowMs) { e_->setFocus(focused, nowMs); }
  void onChannelOpen(int peer, double nowMs) { e_->onChannelOpen(peer, nowMs); }
  void onChannelClosed(int peer, double nowMs) { e_->onChannelClosed(peer, nowMs); }
  void onConnectionFailed(int peer, double nowMs) { e_->onConnectionFailed(peer, nowMs); }
  bool setConnectionType(const std::string& t) { return e_->setConnectionType(t); }
  std::string resetEpisode(int inputDelay) { return e_->resetEpisode(inputDelay); }
  // State transfer: serve a pending STATE_REQUEST of `peer` with the staged attachment bytes.
  bool serveState(int peer, uint32_t len, double nowMs) {
    if (len > staging().bytes.size()) return false;
    return e_->serveState(peer, staging().bytes.data(), len, nowMs);
  }
  uintptr_t attachmentPtr() const { return reinterpret_cast<uintptr_t>(e_->transferAttachment().data()); }
  uint32_t attachmentLength() const { return static_cast<uint32_t>(e_->transferAttachment().size()); }
  bool joining() const { return e_->joining(); }

  // Writes the executed actions of frames [from, to] into staging; returns the frame count.
  uint32_t actionLog(double from, double to, bool confirmedOnly) {
    if (!(validFrame(from) && validFrame(to) && to >= from)) return 0;
    size_t n = e_->actionLog(static_cast<Frame>(from), static_cast<Frame>(to), log_, confirmedOnly);
    Staging& s = staging();
    if (s.bytes.size() < log_.size()) s.bytes.resize(log_.size());
    std::memcpy(s.bytes.data(), log_.data(), log_.size());
    return static_cast<uint32_t>(n);
  }

  std::string p2pMetrics() const { return e_->p2pMetrics().dump(); }
  std::string exportSessionMetrics() const { return e_->exportSessionMetrics().dump(); }
  std::string episodeSummary(const std::string& rewardsJson) const { return e_->episodeSummary(rewardsJson); }
  double memoryBytes() const { return static_cast<double>(e_->memoryBytes()); }

  // Memory regions (stable for the engine's lifetime; their layouts are in layout()).
  uintptr_t planPtr() { return reinterpret_cast<uintptr_t>(e_->planData()); }
  uint32_t requestCapacity() const { return static_cast<uint32_t>(plan::requestCapacity(e_->config())); }
  uint32_t resultOffset() const { return static_cast<uint32_t>(plan::resultOffset(e_->config())); }
  uint32_t botOffset() const { return static_cast<uint32_t>(plan::botOffset(e_->config())); }
  uintptr_t outPtr() const { return reinterpret_cast<uintptr_t>(e_->outbox().data()); }
  uint32_t outCapacity() const { return static_cast<uint32_t>(e_->outbox().capacity()); }
  uintptr_t replyPtr() const { return reinterpret_cast<uintptr_t>(e_->replies().data()); }
  uint32_t replyCapacity() const { return static_cast<uint32_t>(e_->replies().capacity()); }
  uintptr_t rowsPtr() const { return reinterpret_cast<uintptr_t>(e_->rows().data()); }
  uint32_t rowsCapacity() const { return static_cast<uint32_t>(e_->rows().capacity()); }
  uintptr_t eventsPtr() const { return reinterpret_cast<uintptr_t>(e_->events().data()); }
  uint32_t eventsCapacity() const { return static_cast<uint32_t>(e_->events().capacity()); }
  uintptr_t rxPtr() { return reinterpret_cast<uintptr_t>(e_->rxBuffer()); }
  uint32_t rxCapacity() const { return static_cast<uint32_t>(e_->rxCapacity()); }
  int numActors() const { return e_->numActors(); }
  double frame() const { return static_cast<double>(e_->frame()); }
  // Address of this handle, for the plain exports below.
  uintptr_t handle() const { return reinterpret_cast<uintptr_t>(this); }

 private:
  std::unique_ptr<SyncEngine> e_;
  uint32_t snapLen_ = 0;
  std::vector<uint8_t> log_;
};

}  // namespace

// ---- hot path as plain WASM exports (Module._p2psync_*), called by web/p2psync.js. Embind's
// generic invoker (no DYNAMIC_EXECUTION) costs ~0.2 us and allocates on every call; these are
// direct calls. `h` is Engine::handle() (0: does nothing, returns -1).
extern "C" {
EMSCRIPTEN_KEEPALIVE int p2psync_advance(uintptr_t h, double nowMs, int localAction, double bufferedAmount) {
  if (!h) return -1;
  return reinterpret_cast<Engine*>(h)->advance(nowMs, localAction, bufferedAmount);
}
EMSCRIPTEN_KEEPALIVE int p2psync_stepped(uintptr_t h, double frame, int flags, uint32_t snapLen) {
  if (!h) return -1;
  return reinterpret_cast<Engine*>(h)->stepped(frame, flags, snapLen);
}
EMSCRIPTEN_KEEPALIVE int p2psync_receive(uintptr_t h, uint32_t len, int fromPeer, int via, double nowMs) {
  if (!h) return -1;
  return reinterpret_cast<Engine*>(h)->receive(len, fromPeer, via, nowMs);
}
EMSCRIPTEN_KEEPALIVE int p2psync_save_snapshot(uintptr_t h, double frame, uint32_t len) {
  if (!h) return -1;
  return reinterpret_cast<Engine*>(h)->saveSnapshot(frame, len) ? 1 : 0;
}
// Hash of `len` staged bytes into the message area's digest words (layout().message.digestHi/Lo).
// floatDigits > 0: canonical mode. Returns 0 when the text is not JSON (canonical mode).
EMSCRIPTEN_KEEPALIVE int p2psync_hash_staged(uint32_t len, int floatDigits) {
  Staging& s = staging();
  if (len > s.bytes.size()) return 0;
  uint64_t h;
  if (floatDigits > 0) {
    if (!canonicalHash(reinterpret_cast<const char*>(s.bytes.data()), len, floatDigits, h)) return 0;
  } else {
    h = hashBytes(s.bytes.data(), len);
  }
  wr<uint32_t>(s.msg.data() + 32, static_cast<uint32_t>(h >> 32));
  wr<uint32_t>(s.msg.data() + 36, static_cast<uint32_t>(h));
  return 1;
}
// Bytes allocated by malloc (in use) in the WASM heap: a leak shows here long before the heap
// (HEAPU8.buffer.byteLength) has to grow. Used by web/bench.mjs.
EMSCRIPTEN_KEEPALIVE double p2psync_heap_used() { return static_cast<double>(mallinfo().uordblks); }
}

EMSCRIPTEN_BINDINGS(p2psync) {
  function("layout", &layout);
  function("stagingPtr", &stagingPtr);
  function("stagingCapacity", &stagingCapacity);
  function("stagingReserve", &stagingReserve);
  function("messagePtr", &messagePtr);
  function("encodeStaged", &encodeStaged);
  function("decodeStaged", &decodeStaged);
  function("lastError", &lastError);

  class_<Engine>("Engine")
      .constructor<>()
      .function("init", &Engine::init)
      .function("receiveRelayInput", &Engine::receiveRelayInput)
      .function("receiveRelayJson", &Engine::receiveRelayJson)
      .function("snapshotPtr", &Engine::snapshotPtr)
      .function("snapshotLength", &Engine::snapshotLength)
      .function("hashState", &Engine::hashState)
      .function("setFocus", &Engine::setFocus)
      .function("onChannelOpen", &Engine::onChannelOpen)
      .function("onChannelClosed", &Engine::onChannelClosed)
      .function("onConnectionFailed", &Engine::onConnectionFailed)
      .function("setConnectionType", &Engine::setConnectionType)
      .function("resetEpisode", &Engine::resetEpisode)
      .function("serveState", &Engine::serveState)
      .function("attachmentPtr", &Engine::attachmentPtr)
      .function("attachmentLength", &Engine::attachmentLength)
      .function("joining", &Engine::joining)
      .function("actionLog", &Engine::actionLog)
      .function("p2pMetrics", &Engine::p2pMetrics)
      .function("exportSessionMetrics", &Engine::exportSessionMetrics)
      .function("episodeSummary", &Engine::episodeSummary)
      .function("memoryBytes", &Engine::memoryBytes)
      .function("planPtr", &Engine::planPtr)
      .function("requestCapacity", &Engine::requestCapacity)
      .function("resultOffset", &Engine::resultOffset)
      .function("botOffset", &Engine::botOffset)
      .function("outPtr", &Engine::outPtr)
      .function("outCapacity", &Engine::outCapacity)
      .function("replyPtr", &Engine::replyPtr)
      .function("replyCapacity", &Engine::replyCapacity)
      .function("rowsPtr", &Engine::rowsPtr)
      .function("rowsCapacity", &Engine::rowsCapacity)
      .function("eventsPtr", &Engine::eventsPtr)
      .function("eventsCapacity", &Engine::eventsCapacity)
      .function("rxPtr", &Engine::rxPtr)
      .function("rxCapacity", &Engine::rxCapacity)
      .function("numActors", &Engine::numActors)
      .function("frame", &Engine::frame)
      .function("handle", &Engine::handle);
}
