/*
 * keeper.c -- the long-lived half of a sandbox session's keeper: a small relay.
 *
 * A session is two processes (see the "Hardening" part of _zygote_server.py): the keeper,
 * PID 1 of the session's PID namespace, which alone holds the host connection, and the cell,
 * which runs the model's code and talks only to the keeper. The keeper starts as a forked
 * CPython process (namespaces, uid drop, the handover of the host connection are Python);
 * once it has sent its hello, it execs this program, which does the rest: relay each call
 * to the cell and the cell's result back, for a few tens of kB of memory instead of a
 * CPython heap (the point of it: issue 24).
 *
 *     ae-keeper CONN_FD CHAN_FD CELL_PID MAX_OUTPUT
 *     ae-keeper --probe          (exits 0: the zygote checks that this binary runs)
 *
 * Wire format (all integers are 32-bit big-endian; no JSON is parsed here):
 *
 *   host -> keeper   [len][max_output][code: len bytes of UTF-8]   (max_output 0: MAX_OUTPUT)
 *   keeper -> cell   [len][seq][max_output][code]                  (seq 0 is never sent here)
 *   cell -> keeper   [len][seq][payload: len bytes, the result as JSON]
 *   keeper -> host   [len][kind][payload]
 *                    kind 0: a cell's result payload, forwarded unchanged (the host checks it)
 *                    kind 1: this keeper's own report, {"died": {...}} (see report_died)
 *
 * What the relay enforces, because the cell runs adversarial code and can write anything to
 * its end of the channel:
 *   - a result frame larger than 3 * max_output + CELL_FRAME_SLACK ends the session with a
 *     {"died": {"malformed": "..."}} report (nothing that size is read into memory);
 *   - a frame whose seq is not the current call's is read and dropped, so a forged frame can
 *     stand in for at most the call it names and never shifts a later call;
 *   - only the payload of a kind-0 frame comes from the cell: the host tells its own reports
 *     (kind 1) from the cell's data by the kind, which the cell cannot set.
 * The host client checks the payload (a JSON object, field types, truncation markers) and
 * ends the session when it is malformed.
 *
 * When the cell dies, the relay reports how (exit code, signal, CPU seconds from wait4) at
 * the next call, and exits; its exit ends the PID namespace. It is the namespace's init, so
 * it reaps the orphans re-parented to it as they exit (their zombies would use up the
 * session's pids limit), peeking with WNOWAIT so that the cell itself is reaped only once,
 * at the end, by wait4, which reads its status. When the host closes the connection, the
 * relay kills the cell and exits.
 *
 * File descriptors: only CONN_FD and CHAN_FD stay open; everything else inherited across
 * the exec is closed first thing. No signalfd or pipe: SIGCHLD is blocked except inside
 * ppoll, whose EINTR says "a child exited".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define CELL_FRAME_SLACK 65536u     /* as in _zygote_server.py: error text, JSON overhead */
#define MAX_REQUEST (64u << 20)      /* a host request larger than this is a protocol error */
#define KIND_RESULT 0u
#define KIND_REPORT 1u
#define BUF_SIZE 4096                /* one page: requests stream through it, small results fit */

static int conn = -1, chan = -1;     /* the host connection, the channel to the cell */
static pid_t cell = -1;
static int cell_exited;              /* set once waitid has seen the cell exit (not reaped) */
static sigset_t wait_mask;           /* the signal mask inside ppoll: SIGCHLD unblocked */
static unsigned char buf[BUF_SIZE];

/* ------------------------------------------------------------------ small helpers */

static uint32_t get_u32(const unsigned char *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u32(unsigned char *p, uint32_t v) {
    p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v;
}

static void on_sigchld(int sig) { (void)sig; }  /* only to interrupt ppoll */

/* Reap the orphans re-parented to this process (the namespace's init) that have exited.
 * The cell is only peeked at (WNOWAIT): once it has exited, cell_exited is set and it stays
 * a zombie until finish() reads its status. */
static void reap_orphans(void) {
    while (!cell_exited) {
        siginfo_t si;
        memset(&si, 0, sizeof si);
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0) {
            if (errno == EINTR) continue;
            cell_exited = 1;  /* ECHILD: no child left at all, so the cell is gone too */
            return;
        }
        if (si.si_pid == 0) return;  /* children, none exited */
        if (si.si_pid == cell) { cell_exited = 1; return; }
        while (waitpid(si.si_pid, NULL, 0) < 0 && errno == EINTR) {}
    }
}

/* Wait until fd has one of `events` (POLLIN/POLLOUT), reaping orphans meanwhile. With
 * watch_host, a hang-up of the host connection ends the wait too. Returns the revents of fd,
 * 0 once the cell has exited while fd was not ready (the caller gives up on the cell), or -1
 * when the host has gone. */
static int wait_fd(int fd, short events, int watch_host) {
    for (;;) {
        struct pollfd p[2] = {{.fd = fd, .events = events},
                              {.fd = conn, .events = POLLRDHUP}};
        int n = ppoll(p, watch_host ? 2 : 1, cell_exited ? &(struct timespec){0, 0} : NULL,
                      &wait_mask);
        if (n < 0 && errno != EINTR) return -1;
        if (n > 0 && watch_host && p[1].revents) return -1;
        if (n > 0 && p[0].revents) return p[0].revents;
        if (n == 0) return 0;  /* (only with the zero timeout) the cell is gone, fd not ready */
        reap_orphans();        /* EINTR: SIGCHLD; then look again */
    }
}

/* Read exactly n bytes from the host connection (blocking: the host sends whole frames).
 * Returns 0, or -1 on EOF or an error. */
static int read_host(void *dst, size_t n) {
    unsigned char *p = dst;
    while (n) {
        ssize_t k = read(conn, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

static int write_host(const void *src, size_t n) {
    const unsigned char *p = src;
    while (n) {
        ssize_t k = send(conn, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

/* Read exactly n bytes from the cell, watching for its death and the host's hang-up.
 * Returns 0, 1 when the cell is gone (EOF, or exited with nothing left to read), -1 when
 * the host has gone. */
static int read_cell(void *dst, size_t n) {
    unsigned char *p = dst;
    while (n) {
        int r = wait_fd(chan, POLLIN, 1);
        if (r < 0) return -1;
        if (r == 0) return 1;
        ssize_t k = recv(chan, p, n, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return 1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

/* Write n bytes to the cell; same returns as read_cell. */
static int write_cell(const void *src, size_t n) {
    const unsigned char *p = src;
    while (n) {
        int r = wait_fd(chan, POLLOUT, 1);
        if (r < 0) return -1;
        if (r == 0 || (r & (POLLERR | POLLHUP))) return 1;
        ssize_t k = send(chan, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (k < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (k <= 0) return 1;
        p += k; n -= (size_t)k;
    }
    return 0;
}

/* ------------------------------------------------------------------ the end of a session */

static char died[512];  /* the {"died": ...} report, when the session ends in a call */

/* Kill the cell, read how it ended, tell the host (when a call was made or the cell broke
 * the protocol), and exit: the PID namespace ends with this process. */
static void finish(int report) {
    kill(cell, SIGKILL);
    if (report || died[0]) {
        int status = 0;
        struct rusage ru;
        memset(&ru, 0, sizeof ru);
        pid_t r;
        while ((r = wait4(cell, &status, 0, &ru)) < 0 && errno == EINTR) {}
        if (!died[0] && r == cell) {
            char code[16] = "null", sig[16] = "null";
            if (WIFEXITED(status)) snprintf(code, sizeof code, "%d", WEXITSTATUS(status));
            if (WIFSIGNALED(status)) snprintf(sig, sizeof sig, "%d", WTERMSIG(status));
            double cpu = ru.ru_utime.tv_sec + ru.ru_stime.tv_sec
                         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
            snprintf(died, sizeof died,
                     "{\"died\": {\"exit_code\": %s, \"signal\": %s, \"cpu_s\": %.3f}}",
                     code, sig, cpu);
        }
        if (died[0]) {
            unsigned char head[8];
            put_u32(head, (uint32_t)strlen(died));
            put_u32(head + 4, KIND_REPORT);
            if (write_host(head, 8) == 0) write_host(died, strlen(died));
        }
    }
    _exit(0);
}

/* ------------------------------------------------------------------ one call */

/* Relay one request of `len` bytes (its header already read) to the cell as call `seq`,
 * then the cell's result back. Returns once the result went to the host; otherwise ends
 * the session (finish). */
static void relay_call(uint32_t len, uint32_t seq, uint32_t max_output) {
    unsigned char head[12];
    put_u32(head, len);
    put_u32(head + 4, seq);
    put_u32(head + 8, max_output);
    int gone = cell_exited ? 1 : write_cell(head, 12);  /* 1: the cell is gone, -1: the host */
    for (uint32_t left = len; left && gone >= 0;) {  /* stream the code through one page */
        size_t k = left < BUF_SIZE ? left : BUF_SIZE;
        if (read_host(buf, k)) finish(0);
        if (gone == 0) gone = write_cell(buf, k);
        left -= (uint32_t)k;
    }
    if (gone) finish(gone > 0);  /* the cell died before its call: report how */

    uint64_t limit = 3ull * max_output + CELL_FRAME_SLACK;
    for (;;) {
        int r = read_cell(head, 8);
        if (r) finish(r > 0);
        uint32_t n = get_u32(head), rseq = get_u32(head + 4);
        if (n > limit) {
            snprintf(died, sizeof died, "{\"died\": {\"malformed\": \"the session's runner sent "
                     "a result frame of %u bytes (at most %llu allowed)\"}}",
                     n, (unsigned long long)limit);
            finish(1);
        }
        /* Small results go through the static page; larger ones through a mapping made
         * for them and unmapped after, so no session keeps the pages of its largest output. */
        unsigned char *data = buf;
        if (n + 8u > BUF_SIZE) {
            data = mmap(NULL, (size_t)n + 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                        -1, 0);
            if (data == MAP_FAILED) finish(1);
        }
        r = read_cell(data + 8, n);
        if (r == 0 && rseq == seq) {  /* this call's result: forward it, unchanged */
            put_u32(data, n);
            put_u32(data + 4, KIND_RESULT);
            if (write_host(data, (size_t)n + 8)) r = -1;
        }
        if (data != buf) munmap(data, (size_t)n + 8);
        if (r) finish(r > 0);
        if (rseq == seq) return;
        /* a frame of another call (forged, or a late one after a forged one): dropped */
    }
}

/* ------------------------------------------------------------------ setup */

static long parse_fd(const char *s, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0' || v < 0 || v > max) _exit(70);
    return v;
}

/* close_range(lo, hi) for lo <= hi (nothing to do otherwise); 0 on success. */
static int close_span(long lo, long hi) {
    if (lo > hi) return 0;
#ifdef SYS_close_range
    return (int)syscall(SYS_close_range, (unsigned)lo, (unsigned)hi, 0u);
#else
    errno = ENOSYS;
    return -1;
#endif
}

/* Close every fd but conn and chan (the exec closed the close-on-exec ones; this closes
 * the rest, 0-2 included: the relay writes nothing but frames). */
static void close_other_fds(void) {
    long lo = conn < chan ? conn : chan, hi = conn < chan ? chan : conn;
    if (close_span(0, lo - 1) == 0 && close_span(lo + 1, hi - 1) == 0
        && close_span(hi + 1, UINT_MAX) == 0)
        return;
    struct rlimit rl;  /* no close_range (before Linux 5.9): one close per possible fd */
    long top = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
               ? (long)rl.rlim_cur : 65536;
    if (top < hi + 1024) top = hi + 1024;
    for (long fd = 0; fd < top; fd++)
        if (fd != conn && fd != chan) close((int)fd);
}

int main(int argc, char **argv) {
    /* First thing: not dumpable, so that no process of the session's uid can ptrace this
     * one or open its /proc/PID/fd and /proc/PID/mem. keeper.py installs this binary
     * execute-only, so the kernel execs it not dumpable already (a file its uid cannot
     * read); a readable copy is dumpable for the few instructions before this line. That
     * is safe only because the cell has run no model code yet: the Python keeper execs
     * this right after its hello, and the first `run` reaches the cell through this
     * process, after this line. Keep it that way: never exec this program after a call has
     * been relayed. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) _exit(71);
    if (argc == 2 && strcmp(argv[1], "--probe") == 0) return 0;
    if (argc != 5) _exit(64);
    conn = (int)parse_fd(argv[1], INT_MAX);
    chan = (int)parse_fd(argv[2], INT_MAX);
    cell = (pid_t)parse_fd(argv[3], INT_MAX);
    uint32_t max_default = (uint32_t)parse_fd(argv[4], UINT32_MAX / 4);
    if (conn == chan || cell <= 0) _exit(64);
    prctl(PR_SET_NAME, "ae-keeper", 0, 0, 0);
    close_other_fds();
    /* Blocking I/O on both (the handed-over connection may carry O_NONBLOCK). */
    fcntl(conn, F_SETFL, fcntl(conn, F_GETFL) & ~O_NONBLOCK);
    fcntl(chan, F_SETFL, fcntl(chan, F_GETFL) & ~O_NONBLOCK);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    sa.sa_handler = on_sigchld;
    sigaction(SIGCHLD, &sa, NULL);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, &wait_mask);  /* wait_mask: the mask before, unblocked */
    sigdelset(&wait_mask, SIGCHLD);
    /* A child that exited before the handler was set sent a SIGCHLD that was discarded:
     * look once now, or the cell's death would wait for its channel's EOF. */
    reap_orphans();

    uint32_t seq = 0;
    for (;;) {
        /* Idle: wait for the host's next request, reaping orphans as they exit. */
        unsigned char head[8];
        for (;;) {
            struct pollfd p = {.fd = conn, .events = POLLIN};
            int n = ppoll(&p, 1, NULL, &wait_mask);
            if (n > 0) break;
            if (n < 0 && errno != EINTR) finish(seq > 0);
            reap_orphans();
        }
        if (read_host(head, 8)) finish(0);  /* the host closed the session */
        uint32_t len = get_u32(head), max_output = get_u32(head + 4);
        if (len > MAX_REQUEST) finish(0);    /* not our host: end the session */
        if (max_output == 0) max_output = max_default;
        if (max_output > UINT32_MAX / 4) max_output = UINT32_MAX / 4;
        seq++;
        relay_call(len, seq, max_output);
        reap_orphans();
    }
}
