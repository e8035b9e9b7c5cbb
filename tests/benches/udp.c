/* udp.c: socket-demo udp's calls in plain C. Two socket(2)s bound to 127.0.0.1, port 0,
 * each connect(2)ed to the other; per message one sendto(2) (no address: connected), one
 * recvfrom(2) into SIZE + 1 bytes. UDP has no flow control, so in bulk, as in the demo,
 * the reader acknowledges (8 bytes) the last datagram of every window of
 * 128 KiB / next_power_of_two(SIZE + 1024) datagrams and the writer waits for it. The
 * end of bulk: an empty datagram. A lost datagram ends the run (SO_RCVTIMEO, 5 s). */
#include "anchor.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static int sock[2]; /* [1]: the writer's, [0]: the reader's */
static long window, moved;

static void bound(int *fd, struct sockaddr_in *addr) {
    socklen_t len = sizeof *addr;
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((*fd = socket(AF_INET, SOCK_DGRAM, 0)) == -1) die("socket");
    if (bind(*fd, (struct sockaddr *)addr, sizeof *addr) == -1) die("bind");
    if (getsockname(*fd, (struct sockaddr *)addr, &len) == -1) die("getsockname");
}
static void setup(void) {
    struct sockaddr_in a = {0}, b = {0};
    bound(&sock[0], &a);
    bound(&sock[1], &b);
    if (connect(sock[0], (struct sockaddr *)&b, sizeof b) == -1 ||
        connect(sock[1], (struct sockaddr *)&a, sizeof a) == -1)
        die("connect");
    size_t truesize = 1;
    while (truesize < g_size + 1024) truesize *= 2;
    window = (long)(128 * 1024 / truesize);
    if (window < 1) window = 1;
}
static void open_side(int writer) {
    close(sock[writer ? 0 : 1]);
    struct timeval patience = {5, 0};
    if (setsockopt(sock[writer], SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) == -1) die("setsockopt");
}
static int ends_window(void) { return moved % window == 0 || moved == g_count; }
static void put(int writer, const char *msg, size_t n) {
    if (sendto(sock[writer], msg, n, MSG_NOSIGNAL, NULL, 0) != (ssize_t)n) die("sendto");
    if (writer && g_bulk && (++moved, ends_window())) {
        uint64_t ack;
        if (recvfrom(sock[1], &ack, sizeof ack, 0, NULL, NULL) != sizeof ack) die("recvfrom (ack)");
    }
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    ssize_t r = recvfrom(sock[writer], buf, n + 1, 0, NULL, NULL);
    if (r == -1) die("recvfrom");
    *got = (size_t)r;
    return buf;
}
static void release(int writer) {
    if (!writer && g_bulk && (++moved, ends_window())) {
        uint64_t ack = (uint64_t)moved;
        if (sendto(sock[0], &ack, sizeof ack, MSG_NOSIGNAL, NULL, 0) != sizeof ack) die("sendto (ack)");
    }
}
static void finish(int writer) {
    if (sendto(sock[writer], "", 0, MSG_NOSIGNAL, NULL, 0) != 0) die("sendto (end)");
}
static void cleanup(void) {}
