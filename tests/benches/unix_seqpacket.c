/* unix_seqpacket.c: socket-demo seqpacket's calls in plain C. socketpair(2) AF_UNIX
 * SOCK_SEQPACKET (a connected socket that keeps message boundaries, as the demo's
 * bind/listen/accept/connect makes); per message the demo's two calls (socket_demo::
 * seqpacket::send and recv): one send(2) with MSG_NOSIGNAL, one recv(2) with MSG_TRUNC
 * that returns the whole message, and its real length if it was cut. The end of bulk:
 * the writer's close(2), which recv(2) sees as 0. */
#include "anchor.h"
#include <sys/socket.h>

static int sv[2];

static void setup(void) {
    if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sv) == -1) die("socketpair");
}
static void open_side(int writer) { close(sv[writer ? 1 : 0]); }
static void put(int writer, const char *msg, size_t n) {
    for (;;) {
        ssize_t r = send(sv[writer ? 0 : 1], msg, n, MSG_NOSIGNAL);
        if (r == (ssize_t)n) return;
        if (r == -1 && errno == EINTR) continue;
        die("send");
    }
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    for (;;) {
        ssize_t r = recv(sv[writer ? 0 : 1], buf, n, MSG_TRUNC);
        if (r > (ssize_t)n) { fprintf(stderr, "a message of %zd bytes, cut\n", r); exit(1); }
        if (r >= 0) { *got = (size_t)r; return buf; }
        if (errno != EINTR) die("recv");
    }
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; close(sv[0]); }
static void cleanup(void) {}
