#include "protocol.h"

#include <string.h>

namespace trader_display {
namespace {

bool startsWith(const char* line, size_t length, const char* prefix, size_t& rest) {
  size_t n = strlen(prefix);
  if (length < n || memcmp(line, prefix, n) != 0) return false;
  rest = n;
  return true;
}

// Digits only, at most 5, within [low, high].
const char* parseNumber(const char* text, size_t length, uint32_t low, uint32_t high, uint32_t& value) {
  if (length == 0 || length > 5) return "bad number";
  value = 0;
  for (size_t i = 0; i < length; ++i) {
    if (text[i] < '0' || text[i] > '9') return "bad number";
    value = value * 10 + static_cast<uint32_t>(text[i] - '0');
  }
  if (value < low || value > high) return "out of range";
  return nullptr;
}

bool inCharset(char c) { return (c >= 32 && c <= 95) || c == '|'; }

// "<n>:<r>,<g>,<b>". Checked in the Python parser's order: shape, LED number, then colours.
const char* parseLed(const char* text, size_t length, Command& out) {
  const char* end = text + length;
  const char* colon = static_cast<const char*>(memchr(text, ':', length));
  if (colon == nullptr) return "bad led";
  const char* starts[3] = {colon + 1, nullptr, nullptr};
  const char* stops[3] = {nullptr, nullptr, end};
  int commas = 0;
  for (const char* p = colon + 1; p < end; ++p) {
    if (*p != ',') continue;
    if (commas < 2) {
      stops[commas] = p;
      starts[commas + 1] = p + 1;
    }
    ++commas;
  }
  if (commas != 2) return "bad led";
  uint32_t led = 0;
  const char* error = parseNumber(text, static_cast<size_t>(colon - text), 0, 9, led);
  if (error) return error;
  if (led != 3 && led != 4) return "unknown led";
  uint32_t values[3];
  for (int i = 0; i < 3; ++i) {
    error = parseNumber(starts[i], static_cast<size_t>(stops[i] - starts[i]), 0, 255, values[i]);
    if (error) return error;
  }
  out.type = CommandType::Led;
  out.led = static_cast<uint8_t>(led);
  for (int i = 0; i < 3; ++i) out.rgb[i] = static_cast<uint8_t>(values[i]);
  return nullptr;
}

}  // namespace

const char* parseLine(const char* line, size_t length, Command& out) {
  if (length > kMaxLine) return "line too long";
  size_t rest = 0;
  uint32_t value = 0;
  if (length == 9 && memcmp(line, "HEARTBEAT", 9) == 0) {
    out.type = CommandType::Heartbeat;
    return nullptr;
  }
  if (startsWith(line, length, "TEXT:", rest)) {
    for (size_t i = rest; i < length; ++i) {
      if (!inCharset(line[i])) return "unsupported character";
    }
    out.type = CommandType::Text;
    memcpy(out.text, line + rest, length - rest);
    out.text[length - rest] = '\0';
    return nullptr;
  }
  if (startsWith(line, length, "SPEED:", rest)) {
    const char* error = parseNumber(line + rest, length - rest, kMinSpeedMs, kMaxSpeedMs, value);
    if (error) return error;
    out.type = CommandType::Speed;
    out.number = static_cast<uint16_t>(value);
    return nullptr;
  }
  if (startsWith(line, length, "BRIGHTNESS:", rest)) {
    const char* error = parseNumber(line + rest, length - rest, 0, 255, value);
    if (error) return error;
    out.type = CommandType::Brightness;
    out.number = static_cast<uint16_t>(value);
    return nullptr;
  }
  if (startsWith(line, length, "MODE:", rest)) {
    static const char* const names[] = {"normal", "syncing", "trade", "error"};
    static const Mode modes[] = {Mode::Normal, Mode::Syncing, Mode::Trade, Mode::Error};
    for (int i = 0; i < 4; ++i) {
      if (length - rest == strlen(names[i]) && memcmp(line + rest, names[i], length - rest) == 0) {
        out.type = CommandType::Mode;
        out.mode = modes[i];
        return nullptr;
      }
    }
    return "unknown mode";
  }
  if (startsWith(line, length, "LED:", rest)) return parseLed(line + rest, length - rest, out);
  return "unknown command";
}

bool LineReader::feed(char byte, Command& out, const char*& error) {
  if (byte == '\r') return false;
  if (byte != '\n') {
    if (length_ < kMaxLine) {
      buffer_[length_++] = byte;
    } else {
      overflow_ = true;  // keep discarding until the newline
    }
    return false;
  }
  error = overflow_ ? "line too long" : parseLine(buffer_, length_, out);
  length_ = 0;
  overflow_ = false;
  return true;
}

void HostWatchdog::seen(uint32_t nowMs) {
  lastMs_ = nowMs;
  everSeen_ = true;
}

bool HostWatchdog::hostAlive(uint32_t nowMs) const {
  return everSeen_ && static_cast<uint32_t>(nowMs - lastMs_) <= kHeartbeatTimeoutMs;
}

int textWidth(const char* text) {
  size_t n = strlen(text);
  return n == 0 ? 0 : static_cast<int>(n) * 6 - 1;
}

}  // namespace trader_display
