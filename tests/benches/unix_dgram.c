/* unix_dgram.c: socket-demo unix-dgram's calls in plain C. Two AF_UNIX SOCK_DGRAM
 * socket(2)s bound (bind(2)) to paths in a mkdtemp(3) directory; the writer's
 * connect(2)s to the reader's path, and for ping only the reader's back to the
 * writer's, as in the demo (this matters: a reader not connected back makes a full
 * reader queue, net.unix.max_dgram_qlen datagrams, put the writer to sleep; a
 * socketpair would not). SO_PASSCRED on the reader's socket, as the demo sets it. Per
 * message one write(2), one recvfrom(2) into SIZE + 1 bytes (a longer datagram would
 * show). The end of bulk: an empty datagram. The writer unlinks both paths at exit. */
#include "anchor.h"
#include <sys/socket.h>
#include <sys/un.h>

static char dir[] = "/tmp/dgram-anchor-XXXXXX";
static struct sockaddr_un paths[2]; /* [1]: the writer's, [0]: the reader's */
static int sock[2];

static void bound(int i, const char *name) {
    paths[i].sun_family = AF_UNIX;
    snprintf(paths[i].sun_path, sizeof paths[i].sun_path, "%s/%s", dir, name);
    if ((sock[i] = socket(AF_UNIX, SOCK_DGRAM, 0)) == -1) die("socket");
    if (bind(sock[i], (struct sockaddr *)&paths[i], sizeof paths[i]) == -1) die("bind");
}
static void setup(void) {
    if (!mkdtemp(dir)) die("mkdtemp");
    bound(0, "reader");
    bound(1, "writer");
    int on = 1;
    if (setsockopt(sock[0], SOL_SOCKET, SO_PASSCRED, &on, sizeof on) == -1) die("setsockopt");
    if (connect(sock[1], (struct sockaddr *)&paths[0], sizeof paths[0]) == -1) die("connect");
    if (!g_bulk && connect(sock[0], (struct sockaddr *)&paths[1], sizeof paths[1]) == -1) die("connect");
}
static void open_side(int writer) { close(sock[writer ? 0 : 1]); }
static void put(int writer, const char *msg, size_t n) {
    if (write(sock[writer], msg, n) != (ssize_t)n) die("write");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    ssize_t r = recvfrom(sock[writer], buf, n + 1, 0, NULL, NULL);
    if (r == -1) die("recvfrom");
    *got = (size_t)r;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { put(writer, "", 0); }
static void cleanup(void) {
    unlink(paths[0].sun_path);
    unlink(paths[1].sun_path);
    rmdir(dir);
}
