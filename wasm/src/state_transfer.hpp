// State transfer: what one peer sends another so that it can continue the session — a page that
// reloaded (rejoin) or a peer whose state diverged (desync recovery, desyncPolicy "resync").
//
// The transfer is one blob (layout below, big-endian, declared here once), cut into
// kTransferChunkBytes chunks (STATE_CHUNK, protocol.hpp) and acknowledged by the receiver
// (STATE_ACK: the first missing chunk and a bitmap of the next 32). It works over either path:
// the sender re-sends what is not acknowledged, a bounded window of chunks in flight. Every byte
// is untrusted: the receiver allocates at most config maxTransferBytes, refuses chunks that
// contradict earlier ones, and checks the blob's hash and every field before anything is used.
//
// Blob (version 1):
//   u32 magic 'P2PT', u8 version, u8 reason (kTransferRejoin / kTransferResync), u8 numPlayers,
//   u8 numBots,
//   u32 episode, u32 episodeStart (session frame), u32 snapshotFrame (session frame: the state
//   is the pre-step state of this frame, confirmed on the sender), u32 senderFrame (the sender's
//   next frame), u8 inputDelay, u8 reserved (0), u16 reserved (0), f64 downMs (rejoin: how long
//   the sender heard nothing from the receiver; else 0), u16 delayCount (<= 4096), delayCount
//   bytes (the input delay of every episode so far, in order),
//   u64 stateHash, u32 stateLen, stateLen bytes (the env state text),
//   per player p in 0..numPlayers-1: u32 from, u16 count (<= 1024), count x (u8 action, u8 flags:
//     bit 0 unfocused) for frames from .. from+count-1 (what the sender knows of p's inputs),
//   u32 botsFrom, u16 botCount (<= 1024), botCount x numBots bytes (the bots' actions of frames
//     botsFrom .. botsFrom+botCount-1, as the sender ran them),
//   u32 attachmentLen, attachmentLen bytes (the page's: e.g. research-data rows, opaque here),
//   u64 blobHash: XXH3-64 of every byte before it.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "config.hpp"
#include "frame.hpp"
#include "protocol.hpp"
#include "result.hpp"

namespace p2psync {

constexpr uint32_t kTransferMagic = 0x50325054;  // "P2PT"
constexpr uint8_t kTransferVersion = 1;
constexpr uint16_t kTransferMaxInputs = 1024;  // per player, and bot frames

// Named reasons an assembled transfer is refused (events "transferError", field reason).
enum class TransferError : uint8_t { Ok = 0, Truncated, BadMagic, BadVersion, BadHash, BadShape, BadFrames, BadState, TrailingBytes };
const char* transferErrorName(TransferError e);

// A parsed blob: views into the assembled bytes (valid while they are).
struct TransferView {
  uint8_t reason = 0;
  uint8_t numPlayers = 0, numBots = 0;
  uint32_t episode = 0;
  Frame episodeStart = 0, snapshotFrame = 0, senderFrame = 0;
  uint8_t inputDelay = 0;
  double downMs = 0;
  const uint8_t* delays = nullptr;  // the input delay of episodes 0 .. delayCount-1
  uint16_t delayCount = 0;
  uint64_t stateHash = 0;
  const uint8_t* state = nullptr;
  uint32_t stateLen = 0;
  struct Inputs {
    Frame from = 0;
    uint16_t count = 0;
    const uint8_t* entries = nullptr;  // count x (action, flags)
  };
  Inputs inputs[kMaxPlayers];
  Frame botsFrom = 0;
  uint16_t botCount = 0;
  const uint8_t* bots = nullptr;  // botCount x numBots
  const uint8_t* attachment = nullptr;
  uint32_t attachmentLen = 0;
};

// Checks and parses a whole blob. numPlayers / numBots must match the receiver's config.
TransferError parseTransfer(const uint8_t* data, size_t len, int numPlayers, int numBots, TransferView& out);

// Builds a blob (the sender side). Append in layout order, then finish().
class TransferWriter {
 public:
  explicit TransferWriter(std::vector<uint8_t>& out) : out_(out) { out_.clear(); }
  void header(uint8_t reason, int numPlayers, int numBots, uint32_t episode, Frame episodeStart, Frame snapshotFrame,
              Frame senderFrame, int inputDelay, double downMs, const std::vector<int>& delays);
  void state(const uint8_t* data, size_t len, uint64_t hash);
  // One player's inputs for frames from .. from+count-1; get(f, action, unfocused) fills each.
  template <typename Get>
  void inputs(Frame from, uint16_t count, Get&& get) {
    u32(static_cast<uint32_t>(from));
    u16(count);
    for (uint16_t i = 0; i < count; ++i) {
      uint8_t a = 0;
      bool unfocused = false;
      get(from + i, a, unfocused);
      out_.push_back(a);
      out_.push_back(unfocused ? 1 : 0);
    }
  }
  // The bots' actions (numBots bytes per frame) of frames from .. from+count-1.
  template <typename Get>
  void bots(Frame from, uint16_t count, int numBots, Get&& get) {
    u32(static_cast<uint32_t>(from));
    u16(count);
    for (uint16_t i = 0; i < count; ++i) {
      const uint8_t* b = get(from + i);
      for (int k = 0; k < numBots; ++k) out_.push_back(b ? b[k] : 0);
    }
  }
  void attachment(const uint8_t* data, size_t len);
  // Appends the blob hash. Returns false (and clears the blob) when it exceeds maxBytes.
  bool finish(size_t maxBytes);

 private:
  void u16(uint16_t v);
  void u32(uint32_t v);
  void u64(uint64_t v);
  std::vector<uint8_t>& out_;
};

// The sending side of one transfer: which chunks went out when, which are acknowledged.
class TransferOut {
 public:
  static constexpr uint32_t kWindow = 256;  // chunks in flight beyond the first missing one

  bool active() const { return active_; }
  uint32_t id() const { return id_; }
  uint32_t total() const { return static_cast<uint32_t>(blob_.size()); }
  uint32_t chunks() const { return chunks_; }
  void start(uint32_t id, std::vector<uint8_t>&& blob, double nowMs);
  void stop();
  // Sends up to `budget` chunks now: never sent, or sent at least resendMs ago and not
  // acknowledged, from the first missing one on within kWindow. emit(index, data, len).
  template <typename Emit>
  int pump(double nowMs, double resendMs, int budget, Emit&& emit) {
    int sent = 0;
    const uint32_t end = std::min<uint32_t>(chunks_, firstMissing_ + kWindow);
    for (uint32_t i = firstMissing_; i < end && sent < budget; ++i) {
      if (acked_[i]) continue;
      if (sentMs_[i] >= 0 && nowMs - sentMs_[i] < resendMs) continue;
      const size_t off = static_cast<size_t>(i) * kTransferChunkBytes;
      const size_t len = std::min(kTransferChunkBytes, blob_.size() - off);
      emit(i, blob_.data() + off, len);
      if (sentMs_[i] >= 0) ++resent_;
      sentMs_[i] = nowMs;
      ++sent;
    }
    return sent;
  }
  // An acknowledgement (STATE_ACK receiving): marks chunks received. Returns false if it makes no sense.
  bool onAck(uint32_t firstMissing, uint32_t bitmap, double nowMs);
  double lastHeardMs() const { return lastHeardMs_; }
  uint64_t resent() const { return resent_; }
  size_t bytes() const { return blob_.capacity() + acked_.capacity() + sentMs_.capacity() * sizeof(double); }

 private:
  bool active_ = false;
  uint32_t id_ = 0;
  std::vector<uint8_t> blob_;
  std::vector<uint8_t> acked_;
  std::vector<double> sentMs_;
  uint32_t chunks_ = 0;
  uint32_t firstMissing_ = 0;
  double lastHeardMs_ = 0;
  uint64_t resent_ = 0;
};

// The receiving side: assembles the chunks of the one transfer this peer expects.
class TransferIn {
 public:
  bool expecting() const { return id_ != 0; }
  uint32_t id() const { return id_; }
  int source() const { return source_; }
  // Expect transfer `id` from `source` (a STATE_REQUEST went out).
  void expect(uint32_t id, int source, double nowMs);
  void reset();  // frees the buffer
  // A STATE_CHUNK. Ok (new), Duplicate (known, same bytes), TransferUnexpected (not the transfer
  // expected, or from another peer), TransferTooLarge (total > maxBytes), TransferCorrupt (total
  // differs from the first chunk's, or a known chunk with other bytes).
  RxResult onChunk(int from, const Message& m, size_t maxBytes, double nowMs);
  bool complete() const { return chunks_ > 0 && received_ == chunks_; }
  bool started() const { return chunks_ > 0; }
  const uint8_t* data() const { return buf_.data(); }
  size_t size() const { return buf_.size(); }
  uint32_t firstMissing() const { return firstMissing_; }
  uint32_t bitmap() const;
  double lastChunkMs() const { return lastChunkMs_; }
  double expectedSinceMs() const { return sinceMs_; }
  size_t bytes() const { return buf_.capacity() + got_.capacity(); }

 private:
  uint32_t id_ = 0;
  int source_ = -1;
  std::vector<uint8_t> buf_;
  std::vector<uint8_t> got_;
  uint32_t chunks_ = 0, received_ = 0, firstMissing_ = 0;
  double lastChunkMs_ = 0, sinceMs_ = 0;
};

}  // namespace p2psync
