// Trader display firmware for the Arduino UNO Q's MCU: shows the display service's text on the
// 8x13 LED matrix (ArduinoGraphics Font_5x7, scrolling right to left) and drives RGB LEDs 3
// (sync) and 4 (processing). Protocol: ../PROTOCOL.md; parser: protocol.cpp (host-tested).
//
// The scroll is advanced from loop() with millis(), never with a blocking scroll call, so the
// serial line is read and acknowledged while text scrolls. Without a valid line for
// kHeartbeatTimeoutMs the matrix shows the "no host" pattern: one blinking corner pixel.

// ArduinoGraphics must be included before Arduino_LED_Matrix to enable text drawing.
#include <ArduinoGraphics.h>
#include <Arduino_LED_Matrix.h>

#include "protocol.h"

using namespace trader_display;

#ifndef HOST_SERIAL
#define HOST_SERIAL Serial  // the UART the Linux side (or a USB host) talks to
#endif

static const int kColumns = 13;

ArduinoLEDMatrix matrix;
LineReader reader;
HostWatchdog watchdog;

static char shownText[kMaxLine + 1] = "";
static uint16_t speedMs = 50;
static uint8_t brightness = 128;
static Mode mode = Mode::Normal;
static int scrollX = kColumns;
static uint32_t lastStepMs = 0;

static void setLed(uint8_t led, const uint8_t rgb[3]) {
#if defined(LED3_R) && defined(LED4_R)
  // The UNO Q's user RGB LEDs are active low; these are on/off pins, so any level above 127 lights.
  const int pins[2][3] = {{LED3_R, LED3_G, LED3_B}, {LED4_R, LED4_G, LED4_B}};
  const int index = led == 3 ? 0 : 1;
  for (int i = 0; i < 3; ++i) digitalWrite(pins[index][i], rgb[i] > 127 ? LOW : HIGH);
#else
  (void)led;
  (void)rgb;
#endif
}

static void drawText(int x) {
  matrix.beginDraw();
  matrix.clear();
  matrix.stroke(brightness, brightness, brightness);
  matrix.textFont(Font_5x7);
  matrix.beginText(x, 1, brightness, brightness, brightness);
  matrix.print(shownText);
  matrix.endText(NO_SCROLL);
  matrix.endDraw();
}

static void drawNoHost(bool on) {
  matrix.beginDraw();
  matrix.clear();
  if (on) matrix.set(0, 0, 255, 255, 255);
  matrix.endDraw();
}

static void apply(const Command& command) {
  switch (command.type) {
    case CommandType::Text:
      strncpy(shownText, command.text, kMaxLine);
      shownText[kMaxLine] = '\0';
      scrollX = kColumns;  // new text enters from the right edge
      break;
    case CommandType::Speed:
      speedMs = command.number;
      break;
    case CommandType::Brightness:
      brightness = static_cast<uint8_t>(command.number);
      break;
    case CommandType::Mode:
      mode = command.mode;
      break;
    case CommandType::Led:
      setLed(command.led, command.rgb);
      break;
    case CommandType::Heartbeat:
      break;
  }
}

static void readHost(uint32_t now) {
  while (HOST_SERIAL.available() > 0) {
    Command command;
    const char* error = nullptr;
    if (!reader.feed(static_cast<char>(HOST_SERIAL.read()), command, error)) continue;
    if (error != nullptr) {
      HOST_SERIAL.print("ERR ");
      HOST_SERIAL.println(error);
      continue;
    }
    apply(command);
    watchdog.seen(now);
    HOST_SERIAL.println("OK");
  }
}

void setup() {
  HOST_SERIAL.begin(115200);
  matrix.begin();
#if defined(LED3_R) && defined(LED4_R)
  const int pins[] = {LED3_R, LED3_G, LED3_B, LED4_R, LED4_G, LED4_B};
  for (int pin : pins) {
    pinMode(pin, OUTPUT);
    digitalWrite(pin, HIGH);  // off
  }
#endif
  drawNoHost(true);
}

void loop() {
  const uint32_t now = millis();
  readHost(now);
  if (static_cast<uint32_t>(now - lastStepMs) < speedMs) return;
  lastStepMs = now;
  if (!watchdog.hostAlive(now)) {
    drawNoHost((now / 500) % 2 == 0);
    return;
  }
  if (shownText[0] == '\0') {
    matrix.beginDraw();
    matrix.clear();
    matrix.endDraw();
    return;
  }
  drawText(scrollX);
  if (--scrollX < -textWidth(shownText)) scrollX = kColumns;
}
