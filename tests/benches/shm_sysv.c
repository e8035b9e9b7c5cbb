/* shm_sysv.c: shm-demo sysv's calls in plain C: shm_posix.c's ring, ping, spin and
 * spinning ring with System V objects instead. shmget(2) IPC_PRIVATE, 0600 + shmat(2)
 * for the memory; a semget(2) set of four semaphores (free, filled, ping, pong): P is
 * semtimedop(2) -1 with a 100 ms timeout, V semop(2) +1, as the demo's. The writer
 * removes both at exit (shmctl, semctl IPC_RMID). */
#define SHM_SYSV
#include "shm_posix.c"
