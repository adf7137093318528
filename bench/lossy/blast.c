/*
 * Packet-rate probe for the lossy-link wire (bench/lib/lossy-selfcheck.ts):
 *   blast send IP PORT SECONDS SIZE   UDP datagrams as fast as the socket takes them
 *   blast recv PORT SECONDS           counts datagrams for SECONDS after the first one
 *   blast echo PORT                   echoes datagrams back until killed
 *   blast ping IP PORT COUNT GAP_MS WAIT_MS   COUNT probes GAP_MS apart, waits
 *                                     WAIT_MS after the last, prints sent/received and RTTs
 * send/recv print one JSON line: {"packets":N,"seconds":S}. The sender runs in one
 * namespace, the receiver in the other, so every datagram crosses the wire.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc >= 6 && !strcmp(argv[1], "send")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3])) };
    if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) { fprintf(stderr, "blast: bad ip\n"); return 64; }
    double secs = atof(argv[4]);
    int size = atoi(argv[5]);
    char buf[65536];
    memset(buf, 0x61, sizeof buf);
    unsigned long long n = 0;
    double t0 = now_s(), end = t0 + secs;
    while (now_s() < end) {
      for (int k = 0; k < 64; k++) {
        /* ENOBUFS (TUN queue full) is the point: the wire is the bottleneck */
        if (sendto(s, buf, (size_t)size, 0, (struct sockaddr *)&to, sizeof to) == size) n++;
      }
    }
    printf("{\"packets\":%llu,\"seconds\":%.3f}\n", n, now_s() - t0);
    return 0;
  }
  if (argc >= 4 && !strcmp(argv[1], "recv")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    int big = 8 << 20;
    setsockopt(s, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])), .sin_addr.s_addr = INADDR_ANY };
    if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) { perror("blast: bind"); return 1; }
    printf("listening\n");
    fflush(stdout);
    double secs = atof(argv[3]);
    char buf[65536];
    struct pollfd p = { s, POLLIN, 0 };
    if (poll(&p, 1, 10000) <= 0) { printf("{\"packets\":0,\"seconds\":0}\n"); return 0; }
    unsigned long long n = 0;
    double t0 = now_s(), end = t0 + secs;
    for (;;) {
      double left = end - now_s();
      if (left <= 0) break;
      if (poll(&p, 1, (int)(left * 1000) + 1) <= 0) continue;
      while (recv(s, buf, sizeof buf, MSG_DONTWAIT) > 0) n++;
    }
    printf("{\"packets\":%llu,\"seconds\":%.3f}\n", n, now_s() - t0);
    return 0;
  }
  if (argc >= 3 && !strcmp(argv[1], "echo")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in me = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])), .sin_addr.s_addr = INADDR_ANY };
    if (bind(s, (struct sockaddr *)&me, sizeof me) < 0) { perror("blast: bind"); return 1; }
    printf("listening\n");
    fflush(stdout);
    char buf[2048];
    for (;;) {
      struct sockaddr_in from;
      socklen_t fl = sizeof from;
      ssize_t r = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &fl);
      if (r > 0) sendto(s, buf, (size_t)r, 0, (struct sockaddr *)&from, fl);
    }
  }
  if (argc >= 7 && !strcmp(argv[1], "ping")) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[3])) };
    if (inet_pton(AF_INET, argv[2], &to.sin_addr) != 1) { fprintf(stderr, "blast: bad ip\n"); return 64; }
    int count = atoi(argv[4]);
    double gap = atof(argv[5]) / 1000, wait = atof(argv[6]) / 1000;
    if (count <= 0 || count > 100000) return 64;
    double *sent_at = calloc((size_t)count, sizeof(double)), *rtt = calloc((size_t)count, sizeof(double));
    int sent = 0, got = 0;
    double t0 = now_s(), end = t0 + gap * count + wait;
    struct pollfd p = { s, POLLIN, 0 };
    while (now_s() < end) {
      double t = now_s();
      if (sent < count && t >= t0 + gap * sent) {
        int seq = sent;
        sent_at[sent++] = t;
        sendto(s, &seq, sizeof seq, 0, (struct sockaddr *)&to, sizeof to);
        continue;
      }
      double next = sent < count ? t0 + gap * sent : end;
      int ms = (int)((next - t) * 1000);
      if (poll(&p, 1, ms < 0 ? 0 : ms) > 0) {
        int seq;
        while (recv(s, &seq, sizeof seq, MSG_DONTWAIT) == (ssize_t)sizeof seq) {
          if (seq >= 0 && seq < sent && rtt[seq] == 0) { rtt[seq] = (now_s() - sent_at[seq]) * 1000; got++; }
        }
      }
    }
    printf("{\"sent\":%d,\"received\":%d,\"rttMs\":[", sent, got);
    int first = 1;
    for (int i = 0; i < sent; i++) if (rtt[i] > 0) { printf(first ? "%.3f" : ",%.3f", rtt[i]); first = 0; }
    printf("]}\n");
    return 0;
  }
  fprintf(stderr, "usage: blast send IP PORT SECONDS SIZE | recv PORT SECONDS | echo PORT | ping IP PORT COUNT GAP_MS WAIT_MS\n");
  return 64;
}
