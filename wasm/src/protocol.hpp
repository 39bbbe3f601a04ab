// The P2P wire codec: byte-compatible with the reference client's binary protocol.
// Big-endian for every multi-byte field; byte 0 is the message type.
// Encoding writes into a caller-provided buffer; decoding fills a plain struct.
// Neither allocates.
#pragma once
#include <cstddef>
#include <cstdint>

namespace p2psync {

enum class MsgType : uint8_t {
  Input = 0x01,
  Ping = 0x02,
  Pong = 0x03,
  Keepalive = 0x04,
  EpisodeEnd = 0x05,
  EpisodeReady = 0x06,
  StateHash = 0x07,
  InputRequest = 0x12,
  InputResponse = 0x13,
  FocusState = 0x14,
  // p2psync's own (the reference has no such message): time sync and input-delay agreement.
  //   u32 episode, u8 proposedDelay (0..30), u8 flags (kQualityMargin | kQualityProposal), i16 margin (1/16 frame),
  //   u32 frame — 13 bytes. margin: how many frames before use the receiver's inputs arrived at the
  //   sender on average (valid with kQualityMargin); proposedDelay: the sender's input-delay
  //   proposal for `episode`; frame: the sender's next frame.
  Quality = 0x15,
  // p2psync's own: state transfer (rejoin after a reload, desync recovery; state_transfer.hpp).
  //   STATE_REQUEST u32 transferId (!= 0), u8 reason (1 rejoin, 2 resync), u8 source (the player
  //                 asked to send its state), u32 episode, u32 frame (resync: the desync's
  //                 episode-relative hash frame; else 0) — 15 bytes
  //   STATE_CHUNK   u32 transferId, u32 total (bytes of the whole transfer, >= 1), u32 index
  //                 (chunk number: bytes index*1024 ..), u16 n (1..1024: exactly the chunk's
  //                 length), n bytes — 15 + n
  //   STATE_ACK     u32 transferId, u8 status (0 receiving, 1 complete, 2 rejected),
  //                 u32 firstMissing (chunk index), u32 bitmap (bit i: chunk firstMissing+1+i
  //                 received) — 14 bytes
  StateRequest = 0x16,
  StateChunk = 0x17,
  StateAck = 0x18,
};
constexpr uint8_t kTransferRejoin = 1;
constexpr uint8_t kTransferResync = 2;
constexpr uint8_t kAckReceiving = 0, kAckComplete = 1, kAckRejected = 2;
constexpr size_t kTransferChunkBytes = 1024;
constexpr uint8_t kQualityMargin = 1;    // the margin field is valid
constexpr uint8_t kQualityProposal = 2;  // the delay field is the sender's proposal for `episode`

// Named decode results. Values are stable: JS sees their names.
enum class DecodeError : uint8_t {
  Ok = 0,
  Empty,
  UnknownType,
  Truncated,
  TrailingBytes,
  BadCount,
  BadFlags,
  NonMonotonicFrames,
  FrameAfterHeader,
  BadTimestamp,
  BadRange,
  BadValue,
  Count_
};
const char* decodeErrorName(DecodeError e);

constexpr int kMaxInputsPerPacket = 15;     // INPUT count n: 1..15
constexpr int kMaxInputDelay = 30;          // frames
// INPUT flags / INPUT_RESPONSE count bit 15: the entries were generated while the sender's page
// was not focused (hidden). The focus state travels with each input, so every peer records the
// same focus for every frame. (The reference client writes 0 there and ignores it.)
constexpr uint8_t kInputUnfocused = 1;
constexpr int kMaxResponseInputs = 256;     // INPUT_RESPONSE n: 1..256
constexpr int kMaxRequestFrames = 256;      // INPUT_REQUEST covers at most 256 frames
constexpr size_t kMaxPacketBytes = 5 + 5 * kMaxResponseInputs;  // largest message (INPUT_RESPONSE)

struct FrameAction {
  uint32_t frame;
  uint8_t action;
};

// One decoded message. Only the fields of `type` are meaningful.
struct Message {
  MsgType type = MsgType::Keepalive;
  uint16_t playerIndex = 0;   // INPUT, INPUT_RESPONSE
  uint32_t frame = 0;         // INPUT (header frame), EPISODE_END, STATE_HASH, FOCUS_STATE, QUALITY
  uint32_t episode = 0;       // EPISODE_END, EPISODE_READY, QUALITY
  uint64_t digest = 0;        // EPISODE_READY, STATE_HASH (the 8 big-endian bytes as a u64)
  double timestamp = 0;       // PING, PONG
  uint32_t start = 0, end = 0;  // INPUT_REQUEST (inclusive)
  uint8_t flags = 0;          // INPUT, INPUT_RESPONSE: 0 or kInputUnfocused
  uint8_t focused = 0;        // FOCUS_STATE
  uint8_t delay = 0;          // QUALITY: proposed input delay (0..30)
  int16_t margin = 0;         // QUALITY: mean input margin, 1/16 frame units
  uint32_t transferId = 0;    // STATE_REQUEST, STATE_CHUNK, STATE_ACK
  uint32_t total = 0;         // STATE_CHUNK: bytes of the whole transfer
  uint32_t index = 0;         // STATE_CHUNK: chunk number; STATE_ACK: the first missing chunk
  uint32_t bitmap = 0;        // STATE_ACK: chunks index+1 .. index+32 received
  uint8_t reason = 0;         // STATE_REQUEST: kTransferRejoin / kTransferResync
  uint8_t source = 0;         // STATE_REQUEST: the player asked for its state
  uint8_t status = 0;         // STATE_ACK: kAck*
  const uint8_t* data = nullptr;  // STATE_CHUNK: the chunk's bytes (decode: points into the input)
  uint16_t dataLen = 0;       // STATE_CHUNK: 1..kTransferChunkBytes
  uint16_t count = 0;         // number of valid entries in `inputs`
  FrameAction inputs[kMaxResponseInputs];  // INPUT (<=15) or INPUT_RESPONSE (<=256), oldest first
};

// Decodes `len` bytes into `out`. Never throws; on error `out` is unspecified.
DecodeError decode(const uint8_t* data, size_t len, Message& out);

// Size in bytes that `m` encodes to, or 0 if `m` cannot be encoded (see validateForEncode).
size_t encodedSize(const Message& m);

// Checks that `m` can be encoded. Returns nullptr when it can, else the name of the first
// offending field ("inputs", "inputs.frame", "count", "flags", "timestamp", "start", "end",
// "focused", "type", ...).
const char* validateForEncode(const Message& m);

// Encodes `m` into `out` (capacity `cap`). Returns the number of bytes written, or 0 if `m`
// is invalid or `cap` is too small. Never writes a partial message.
size_t encode(const Message& m, uint8_t* out, size_t cap);

// Digest helpers: 16 lowercase hex chars <-> u64.
void digestToHex(uint64_t d, char out[17]);
bool hexToDigest(const char* s, size_t len, uint64_t& out);

}  // namespace p2psync
