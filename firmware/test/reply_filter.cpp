// Reads protocol lines on stdin and prints the firmware's reply to each ("OK" / "ERR <reason>").
// Used by tests/test_firmware_parity.py to check the C++ parser against the Python one.
#include <stdio.h>

#include "protocol.h"

int main() {
  trader_display::LineReader reader;
  int c;
  while ((c = getchar()) != EOF) {
    trader_display::Command command;
    const char* error = nullptr;
    if (reader.feed(static_cast<char>(c), command, error)) {
      if (error) {
        printf("ERR %s\n", error);
      } else {
        printf("OK\n");
      }
    }
  }
  return 0;
}
