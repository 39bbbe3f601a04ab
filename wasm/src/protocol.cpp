// P2P wire codec (see protocol.hpp). Big-endian, byte 0 = type. No allocation, no exceptions.
//
// Decode error precedence (the first failing check wins):
//   all types : len == 0 -> EMPTY; unknown type byte -> UNKNOWN_TYPE.
//   INPUT     : len < 9 (header) -> TRUNCATED; count n not in 1..15 -> BAD_COUNT;
//               flags not 0 / kInputUnfocused -> BAD_FLAGS; len < 9+5n -> TRUNCATED;
//               len > 9+5n -> TRAILING_BYTES;
//               entry frames not strictly ascending (anywhere) -> NON_MONOTONIC_FRAMES;
//               an entry frame > header frame -> FRAME_AFTER_HEADER.
//   INPUT_RESPONSE : len < 5 (header) -> TRUNCATED; n (the count's low 15 bits; bit 15 is the
//               unfocused flag) not in 1..256 -> BAD_COUNT;
//               len < 5+5n -> TRUNCATED; len > 5+5n -> TRAILING_BYTES;
//               entry frames not strictly ascending -> NON_MONOTONIC_FRAMES.
//   fixed-size types (PING, PONG, KEEPALIVE, EPISODE_END, EPISODE_READY, STATE_HASH,
//               INPUT_REQUEST, FOCUS_STATE): len < size -> TRUNCATED; len > size -> TRAILING_BYTES;
//               then the value check:
//                 PING/PONG     : NaN, +-Inf or < 0 -> BAD_TIMESTAMP (-0.0 is accepted: not < 0,
//                                 and it re-encodes to the same bytes);
//                 INPUT_REQUEST : start > end or end-start+1 > 256 -> BAD_RANGE;
//                 FOCUS_STATE   : focused not 0/1 -> BAD_VALUE;
//                 QUALITY       : flags outside kQualityMargin|kQualityProposal -> BAD_FLAGS;
//                                 delay > 30 -> BAD_VALUE.
//                 STATE_REQUEST : transferId 0 or reason not 1/2 -> BAD_VALUE.
//                 STATE_ACK     : transferId 0 or status > 2 -> BAD_VALUE.
//   STATE_CHUNK : len < 15 (header) -> TRUNCATED; n not in 1..1024 -> BAD_COUNT; len < 15+n ->
//               TRUNCATED; len > 15+n -> TRAILING_BYTES; transferId 0 or total 0 -> BAD_VALUE;
//               index * 1024 >= total -> BAD_RANGE; n != the chunk's length
//               (min(1024, total - index*1024)) -> BAD_COUNT.
//
// The codec is canonical: every byte string that decodes OK re-encodes to exactly the same bytes.
//
// validateForEncode field names (first failing check wins):
//   unknown type -> "type";
//   INPUT: count not in 1..15 -> "count"; flags not 0/1 -> "flags";
//          frames not strictly ascending or any frame > header frame -> "inputs.frame";
//   INPUT_RESPONSE: count not in 1..256 -> "count"; flags not 0/1 -> "flags";
//          frames not strictly ascending -> "inputs.frame";
//   PING/PONG: NaN/Inf/negative -> "timestamp";
//   INPUT_REQUEST: start > end or more than 256 frames -> "range";
//   FOCUS_STATE: focused not 0/1 -> "focused".
//   QUALITY: flags outside 0..3 -> "flags"; delay > 30 -> "delay".
//   STATE_REQUEST: transferId 0 -> "transferId"; reason not 1/2 -> "reason".
//   STATE_CHUNK: transferId 0 -> "transferId"; total 0 -> "total"; index out of range -> "index";
//          n not the chunk's length, or no data -> "count".
//   STATE_ACK: transferId 0 -> "transferId"; status > 2 -> "status".
#include "protocol.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace p2psync {

namespace {

inline uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint32_t rd32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) |
         (static_cast<uint32_t>(p[2]) << 8) | static_cast<uint32_t>(p[3]);
}
inline uint64_t rd64(const uint8_t* p) {
  return (static_cast<uint64_t>(rd32(p)) << 32) | static_cast<uint64_t>(rd32(p + 4));
}
inline double rdf64(const uint8_t* p) {
  uint64_t bits = rd64(p);
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

inline void wr16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void wr32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
inline void wr64(uint8_t* p, uint64_t v) {
  wr32(p, static_cast<uint32_t>(v >> 32));
  wr32(p + 4, static_cast<uint32_t>(v));
}
inline void wrf64(uint8_t* p, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  wr64(p, bits);
}

inline bool validTimestamp(double t) { return std::isfinite(t) && !(t < 0.0); }

inline bool validRange(uint32_t start, uint32_t end) {
  return start <= end && static_cast<uint64_t>(end) - start + 1 <= kMaxRequestFrames;
}

// Fixed total size for types that have one; 0 for variable-size or unknown types.
size_t fixedSize(uint8_t type) {
  switch (static_cast<MsgType>(type)) {
    case MsgType::Ping:
    case MsgType::Pong:
      return 9;
    case MsgType::Keepalive:
      return 1;
    case MsgType::EpisodeEnd:
      return 9;
    case MsgType::EpisodeReady:
    case MsgType::StateHash:
      return 13;
    case MsgType::InputRequest:
      return 9;
    case MsgType::FocusState:
      return 6;
    case MsgType::Quality:
      return 13;
    case MsgType::StateRequest:
      return 15;
    case MsgType::StateAck:
      return 14;
    default:
      return 0;
  }
}

bool knownType(uint8_t t) {
  switch (static_cast<MsgType>(t)) {
    case MsgType::Input:
    case MsgType::Ping:
    case MsgType::Pong:
    case MsgType::Keepalive:
    case MsgType::EpisodeEnd:
    case MsgType::EpisodeReady:
    case MsgType::StateHash:
    case MsgType::InputRequest:
    case MsgType::InputResponse:
    case MsgType::FocusState:
    case MsgType::Quality:
    case MsgType::StateRequest:
    case MsgType::StateChunk:
    case MsgType::StateAck:
      return true;
  }
  return false;
}

// Reads n (frame, action) entries starting at p; returns false if frames are not strictly
// ascending.
bool readEntries(const uint8_t* p, size_t n, FrameAction* out) {
  bool ascending = true;
  for (size_t i = 0; i < n; ++i, p += 5) {
    out[i].frame = rd32(p);
    out[i].action = p[4];
    if (i > 0 && out[i].frame <= out[i - 1].frame) ascending = false;
  }
  return ascending;
}

// The length of chunk `index` of a `total`-byte transfer (0 when the index is out of range).
size_t chunkLength(uint32_t total, uint32_t index) {
  const uint64_t off = static_cast<uint64_t>(index) * kTransferChunkBytes;
  if (total == 0 || off >= total) return 0;
  return static_cast<size_t>(std::min<uint64_t>(kTransferChunkBytes, total - off));
}

bool entriesAscending(const FrameAction* in, size_t n) {
  for (size_t i = 1; i < n; ++i)
    if (in[i].frame <= in[i - 1].frame) return false;
  return true;
}

}  // namespace

const char* decodeErrorName(DecodeError e) {
  switch (e) {
    case DecodeError::Ok: return "OK";
    case DecodeError::Empty: return "EMPTY";
    case DecodeError::UnknownType: return "UNKNOWN_TYPE";
    case DecodeError::Truncated: return "TRUNCATED";
    case DecodeError::TrailingBytes: return "TRAILING_BYTES";
    case DecodeError::BadCount: return "BAD_COUNT";
    case DecodeError::BadFlags: return "BAD_FLAGS";
    case DecodeError::NonMonotonicFrames: return "NON_MONOTONIC_FRAMES";
    case DecodeError::FrameAfterHeader: return "FRAME_AFTER_HEADER";
    case DecodeError::BadTimestamp: return "BAD_TIMESTAMP";
    case DecodeError::BadRange: return "BAD_RANGE";
    case DecodeError::BadValue: return "BAD_VALUE";
    case DecodeError::Count_: break;
  }
  return "UNKNOWN";
}

DecodeError decode(const uint8_t* data, size_t len, Message& out) {
  if (len == 0 || data == nullptr) return DecodeError::Empty;
  const uint8_t t = data[0];
  if (!knownType(t)) return DecodeError::UnknownType;
  const MsgType type = static_cast<MsgType>(t);
  out.type = type;
  out.count = 0;

  if (type == MsgType::Input) {
    if (len < 9) return DecodeError::Truncated;
    const size_t n = data[7];
    if (n < 1 || n > static_cast<size_t>(kMaxInputsPerPacket)) return DecodeError::BadCount;
    if (data[8] != 0 && data[8] != kInputUnfocused) return DecodeError::BadFlags;
    const size_t need = 9 + 5 * n;
    if (len < need) return DecodeError::Truncated;
    if (len > need) return DecodeError::TrailingBytes;
    out.playerIndex = rd16(data + 1);
    out.frame = rd32(data + 3);
    out.flags = data[8];
    out.count = static_cast<uint16_t>(n);
    if (!readEntries(data + 9, n, out.inputs)) return DecodeError::NonMonotonicFrames;
    if (out.inputs[n - 1].frame > out.frame) return DecodeError::FrameAfterHeader;
    return DecodeError::Ok;
  }

  if (type == MsgType::InputResponse) {
    if (len < 5) return DecodeError::Truncated;
    const uint16_t raw = rd16(data + 3);
    const size_t n = raw & 0x7fffu;
    if (n < 1 || n > static_cast<size_t>(kMaxResponseInputs)) return DecodeError::BadCount;
    const size_t need = 5 + 5 * n;
    if (len < need) return DecodeError::Truncated;
    if (len > need) return DecodeError::TrailingBytes;
    out.playerIndex = rd16(data + 1);
    out.flags = (raw & 0x8000u) ? kInputUnfocused : 0;
    out.count = static_cast<uint16_t>(n);
    if (!readEntries(data + 5, n, out.inputs)) return DecodeError::NonMonotonicFrames;
    return DecodeError::Ok;
  }

  if (type == MsgType::StateChunk) {
    if (len < 15) return DecodeError::Truncated;
    const size_t n = rd16(data + 13);
    if (n < 1 || n > kTransferChunkBytes) return DecodeError::BadCount;
    if (len < 15 + n) return DecodeError::Truncated;
    if (len > 15 + n) return DecodeError::TrailingBytes;
    out.transferId = rd32(data + 1);
    out.total = rd32(data + 5);
    out.index = rd32(data + 9);
    out.dataLen = static_cast<uint16_t>(n);
    out.data = data + 15;
    if (out.transferId == 0 || out.total == 0) return DecodeError::BadValue;
    const size_t expect = chunkLength(out.total, out.index);
    if (expect == 0) return DecodeError::BadRange;
    if (n != expect) return DecodeError::BadCount;
    return DecodeError::Ok;
  }

  const size_t size = fixedSize(t);
  if (len < size) return DecodeError::Truncated;
  if (len > size) return DecodeError::TrailingBytes;
  const uint8_t* p = data + 1;
  switch (type) {
    case MsgType::Ping:
    case MsgType::Pong:
      out.timestamp = rdf64(p);
      if (!validTimestamp(out.timestamp)) return DecodeError::BadTimestamp;
      break;
    case MsgType::Keepalive:
      break;
    case MsgType::EpisodeEnd:
      out.frame = rd32(p);
      out.episode = rd32(p + 4);
      break;
    case MsgType::EpisodeReady:
      out.episode = rd32(p);
      out.digest = rd64(p + 4);
      break;
    case MsgType::StateHash:
      out.frame = rd32(p);
      out.digest = rd64(p + 4);
      break;
    case MsgType::InputRequest:
      out.start = rd32(p);
      out.end = rd32(p + 4);
      if (!validRange(out.start, out.end)) return DecodeError::BadRange;
      break;
    case MsgType::FocusState:
      out.focused = p[0];
      out.frame = rd32(p + 1);
      if (out.focused > 1) return DecodeError::BadValue;
      break;
    case MsgType::Quality:
      out.episode = rd32(p);
      out.delay = p[4];
      out.flags = p[5];
      out.margin = static_cast<int16_t>(rd16(p + 6));
      out.frame = rd32(p + 8);
      if ((out.flags & ~(kQualityMargin | kQualityProposal)) != 0) return DecodeError::BadFlags;
      if (out.delay > kMaxInputDelay) return DecodeError::BadValue;
      break;
    case MsgType::StateRequest:
      out.transferId = rd32(p);
      out.reason = p[4];
      out.source = p[5];
      out.episode = rd32(p + 6);
      out.frame = rd32(p + 10);
      if (out.transferId == 0 || (out.reason != kTransferRejoin && out.reason != kTransferResync)) return DecodeError::BadValue;
      break;
    case MsgType::StateAck:
      out.transferId = rd32(p);
      out.status = p[4];
      out.index = rd32(p + 5);
      out.bitmap = rd32(p + 9);
      if (out.transferId == 0 || out.status > kAckRejected) return DecodeError::BadValue;
      break;
    default:
      return DecodeError::UnknownType;  // unreachable: variable-size types handled above
  }
  return DecodeError::Ok;
}

const char* validateForEncode(const Message& m) {
  const uint8_t t = static_cast<uint8_t>(m.type);
  if (!knownType(t)) return "type";
  switch (m.type) {
    case MsgType::Input:
      if (m.count < 1 || m.count > kMaxInputsPerPacket) return "count";
      if (m.flags != 0 && m.flags != kInputUnfocused) return "flags";
      if (!entriesAscending(m.inputs, m.count)) return "inputs.frame";
      if (m.inputs[m.count - 1].frame > m.frame) return "inputs.frame";
      return nullptr;
    case MsgType::InputResponse:
      if (m.count < 1 || m.count > kMaxResponseInputs) return "count";
      if (m.flags != 0 && m.flags != kInputUnfocused) return "flags";
      if (!entriesAscending(m.inputs, m.count)) return "inputs.frame";
      return nullptr;
    case MsgType::Ping:
    case MsgType::Pong:
      return validTimestamp(m.timestamp) ? nullptr : "timestamp";
    case MsgType::InputRequest:
      return validRange(m.start, m.end) ? nullptr : "range";
    case MsgType::FocusState:
      return m.focused <= 1 ? nullptr : "focused";
    case MsgType::Quality:
      if ((m.flags & ~(kQualityMargin | kQualityProposal)) != 0) return "flags";
      return m.delay <= kMaxInputDelay ? nullptr : "delay";
    case MsgType::StateRequest:
      if (m.transferId == 0) return "transferId";
      return m.reason == kTransferRejoin || m.reason == kTransferResync ? nullptr : "reason";
    case MsgType::StateChunk:
      if (m.transferId == 0) return "transferId";
      if (m.total == 0) return "total";
      if (chunkLength(m.total, m.index) == 0) return "index";
      if (m.data == nullptr || m.dataLen != chunkLength(m.total, m.index)) return "count";
      return nullptr;
    case MsgType::StateAck:
      if (m.transferId == 0) return "transferId";
      return m.status <= kAckRejected ? nullptr : "status";
    default:
      return nullptr;
  }
}

size_t encodedSize(const Message& m) {
  if (validateForEncode(m) != nullptr) return 0;
  switch (m.type) {
    case MsgType::Input: return 9 + 5 * static_cast<size_t>(m.count);
    case MsgType::InputResponse: return 5 + 5 * static_cast<size_t>(m.count);
    case MsgType::StateChunk: return 15 + static_cast<size_t>(m.dataLen);
    default: return fixedSize(static_cast<uint8_t>(m.type));
  }
}

size_t encode(const Message& m, uint8_t* out, size_t cap) {
  const size_t size = encodedSize(m);
  if (size == 0 || out == nullptr || cap < size) return 0;
  out[0] = static_cast<uint8_t>(m.type);
  uint8_t* p = out + 1;
  switch (m.type) {
    case MsgType::Input:
      wr16(p, m.playerIndex);
      wr32(p + 2, m.frame);
      p[6] = static_cast<uint8_t>(m.count);
      p[7] = m.flags;
      p += 8;
      for (size_t i = 0; i < m.count; ++i, p += 5) {
        wr32(p, m.inputs[i].frame);
        p[4] = m.inputs[i].action;
      }
      break;
    case MsgType::InputResponse:
      wr16(p, m.playerIndex);
      wr16(p + 2, static_cast<uint16_t>(m.count | (m.flags ? 0x8000u : 0u)));
      p += 4;
      for (size_t i = 0; i < m.count; ++i, p += 5) {
        wr32(p, m.inputs[i].frame);
        p[4] = m.inputs[i].action;
      }
      break;
    case MsgType::Ping:
    case MsgType::Pong:
      wrf64(p, m.timestamp);
      break;
    case MsgType::Keepalive:
      break;
    case MsgType::EpisodeEnd:
      wr32(p, m.frame);
      wr32(p + 4, m.episode);
      break;
    case MsgType::EpisodeReady:
      wr32(p, m.episode);
      wr64(p + 4, m.digest);
      break;
    case MsgType::StateHash:
      wr32(p, m.frame);
      wr64(p + 4, m.digest);
      break;
    case MsgType::InputRequest:
      wr32(p, m.start);
      wr32(p + 4, m.end);
      break;
    case MsgType::FocusState:
      p[0] = m.focused;
      wr32(p + 1, m.frame);
      break;
    case MsgType::Quality:
      wr32(p, m.episode);
      p[4] = m.delay;
      p[5] = m.flags;
      wr16(p + 6, static_cast<uint16_t>(m.margin));
      wr32(p + 8, m.frame);
      break;
    case MsgType::StateRequest:
      wr32(p, m.transferId);
      p[4] = m.reason;
      p[5] = m.source;
      wr32(p + 6, m.episode);
      wr32(p + 10, m.frame);
      break;
    case MsgType::StateChunk:
      wr32(p, m.transferId);
      wr32(p + 4, m.total);
      wr32(p + 8, m.index);
      wr16(p + 12, m.dataLen);
      std::memcpy(p + 14, m.data, m.dataLen);
      break;
    case MsgType::StateAck:
      wr32(p, m.transferId);
      p[4] = m.status;
      wr32(p + 5, m.index);
      wr32(p + 9, m.bitmap);
      break;
  }
  return size;
}

void digestToHex(uint64_t d, char out[17]) {
  static const char kHex[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i) {
    out[i] = kHex[d & 0xF];
    d >>= 4;
  }
  out[16] = '\0';
}

bool hexToDigest(const char* s, size_t len, uint64_t& out) {
  if (s == nullptr || len != 16) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < 16; ++i) {
    const char c = s[i];
    unsigned nib;
    if (c >= '0' && c <= '9') nib = static_cast<unsigned>(c - '0');
    else if (c >= 'a' && c <= 'f') nib = static_cast<unsigned>(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') nib = static_cast<unsigned>(c - 'A' + 10);
    else return false;
    v = (v << 4) | nib;
  }
  out = v;
  return true;
}

}  // namespace p2psync
