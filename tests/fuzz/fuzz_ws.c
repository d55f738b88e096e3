/* Fuzzes WebSocket framing (src/http/ws.c over wslay): every input follows a valid upgrade request, so the
 * bytes are WebSocket frames from the client (masked, fragmented, control frames, close codes, oversized
 * messages); the handler echoes messages back and closes on "close". See http_driver.h. */
#include "http_driver.h"

static const char upgrade[] =
    "GET /ws HTTP/1.1\r\nHost: sbx\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 262144)
        return 0;
    fz_run(upgrade, sizeof(upgrade) - 1, data, size);
    return 0;
}
