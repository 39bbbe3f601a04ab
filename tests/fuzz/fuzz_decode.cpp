// libFuzzer target: decode arbitrary bytes; whatever decodes OK must re-encode to the identical
// bytes (the codec is canonical), and decodeErrorName must name every result.
//   clang++-14 -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I wasm/src \
//     tests/fuzz/fuzz_decode.cpp wasm/src/protocol.cpp -o /tmp/fuzz_decode
//   mkdir -p /tmp/corpus && cp tests/fuzz/corpus/decode/* /tmp/corpus/ && /tmp/fuzz_decode /tmp/corpus
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "protocol.hpp"

using namespace p2psync;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Message msg;  // ~2 KiB; static keeps it off the stack
  static uint8_t out[kMaxPacketBytes];

  const DecodeError e = decode(data, size, msg);
  const char* name = decodeErrorName(e);
  if (name == nullptr || std::strcmp(name, "UNKNOWN") == 0) abort();
  if (e != DecodeError::Ok) return 0;

  if (size > kMaxPacketBytes) abort();  // nothing that long may decode
  if (validateForEncode(msg) != nullptr) abort();
  if (encodedSize(msg) != size) abort();
  const size_t n = encode(msg, out, sizeof out);
  if (n != size || std::memcmp(out, data, size) != 0) abort();
  if (size > 0 && encode(msg, out, size - 1) != 0) abort();  // too-small cap is refused
  return 0;
}
