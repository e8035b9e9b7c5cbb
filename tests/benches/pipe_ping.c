/* pipe_ping.c: the pipe round trip in plain C, for the benchmark to compare with
 * pipe-demo's --ping (the same calls: one write and one read per side per trip).
 * usage: pipe_ping ROUNDS SIZE WRITER_CPU READER_CPU
 * prints: p50_us p99_us */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void pin(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) == -1) { perror("sched_setaffinity"); exit(1); }
}

static int full(int fd, char *buf, size_t n, int reading) {
    size_t done = 0;
    while (done < n) {
        ssize_t r = reading ? read(fd, buf + done, n - done) : write(fd, buf + done, n - done);
        if (r <= 0) return -1;
        done += (size_t)r;
    }
    return 0;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc != 5) { fprintf(stderr, "usage: pipe_ping ROUNDS SIZE WRITER_CPU READER_CPU\n"); return 2; }
    long rounds = atol(argv[1]);
    size_t size = (size_t)atol(argv[2]);
    int down[2], up[2];
    if (rounds < 1 || size < 1 || pipe(down) == -1 || pipe(up) == -1) { perror("pipe"); return 1; }
    char *buf = calloc(1, size);
    double *rtt = calloc((size_t)rounds, sizeof *rtt);
    if (!buf || !rtt) return 1;
    pid_t child = fork();
    if (child == -1) { perror("fork"); return 1; }
    if (child == 0) {
        close(down[1]); close(up[0]);
        pin(atoi(argv[4]));
        while (full(down[0], buf, size, 1) == 0)
            if (full(up[1], buf, size, 0) == -1) _exit(1);
        _exit(0);
    }
    close(down[0]); close(up[1]);
    pin(atoi(argv[3]));
    for (long i = 0; i < rounds; i++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        if (full(down[1], buf, size, 0) == -1 || full(up[0], buf, size, 1) == -1) { perror("ping"); return 1; }
        clock_gettime(CLOCK_MONOTONIC, &b);
        rtt[i] = (double)(b.tv_sec - a.tv_sec) * 1e6 + (double)(b.tv_nsec - a.tv_nsec) / 1e3;
    }
    close(down[1]);
    int status;
    if (waitpid(child, &status, 0) == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 1;
    qsort(rtt, (size_t)rounds, sizeof *rtt, cmp);
    long p50 = (rounds * 50 + 99) / 100, p99 = (rounds * 99 + 99) / 100;
    printf("%.2f %.2f\n", rtt[p50 - 1], rtt[p99 - 1]);
    return 0;
}
