/* mq_posix.c: msgq-demo posix's calls in plain C. mq_open(3) O_CREAT|O_EXCL, 0600,
 * mq_maxmsg 10, mq_msgsize 8192, as the demo's queue: one for bulk, two for ping (one
 * queue carries a message to whoever receives first). Per message one mq_timedsend(3)
 * and one mq_timedreceive(3) into 8192 bytes, each with a deadline 100 ms from now
 * (clock_gettime CLOCK_REALTIME), as the demo's. The end of bulk: an empty message.
 * The writer mq_unlink(3)s both at exit. */
#include "anchor.h"
#include <fcntl.h>
#include <mqueue.h>

#define MSGSIZE 8192
static char down_name[64], up_name[64];
static mqd_t down = -1, up = -1;
static char slot[MSGSIZE];

static mqd_t create(char *name, const char *which) {
    struct mq_attr attr = {.mq_maxmsg = 10, .mq_msgsize = MSGSIZE};
    snprintf(name, 64, "/mq-anchor-%d-%s", (int)getpid(), which);
    mqd_t q = mq_open(name, O_RDWR | O_CREAT | O_EXCL, 0600, &attr);
    if (q == (mqd_t)-1) die("mq_open");
    return q;
}
static void setup(void) {
    down = create(down_name, "down");
    if (!g_bulk) up = create(up_name, "up");
}
static void open_side(int writer) { (void)writer; }
static struct timespec deadline(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    t.tv_nsec += 100 * 1000 * 1000;
    if (t.tv_nsec >= 1000000000) { t.tv_sec++; t.tv_nsec -= 1000000000; }
    return t;
}
static void put(int writer, const char *msg, size_t n) {
    for (;;) {
        struct timespec t = deadline();
        if (mq_timedsend(writer ? down : up, msg, n, 0, &t) == 0) return;
        if (errno != ETIMEDOUT && errno != EINTR) die("mq_timedsend");
    }
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    (void)buf, (void)n;
    for (;;) {
        struct timespec t = deadline();
        ssize_t r = mq_timedreceive(writer ? up : down, slot, MSGSIZE, NULL, &t);
        if (r >= 0) { *got = (size_t)r; return slot; }
        if (errno != ETIMEDOUT && errno != EINTR) die("mq_timedreceive");
    }
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { put(writer, "", 0); }
static void cleanup(void) {
    mq_unlink(down_name);
    if (!g_bulk) mq_unlink(up_name);
}
