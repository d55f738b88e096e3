/* Fuzzes the sbxd <-> sbx-shim frame parser (src/shimclient/shim_protocol.c): shim_frame_parse over a
 * byte stream as sbxd's reader sees it, and shim_frame_data_parse on every DATA frame. The shim runs
 * next to untrusted code, so sbxd treats its bytes as hostile. */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "shimclient/shim_protocol.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct shim_frame f;
        long n = shim_frame_parse(data + off, size - off, &f);
        if (n <= 0) {
            assert(n == 0 || n == -EMSGSIZE || n == -EBADMSG);
            break;
        }
        assert((size_t)n == SHIM_FRAME_HEADER + f.len && (size_t)n <= size - off);
        assert(f.payload == data + off + SHIM_FRAME_HEADER);
        assert(f.type >= SHIM_FRAME_REQUEST && f.type <= SHIM_FRAME_STDIN && f.len <= SHIM_FRAME_MAX);
        uint8_t stream;
        uint64_t offset;
        const uint8_t *d;
        size_t len;
        if (shim_frame_data_parse(&f, &stream, &offset, &d, &len) == 0) {
            assert(f.type == SHIM_FRAME_DATA);
            assert(stream == SHIM_STREAM_STDOUT || stream == SHIM_STREAM_STDERR);
            assert(d + len == f.payload + f.len);
            volatile uint8_t sink = 0;
            for (size_t i = 0; i < len; i++) /* every byte handed out must be readable */
                sink ^= d[i];
            (void)sink;
        }
        off += (size_t)n;
    }
    return 0;
}
