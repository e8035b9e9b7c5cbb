/* pipe.c: pipe-demo's calls in plain C. pipe(2): one pipe for bulk, two for ping (a pipe
 * is one-way); per message write(2) until all is written, read(2) until SIZE bytes.
 * The end of bulk: the writer's close(2), EOF for the reader. (Harness: anchor.h.)
 * The fast paths (pipe_demo::fast, pipe-demo --pipe-size auto [--vmsplice]):
 * - bulk-sized: before fork, fcntl(2) F_GETPIPE_SZ, then F_SETPIPE_SZ to 4 messages
 *   rounded up to a power of two of pages, at most /proc/sys/fs/pipe-max-size
 *   (`capacity_for`), if that is more (`size_for_messages` only grows a pipe).
 * - bulk-vmsplice: sized so, and the writer vmsplice(2)s (no flags) from a ring of
 *   ceil(capacity / pages a message) + 1 page-aligned buffers holding the pattern,
 *   stamping only each message's sequence number (`SpliceRing`); the reader reads. */
#define MODES "ping bulk bulk-sized bulk-vmsplice"
#include "anchor.h"
#include <fcntl.h>
#include <sys/uio.h>

static int down[2], up[2];
static char *ring;                       /* bulk-vmsplice: the buffers, page-aligned */
static size_t ring_stride, ring_buffers, ring_next;

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

/* capacity_for: 4 messages, rounded up to a power of two of pages, capped. */
static size_t capacity_for(size_t message, size_t page, size_t max_size) {
    size_t pages = (message * 4 + page - 1) / page, wanted = 1, cap = 1;
    while (wanted < pages) wanted <<= 1;
    while (cap * 2 <= max_size / page) cap <<= 1;
    return (wanted < cap ? wanted : cap) * page;
}
static size_t pipe_max_size(void) {
    FILE *f = fopen("/proc/sys/fs/pipe-max-size", "r");
    unsigned long max = 0;
    if (!f || fscanf(f, "%lu", &max) != 1) die("/proc/sys/fs/pipe-max-size");
    fclose(f);
    return max;
}

static void make_ring(size_t capacity) {
    size_t page = page_size();
    ring_stride = (g_size + page - 1) / page * page;
    ring_buffers = (capacity + ring_stride - 1) / ring_stride + 1;
    if (posix_memalign((void **)&ring, page, ring_buffers * ring_stride)) die("posix_memalign");
    for (size_t b = 0; b < ring_buffers; b++)
        for (size_t i = 0; i < g_size; i++) ring[b * ring_stride + i] = (char)(i % 251);
}

static void setup(void) {
    if (pipe(down) == -1 || (!g_bulk && pipe(up) == -1)) die("pipe");
    if (strcmp(g_mode, "bulk-sized") == 0 || strcmp(g_mode, "bulk-vmsplice") == 0) {
        int capacity = fcntl(down[1], F_GETPIPE_SZ);
        if (capacity == -1) die("F_GETPIPE_SZ");
        size_t wanted = capacity_for(g_size, page_size(), pipe_max_size());
        if (wanted > (size_t)capacity) capacity = fcntl(down[1], F_SETPIPE_SZ, (int)wanted);
        if (capacity == -1) die("F_SETPIPE_SZ");
        if (strcmp(g_mode, "bulk-vmsplice") == 0) make_ring((size_t)capacity);
    }
}
static void open_side(int writer) {
    close(writer ? down[0] : down[1]);
    if (!g_bulk) close(writer ? up[1] : up[0]);
}
/* vmsplice(2) until all of buf is in the pipe (it may take part, as write does). */
static void vmsplice_all(int fd, char *buf, size_t n) {
    while (n > 0) {
        struct iovec iov = {.iov_base = buf, .iov_len = n};
        ssize_t r = vmsplice(fd, &iov, 1, 0);
        if (r == -1 && errno == EINTR) continue;
        if (r <= 0) die("vmsplice");
        buf += r, n -= (size_t)r;
    }
}
static void put(int writer, const char *msg, size_t n) {
    if (ring) { /* the pattern is in place: stamp the sequence number, as the demo does */
        char *buf = ring + ring_next * ring_stride;
        memcpy(buf, msg, n < 8 ? n : 8);
        vmsplice_all(down[1], buf, n);
        ring_next = (ring_next + 1) % ring_buffers;
        return;
    }
    write_full(writer ? down[1] : up[1], msg, n);
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    *got = read_full(writer ? up[0] : down[0], buf, n);
    return buf;
}
static void release(int writer) { (void)writer; }
/* The ring is freed only at exit, after waitpid: the reader has read every page. */
static void finish(int writer) { (void)writer; close(down[1]); }
static void cleanup(void) {}
