#include "state_transfer.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "state_hash.hpp"

namespace p2psync {

namespace {

uint16_t rd16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t rd32(const uint8_t* p) {
  return (static_cast<uint32_t>(p[0]) << 24) | (static_cast<uint32_t>(p[1]) << 16) | (static_cast<uint32_t>(p[2]) << 8) |
         static_cast<uint32_t>(p[3]);
}
uint64_t rd64(const uint8_t* p) { return (static_cast<uint64_t>(rd32(p)) << 32) | rd32(p + 4); }

// A bounds-checked cursor over the blob.
struct Reader {
  const uint8_t* p;
  size_t left;
  bool ok = true;
  bool need(size_t n) {
    if (!ok || left < n) ok = false;
    return ok;
  }
  uint8_t u8() {
    if (!need(1)) return 0;
    --left;
    return *p++;
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    const uint16_t v = rd16(p);
    p += 2;
    left -= 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    const uint32_t v = rd32(p);
    p += 4;
    left -= 4;
    return v;
  }
  uint64_t u64() {
    if (!need(8)) return 0;
    const uint64_t v = rd64(p);
    p += 8;
    left -= 8;
    return v;
  }
  const uint8_t* bytes(size_t n) {
    if (!need(n)) return nullptr;
    const uint8_t* q = p;
    p += n;
    left -= n;
    return q;
  }
};

}  // namespace

const char* transferErrorName(TransferError e) {
  switch (e) {
    case TransferError::Ok: return "ok";
    case TransferError::Truncated: return "truncated";
    case TransferError::BadMagic: return "bad-magic";
    case TransferError::BadVersion: return "bad-version";
    case TransferError::BadHash: return "bad-hash";
    case TransferError::BadShape: return "bad-shape";
    case TransferError::BadFrames: return "bad-frames";
    case TransferError::BadState: return "bad-state";
    case TransferError::TrailingBytes: return "trailing-bytes";
  }
  return "unknown";
}

TransferError parseTransfer(const uint8_t* data, size_t len, int numPlayers, int numBots, TransferView& v) {
  v = TransferView{};
  if (data == nullptr || len < 8 + 4) return TransferError::Truncated;
  if (rd32(data) != kTransferMagic) return TransferError::BadMagic;
  // The blob hash covers everything before it: checked first, so nothing below reads bytes that
  // were damaged or forged in transit (a forged blob with a correct hash still passes every check).
  if (hashBytes(data, len - 8) != rd64(data + len - 8)) return TransferError::BadHash;
  Reader r{data + 4, len - 8 - 4};
  if (r.u8() != kTransferVersion) return r.ok ? TransferError::BadVersion : TransferError::Truncated;
  v.reason = r.u8();
  v.numPlayers = r.u8();
  v.numBots = r.u8();
  v.episode = r.u32();
  v.episodeStart = r.u32();
  v.snapshotFrame = r.u32();
  v.senderFrame = r.u32();
  v.inputDelay = r.u8();
  const uint8_t reserved8 = r.u8();
  const uint16_t reserved16 = r.u16();
  const uint64_t downBits = r.u64();
  std::memcpy(&v.downMs, &downBits, sizeof v.downMs);
  v.delayCount = r.u16();
  v.delays = r.bytes(v.delayCount);
  v.stateHash = r.u64();
  v.stateLen = r.u32();
  v.state = r.bytes(v.stateLen);
  if (!r.ok) return TransferError::Truncated;
  if ((v.reason != kTransferRejoin && v.reason != kTransferResync) || v.numPlayers != numPlayers || v.numBots != numBots ||
      reserved8 != 0 || reserved16 != 0 || v.inputDelay > kMaxInputDelay || !std::isfinite(v.downMs) || v.downMs < 0 ||
      v.delayCount > 4096)
    return TransferError::BadShape;
  for (uint16_t i = 0; i < v.delayCount; ++i)
    if (v.delays[i] > kMaxInputDelay) return TransferError::BadShape;
  if (v.snapshotFrame < v.episodeStart || v.senderFrame < v.snapshotFrame || v.snapshotFrame > kMaxWireFrame ||
      v.senderFrame > kMaxWireFrame)
    return TransferError::BadFrames;
  if (v.stateLen == 0) return TransferError::BadState;
  for (int p = 0; p < numPlayers; ++p) {
    TransferView::Inputs& in = v.inputs[p];
    in.from = r.u32();
    in.count = r.u16();
    if (!r.ok) return TransferError::Truncated;
    if (in.count > kTransferMaxInputs) return TransferError::BadShape;
    in.entries = r.bytes(static_cast<size_t>(in.count) * 2);
    if (!r.ok) return TransferError::Truncated;
    if (in.count > 0 && (in.from < v.episodeStart || in.from + in.count - 1 > kMaxWireFrame)) return TransferError::BadFrames;
    for (uint16_t i = 0; i < in.count; ++i)
      if (in.entries[2 * i + 1] > 1) return TransferError::BadShape;
  }
  v.botsFrom = r.u32();
  v.botCount = r.u16();
  if (!r.ok) return TransferError::Truncated;
  if (v.botCount > kTransferMaxInputs || (numBots == 0 && v.botCount != 0)) return TransferError::BadShape;
  v.bots = r.bytes(static_cast<size_t>(v.botCount) * static_cast<size_t>(numBots));
  if (!r.ok) return TransferError::Truncated;
  if (v.botCount > 0 && (v.botsFrom < v.episodeStart || v.botsFrom + v.botCount - 1 > kMaxWireFrame)) return TransferError::BadFrames;
  v.attachmentLen = r.u32();
  v.attachment = r.bytes(v.attachmentLen);
  if (!r.ok) return TransferError::Truncated;
  if (r.left != 0) return TransferError::TrailingBytes;
  return TransferError::Ok;
}

// ------------------------------------------------------------------------------------- writer

void TransferWriter::u16(uint16_t v) {
  out_.push_back(static_cast<uint8_t>(v >> 8));
  out_.push_back(static_cast<uint8_t>(v));
}
void TransferWriter::u32(uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out_.push_back(static_cast<uint8_t>(v >> s));
}
void TransferWriter::u64(uint64_t v) {
  u32(static_cast<uint32_t>(v >> 32));
  u32(static_cast<uint32_t>(v));
}

void TransferWriter::header(uint8_t reason, int numPlayers, int numBots, uint32_t episode, Frame episodeStart, Frame snapshotFrame,
                            Frame senderFrame, int inputDelay, double downMs, const std::vector<int>& delays) {
  u32(kTransferMagic);
  out_.push_back(kTransferVersion);
  out_.push_back(reason);
  out_.push_back(static_cast<uint8_t>(numPlayers));
  out_.push_back(static_cast<uint8_t>(numBots));
  u32(episode);
  u32(static_cast<uint32_t>(episodeStart));
  u32(static_cast<uint32_t>(snapshotFrame));
  u32(static_cast<uint32_t>(senderFrame));
  out_.push_back(static_cast<uint8_t>(inputDelay));
  out_.push_back(0);
  u16(0);
  uint64_t bits;
  const double d = std::isfinite(downMs) && downMs > 0 ? downMs : 0.0;
  std::memcpy(&bits, &d, sizeof bits);
  u64(bits);
  const size_t n = std::min<size_t>(delays.size(), 4096);
  u16(static_cast<uint16_t>(n));
  for (size_t i = 0; i < n; ++i) out_.push_back(static_cast<uint8_t>(std::clamp(delays[i], 0, kMaxInputDelay)));
}

void TransferWriter::state(const uint8_t* data, size_t len, uint64_t hash) {
  u64(hash);
  u32(static_cast<uint32_t>(len));
  out_.insert(out_.end(), data, data + len);
}

void TransferWriter::attachment(const uint8_t* data, size_t len) {
  u32(static_cast<uint32_t>(len));
  if (len) out_.insert(out_.end(), data, data + len);
}

bool TransferWriter::finish(size_t maxBytes) {
  if (out_.size() + 8 > maxBytes) {
    out_.clear();
    return false;
  }
  u64(hashBytes(out_.data(), out_.size()));
  return true;
}

// ------------------------------------------------------------------------------------- sending

void TransferOut::start(uint32_t id, std::vector<uint8_t>&& blob, double nowMs) {
  active_ = true;
  id_ = id;
  blob_ = std::move(blob);
  chunks_ = static_cast<uint32_t>((blob_.size() + kTransferChunkBytes - 1) / kTransferChunkBytes);
  acked_.assign(chunks_, 0);
  sentMs_.assign(chunks_, -1.0);
  firstMissing_ = 0;
  lastHeardMs_ = nowMs;
}

void TransferOut::stop() {
  active_ = false;
  id_ = 0;
  std::vector<uint8_t>().swap(blob_);
  std::vector<uint8_t>().swap(acked_);
  std::vector<double>().swap(sentMs_);
  chunks_ = firstMissing_ = 0;
}

bool TransferOut::onAck(uint32_t firstMissing, uint32_t bitmap, double nowMs) {
  if (!active_ || firstMissing > chunks_) return false;
  lastHeardMs_ = nowMs;
  // Chunks below firstMissing are all in; the receiver's view only grows (a late, older ACK
  // changes nothing).
  for (uint32_t i = firstMissing_; i < firstMissing; ++i) acked_[i] = 1;
  for (uint32_t b = 0; b < 32; ++b) {
    const uint64_t i = static_cast<uint64_t>(firstMissing) + 1 + b;
    if (i < chunks_ && (bitmap >> b & 1u)) acked_[static_cast<size_t>(i)] = 1;
  }
  while (firstMissing_ < chunks_ && acked_[firstMissing_]) ++firstMissing_;
  return true;
}

// ------------------------------------------------------------------------------------- receiving

void TransferIn::expect(uint32_t id, int source, double nowMs) {
  reset();
  id_ = id;
  source_ = source;
  sinceMs_ = lastChunkMs_ = nowMs;
}

void TransferIn::reset() {
  id_ = 0;
  source_ = -1;
  std::vector<uint8_t>().swap(buf_);
  std::vector<uint8_t>().swap(got_);
  chunks_ = received_ = firstMissing_ = 0;
}

RxResult TransferIn::onChunk(int from, const Message& m, size_t maxBytes, double nowMs) {
  if (id_ == 0 || m.transferId != id_ || from != source_) return RxResult::TransferUnexpected;
  if (m.total > maxBytes) return RxResult::TransferTooLarge;
  if (chunks_ == 0) {
    // The first chunk fixes the size: at most maxBytes (config), allocated once.
    buf_.assign(m.total, 0);
    chunks_ = static_cast<uint32_t>((static_cast<size_t>(m.total) + kTransferChunkBytes - 1) / kTransferChunkBytes);
    got_.assign(chunks_, 0);
  } else if (m.total != buf_.size()) {
    return RxResult::TransferCorrupt;
  }
  lastChunkMs_ = nowMs;
  uint8_t* dst = buf_.data() + static_cast<size_t>(m.index) * kTransferChunkBytes;
  if (got_[m.index]) return std::memcmp(dst, m.data, m.dataLen) == 0 ? RxResult::Duplicate : RxResult::TransferCorrupt;
  std::memcpy(dst, m.data, m.dataLen);
  got_[m.index] = 1;
  ++received_;
  while (firstMissing_ < chunks_ && got_[firstMissing_]) ++firstMissing_;
  return RxResult::Ok;
}

uint32_t TransferIn::bitmap() const {
  uint32_t b = 0;
  for (uint32_t k = 0; k < 32; ++k) {
    const uint64_t i = static_cast<uint64_t>(firstMissing_) + 1 + k;
    if (i < chunks_ && got_[static_cast<size_t>(i)]) b |= 1u << k;
  }
  return b;
}

}  // namespace p2psync
