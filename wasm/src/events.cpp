#include "events.hpp"

#include <cmath>

#include "protocol.hpp"

namespace p2psync {

namespace {
#define P2PSYNC_NAME_ENTRY(name, text) text,
constexpr const char* kEventNames[] = {P2PSYNC_EVENT_TYPES(P2PSYNC_NAME_ENTRY)};
constexpr const char* kFieldNames[] = {P2PSYNC_EVENT_FIELDS(P2PSYNC_NAME_ENTRY)};
constexpr const char* kKindNames[] = {P2PSYNC_FIELD_KINDS(P2PSYNC_NAME_ENTRY)};
#undef P2PSYNC_NAME_ENTRY

template <typename T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
size_t pad4(size_t n) { return (n + 3) & ~size_t(3); }
}  // namespace

const char* eventTypeName(EventType t) {
  auto i = static_cast<size_t>(t);
  return i < static_cast<size_t>(EventType::Count_) ? kEventNames[i] : "unknown";
}
const char* fieldName(Field f) {
  auto i = static_cast<size_t>(f);
  return i < static_cast<size_t>(Field::Count_) ? kFieldNames[i] : "unknown";
}
const char* fieldKindName(FieldKind k) {
  auto i = static_cast<size_t>(k);
  return i < static_cast<size_t>(FieldKind::Count_) ? kKindNames[i] : "unknown";
}

// ------------------------------------------------------------------------------------- Event

Event::Entry& Event::add(Field f, FieldKind k) {
  // A full event keeps its first kMaxFields fields (a programming error caught by the tests).
  static Entry sink;
  if (count_ >= kMaxFields) return sink;
  Entry& e = entries_[count_++];
  e = Entry{f, k, 0, 0, 0, 0};
  return e;
}

Event& Event::num(Field f, double v) {
  if (!std::isfinite(v)) return null(f);
  add(f, FieldKind::Number).value = v;
  return *this;
}
Event& Event::flag(Field f, bool v) {
  add(f, FieldKind::Bool).value = v ? 1 : 0;
  return *this;
}
Event& Event::null(Field f) {
  add(f, FieldKind::Null);
  return *this;
}
Event& Event::hex(Field f, uint64_t v) {
  add(f, FieldKind::Hex64).bits = v;
  return *this;
}
Event& Event::text(Field f, std::string_view s) {
  if (text_.size() + s.size() > kMaxText) s = s.substr(0, kMaxText - std::min(kMaxText, text_.size()));
  Entry& e = add(f, FieldKind::Text);
  e.textOff = static_cast<uint32_t>(text_.size());
  e.textLen = static_cast<uint32_t>(s.size());
  text_.append(s);
  return *this;
}
Event& Event::json(Field f, const nlohmann::json& v) {
  std::string s = v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text_.size() + s.size() > kMaxText) return null(f);
  Entry& e = add(f, FieldKind::Json);
  e.textOff = static_cast<uint32_t>(text_.size());
  e.textLen = static_cast<uint32_t>(s.size());
  text_.append(s);
  return *this;
}

size_t Event::recordSize() const {
  return pad4(eventrec::kHeaderBytes + static_cast<size_t>(count_) * eventrec::kFieldBytes + text_.size());
}

void Event::write(uint8_t* out) const {
  const size_t n = recordSize();
  const size_t textBase = eventrec::kHeaderBytes + static_cast<size_t>(count_) * eventrec::kFieldBytes;
  std::memset(out, 0, n);
  out[eventrec::kType] = static_cast<uint8_t>(type_);
  out[eventrec::kFieldCount] = static_cast<uint8_t>(count_);
  put<uint16_t>(out + eventrec::kRecordBytes, static_cast<uint16_t>(n));
  for (int i = 0; i < count_; ++i) {
    const Entry& e = entries_[i];
    uint8_t* p = out + eventrec::kHeaderBytes + static_cast<size_t>(i) * eventrec::kFieldBytes;
    p[eventrec::kFieldId] = static_cast<uint8_t>(e.field);
    p[eventrec::kFieldKind] = static_cast<uint8_t>(e.kind);
    if (e.kind == FieldKind::Text || e.kind == FieldKind::Json) {
      put<uint16_t>(p + eventrec::kTextLength, static_cast<uint16_t>(e.textLen));
      put<uint32_t>(p + eventrec::kTextOffset, static_cast<uint32_t>(textBase + e.textOff));
    } else if (e.kind == FieldKind::Hex64) {
      put<uint32_t>(p + eventrec::kValue, static_cast<uint32_t>(e.bits >> 32));
      put<uint32_t>(p + eventrec::kValue + 4, static_cast<uint32_t>(e.bits));
    } else {
      put<double>(p + eventrec::kValue, e.value);
    }
  }
  if (!text_.empty()) std::memcpy(out + textBase, text_.data(), text_.size());
}

nlohmann::json Event::toJson() const {
  std::vector<uint8_t> rec(recordSize());
  write(rec.data());
  return eventRecordToJson(rec.data(), rec.size());
}

nlohmann::json eventRecordToJson(const uint8_t* rec, size_t len, size_t* recordBytes) {
  if (recordBytes) *recordBytes = 0;
  if (len < eventrec::kHeaderBytes) return nlohmann::json::value_t::discarded;
  const size_t n = get<uint16_t>(rec + eventrec::kRecordBytes);
  const size_t count = rec[eventrec::kFieldCount];
  if (n > len || n < eventrec::kHeaderBytes + count * eventrec::kFieldBytes) return nlohmann::json::value_t::discarded;
  nlohmann::json j = nlohmann::json::object();
  j["type"] = eventTypeName(static_cast<EventType>(rec[eventrec::kType]));
  for (size_t i = 0; i < count; ++i) {
    const uint8_t* p = rec + eventrec::kHeaderBytes + i * eventrec::kFieldBytes;
    const char* name = fieldName(static_cast<Field>(p[eventrec::kFieldId]));
    const auto kind = static_cast<FieldKind>(p[eventrec::kFieldKind]);
    const size_t tlen = get<uint16_t>(p + eventrec::kTextLength);
    const size_t toff = get<uint32_t>(p + eventrec::kTextOffset);
    switch (kind) {
      case FieldKind::Number: j[name] = get<double>(p + eventrec::kValue); break;
      case FieldKind::Bool: j[name] = get<double>(p + eventrec::kValue) != 0; break;
      case FieldKind::Null: j[name] = nullptr; break;
      case FieldKind::Hex64: {
        const uint64_t v = (static_cast<uint64_t>(get<uint32_t>(p + eventrec::kValue)) << 32) | get<uint32_t>(p + eventrec::kValue + 4);
        char hex[17];
        digestToHex(v, hex);
        j[name] = std::string(hex, 16);
        break;
      }
      case FieldKind::Text:
      case FieldKind::Json: {
        if (toff + tlen > n) return nlohmann::json::value_t::discarded;
        std::string s(reinterpret_cast<const char*>(rec + toff), tlen);
        if (kind == FieldKind::Text) j[name] = s;
        else j[name] = nlohmann::json::parse(s, nullptr, false);
        break;
      }
      default: return nlohmann::json::value_t::discarded;
    }
  }
  // Integral numbers read back as integers (JSON exports print 12, not 12.0).
  for (auto& el : j.items()) {
    nlohmann::json& v = el.value();
    if (v.is_number_float()) {
      double d = v.get<double>();
      if (std::floor(d) == d && std::fabs(d) < 9007199254740992.0) v = static_cast<int64_t>(d);
    }
  }
  if (recordBytes) *recordBytes = n;
  return j;
}

// ------------------------------------------------------------------------------------- queue

void EventQueue::push(const Event& ev) {
  const size_t n = ev.recordSize();
  if (used_ + n > buf_.size()) {
    ++dropped_;
    return;
  }
  ev.write(buf_.data() + used_);
  used_ += n;
  ++count_;
}

}  // namespace p2psync
