/*
 * The C comparison points beside the plain baseline (mmsg_reflector.c), to
 * show apart what the kernel costs, what our duties cost and what our code
 * costs. Not part of the project: written only to find the bounds.
 *
 *   --duties  what udp-reflector does per datagram: bind the wildcard with
 *             IP_PKTINFO, SO_TIMESTAMPNS and SO_RXQ_OVFL, read the three
 *             cmsgs of every datagram (timestamp and overflow count kept),
 *             and answer with an IP_PKTINFO cmsg from the address asked.
 *   --gro     UDP_GRO on receive; each train goes back as one message with
 *             a UDP_SEGMENT cmsg of the same segment size (the bound of
 *             "a train costs about one datagram").
 *   --spin    never block: MSG_DONTWAIT receives in a loop (the bound of a
 *             busy-polling reflector's round trip).
 *
 * Build: cc -O2 -o duty_reflector duty_reflector.c
 * Run:   duty_reflector PORT BATCH [--duties] [--gro] [--spin]
 *        (binds 0.0.0.0:PORT; SIGTERM prints rx/tx in datagrams)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#ifndef UDP_SEGMENT
#define UDP_SEGMENT 103
#endif
#ifndef UDP_GRO
#define UDP_GRO 104
#endif

#define MAX_BATCH 256
#define CTL 256

static volatile sig_atomic_t stop;
static void on_signal(int sig) { (void)sig; stop = 1; }

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PORT BATCH [--duties] [--gro] [--spin]\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]);
    int batch = atoi(argv[2]);
    if (batch < 1 || batch > MAX_BATCH) batch = 64;
    int duties = 0, gro = 0, spin = 0;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--duties")) duties = 1;
        else if (!strcmp(argv[i], "--gro")) gro = 1;
        else if (!strcmp(argv[i], "--spin")) spin = 1;
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    size_t buf_len = gro ? 65536 : 2048;

    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    int one = 1;
    if (duties) {
        setsockopt(fd, IPPROTO_IP, IP_PKTINFO, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &one, sizeof one);
    }
    if (gro && setsockopt(fd, IPPROTO_UDP, UDP_GRO, &one, sizeof one) < 0) {
        perror("UDP_GRO");
        return 2;
    }
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("bind");
        return 2;
    }
    if (!spin) {
        /* A receive timeout so a stop signal is noticed even when idle. */
        struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char *bufs = malloc((size_t)MAX_BATCH * buf_len);
    static struct sockaddr_in names[MAX_BATCH];
    static struct iovec iov[MAX_BATCH];
    static struct mmsghdr msgs[MAX_BATCH];
    static char rx_ctl[MAX_BATCH][CTL] __attribute__((aligned(8)));
    static char tx_ctl[MAX_BATCH][CTL] __attribute__((aligned(8)));
    static unsigned counts[MAX_BATCH];
    unsigned long long rx = 0, tx = 0, ovfl = 0, stamps = 0;
    int flags = spin ? MSG_DONTWAIT : MSG_WAITFORONE;

    while (!stop) {
        for (int i = 0; i < batch; i++) {
            iov[i].iov_base = bufs + (size_t)i * buf_len;
            iov[i].iov_len = buf_len;
            msgs[i].msg_hdr = (struct msghdr){.msg_name = &names[i], .msg_namelen = sizeof names[i],
                                              .msg_iov = &iov[i], .msg_iovlen = 1};
            if (duties || gro) {
                msgs[i].msg_hdr.msg_control = rx_ctl[i];
                msgs[i].msg_hdr.msg_controllen = CTL;
            }
        }
        int n = recvmmsg(fd, msgs, batch, flags, NULL);
        if (n <= 0) continue;
        for (int i = 0; i < n; i++) {
            struct msghdr *h = &msgs[i].msg_hdr;
            struct in_pktinfo pi = {0};
            int have_pi = 0, seg = 0;
            for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
                if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
                    memcpy(&pi, CMSG_DATA(c), sizeof pi);
                    have_pi = 1;
                } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                    struct timespec ts;
                    memcpy(&ts, CMSG_DATA(c), sizeof ts);
                    stamps += ts.tv_nsec != 0;
                } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
                    uint32_t v;
                    memcpy(&v, CMSG_DATA(c), sizeof v);
                    ovfl = v;
                } else if (c->cmsg_level == IPPROTO_UDP && c->cmsg_type == UDP_GRO) {
                    memcpy(&seg, CMSG_DATA(c), sizeof seg);
                }
            }
            unsigned len = msgs[i].msg_len;
            unsigned count = seg > 0 && (unsigned)seg < len ? (len + seg - 1) / seg : 1;
            rx += count;
            iov[i].iov_len = len;
            size_t ctl = 0;
            h->msg_control = tx_ctl[i];
            if (have_pi) {
                struct cmsghdr *c = (struct cmsghdr *)tx_ctl[i];
                c->cmsg_level = IPPROTO_IP;
                c->cmsg_type = IP_PKTINFO;
                c->cmsg_len = CMSG_LEN(sizeof pi);
                struct in_pktinfo out = {.ipi_spec_dst = pi.ipi_spec_dst};
                memcpy(CMSG_DATA(c), &out, sizeof out);
                ctl += CMSG_SPACE(sizeof pi);
            }
            if (count > 1) {
                struct cmsghdr *c = (struct cmsghdr *)(tx_ctl[i] + ctl);
                uint16_t s = (uint16_t)seg;
                c->cmsg_level = IPPROTO_UDP;
                c->cmsg_type = UDP_SEGMENT;
                c->cmsg_len = CMSG_LEN(sizeof s);
                memcpy(CMSG_DATA(c), &s, sizeof s);
                ctl += CMSG_SPACE(sizeof s);
            }
            h->msg_controllen = ctl;
            if (!ctl) h->msg_control = NULL;
            counts[i] = count;
        }
        int off = 0;
        while (off < n) {
            int s = sendmmsg(fd, msgs + off, n - off, 0);
            if (s <= 0) { off++; continue; }
            for (int i = off; i < off + s; i++) tx += counts[i];
            off += s;
        }
    }
    printf("rx=%llu tx=%llu rxq_ovfl=%llu stamps=%llu\n", rx, tx, ovfl, stamps);
    return 0;
}
