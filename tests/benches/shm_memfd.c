/* shm_memfd.c: shm-demo memfd's calls in plain C: shm_posix.c's modes (MODES), with the
 * memory from memfd_create(2) MFD_ALLOW_SEALING + ftruncate(2) + fcntl(2) F_ADD_SEALS
 * (no shrinking, no growing, no more seals) + mmap(2) MAP_SHARED: nothing named, so
 * nothing to remove. Per message the same sem_post(3) / sem_timedwait(3) as POSIX shm. */
#define SHM_MEMFD
#include "shm_posix.c"
