// Named results of everything that takes bytes or messages from a peer. JS sees the names.
#pragma once
#include <cstdint>

#include "protocol.hpp"

namespace p2psync {

enum class RxResult : uint8_t {
  Ok = 0,
  // decode errors (same names as DecodeError)
  Empty, UnknownType, Truncated, TrailingBytes, BadCount, BadFlags, NonMonotonicFrames,
  FrameAfterHeader, BadTimestamp, BadRange, BadValue,
  // engine-level rejections
  Oversized,         // more bytes than the largest valid packet
  Duplicate,         // already known (counted, not an error for the session)
  SpoofedPlayer,     // playerIndex is not the peer it came from
  UnknownPlayer,     // playerIndex / peer index is not a player of this session
  OutOfWindow,       // frame outside the buffer window (far future or evicted past)
  Conflict,          // a different action for a frame whose input is already known
  UnsolicitedPong,   // PONG for a ping never sent (or already answered)
  StaleEpisode,      // EPISODE_END / EPISODE_READY for another episode
  Unverifiable,      // STATE_HASH older than the hash history
  Flood,             // per-peer packet budget for this frame exceeded
  BadRelayJson,      // relay payload malformed, oversized or of the wrong shape
  // state transfer (state_transfer.hpp)
  TransferUnexpected,  // a STATE_CHUNK / STATE_ACK / STATE_REQUEST this peer did not ask for or refuses
  TransferTooLarge,    // a transfer larger than config maxTransferBytes
  TransferCorrupt,     // a chunk that contradicts one received, or an assembled transfer that fails its checks
  Count_
};

inline RxResult fromDecodeError(DecodeError e) { return static_cast<RxResult>(static_cast<uint8_t>(e)); }

inline const char* rxResultName(RxResult r) {
  switch (r) {
    case RxResult::Ok: return "OK";
    case RxResult::Empty: return "EMPTY";
    case RxResult::UnknownType: return "UNKNOWN_TYPE";
    case RxResult::Truncated: return "TRUNCATED";
    case RxResult::TrailingBytes: return "TRAILING_BYTES";
    case RxResult::BadCount: return "BAD_COUNT";
    case RxResult::BadFlags: return "BAD_FLAGS";
    case RxResult::NonMonotonicFrames: return "NON_MONOTONIC_FRAMES";
    case RxResult::FrameAfterHeader: return "FRAME_AFTER_HEADER";
    case RxResult::BadTimestamp: return "BAD_TIMESTAMP";
    case RxResult::BadRange: return "BAD_RANGE";
    case RxResult::BadValue: return "BAD_VALUE";
    case RxResult::Oversized: return "OVERSIZED";
    case RxResult::Duplicate: return "DUPLICATE";
    case RxResult::SpoofedPlayer: return "SPOOFED_PLAYER";
    case RxResult::UnknownPlayer: return "UNKNOWN_PLAYER";
    case RxResult::OutOfWindow: return "OUT_OF_WINDOW";
    case RxResult::Conflict: return "CONFLICT";
    case RxResult::UnsolicitedPong: return "UNSOLICITED_PONG";
    case RxResult::StaleEpisode: return "STALE_EPISODE";
    case RxResult::Unverifiable: return "UNVERIFIABLE";
    case RxResult::Flood: return "FLOOD";
    case RxResult::BadRelayJson: return "BAD_RELAY_JSON";
    case RxResult::TransferUnexpected: return "TRANSFER_UNEXPECTED";
    case RxResult::TransferTooLarge: return "TRANSFER_TOO_LARGE";
    case RxResult::TransferCorrupt: return "TRANSFER_CORRUPT";
    case RxResult::Count_: break;
  }
  return "UNKNOWN";
}

}  // namespace p2psync
