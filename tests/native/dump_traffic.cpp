// Captures real traffic for the fuzz seed corpora: runs a harness Session (two or more engines
// over the lossy in-memory network, driven through the frame driver) and writes the first N
// packets received by any engine, one file each, into a directory.
//   build/native/dump_traffic DIR [--count N] [--players P] [--seed S] [--skip K] [--json-prefix]
// Files: NNN-p2p-<type>.bin / NNN-relay-<type>.bin (binary wire packets, exactly as received),
// NNN-action.json / NNN-state.json (relay JSON text). With --json-prefix the JSON files get the
// two leading bytes fuzz_json expects (mode 1 = player action / 2 = state sync, then the peer).
// --skip K ignores the first K deliveries (to capture mid-session traffic).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "harness.hpp"

using namespace p2psync;
using namespace p2psync::test;

namespace {

const char* typeName(uint8_t t) {
  switch (t) {
    case 0x01: return "input";
    case 0x02: return "ping";
    case 0x03: return "pong";
    case 0x04: return "keepalive";
    case 0x05: return "episode_end";
    case 0x06: return "episode_ready";
    case 0x07: return "state_hash";
    case 0x12: return "input_request";
    case 0x13: return "input_response";
    case 0x14: return "focus_state";
  }
  return "unknown";
}

int usage() {
  std::fprintf(stderr, "usage: dump_traffic DIR [--count N] [--players P] [--seed S] [--skip K] [--json-prefix]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  std::string dir = argv[1];
  int count = 30, players = 2, skip = 0;
  uint64_t seed = 1;
  bool jsonPrefix = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--count" && (v = next())) count = std::atoi(v);
    else if (a == "--players" && (v = next())) players = std::atoi(v);
    else if (a == "--seed" && (v = next())) seed = std::strtoull(v, nullptr, 10);
    else if (a == "--skip" && (v = next())) skip = std::atoi(v);
    else if (a == "--json-prefix") jsonPrefix = true;
    else return usage();
  }
  if (count <= 0 || players < 2 || players > 4) return usage();

  SessionOptions o;
  o.players = players;
  o.seed = seed;
  o.link = LinkProfile{40, 20, 0.10, 0.05, 0.02, 20};
  o.extraConfig = ",\"sendPolicy\":\"dual\",\"hashInterval\":10";  // relay JSON of both kinds too
  Session s(o);

  int written = 0, seen = 0;
  bool failed = false;
  s.onDeliver = [&](const Packet& d) {
    if (seen++ < skip || written >= count || failed) return;
    const bool packet = d.kind == OutKind::Packet;
    char name[96];
    std::string body(d.bytes.begin(), d.bytes.end());
    if (packet) {
      std::snprintf(name, sizeof name, "%03d-%s-%s.bin", written, d.path == Path::P2P ? "p2p" : "relay",
                    d.bytes.empty() ? "empty" : typeName(d.bytes[0]));
    } else {
      const bool action = d.event == RelayEvent::PlayerAction;
      std::snprintf(name, sizeof name, "%03d-%s.json", written, action ? "action" : "state");
      if (jsonPrefix) body = std::string{static_cast<char>(action ? 1 : 2), static_cast<char>(d.from + 1)} + body;
    }
    const std::string path = dir + "/" + name;
    FILE* f = std::fopen(path.c_str(), "wb");
    if (!f) {
      std::perror(path.c_str());
      failed = true;
      return;
    }
    std::fwrite(body.data(), 1, body.size(), f);
    std::fclose(f);
    ++written;
  };
  while (written < count && !failed && s.now < 600000) s.tick();
  if (failed) return 1;
  std::printf("wrote %d packets to %s\n", written, dir.c_str());
  return written == count ? 0 : 1;
}
