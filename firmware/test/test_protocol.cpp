// Host unit tests of the firmware's protocol parser: g++ only, no Arduino, no test framework.
// Prints one line per failure and a closing "N passed, N failed".
#include <stdio.h>
#include <string.h>

#include <string>

#include "protocol.h"

using namespace trader_display;

static int passed = 0;
static int failed = 0;

#define CHECK(condition)                                                  \
  do {                                                                    \
    if (condition) {                                                      \
      ++passed;                                                           \
    } else {                                                              \
      ++failed;                                                           \
      printf("FAILED %s:%d: %s\n", __FILE__, __LINE__, #condition);      \
    }                                                                     \
  } while (0)

static const char* parse(const std::string& line, Command& out) { return parseLine(line.data(), line.size(), out); }

static bool refusedWith(const std::string& line, const char* reason) {
  Command out;
  const char* error = parse(line, out);
  if (error == nullptr || strcmp(error, reason) != 0) {
    printf("  %s -> %s (expected %s)\n", line.c_str(), error ? error : "OK", reason);
    return false;
  }
  return true;
}

// Feeds a whole stream in chunks of `chunk` bytes; collects one reply per completed line.
static std::string replies(const std::string& stream, size_t chunk, std::string* lastText = nullptr) {
  LineReader reader;
  std::string out;
  for (size_t start = 0; start < stream.size(); start += chunk) {
    for (size_t i = start; i < stream.size() && i < start + chunk; ++i) {
      Command command;
      const char* error = nullptr;
      if (reader.feed(stream[i], command, error)) {
        out += error ? std::string("ERR ") + error : "OK";
        out += "\n";
        if (!error && command.type == CommandType::Text && lastText) *lastText = command.text;
      }
    }
  }
  return out;
}

static void testValidCommands() {
  Command c;
  CHECK(parse("TEXT:EUR 12,345 | CASH EUR 675", c) == nullptr && c.type == CommandType::Text &&
        strcmp(c.text, "EUR 12,345 | CASH EUR 675") == 0);
  CHECK(parse("TEXT:", c) == nullptr && c.type == CommandType::Text && c.text[0] == '\0');
  CHECK(parse("SPEED:50", c) == nullptr && c.type == CommandType::Speed && c.number == 50);
  CHECK(parse("SPEED:10", c) == nullptr && parse("SPEED:2000", c) == nullptr && c.number == 2000);
  CHECK(parse("BRIGHTNESS:0", c) == nullptr && c.type == CommandType::Brightness && c.number == 0);
  CHECK(parse("BRIGHTNESS:255", c) == nullptr && c.number == 255);
  CHECK(parse("MODE:normal", c) == nullptr && c.type == CommandType::Mode && c.mode == Mode::Normal);
  CHECK(parse("MODE:syncing", c) == nullptr && c.mode == Mode::Syncing);
  CHECK(parse("MODE:trade", c) == nullptr && c.mode == Mode::Trade);
  CHECK(parse("MODE:error", c) == nullptr && c.mode == Mode::Error);
  CHECK(parse("LED:3:255,0,0", c) == nullptr && c.type == CommandType::Led && c.led == 3 && c.rgb[0] == 255 &&
        c.rgb[1] == 0 && c.rgb[2] == 0);
  CHECK(parse("LED:4:0,128,7", c) == nullptr && c.led == 4 && c.rgb[1] == 128 && c.rgb[2] == 7);
  CHECK(parse("HEARTBEAT", c) == nullptr && c.type == CommandType::Heartbeat);
  CHECK(parse(std::string("TEXT:") + std::string(kMaxLine - 5, 'A'), c) == nullptr && strlen(c.text) == kMaxLine - 5);
}

static void testMalformedCommands() {
  // The same reasons as services/display/protocol.py (tests/test_display_device.py).
  CHECK(refusedWith("HELLO", "unknown command"));
  CHECK(refusedWith("", "unknown command"));
  CHECK(refusedWith("FOO:1", "unknown command"));
  CHECK(refusedWith("HEARTBEAT:1", "unknown command"));
  CHECK(refusedWith("text:A", "unknown command"));
  CHECK(refusedWith("SPEED:5", "out of range"));
  CHECK(refusedWith("SPEED:2001", "out of range"));
  CHECK(refusedWith("SPEED:fast", "bad number"));
  CHECK(refusedWith("SPEED:", "bad number"));
  CHECK(refusedWith("SPEED:123456", "bad number"));
  CHECK(refusedWith("BRIGHTNESS:256", "out of range"));
  CHECK(refusedWith("BRIGHTNESS:-1", "bad number"));
  CHECK(refusedWith("MODE:party", "unknown mode"));
  CHECK(refusedWith("MODE:", "unknown mode"));
  CHECK(refusedWith("LED:5:1,2,3", "unknown led"));
  CHECK(refusedWith("LED:5:1,2,300", "unknown led"));
  CHECK(refusedWith("LED:3:1,2", "bad led"));
  CHECK(refusedWith("LED:3:1,2,3,4", "bad led"));
  CHECK(refusedWith("LED:3", "bad led"));
  CHECK(refusedWith("LED:3:1,2,300", "out of range"));
  CHECK(refusedWith("LED:x:1,2,3", "bad number"));
  CHECK(refusedWith("LED:3:1,,3", "bad number"));
  CHECK(refusedWith("TEXT:lower", "unsupported character"));
  CHECK(refusedWith("TEXT:\xe2\x82\xac", "unsupported character"));
  CHECK(refusedWith(std::string("TEXT:") + std::string(kMaxLine, 'A'), "line too long"));
}

static void testStreamsAndPartialReads() {
  const std::string stream = "BRIGHTNESS:128\r\nSPEED:50\nTEXT:HI\nBOGUS\nHEARTBEAT\n";
  const std::string expected = "OK\nOK\nOK\nERR unknown command\nOK\n";
  for (size_t chunk = 1; chunk <= stream.size(); ++chunk) {
    std::string text;
    CHECK(replies(stream, chunk, &text) == expected);
    CHECK(text == "HI");
  }
  CHECK(replies("SPEED:5", 3).empty());  // no newline yet: nothing to answer
}

static void testOverlongLines() {
  std::string tooLong = "TEXT:" + std::string(500, 'A') + "\n";
  CHECK(replies(tooLong + "SPEED:60\n", 7) == "ERR line too long\nOK\n");
  std::string exact = "TEXT:" + std::string(kMaxLine - 5, 'B') + "\n";
  std::string text;
  CHECK(replies(exact, 1, &text) == "OK\n" && text.size() == kMaxLine - 5);
  std::string oneMore = "TEXT:" + std::string(kMaxLine - 4, 'B') + "\nHEARTBEAT\n";
  CHECK(replies(oneMore, 16) == "ERR line too long\nOK\n");
}

static void testHeartbeatTimeout() {
  HostWatchdog watchdog;
  CHECK(!watchdog.hostAlive(0));  // no host until the first valid line
  watchdog.seen(1000);
  CHECK(watchdog.hostAlive(1000));
  CHECK(watchdog.hostAlive(1000 + kHeartbeatTimeoutMs));
  CHECK(!watchdog.hostAlive(1001 + kHeartbeatTimeoutMs));
  watchdog.seen(0xFFFFFF00u);  // millis() wraps after 49.7 days
  CHECK(watchdog.hostAlive(0x00000100u));
  CHECK(!watchdog.hostAlive(0xFFFFFF00u + kHeartbeatTimeoutMs + 1));
}

static void testTextWidth() {
  CHECK(textWidth("") == 0);
  CHECK(textWidth("E") == 5);
  CHECK(textWidth("EUR") == 17);
}

int main() {
  testValidCommands();
  testMalformedCommands();
  testStreamsAndPartialReads();
  testOverlongLines();
  testHeartbeatTimeout();
  testTextWidth();
  printf("%d passed, %d failed\n", passed, failed);
  return failed == 0 ? 0 : 1;
}
