// Line protocol between the display service and the matrix MCU (see ../PROTOCOL.md).
// Plain C++17 with no Arduino dependency: compiled by the sketch and by g++ on the host
// (make firmware-test). No heap: fixed buffers only.
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace trader_display {

constexpr size_t kMaxLine = 128;                // bytes per line, without the newline
constexpr uint32_t kHeartbeatTimeoutMs = 10000;  // no valid line for this long: "no host" pattern
constexpr uint16_t kMinSpeedMs = 10;
constexpr uint16_t kMaxSpeedMs = 2000;

enum class CommandType { Text, Speed, Brightness, Mode, Led, Heartbeat };
enum class Mode { Normal, Syncing, Trade, Error };

struct Command {
  CommandType type = CommandType::Heartbeat;
  char text[kMaxLine + 1] = {0};  // TEXT payload, NUL-terminated
  uint16_t number = 0;            // SPEED (ms) or BRIGHTNESS (0-255)
  Mode mode = Mode::Normal;
  uint8_t led = 0;                // LED number (3 or 4)
  uint8_t rgb[3] = {0, 0, 0};
};

// Parses one complete line (without the newline). On success fills `out` and returns nullptr;
// otherwise returns the reason the host gets back as "ERR <reason>".
const char* parseLine(const char* line, size_t length, Command& out);

// Splits a byte stream into lines. Feed every received byte; when a line ends, `feed` returns
// true and sets `error` (nullptr if `out` holds a valid command). A line longer than kMaxLine
// is discarded up to its newline and reported once as "line too long". '\r' is ignored.
class LineReader {
 public:
  bool feed(char byte, Command& out, const char*& error);

 private:
  char buffer_[kMaxLine + 1] = {0};
  size_t length_ = 0;
  bool overflow_ = false;
};

// Remembers when the host last sent a valid line. Safe across millis() wrap-around.
class HostWatchdog {
 public:
  void seen(uint32_t nowMs);
  bool hostAlive(uint32_t nowMs) const;

 private:
  uint32_t lastMs_ = 0;
  bool everSeen_ = false;
};

// Pixel width of a text in Font_5x7: 5 columns per character and 1 between characters.
int textWidth(const char* text);

}  // namespace trader_display
