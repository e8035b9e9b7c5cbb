/* signal.c: signal-demo's ping calls in plain C. SIGUSR1 is blocked (sigprocmask(2))
 * before fork, so it stays pending until taken; one way is one sigqueue(3) (which calls
 * getuid(2) and rt_sigqueueinfo(2)) and, on the other side, one sigtimedwait(2) of at
 * most 200 ms, as the demo's. Ping only: a signal carries no bytes (its int value is
 * not checked here). */
#define PAYLOAD 0
#include "anchor.h"
#include <signal.h>

static sigset_t usr1;

static void setup(void) {
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    if (sigprocmask(SIG_BLOCK, &usr1, NULL) == -1) die("sigprocmask");
}
static void open_side(int writer) { (void)writer; }
static void put(int writer, const char *msg, size_t n) {
    (void)writer, (void)msg, (void)n;
    union sigval value = {.sival_int = 25};
    if (sigqueue(g_peer, SIGUSR1, value) == -1) die("sigqueue");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    (void)writer;
    struct timespec tick = {0, 200 * 1000 * 1000};
    while (sigtimedwait(&usr1, NULL, &tick) == -1)
        if (errno != EAGAIN && errno != EINTR) die("sigtimedwait");
    *got = n;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; }
static void cleanup(void) {}
