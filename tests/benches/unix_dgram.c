/* unix_dgram.c: socket-demo unix-dgram's calls in plain C. socketpair(2) AF_UNIX
 * SOCK_DGRAM (connected, as the demo's sockets are after connect(2)), SO_PASSCRED on the
 * reader's socket as the demo sets it; per message one write(2), one recvfrom(2) into
 * SIZE + 1 bytes (a longer datagram would show). The end of bulk: an empty datagram. */
#include "anchor.h"
#include <sys/socket.h>

static int sv[2];

static void setup(void) {
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == -1) die("socketpair");
}
static void open_side(int writer) {
    close(sv[writer ? 1 : 0]);
    int on = 1;
    if (!writer && setsockopt(sv[1], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == -1) die("setsockopt");
}
static int fd(int writer) { return sv[writer ? 0 : 1]; }
static void put(int writer, const char *msg, size_t n) {
    if (write(fd(writer), msg, n) != (ssize_t)n) die("write");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    ssize_t r = recvfrom(fd(writer), buf, n + 1, 0, NULL, NULL);
    if (r == -1) die("recvfrom");
    *got = (size_t)r;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { put(writer, "", 0); }
static void cleanup(void) {}
