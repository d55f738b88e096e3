/* Frame encoding and decoding for the sbxd <-> sbx-shim protocol (see shim_protocol.h). */
#include "shimclient/shim_protocol.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

long shim_frame_parse(const uint8_t *buf, size_t len, struct shim_frame *ret)
{
    if (len < SHIM_FRAME_HEADER)
        return 0;
    uint32_t plen = get_le32(buf);
    uint8_t type = buf[4];
    if (plen > SHIM_FRAME_MAX)
        return -EMSGSIZE;
    if (type < SHIM_FRAME_REQUEST || type > SHIM_FRAME_STDIN)
        return -EBADMSG;
    if (type == SHIM_FRAME_DATA) {
        if (plen < SHIM_DATA_HEADER)
            return -EBADMSG;
        /* The stream byte is checked as soon as it has arrived. */
        if (len > SHIM_FRAME_HEADER && buf[SHIM_FRAME_HEADER] != SHIM_STREAM_STDOUT &&
            buf[SHIM_FRAME_HEADER] != SHIM_STREAM_STDERR)
            return -EBADMSG;
    }
    if (len - SHIM_FRAME_HEADER < plen)
        return 0;
    ret->type = type;
    ret->payload = buf + SHIM_FRAME_HEADER;
    ret->len = plen;
    return (long)(SHIM_FRAME_HEADER + plen);
}

void shim_frame_header(uint8_t hdr[SHIM_FRAME_HEADER], uint8_t type, uint32_t len)
{
    put_le32(hdr, len);
    hdr[4] = type;
}

void shim_frame_data_header(uint8_t hdr[SHIM_FRAME_HEADER + SHIM_DATA_HEADER], uint8_t stream,
                            uint64_t offset, uint32_t len)
{
    shim_frame_header(hdr, SHIM_FRAME_DATA, len + SHIM_DATA_HEADER);
    hdr[SHIM_FRAME_HEADER] = stream;
    put_le64(hdr + SHIM_FRAME_HEADER + 1, offset);
}

int shim_frame_data_parse(const struct shim_frame *f, uint8_t *ret_stream, uint64_t *ret_offset,
                          const uint8_t **ret_data, size_t *ret_len)
{
    if (f->type != SHIM_FRAME_DATA || f->len < SHIM_DATA_HEADER)
        return -EBADMSG;
    uint8_t s = f->payload[0];
    if (s != SHIM_STREAM_STDOUT && s != SHIM_STREAM_STDERR)
        return -EBADMSG;
    uint64_t off = 0;
    for (int i = 0; i < 8; i++)
        off |= (uint64_t)f->payload[1 + i] << (8 * i);
    *ret_stream = s;
    *ret_offset = off;
    *ret_data = f->payload + SHIM_DATA_HEADER;
    *ret_len = f->len - SHIM_DATA_HEADER;
    return 0;
}

uint8_t *shim_frame_build_json(uint8_t type, json_t *json, size_t *ret_len)
{
    char *s = json_dumps(json, JSON_COMPACT);
    if (!s)
        return NULL;
    size_t n = strlen(s);
    if (n > SHIM_FRAME_MAX) {
        free(s);
        return NULL;
    }
    uint8_t *out = malloc(SHIM_FRAME_HEADER + n);
    if (out) {
        shim_frame_header(out, type, (uint32_t)n);
        memcpy(out + SHIM_FRAME_HEADER, s, n);
        *ret_len = SHIM_FRAME_HEADER + n;
    }
    free(s);
    return out;
}
