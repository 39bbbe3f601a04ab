// libFuzzer target: a state-transfer blob (state_transfer.hpp) from a peer is untrusted.
//   byte 0 of the input chooses the mode: odd — the rest is re-sealed with a valid blob hash first
//   (so that the field checks behind the hash are reached, as a forged blob would); even — as is.
// parseTransfer must never crash or read out of bounds (ASan), and whatever it accepts must be
// self-consistent: every view inside the input, the counts within their limits. The same bytes cut
// into STATE_CHUNKs and fed to a TransferIn in a shuffled order must reassemble exactly.
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I wasm/src -I build/native/thirdparty-include \
//     tests/fuzz/fuzz_transfer.cpp wasm/src/state_transfer.cpp wasm/src/state_hash.cpp -o /tmp/fuzz_transfer
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "state_hash.hpp"
#include "state_transfer.hpp"

using namespace p2psync;

namespace {
bool inside(const uint8_t* p, size_t n, const uint8_t* base, size_t len) {
  return n == 0 || (p != nullptr && p >= base && p + n <= base + len);
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> b(data + 1, data + size);
  if ((data[0] & 1) && b.size() >= 12) {
    const uint64_t h = hashBytes(b.data(), b.size() - 8);
    for (int i = 0; i < 8; ++i) b[b.size() - 8 + static_cast<size_t>(i)] = static_cast<uint8_t>(h >> (56 - 8 * i));
  }
  const int players = 2 + (data[0] >> 1) % 3;
  const int bots = (data[0] >> 3) % 3;
  TransferView v;
  const TransferError e = parseTransfer(b.data(), b.size(), players, bots, v);
  if (transferErrorName(e) == nullptr) abort();
  if (e == TransferError::Ok) {
    const uint8_t* base = b.data();
    if (!inside(v.state, v.stateLen, base, b.size()) || !inside(v.attachment, v.attachmentLen, base, b.size())) abort();
    if (!inside(v.delays, v.delayCount, base, b.size())) abort();
    for (int p = 0; p < players; ++p)
      if (v.inputs[p].count > kTransferMaxInputs || !inside(v.inputs[p].entries, 2u * v.inputs[p].count, base, b.size())) abort();
    if (v.botCount > kTransferMaxInputs || !inside(v.bots, static_cast<size_t>(v.botCount) * static_cast<size_t>(bots), base, b.size())) abort();
    if (v.snapshotFrame < v.episodeStart || v.senderFrame < v.snapshotFrame || v.inputDelay > kMaxInputDelay) abort();
  }
  // the chunked path: every chunk once, in an order the input chooses, reassembles exactly
  if (b.empty()) return 0;
  TransferIn in;
  in.expect(9, 1, 0);
  const uint32_t total = static_cast<uint32_t>(b.size());
  const uint32_t chunks = (total + kTransferChunkBytes - 1) / kTransferChunkBytes;
  auto chunk = [&](uint32_t i) {
    Message m;
    m.type = MsgType::StateChunk;
    m.transferId = 9;
    m.total = total;
    m.index = i;
    m.dataLen = static_cast<uint16_t>(std::min<size_t>(kTransferChunkBytes, total - static_cast<size_t>(i) * kTransferChunkBytes));
    m.data = b.data() + static_cast<size_t>(i) * kTransferChunkBytes;
    return m;
  };
  for (uint32_t k = 0; k < chunks; ++k) {
    const uint32_t i = (k * 7 + data[0]) % chunks;  // a permutation when gcd(7, chunks) == 1; duplicates otherwise
    const RxResult r = in.onChunk(1, chunk(i), 1u << 20, 0);
    if (r != RxResult::Ok && r != RxResult::Duplicate && r != RxResult::TransferTooLarge) abort();
  }
  for (uint32_t i = 0; i < chunks && total <= (1u << 20); ++i) in.onChunk(1, chunk(i), 1u << 20, 0);  // fill what the permutation missed
  if (total <= (1u << 20) && (!in.complete() || in.size() != b.size() || std::memcmp(in.data(), b.data(), b.size()) != 0)) abort();
  return 0;
}
