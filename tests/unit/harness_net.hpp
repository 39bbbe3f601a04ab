// The in-memory network of the test harness (harness.hpp): a P2P path with latency, jitter,
// random loss, reordering and duplication, and a reliable, ordered relay; plus the scripting the
// engine tests need: closed channels, a cut of every DataChannel, scripted drops and held-back
// packets (released later), a blackout of every path, and per-peer counters of what crossed the
// wire. Deterministic: one seeded Rng.
#pragma once
#include <algorithm>
#include <cstdint>
#include <functional>
#include <map>
#include <queue>
#include <set>
#include <utility>
#include <vector>

#include "outbox.hpp"
#include "protocol.hpp"
#include "test_util.hpp"

namespace p2psync::test {

// ---------------------------------------------------------------- deterministic RNG (xorshift*)
struct Rng {
  uint64_t s;
  explicit Rng(uint64_t seed) : s(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull) {}
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  bool chance(double p) { return uniform() < p; }
  int below(int n) { return static_cast<int>(next() % static_cast<uint64_t>(n)); }
};

struct LinkProfile {
  double oneWayMs = 25;
  double jitterMs = 10;      // full width of the uniform one-way jitter
  double loss = 0.05;
  double reorder = 0.05;     // share of packets delayed by an extra jitter + 20 ms
  double duplicate = 0.02;
  double relayExtraMs = 20;  // relay one way = oneWayMs + relayExtraMs (+ up to 2 ms), ordered, reliable
  double relayMs = -1;       // >= 0: the relay's one-way latency, whatever oneWayMs is
};

// One record on the wire, from one peer to one peer.
struct Packet {
  int from = 0, to = 0;
  Path path = Path::P2P;
  OutKind kind = OutKind::Packet;
  RelayEvent event = RelayEvent::None;
  std::vector<uint8_t> bytes;
  double at = 0;
  uint64_t seq = 0;
  int type() const { return kind == OutKind::Packet && !bytes.empty() ? bytes[0] : -1; }
  bool relayJson() const { return kind == OutKind::RelayJson; }
  bool carriesInputs() const {
    return type() == kInput || type() == kInputResponse || (relayJson() && event == RelayEvent::PlayerAction);
  }
  std::string text() const { return std::string(bytes.begin(), bytes.end()); }
  bool operator>(const Packet& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

class Network {
 public:
  // What crossed the wire, per peer (sent: before losses, per destination; received: delivered).
  struct Counts {
    uint64_t p2pOut = 0, p2pLost = 0, p2pIn = 0, relayOut = 0, relayDropped = 0, relayIn = 0;
    uint64_t p2pInputEntriesOut = 0, p2pInputEntriesIn = 0;
    std::map<int, uint64_t> typeOut;  // binary packets by wire type, per destination, before losses
  };

  Network(int peers, LinkProfile prof, uint64_t seed)
      : n_(peers), prof_(prof), rng_(seed), relayLast_(static_cast<size_t>(peers * peers), 0), counts_(static_cast<size_t>(peers)) {}

  // Scripting. drop: lost (either path); hold: kept back until release().
  std::function<bool(const Packet&)> drop;
  std::function<bool(const Packet&)> hold;

  // Puts an outbox record of `from` on the wire (to = -1: every other peer). A P2P record is not
  // sent on a closed channel (the page does not send there).
  void send(int from, int to, Path path, OutKind kind, RelayEvent ev, const uint8_t* b, size_t len, double now) {
    for (int t = 0; t < n_; ++t) {
      if (t == from || (to >= 0 && t != to)) continue;
      Packet p;
      p.from = from;
      p.to = t;
      p.path = path;
      p.kind = kind;
      p.event = ev;
      p.bytes.assign(b, b + len);
      Counts& c = counts_[static_cast<size_t>(from)];
      if (path == Path::P2P) {
        if (!p2pOpen_ || closed_.count({from, t})) continue;
        ++c.p2pOut;
        ++p2pSent;
        Message m;
        if (p.type() == kInput && decodes(p.bytes, m)) c.p2pInputEntriesOut += m.count;
      } else {
        ++c.relayOut;
      }
      if (p.type() >= 0) ++c.typeOut[p.type()];
      if (hold && hold(p)) {
        held_.push_back(std::move(p));
        continue;
      }
      if (drop && drop(p)) {
        if (path == Path::P2P) { ++c.p2pLost; ++p2pLost; }
        else ++c.relayDropped;
        continue;
      }
      enqueue(std::move(p), now, true);
    }
  }

  // Sends the held-back packets now, spaced by spacingMs (a burst would hit the flood guard).
  void release(double now, double spacingMs = 0) {
    std::vector<Packet> h;
    h.swap(held_);
    for (size_t k = 0; k < h.size(); ++k) enqueue(std::move(h[k]), now + static_cast<double>(k) * spacingMs, false);
  }

  bool due(double t) const { return !q_.empty() && q_.top().at <= t; }
  bool empty() const { return q_.empty(); }
  double nextAt() const { return q_.empty() ? 1e300 : q_.top().at; }
  // The next packet due; false when it was lost on the way (a P2P packet while the DataChannels
  // are cut, or any packet inside a blackout).
  bool pop(Packet& p) {
    p = q_.top();
    q_.pop();
    if (p.at >= blackoutFrom && p.at < blackoutUntil) return false;
    if (p.path == Path::P2P && !p2pOpen_) return false;
    Counts& c = counts_[static_cast<size_t>(p.to)];
    if (p.path == Path::P2P) {
      ++c.p2pIn;
      Message m;
      if ((p.type() == kInput || p.type() == kInputResponse) && decodes(p.bytes, m)) c.p2pInputEntriesIn += m.count;
    } else {
      ++c.relayIn;
    }
    return true;
  }

  // Every DataChannel goes down (packets in flight on it are lost) / comes back.
  void cutP2P() {
    p2pOpen_ = false;
    std::priority_queue<Packet, std::vector<Packet>, std::greater<Packet>> keep;
    while (!q_.empty()) {
      if (q_.top().path != Path::P2P) keep.push(q_.top());
      q_.pop();
    }
    q_ = std::move(keep);
  }
  void restoreP2P() { p2pOpen_ = true; }
  bool p2pOpen() const { return p2pOpen_; }
  // One DataChannel closed in both directions (the others stay up).
  void closeChannel(int a, int b) { closed_.insert({a, b}); closed_.insert({b, a}); }
  void openChannel(int a, int b) { closed_.erase({a, b}); closed_.erase({b, a}); }

  LinkProfile& profile() { return prof_; }
  const Counts& counts(int peer) const { return counts_[static_cast<size_t>(peer)]; }
  size_t heldCount() const { return held_.size(); }

  double blackoutFrom = 0, blackoutUntil = 0;  // every path down for deliveries due in [from, until)
  uint64_t p2pSent = 0, p2pLost = 0;

 private:
  void enqueue(Packet p, double now, bool random) {
    if (p.path == Path::P2P) {
      double d = prof_.oneWayMs;
      if (random && rng_.chance(prof_.loss)) {
        ++counts_[static_cast<size_t>(p.from)].p2pLost;
        ++p2pLost;
        return;
      }
      if (prof_.jitterMs > 0) d += (rng_.uniform() - 0.5) * prof_.jitterMs;
      if (prof_.reorder > 0 && rng_.chance(prof_.reorder)) d += prof_.jitterMs + 20;
      p.at = now + std::max(0.5, d);
      if (random && prof_.duplicate > 0 && rng_.chance(prof_.duplicate)) {
        Packet copy = p;
        copy.at += 5;
        copy.seq = seq_++;
        q_.push(std::move(copy));
      }
    } else {
      double& last = relayLast_[static_cast<size_t>(p.from * n_ + p.to)];
      const double oneWay = prof_.relayMs >= 0 ? prof_.relayMs : prof_.oneWayMs + prof_.relayExtraMs + rng_.uniform() * 2;
      p.at = std::max(now + oneWay, last + 0.001);
      last = p.at;
    }
    p.seq = seq_++;
    q_.push(std::move(p));
  }

  int n_;
  LinkProfile prof_;
  Rng rng_;
  std::vector<double> relayLast_;
  std::vector<Counts> counts_;
  bool p2pOpen_ = true;
  std::set<std::pair<int, int>> closed_;
  std::vector<Packet> held_;
  uint64_t seq_ = 0;
  std::priority_queue<Packet, std::vector<Packet>, std::greater<Packet>> q_;
};

}  // namespace p2psync::test
