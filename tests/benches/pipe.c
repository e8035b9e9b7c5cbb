/* pipe.c: pipe-demo's calls in plain C. pipe(2): one pipe for bulk, two for ping (a pipe
 * is one-way); per message write(2) until all is written, read(2) until SIZE bytes.
 * The end of bulk: the writer's close(2), EOF for the reader. (Harness: anchor.h.) */
#include "anchor.h"

static int down[2], up[2];

static void setup(void) {
    if (pipe(down) == -1 || (!g_bulk && pipe(up) == -1)) die("pipe");
}
static void open_side(int writer) {
    close(writer ? down[0] : down[1]);
    if (!g_bulk) close(writer ? up[1] : up[0]);
}
static void put(int writer, const char *msg, size_t n) { write_full(writer ? down[1] : up[1], msg, n); }
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    *got = read_full(writer ? up[0] : down[0], buf, n);
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; close(down[1]); }
static void cleanup(void) {}
