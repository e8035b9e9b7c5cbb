/* shm_posix.c: shm-demo posix's calls in plain C (and, included by shm_sysv.c and
 * shm_memfd.c, its other two flavours'). shm_open(3) O_CREAT|O_EXCL, 0600 +
 * ftruncate(2) + mmap(2) MAP_SHARED: a header page with four sem_init(3) pshared=1
 * semaphores (free, filled, ping, pong), two spin counters and the spinning ring's two
 * indices, then slots of SIZE + 8 bytes rounded up to 64 (8 bytes of length, then the
 * data): 1 MiB / SIZE of them (2 to 16) for bulk and bulk-spin, 2 for ping and spin.
 * Every P is sem_timedwait(3) with a deadline 100 ms from now (clock_gettime
 * CLOCK_REALTIME), as the demo's.
 * - bulk: writer P(free), memcpy into slot k % n, V(filled) (sem_post(3)); reader
 *   P(filled), checks the slot where it lies, V(free). The end: a length of ~0.
 * - ping: request in slot 0, V(ping); reader P(ping), slot 0 copied to slot 1, V(pong).
 * - spin: the same slots, but each side stores its counter (release) and spins on the
 *   other's (acquire), sched_yield(2) and a clock read every 1024 turns, as the demo's.
 * - bulk-spin: the bulk slots as a spinning ring (shm_demo::spin, shm-demo --count
 *   --spin): a head index (the writer's) and a tail index (the reader's), each alone in
 *   128 bytes with its waiter's asleep flag. A side that waits spins up to 50 us on the
 *   other's index (acquire; the clock read every 64 turns, PAUSE otherwise), then raises
 *   its asleep flag, SeqCst fence, looks again, and P(filled) or P(free). A side moves
 *   its own index with a release store, and every WAKE_EVERY = 4 messages and before it
 *   waits: a SeqCst fence, a look at the other's asleep flag, V if it was raised. The
 *   end: a length of ~0 in slot COUNT % n, head = COUNT + 1, then one V(ping), which the
 *   reader waits for (the demo's last semaphore call).
 * The writer shm_unlink(3)s the name at exit. */
#define MODES "ping spin bulk bulk-spin"
#include "anchor.h"
#include <fcntl.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/mman.h>
#ifdef SHM_SYSV
#include <sys/sem.h>
#include <sys/shm.h>
#endif

#define END UINT64_MAX
enum { FREE, FILLED, PING, PONG };
/* bulk-spin: one index of the ring (the demo's shm_demo::spin::Index), 128 bytes alone. */
struct ring_index {
    _Alignas(128) _Atomic uint64_t value;
    _Atomic uint32_t asleep; /* 1 while the side waiting for this index (is about to) sleep */
};
#define WAKE_EVERY 4
#define SPIN_NS (50 * 1000) /* the demo's DEFAULT_SPIN */
struct header {
    sem_t sems[4]; /* FREE, FILLED, PING, PONG (unused by System V: its set is in the kernel) */
    _Alignas(64) _Atomic uint64_t ping_seq;
    _Alignas(64) _Atomic uint64_t pong_seq;
    struct ring_index ring_head, ring_tail; /* bulk-spin */
};
__attribute__((unused)) static char name[64]; /* the POSIX name, for shm_unlink */
static struct header *h;
static char *slots;
static size_t nslots, stride;
static uint64_t k; /* this side's message number */

static uint64_t *len_of(size_t slot) { return (uint64_t *)(slots + slot * stride); }
static char *data_of(size_t slot) { return slots + slot * stride + 8; }

#if defined(SHM_SYSV)
static int shm_id = -1, sem_id = -1;
static void *create_memory(size_t len) {
    if ((shm_id = shmget(IPC_PRIVATE, len, IPC_CREAT | 0600)) == -1) die("shmget");
    void *at = shmat(shm_id, NULL, 0);
    if (at == (void *)-1) die("shmat");
    return at;
}
static void create_semaphores(unsigned free) {
    if ((sem_id = semget(IPC_PRIVATE, 4, IPC_CREAT | 0600)) == -1) die("semget");
    if (semctl(sem_id, FREE, SETVAL, (int)free) == -1) die("semctl SETVAL");
}
/* P: semtimedop(2) -1 with a 100 ms timeout; V: semop(2) +1, no SEM_UNDO. */
static void P(int sem) {
    struct sembuf op = {.sem_num = (unsigned short)sem, .sem_op = -1};
    struct timespec tick = {0, 100 * 1000 * 1000};
    while (semtimedop(sem_id, &op, 1, &tick) == -1)
        if (errno != EAGAIN && errno != EINTR) die("semtimedop");
}
static void V(int sem) {
    struct sembuf op = {.sem_num = (unsigned short)sem, .sem_op = 1};
    while (semop(sem_id, &op, 1) == -1)
        if (errno != EINTR) die("semop");
}
static void cleanup(void) {
    if (shm_id != -1) shmctl(shm_id, IPC_RMID, NULL);
    if (sem_id != -1) semctl(sem_id, 0, IPC_RMID);
}
#else
#ifdef SHM_MEMFD
/* memfd_create(2) MFD_ALLOW_SEALING + ftruncate(2), sealed against shrinking and
 * growing (F_ADD_SEALS), then mmap(2) MAP_SHARED: no name to remove. */
static void *create_memory(size_t len) {
    int fd = memfd_create("shm-anchor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd == -1) die("memfd_create");
    if (ftruncate(fd, (off_t)len) == -1) die("ftruncate");
    if (fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == -1) die("F_ADD_SEALS");
#else
static void *create_memory(size_t len) {
    snprintf(name, sizeof name, "/shm-anchor-%d", (int)getpid());
    int fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
    if (fd == -1) die("shm_open");
    if (ftruncate(fd, (off_t)len) == -1) die("ftruncate");
#endif
    void *at = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (at == MAP_FAILED) die("mmap");
    close(fd);
    return at;
}
static void create_semaphores(unsigned free) {
    for (int i = FREE; i <= PONG; i++)
        if (sem_init(&h->sems[i], 1, i == FREE ? free : 0) == -1) die("sem_init");
}
static void P(int sem) {
    for (;;) {
        struct timespec t;
        clock_gettime(CLOCK_REALTIME, &t);
        t.tv_nsec += 100 * 1000 * 1000;
        if (t.tv_nsec >= 1000000000) { t.tv_sec++; t.tv_nsec -= 1000000000; }
        if (sem_timedwait(&h->sems[sem], &t) == 0) return;
        if (errno != ETIMEDOUT && errno != EINTR) die("sem_timedwait");
    }
}
static void V(int sem) { if (sem_post(&h->sems[sem]) == -1) die("sem_post"); }
static void cleanup(void) { if (name[0]) shm_unlink(name); }
#endif

static void setup(void) {
    nslots = g_bulk ? (1 << 20) / g_size : 2;
    nslots = nslots < 2 ? 2 : nslots > 16 ? 16 : nslots;
    stride = (g_size + 8 + 63) / 64 * 64;
    size_t len = 4096 + nslots * stride;
    len = (len + 4095) / 4096 * 4096;
    void *at = create_memory(len);
    h = at;
    slots = (char *)at + 4096;
    create_semaphores((unsigned)nslots);
}
static void open_side(int writer) { (void)writer; }

/* What Rust's std::hint::spin_loop() emits: PAUSE on x86. */
static void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}
static uint64_t spin_until(_Atomic uint64_t *counter, uint64_t want) {
    for (uint32_t turns = 1;; turns++) {
        uint64_t seen = atomic_load_explicit(counter, memory_order_acquire);
        if (seen == want || seen == END) return seen;
        if (turns % 1024 == 0) {
            now_us(); /* the demo looks at its clock here, for the peer check */
            sched_yield();
        } else {
            spin_pause();
        }
    }
}
static void store(size_t slot, const char *msg, size_t n) {
    *len_of(slot) = n;
    memcpy(data_of(slot), msg, n);
}

/* bulk-spin: the demo's Index::advance, waiter_asleep and wait_until. */
static void advance(struct ring_index *ix, uint64_t n) {
    atomic_store_explicit(&ix->value, n, memory_order_release);
}
static int waiter_asleep(struct ring_index *ix) {
    atomic_thread_fence(memory_order_seq_cst);
    return atomic_load_explicit(&ix->asleep, memory_order_relaxed) != 0 &&
           atomic_exchange_explicit(&ix->asleep, 0, memory_order_acq_rel) != 0;
}
static uint64_t mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}
/* Waits until the index is >= want (the demo's `ready` closures: t + slots > k for the
 * writer, h > k for the reader); returns it. */
static uint64_t wait_index(struct ring_index *ix, uint64_t want, int sem) {
    uint64_t started = mono_ns();
    for (uint32_t turns = 1;; turns++) {
        uint64_t seen = atomic_load_explicit(&ix->value, memory_order_acquire);
        if (seen >= want) return seen;
        if (turns % 64 == 0 && mono_ns() - started >= SPIN_NS) break;
        spin_pause();
    }
    for (;;) {
        atomic_store_explicit(&ix->asleep, 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_seq_cst);
        uint64_t seen = atomic_load_explicit(&ix->value, memory_order_acquire);
        if (seen >= want) {
            atomic_store_explicit(&ix->asleep, 0, memory_order_relaxed);
            return seen;
        }
        P(sem);
    }
}
static uint64_t ready_below; /* writer: tail + n as last seen; reader: head as last seen */
/* Writer: room for message k (the demo's room_for), looking for a sleeping reader first. */
static void spin_room_for(uint64_t m) {
    if (m < ready_below) return;
    if (waiter_asleep(&h->ring_head)) V(FILLED);
    uint64_t want = m + 1 > nslots ? m + 1 - nslots : 0;
    ready_below = wait_index(&h->ring_tail, want, FREE) + nslots;
}
/* Reader: message m published (the demo's filled_past), looking for a sleeping writer. */
static void spin_filled_past(uint64_t m) {
    if (m < ready_below) return;
    if (waiter_asleep(&h->ring_tail)) V(FREE);
    ready_below = wait_index(&h->ring_head, m + 1, FILLED);
}

static int bulk_spin(void) { return g_bulk && g_spin; }

static void put(int writer, const char *msg, size_t n) {
    if (bulk_spin()) {
        spin_room_for(k);
        store(k % nslots, msg, n);
        advance(&h->ring_head, k + 1);
        if ((k + 1) % WAKE_EVERY == 0 && waiter_asleep(&h->ring_head)) V(FILLED);
        k++;
    } else if (g_bulk) {
        P(FREE);
        store(k++ % nslots, msg, n);
        V(FILLED);
    } else if (writer) {
        store(0, msg, n);
        if (g_spin) atomic_store_explicit(&h->ping_seq, k + 1, memory_order_release);
        else V(PING);
    } else {
        store(1, msg, n); /* msg is slot 0: the demo's copy from slot 0 to slot 1 */
        if (g_spin) atomic_store_explicit(&h->pong_seq, k + 1, memory_order_release);
        else V(PONG);
    }
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    (void)buf, (void)n;
    size_t slot = g_bulk ? k % nslots : writer ? 1 : 0;
    if (bulk_spin()) spin_filled_past(k);
    else if (g_spin) spin_until(writer ? &h->pong_seq : &h->ping_seq, k + 1);
    else P(g_bulk ? FILLED : writer ? PONG : PING);
    *got = *len_of(slot) == END ? 0 : *len_of(slot);
    if (bulk_spin() && *got == 0) P(PING); /* the writer's last semaphore call */
    return data_of(slot);
}
static void release(int writer) {
    if (bulk_spin()) {
        advance(&h->ring_tail, k + 1);
        if ((k + 1) % WAKE_EVERY == 0 && waiter_asleep(&h->ring_tail)) V(FREE);
    } else if (g_bulk && !writer) {
        V(FREE);
    }
    k++;
}
static void finish(int writer) {
    (void)writer;
    if (bulk_spin()) {
        spin_room_for(k);
        *len_of(k % nslots) = END;
        advance(&h->ring_head, k + 1);
        if (waiter_asleep(&h->ring_head)) V(FILLED);
        V(PING);
        return;
    }
    P(FREE);
    *len_of(k % nslots) = END;
    V(FILLED);
}
