/* sem_posix.c: sem-demo posix's calls in plain C. Two named semaphores, sem_open(3)
 * O_CREAT|O_EXCL, 0600, value 0, one each way (ping only: a semaphore carries no bytes).
 * V is sem_post(3); P is sem_timedwait(3) with a deadline 200 ms from now
 * (clock_gettime CLOCK_REALTIME). The writer sem_unlink(3)s both at exit. */
#define PAYLOAD 0
#include "anchor.h"
#include <fcntl.h>
#include <semaphore.h>

static char down_name[64], up_name[64];
static sem_t *down, *up;

static sem_t *create(char *name, const char *which) {
    snprintf(name, 64, "/sem-anchor-%d-%s", (int)getpid(), which);
    sem_t *s = sem_open(name, O_CREAT | O_EXCL, 0600, 0);
    if (s == SEM_FAILED) die("sem_open");
    return s;
}
static void setup(void) {
    down = create(down_name, "down");
    up = create(up_name, "up");
}
static void open_side(int writer) { (void)writer; }
static void put(int writer, const char *msg, size_t n) {
    (void)msg, (void)n;
    if (sem_post(writer ? down : up) == -1) die("sem_post");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 200 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000) { t.tv_sec++; t.tv_nsec -= 1000000000; }
        if (sem_timedwait(writer ? up : down, &t) == 0) break;
        if (errno != ETIMEDOUT && errno != EINTR) die("sem_timedwait");
    }
    *got = n;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; }
static void cleanup(void) {
    sem_unlink(down_name);
    sem_unlink(up_name);
}
