/* Frame parsing and building for the sbxd <-> sbx-shim protocol. */
#include <jansson.h>
#include <stdint.h>

#include "harness.h"
#include "shimclient/shim_protocol.h"

static int test_roundtrip_incremental(void)
{
    json_t *obj = json_pack("{s:s, s:i}", "op", "ping", "n", 42);
    size_t len;
    uint8_t *frame = shim_frame_build_json(SHIM_FRAME_REQUEST, obj, &len);
    json_decref(obj);
    ASSERT_TRUE(frame);
    struct shim_frame f;
    /* Every proper prefix is incomplete, never an error. */
    for (size_t i = 0; i < len; i++)
        ASSERT_EQ(shim_frame_parse(frame, i, &f), 0);
    ASSERT_EQ(shim_frame_parse(frame, len, &f), (long)len);
    ASSERT_EQ(f.type, SHIM_FRAME_REQUEST);
    ASSERT_EQ(f.len, len - SHIM_FRAME_HEADER);
    json_t *back = json_loadb((const char *)f.payload, f.len, 0, NULL);
    ASSERT_TRUE(back);
    ASSERT_STREQ(json_string_value(json_object_get(back, "op")), "ping");
    json_decref(back);
    free(frame);
    return 0;
}

static int test_two_frames_in_one_buffer(void)
{
    uint8_t buf[64];
    shim_frame_header(buf, SHIM_FRAME_STDIN, 3);
    memcpy(buf + 5, "abc", 3);
    shim_frame_header(buf + 8, SHIM_FRAME_STDIN, 0);
    struct shim_frame f;
    long n = shim_frame_parse(buf, 13, &f);
    ASSERT_EQ(n, 8);
    ASSERT_EQ(f.len, 3);
    ASSERT_TRUE(memcmp(f.payload, "abc", 3) == 0);
    ASSERT_EQ(shim_frame_parse(buf + n, 13 - (size_t)n, &f), 5);
    ASSERT_EQ(f.len, 0);
    ASSERT_EQ(f.type, SHIM_FRAME_STDIN);
    return 0;
}

static int test_data_frames(void)
{
    uint8_t buf[64];
    shim_frame_data_header(buf, SHIM_STREAM_STDERR, 0x0102030405060708ull, 4);
    memcpy(buf + SHIM_FRAME_HEADER + SHIM_DATA_HEADER, "wxyz", 4);
    size_t total = SHIM_FRAME_HEADER + SHIM_DATA_HEADER + 4;
    struct shim_frame f;
    ASSERT_EQ(shim_frame_parse(buf, total, &f), (long)total);
    uint8_t s;
    uint64_t off;
    const uint8_t *d;
    size_t len;
    ASSERT_OK(shim_frame_data_parse(&f, &s, &off, &d, &len));
    ASSERT_EQ(s, SHIM_STREAM_STDERR);
    ASSERT_TRUE(off == 0x0102030405060708ull);
    ASSERT_EQ(len, 4);
    ASSERT_TRUE(memcmp(d, "wxyz", 4) == 0);
    /* A bad stream byte is an error as soon as it is visible, even before the frame is complete. */
    buf[SHIM_FRAME_HEADER] = 7;
    ASSERT_ERRNO(shim_frame_parse(buf, SHIM_FRAME_HEADER + 1, &f), EBADMSG);
    /* A DATA frame too short for its header. */
    shim_frame_header(buf, SHIM_FRAME_DATA, 3);
    ASSERT_ERRNO(shim_frame_parse(buf, SHIM_FRAME_HEADER, &f), EBADMSG);
    /* A non-DATA frame is refused by the data parser. */
    shim_frame_header(buf, SHIM_FRAME_EXIT, 2);
    memcpy(buf + 5, "{}", 2);
    ASSERT_EQ(shim_frame_parse(buf, 7, &f), 7);
    ASSERT_ERRNO(shim_frame_data_parse(&f, &s, &off, &d, &len), EBADMSG);
    return 0;
}

static int test_oversized_and_bad_type(void)
{
    uint8_t buf[16];
    struct shim_frame f;
    shim_frame_header(buf, SHIM_FRAME_REQUEST, SHIM_FRAME_MAX + 1);
    ASSERT_ERRNO(shim_frame_parse(buf, SHIM_FRAME_HEADER, &f), EMSGSIZE);
    shim_frame_header(buf, SHIM_FRAME_REQUEST, SHIM_FRAME_MAX);
    ASSERT_EQ(shim_frame_parse(buf, sizeof(buf), &f), 0); /* valid, just incomplete */
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, 1};
    ASSERT_ERRNO(shim_frame_parse(huge, sizeof(huge), &f), EMSGSIZE);
    shim_frame_header(buf, 0, 0);
    ASSERT_ERRNO(shim_frame_parse(buf, SHIM_FRAME_HEADER, &f), EBADMSG);
    shim_frame_header(buf, 6, 0);
    ASSERT_ERRNO(shim_frame_parse(buf, SHIM_FRAME_HEADER, &f), EBADMSG);
    /* Truncated header: incomplete. */
    ASSERT_EQ(shim_frame_parse(buf, 4, &f), 0);
    ASSERT_EQ(shim_frame_parse(NULL, 0, &f), 0);
    return 0;
}

static int test_fuzz_no_crash(void)
{
    /* Random bytes: the parser must only ever return a valid length, 0, or an error. */
    uint8_t buf[256];
    uint32_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % (int)sizeof(buf));
        for (size_t i = 0; i < len; i++) {
            x = x * 1103515245u + 12345u;
            buf[i] = (uint8_t)(x >> 16);
        }
        if (len >= 4 && round % 3 == 0)
            buf[1] = buf[2] = buf[3] = 0; /* small lengths too */
        struct shim_frame f;
        long n = shim_frame_parse(buf, len, &f);
        ASSERT_TRUE(n <= (long)len);
        if (n > 0)
            ASSERT_TRUE(f.payload + f.len <= buf + len);
    }
    return 0;
}

TESTS(TEST(test_roundtrip_incremental) TEST(test_two_frames_in_one_buffer) TEST(test_data_frames)
          TEST(test_oversized_and_bad_type) TEST(test_fuzz_no_crash))
