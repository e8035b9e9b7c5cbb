/* sem_sysv.c: sem-demo sysv's calls in plain C. semget(2) IPC_PRIVATE, 0600: a set of
 * two semaphores, value 0, one each way (ping only: a semaphore carries no bytes). V is
 * semop(2) +1; P is semtimedop(2) -1 with a 200 ms timeout, as the demo's. The writer
 * removes the set at exit (semctl IPC_RMID). */
#define PAYLOAD 0
#include "anchor.h"
#include <sys/sem.h>

static int id = -1;

static void setup(void) {
    if ((id = semget(IPC_PRIVATE, 2, IPC_CREAT | 0600)) == -1) die("semget");
}
static void open_side(int writer) { (void)writer; }
static void put(int writer, const char *msg, size_t n) {
    (void)msg, (void)n;
    struct sembuf v = {.sem_num = (unsigned short)(writer ? 0 : 1), .sem_op = 1};
    while (semop(id, &v, 1) == -1)
        if (errno != EINTR) die("semop");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    struct sembuf p = {.sem_num = (unsigned short)(writer ? 1 : 0), .sem_op = -1};
    struct timespec tick = {0, 200 * 1000 * 1000};
    while (semtimedop(id, &p, 1, &tick) == -1)
        if (errno != EAGAIN && errno != EINTR) die("semtimedop");
    *got = n;
    return buf;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { (void)writer; }
static void cleanup(void) {
    if (id != -1) semctl(id, 0, IPC_RMID);
}
