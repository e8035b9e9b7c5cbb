/* fifo.c: fifo-demo's calls in plain C. mkfifo(3) P (and P.reply for ping: a FIFO is
 * one-way), 0600, in a mkdtemp(3) directory; each side open(2)s its ends by path; per
 * message write(2) until all is written, read(2) until SIZE bytes. The end of bulk: the
 * writer's close(2). The writer unlinks both and removes the directory at exit. */
#include "anchor.h"
#include <fcntl.h>
#include <sys/stat.h>

static char dir[] = "/tmp/fifo-anchor-XXXXXX", path[64], reply[64];
static int to_reader = -1, to_writer = -1;

static void setup(void) {
    if (!mkdtemp(dir)) die("mkdtemp");
    snprintf(path, sizeof path, "%s/fifo", dir);
    snprintf(reply, sizeof reply, "%s/fifo.reply", dir);
    if (mkfifo(path, 0600) == -1 || (!g_bulk && mkfifo(reply, 0600) == -1)) die("mkfifo");
}
/* Both sides open P first, then P.reply: each open waits for the other side's. */
static void open_side(int writer) {
    if ((to_reader = open(path, writer ? O_WRONLY : O_RDONLY)) == -1) die("open");
    if (!g_bulk && (to_writer = open(reply, writer ? O_RDONLY : O_WRONLY)) == -1) die("open");
}
static void put(int writer, const char *msg, size_t n) { write_full(writer ? to_reader : to_writer, msg, n); }
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    *got = read_full(writer ? to_writer : to_reader, buf, n);
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; close(to_reader); }
static void cleanup(void) {
    unlink(path);
    unlink(reply);
    rmdir(dir);
}
