/*
 * fnhost-init: the first process of a zygote-forked worker's pid namespace (see zygote.py).
 *
 * The zygote's spare init is a fork of the zygote, a Python process: left as it is, it keeps a
 * megabyte of pages it copied on write. Once it has forked its worker it execs this instead,
 * which does the same job in a few pages:
 *
 *   fnhost-init WORKER_PID LIFELINE_FD STATUS_SOCKET_FD
 *
 * - reaps every child (the worker, and whatever the namespace orphans);
 * - receives, over STATUS_SOCKET_FD, the daemon's status pipe from the worker once it has its
 *   function (SCM_RIGHTS), and when the worker ends writes one byte there: its exit status, or
 *   128 + the signal that killed it (as bubblewrap reports it), then exits with the same;
 * - ignores SIGTERM, SIGINT and SIGHUP: a graceful stop is the worker's to handle;
 * - exits at once when LIFELINE_FD (a pipe only the daemon writes) hangs up: the daemon is gone,
 *   and the kernel ends everything in the namespace with its init.
 *
 * Standard C and Linux only; compiled by the daemon (execution/zygote.py) where a C compiler is
 * installed; without one, the Python init in zygote.py does the same.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int receive_fd(int sock, int flags) {
    char byte;
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    union {
        struct cmsghdr header;
        char space[CMSG_SPACE(sizeof(int))];
    } control;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                         .msg_controllen = sizeof(control.space)};
    if (recvmsg(sock, &msg, flags | MSG_CMSG_CLOEXEC) <= 0)
        return -1;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
        return -1;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(fd));
    return fd;
}

int main(int argc, char **argv) {
    if (argc != 4)
        return 125;
    pid_t worker = (pid_t)atoi(argv[1]);
    int lifeline = atoi(argv[2]), status_sock = atoi(argv[3]), status_fd = -1;

    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    sigset_t chld;
    sigemptyset(&chld);
    sigaddset(&chld, SIGCHLD);
    sigprocmask(SIG_BLOCK, &chld, NULL);
    int sfd = signalfd(-1, &chld, SFD_NONBLOCK | SFD_CLOEXEC);

    struct pollfd fds[3] = {{.fd = lifeline, .events = 0}, {.fd = sfd, .events = POLLIN},
                            {.fd = status_sock, .events = POLLIN}};
    for (;;) {
        int wstatus;
        pid_t pid;
        while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
            if (pid != worker)
                continue;  /* an orphan of the namespace: reaped, nothing more */
            int code = WIFEXITED(wstatus) ? WEXITSTATUS(wstatus)
                     : WIFSIGNALED(wstatus) ? 128 + WTERMSIG(wstatus) : 125;
            if (status_fd < 0)
                status_fd = receive_fd(status_sock, MSG_DONTWAIT);  /* sent just before it died */
            if (status_fd >= 0) {
                unsigned char byte = (unsigned char)code;
                while (write(status_fd, &byte, 1) < 0 && errno == EINTR) {
                }
            }
            _exit(code & 0xff);
        }
        if (poll(fds, status_fd < 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            _exit(125);
        }
        if (fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) {
            kill(0, SIGKILL);  /* without a pid namespace: the worker's process group */
            _exit(137);
        }
        if (fds[1].revents & POLLIN) {
            struct signalfd_siginfo info;
            while (read(sfd, &info, sizeof(info)) > 0) {
            }
        }
        if (status_fd < 0 && (fds[2].revents & (POLLIN | POLLHUP))) {
            status_fd = receive_fd(status_sock, 0);
            if (status_fd < 0)
                fds[2].fd = -1;  /* it closed without sending: nothing to report to */
        }
    }
}
