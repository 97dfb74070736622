/*
 * The plain baseline: a minimal recvmmsg/sendmmsg UDP echo reflector.
 *
 * What a competent engineer writes in an afternoon: one socket, one thread,
 * blocking recvmmsg of up to BATCH datagrams, one sendmmsg back to the
 * senders. No pktinfo, no timestamps, no counters beyond rx/tx. The perf/
 * scripts pin it to the same core as our worker and compare.
 *
 * Build: cc -O2 -o mmsg_reflector mmsg_reflector.c
 * Run:   mmsg_reflector PORT [BATCH]   (binds 0.0.0.0:PORT; SIGTERM prints rx/tx)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_BATCH 1024
#define BUF 2048

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s PORT [BATCH]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int batch = argc > 2 ? atoi(argv[2]) : 64;
    if (batch < 1 || batch > MAX_BATCH) batch = 64;

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 2;
    }
    /* A receive timeout so a stop signal is noticed even when idle. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    static char bufs[MAX_BATCH][BUF];
    static struct sockaddr_in6 names[MAX_BATCH];
    static struct iovec iov[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    unsigned long long rx = 0, tx = 0;

    while (!stop) {
        for (int i = 0; i < batch; i++) {
            iov[i].iov_base = bufs[i];
            iov[i].iov_len = BUF;
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = sizeof names[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, batch, MSG_WAITFORONE, NULL);
        if (n <= 0) continue;
        rx += n;
        for (int i = 0; i < n; i++) iov[i].iov_len = msgs[i].msg_len;
        int off = 0;
        while (off < n) {
            int s = sendmmsg(fd, msgs + off, n - off, 0);
            if (s <= 0) { off++; continue; }
            tx += s;
            off += s;
        }
    }
    printf("rx=%llu tx=%llu\n", rx, tx);
    return 0;
}
