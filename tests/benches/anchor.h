/* anchor.h: what every C anchor of the benchmark shares (tests/src/bench.rs builds each
 * tests/benches/NAME.c with `cc -O2`). Each NAME.c defines the hooks below for one
 * mechanism, making the calls its demo makes per message; this file does the rest, as
 * the demos do: fork, pin each side with sched_setaffinity, the bulk pattern (message k
 * starts with k, then byte i is i % 251), the check of every byte, and the timing.
 *
 * usage: NAME MODE COUNT SIZE WRITER_CPU READER_CPU, MODE one of the words in the
 * NAME.c's MODES ("ping bulk" unless it says more):
 * ping: the writer (parent) times COUNT round trips of SIZE bytes, two clock_gettime
 *   calls around each, and compares each answer; prints "p50_us p99_us".
 * spin (shm): the same, but one clock read a round trip, as shm-demo's --spin ping
 *   (the end of trip k is the start of trip k+1, stamping and comparing included).
 * bulk, bulk-*: COUNT messages of SIZE bytes; the reader (child) checks each one and
 *   prints "mib_per_s", timed from the first message to the last. What a bulk-* mode
 *   changes (bulk-sized, bulk-vmsplice: pipe.c; bulk-spin: shm_posix.c) is the NAME.c's. */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long g_count;  /* messages or round trips */
static size_t g_size; /* bytes a message */
static int g_bulk;    /* 1: bulk, 0: ping */
static int g_spin;    /* spin on shared counters instead of sleeping (shm: spin, bulk-spin) */
static const char *g_mode; /* MODE as given */
static pid_t g_peer;  /* the other side's pid (signals) */

/* The hooks each mechanism defines; `writer` is 1 on the writer's side, 0 on the reader's. */
static void setup(void);                             /* before fork: create the objects */
static void open_side(int writer);                   /* after fork and pinning */
static void put(int writer, const char *msg, size_t n); /* one message to the other side */
static const char *get(int writer, char *buf, size_t n, size_t *got); /* one from it; *got = 0: the end */
static void release(int writer);                     /* done with what get returned */
static void finish(int writer);                      /* bulk writer: say "the end" */
static void cleanup(void);                           /* writer, at exit: remove names */
#ifndef MODES
#define MODES "ping bulk" /* the MODEs this NAME.c knows */
#endif
#ifndef PAYLOAD
#define PAYLOAD 1 /* 0: the messages carry no bytes (eventfd, semaphores): nothing to check */
#endif

static void die(const char *what) { perror(what); exit(1); }

/* The writer removes what setup named on every exit, die() included (atexit). */
static pid_t g_writer;
static void remove_names(void) { if (getpid() == g_writer) cleanup(); }

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == -1) die("sched_setaffinity");
}

/* write(2) until all of buf has gone; read(2) until n bytes or EOF (returns the count). */
__attribute__((unused)) static void write_full(int fd, const char *buf, size_t n) {
    for (size_t done = 0; done < n;) {
        ssize_t r = write(fd, buf + done, n - done);
        if (r == -1 && errno == EINTR) continue;
        if (r <= 0) die("write");
        done += (size_t)r;
    }
}
__attribute__((unused)) static size_t read_full(int fd, char *buf, size_t n) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = read(fd, buf + done, n - done);
        if (r == -1 && errno == EINTR) continue;
        if (r == -1) die("read");
        if (r == 0) break;
        done += (size_t)r;
    }
    return done;
}

static void stamp(char *msg, size_t n, uint64_t k) { memcpy(msg, &k, n < 8 ? n : 8); }

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void ping_writer(char *msg, char *buf) {
    double *rtt = calloc((size_t)g_count, sizeof *rtt);
    if (!rtt) die("calloc");
    size_t got;
    double sent = now_us(); /* spin: read once a trip, at its end (see the top) */
    for (long k = 0; k < g_count; k++) {
        stamp(msg, g_size, (uint64_t)k);
        if (!g_spin) sent = now_us();
        put(1, msg, g_size);
        const char *answer = get(1, buf, g_size, &got);
        if (!g_spin) rtt[k] = now_us() - sent;
        if (PAYLOAD && (got != g_size || memcmp(answer, msg, g_size) != 0)) {
            fprintf(stderr, "answer %ld differs\n", k);
            exit(1);
        }
        release(1);
        if (g_spin) {
            double end = now_us();
            rtt[k] = end - sent;
            sent = end;
        }
    }
    qsort(rtt, (size_t)g_count, sizeof *rtt, cmp);
    long p50 = (g_count * 50 + 99) / 100, p99 = (g_count * 99 + 99) / 100;
    printf("%.2f %.2f\n", rtt[p50 - 1], rtt[p99 - 1]);
}

static void ping_reader(char *buf) {
    size_t got;
    for (long k = 0; k < g_count; k++) {
        const char *msg = get(0, buf, g_size, &got);
        if (PAYLOAD && got != g_size) { fprintf(stderr, "ping %ld: %zu bytes\n", k, got); exit(1); }
        put(0, msg, got);
        release(0);
    }
}

static void bulk_writer(char *msg) {
    for (long k = 0; k < g_count; k++) {
        stamp(msg, g_size, (uint64_t)k);
        put(1, msg, g_size);
    }
    finish(1);
}

static void bulk_reader(char *want, char *buf) {
    double started = 0;
    size_t got;
    for (long k = 0; k < g_count; k++) {
        const char *msg = get(0, buf, g_size, &got);
        if (k == 0) started = now_us();
        stamp(want, g_size, (uint64_t)k);
        if (got != g_size || memcmp(msg, want, g_size) != 0) {
            fprintf(stderr, "message %ld is wrong (%zu bytes)\n", k, got);
            exit(1);
        }
        release(0);
    }
    double elapsed = now_us() - started;
    get(0, buf, g_size, &got);
    if (got != 0) { fprintf(stderr, "more than %ld messages\n", g_count); exit(1); }
    printf("%.1f\n", (double)g_count * (double)g_size / (1 << 20) / (elapsed / 1e6));
}

/* True if `mode` is one of the words of MODES. */
static int known_mode(const char *mode) {
    static const char modes[] = MODES;
    size_t n = strlen(mode);
    if (n == 0) return 0;
    for (const char *m = modes; (m = strstr(m, mode)) != NULL; m += n)
        if ((m == modes || m[-1] == ' ') && (m[n] == ' ' || m[n] == '\0')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 6 || !known_mode(argv[1])) {
        fprintf(stderr, "usage: %s MODE COUNT SIZE WRITER_CPU READER_CPU (MODE: %s)\n", argv[0],
                MODES);
        return 2;
    }
    g_mode = argv[1];
    g_bulk = strncmp(g_mode, "bulk", 4) == 0;
    g_spin = strstr(g_mode, "spin") != NULL;
    g_count = atol(argv[2]);
    g_size = (size_t)atol(argv[3]);
    if (g_count < 1 || g_size < 1) { fprintf(stderr, "COUNT and SIZE must be > 0\n"); return 2; }
    char *msg = calloc(1, g_size + 1), *buf = calloc(1, g_size + 1), *want = calloc(1, g_size + 1);
    if (!msg || !buf || !want) die("malloc");
    for (size_t i = 0; i < g_size; i++) msg[i] = want[i] = (char)(i % 251);
    g_writer = getpid();
    atexit(remove_names);
    setup();
    fflush(stdout);
    pid_t child = fork();
    alarm(120); /* in both processes: a side whose peer died stuck in a wait is killed */
    if (child == -1) die("fork");
    g_peer = child ? child : g_writer;
    if (child == 0) {
        pin(atoi(argv[5]));
        open_side(0);
        if (g_bulk) bulk_reader(want, buf); else ping_reader(buf);
        fflush(stdout);
        _exit(0);
    }
    pin(atoi(argv[4]));
    open_side(1);
    if (g_bulk) bulk_writer(msg); else ping_writer(msg, buf);
    int status;
    if (waitpid(child, &status, 0) == -1) die("waitpid");
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}
