/* tcp.c: socket-demo tcp's calls in plain C. The reader's socket(2) + bind(2) to
 * 127.0.0.1, port 0 + listen(2) before fork; the writer connect(2)s, the reader
 * accept(2)s; TCP_NODELAY on both, as the demo sets it. Per message write(2) until all
 * is written, read(2) until SIZE bytes. The end of bulk: the writer's close(2). */
#include "anchor.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static int listener, conn;
static struct sockaddr_in addr;

static void setup(void) {
    socklen_t len = sizeof addr;
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if ((listener = socket(AF_INET, SOCK_STREAM, 0)) == -1) die("socket");
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) == -1) die("bind");
    if (listen(listener, 1) == -1 || getsockname(listener, (struct sockaddr *)&addr, &len) == -1) die("listen");
}
static void open_side(int writer) {
    if (writer) {
        if ((conn = socket(AF_INET, SOCK_STREAM, 0)) == -1) die("socket");
        if (connect(conn, (struct sockaddr *)&addr, sizeof addr) == -1) die("connect");
    } else if ((conn = accept(listener, NULL, NULL)) == -1) {
        die("accept");
    }
    close(listener);
    int on = 1;
    if (setsockopt(conn, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on) == -1) die("setsockopt");
}
static void put(int writer, const char *msg, size_t n) { (void)writer; write_full(conn, msg, n); }
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    (void)writer;
    *got = read_full(conn, buf, n);
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; close(conn); }
static void cleanup(void) {}
