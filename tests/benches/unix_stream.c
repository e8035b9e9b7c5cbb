/* unix_stream.c: socket-demo unix's calls in plain C. socketpair(2) AF_UNIX SOCK_STREAM
 * (the same kind of connected stream socket that the demo's bind/listen/accept/connect
 * makes); per message write(2) until all is written, read(2) until SIZE bytes. The end
 * of bulk: the writer's close(2). */
#include "anchor.h"
#include <sys/socket.h>

static int sv[2];

static void setup(void) {
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1) die("socketpair");
}
static void open_side(int writer) { close(sv[writer ? 1 : 0]); }
static void put(int writer, const char *msg, size_t n) { write_full(sv[writer ? 0 : 1], msg, n); }
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    *got = read_full(sv[writer ? 0 : 1], buf, n);
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; close(sv[0]); }
static void cleanup(void) {}
