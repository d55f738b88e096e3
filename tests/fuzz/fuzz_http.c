/* Fuzzes the HTTP/1.1 server's request handling (src/http/server.c, response.c, util.c and llhttp under
 * it): the input is everything a client sends on one connection, so pipelined requests, bodies (buffered,
 * streamed, discarded, chunked) and the server's own limits (431, 413, 400, 417) are all in reach. See
 * http_driver.h for how the bytes reach the server. */
#include "http_driver.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 65536)
        return 0;
    fz_run("", 0, data, size);
    return 0;
}
