/* eventfd.c: sem-demo eventfd's calls in plain C. Two eventfd(2)s, EFD_SEMAPHORE |
 * EFD_NONBLOCK, one each way (ping only: an eventfd carries a count, no bytes). V is a
 * write(2) of 1; P is a read(2), and on EAGAIN a poll(2) of at most 200 ms and the read
 * again, as the demo's. */
#define PAYLOAD 0
#include "anchor.h"
#include <poll.h>
#include <sys/eventfd.h>

static int down, up;

static void setup(void) {
    down = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    up = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK | EFD_CLOEXEC);
    if (down == -1 || up == -1) die("eventfd");
}
static void open_side(int writer) { (void)writer; }
static void put(int writer, const char *msg, size_t n) {
    (void)msg, (void)n;
    uint64_t one = 1;
    if (write(writer ? down : up, &one, sizeof one) != sizeof one) die("write");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    struct pollfd p = {.fd = writer ? up : down, .events = POLLIN};
    uint64_t value;
    while (read(p.fd, &value, sizeof value) != sizeof value) {
        if (errno != EAGAIN && errno != EINTR) die("read");
        if (poll(&p, 1, 200) == -1 && errno != EINTR) die("poll");
    }
    *got = n;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; }
static void cleanup(void) {}
