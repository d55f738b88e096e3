/* Fuzzes the tar entry name checks of sbx-unpack (src/unpack/unpack.c): split_entry, which decides where a
 * layer entry (and a hard link's target) lands under the layer root, and archive_path_normalize, which
 * resolves member names inside the image archive. The input is one entry name (NUL bytes end it, as in a
 * tar header).
 *
 * unpack.c is #included with its main renamed, so its static functions are reachable with no hook in src/.
 * Its fail() reports an error on stdout and calls _exit(1); here _exit jumps back to the harness instead
 * (a rejected name is a valid outcome; the JSON fail() built is then lost, so CTest runs this harness
 * without leak checking), and stdout goes to /dev/null. */
#include <setjmp.h>

static jmp_buf fz_reject;
static __attribute__((noreturn)) void fz_exit(int code)
{
    longjmp(fz_reject, code + 1);
}

#define _exit fz_exit
#define main unpack_main
int unpack_main(int argc, char **argv);
#include "unpack/unpack.c"
#undef main
#undef _exit

#include <assert.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    int fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        dup2(fd, 1);
        close(fd);
    }
    return 0;
}

static void check_components(char **comps, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        const char *c = comps[i];
        assert(*c && !strchr(c, '/') && strcmp(c, ".") != 0 && strcmp(c, "..") != 0 && strlen(c) <= 255);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 8192)
        return 0;
    char *name = strndup((const char *)data, size);

    /* As apply_entry calls it for entries (and hard link targets). */
    static char buf[4096];
    static char *comps[256];
    static volatile size_t n;
    n = 0;
    if (setjmp(fz_reject) == 0) {
        n = split_entry(name, buf, sizeof(buf), comps, 256);
        assert(name[0] != '/' && strlen(name) < sizeof(buf) && n <= 256);
        check_components(comps, n);
    }

    char norm[4096];
    archive_path_normalize(name, norm, sizeof(norm));
    assert(norm[0] != '/' && !strstr(norm, "//"));
    size_t len = strlen(norm);
    assert(len == 0 || norm[len - 1] != '/');
    char *save = NULL;
    for (char *c = strtok_r(norm, "/", &save); c; c = strtok_r(NULL, "/", &save))
        assert(strcmp(c, ".") != 0 && strcmp(c, "..") != 0);
    free(name);
    return 0;
}
