/* msg_sysv.c: msgq-demo sysv's calls in plain C. msgget(2) IPC_PRIVATE, 0600: one queue,
 * message type 1 from writer to reader, type 2 back (ping). Per message the text is
 * copied into a struct msgbuf, then one msgsnd(2) and one msgrcv(2) of that type into
 * 65536 bytes, both blocking (flags 0), as the demo's. The end of bulk: an empty
 * message. The writer removes the queue at exit (msgctl IPC_RMID). Not here: the
 * demo's timer_create(2) ticker, a SIGALRM every 200 ms while its bulk writer runs so a
 * blocked msgsnd returns EINTR to look at its peer (one or two signals a run). */
#include "anchor.h"
#include <sys/msg.h>

#define MAX_TEXT 65536
struct message { long mtype; char mtext[MAX_TEXT]; };
static struct message out, in;
static int id = -1;

static void setup(void) {
    if ((id = msgget(IPC_PRIVATE, IPC_CREAT | 0600)) == -1) die("msgget");
}
static void open_side(int writer) { (void)writer; }
static void put(int writer, const char *msg, size_t n) {
    out.mtype = writer ? 1 : 2;
    memcpy(out.mtext, msg, n);
    while (msgsnd(id, &out, n, 0) == -1)
        if (errno != EINTR) die("msgsnd");
}
static const char *get(int writer, char *buf, size_t n, size_t *got) {
    (void)buf, (void)n;
    ssize_t r;
    while ((r = msgrcv(id, &in, MAX_TEXT, writer ? 2 : 1, 0)) == -1)
        if (errno != EINTR) die("msgrcv");
    *got = (size_t)r;
    return in.mtext;
}
static void release(int writer) { (void)writer; }
static void finish(int writer) { put(writer, "", 0); }
static void cleanup(void) {
    if (id != -1) msgctl(id, IPC_RMID, NULL);
}
