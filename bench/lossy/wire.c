/*
 * edgefabric lossy-link emulator: a userland wire between two TUN devices,
 * one in each of two network namespaces (bench/lib/lossy-netns.ts builds
 * them). Every IP packet crossing the wire suffers, per direction:
 *
 *   loss     Bernoulli (loss=P) or Gilbert-Elliott bursts (ge_p, ge_r, ge_k, ge_h
 *            as in netem's "loss gemodel p r 1-h 1-k": p = P(good->bad),
 *            r = P(bad->good), loss_good = 1-k, loss_bad = 1-h)
 *   rate     serialisation at rate_kbit with a bounded drop-tail queue
 *            (queue_bytes; packets that do not fit are dropped, like a router)
 *   delay    one-way delay_ms plus uniform jitter in [-jitter_ms, +jitter_ms];
 *            jitter never reorders (release times are kept monotonic per
 *            direction), so reordering is only what `reorder` asks for
 *   reorder  with probability `reorder`, a packet is held back reorder_gap_ms
 *            extra outside the order constraint, so later packets overtake it
 *   dup      with probability `dup`, a packet is delivered twice
 *   down     link down: every packet (queued or new) is dropped until `up`
 *
 * Why userland: `tc netem` is not in this kernel, and nftables drops in the
 * sender's OUTPUT hook surface as EPERM to send(); a wire in the middle hurts
 * TCP and UDP alike at packet level. TUN devices carry no offloads unless
 * asked (TUNSETOFFLOAD is never called), so one packet is one MTU-sized
 * segment and one loss event removes one segment.
 *
 * usage: wire --ns-a NAME --ns-b NAME [--dev NAME] [--seed N]
 *   creates TUN `dev` in both namespaces (setns), prints "ready", then reads
 *   line commands on stdin (one reply line each):
 *     set a2b|b2a|both key=value...   keys above, plus queue_bytes, rate_kbit
 *     down | up                       link state (both directions)
 *     seed N                          reseed both directions' PRNGs
 *     stats                           one JSON line of counters + lateness
 *     reset                           zero counters and lateness histogram
 *     quit                            exit (also on stdin EOF)
 *
 * The PRNG is xoshiro256** seeded per direction from (seed, direction) with
 * splitmix64, so a run with the same seed and the same packet sequence makes
 * the same decisions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#define MAX_PKT 65536
#define MAX_HELD 131072 /* packets in flight on the wire, both directions; beyond: counted drop */
#define BATCH 64
#define HIST_FINE 1000  /* 1 us buckets below 1 ms */
#define HIST_COARSE 1000 /* 1 ms buckets up to 1 s */

typedef struct {
  double delay_ms, jitter_ms, loss, reorder, reorder_gap_ms, dup;
  int ge; /* Gilbert-Elliott on */
  double ge_p, ge_r, ge_loss_good, ge_loss_bad;
  double rate_kbit; /* 0 = unlimited */
  long queue_bytes;  /* drop-tail limit of the rate queue */
} params_t;

typedef struct {
  uint64_t rx, rx_bytes, tx, tx_bytes, drop_loss, drop_queue, drop_down, drop_overflow, drop_write, dup, reordered;
} counters_t;

typedef struct {
  params_t p;
  counters_t c;
  uint64_t rng[4];
  int ge_bad;
  int64_t link_free_ns; /* when the serialiser is free again */
  int64_t last_release_ns;
} dir_t;

typedef struct pkt {
  int64_t release_ns;
  uint64_t seq;
  int dir;
  int len;
  unsigned char data[];
} pkt_t;

static dir_t dirs[2];
static pkt_t *heap[MAX_HELD];
static int heap_n;
static uint64_t seq_counter;
static int link_down;
static int fds[2]; /* fds[0] = TUN in ns A, fds[1] = TUN in ns B; direction 0 = A->B */
static uint32_t hist[HIST_FINE + HIST_COARSE + 1];
static uint64_t late_n, late_max_ns;
static double late_sum_ns;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static void seed_dir(dir_t *d, uint64_t seed, int dir) {
  uint64_t x = seed * 2 + (uint64_t)dir + 1;
  for (int i = 0; i < 4; i++) d->rng[i] = splitmix64(&x);
  d->ge_bad = 0;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(dir_t *d) {
  uint64_t *s = d->rng;
  uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
  s[2] ^= s[0]; s[3] ^= s[1]; s[1] ^= s[2]; s[0] ^= s[3]; s[2] ^= t; s[3] = rotl(s[3], 45);
  return result;
}

/* uniform in [0, 1) */
static double uniform(dir_t *d) { return (double)(next_u64(d) >> 11) * 0x1.0p-53; }

static void heap_push(pkt_t *p) {
  int i = heap_n++;
  while (i > 0) {
    int parent = (i - 1) / 2;
    pkt_t *q = heap[parent];
    if (q->release_ns < p->release_ns || (q->release_ns == p->release_ns && q->seq < p->seq)) break;
    heap[i] = q;
    i = parent;
  }
  heap[i] = p;
}

static pkt_t *heap_pop(void) {
  pkt_t *top = heap[0], *last = heap[--heap_n];
  int i = 0;
  for (;;) {
    int l = 2 * i + 1, r = l + 1, m = i;
    pkt_t *mp = last;
    if (l < heap_n && (heap[l]->release_ns < mp->release_ns || (heap[l]->release_ns == mp->release_ns && heap[l]->seq < mp->seq))) { m = l; mp = heap[l]; }
    if (r < heap_n && (heap[r]->release_ns < mp->release_ns || (heap[r]->release_ns == mp->release_ns && heap[r]->seq < mp->seq))) { m = r; mp = heap[r]; }
    if (m == i) break;
    heap[i] = heap[m];
    i = m;
  }
  if (heap_n > 0) heap[i] = last;
  return top;
}

static void record_lateness(int64_t late) {
  if (late < 0) late = 0;
  uint64_t us = (uint64_t)late / 1000;
  int b = us < HIST_FINE ? (int)us : HIST_FINE + (int)(us / 1000 < HIST_COARSE ? us / 1000 : HIST_COARSE);
  hist[b]++;
  late_n++;
  late_sum_ns += (double)late;
  if ((uint64_t)late > late_max_ns) late_max_ns = (uint64_t)late;
}

static double hist_quantile_us(double q) {
  if (late_n == 0) return 0;
  uint64_t want = (uint64_t)(q * (double)late_n), seen = 0;
  for (int b = 0; b <= HIST_FINE + HIST_COARSE; b++) {
    seen += hist[b];
    if (seen > want) return b < HIST_FINE ? (double)b : (double)(b - HIST_FINE) * 1000.0;
  }
  return (double)late_max_ns / 1000.0;
}

/* Is this packet lost? Gilbert-Elliott: the state moves once per packet, then the state's loss applies. */
static int lose(dir_t *d) {
  if (d->p.ge) {
    if (d->ge_bad) { if (uniform(d) < d->p.ge_r) d->ge_bad = 0; }
    else if (uniform(d) < d->p.ge_p) d->ge_bad = 1;
    return uniform(d) < (d->ge_bad ? d->p.ge_loss_bad : d->p.ge_loss_good);
  }
  return d->p.loss > 0 && uniform(d) < d->p.loss;
}

static void enqueue(int dir, const unsigned char *buf, int len, int64_t now) {
  dir_t *d = &dirs[dir];
  d->c.rx++;
  d->c.rx_bytes += (uint64_t)len;
  if (link_down) { d->c.drop_down++; return; }
  if (lose(d)) { d->c.drop_loss++; return; }
  int copies = (d->p.dup > 0 && uniform(d) < d->p.dup) ? 2 : 1;
  if (copies == 2) d->c.dup++;
  for (int k = 0; k < copies; k++) {
    int64_t depart = now;
    if (d->p.rate_kbit > 0) {
      int64_t start = d->link_free_ns > now ? d->link_free_ns : now;
      /* bytes still waiting for the serialiser = backlog time x rate */
      double backlog_bytes = (double)(start - now) * d->p.rate_kbit / 8e6;
      if (backlog_bytes + len > (double)d->p.queue_bytes) { d->c.drop_queue++; continue; }
      depart = start + (int64_t)((double)len * 8e6 / d->p.rate_kbit);
      d->link_free_ns = depart;
    }
    if (heap_n >= MAX_HELD) { d->c.drop_overflow++; continue; }
    double jit = d->p.jitter_ms > 0 ? (uniform(d) * 2 - 1) * d->p.jitter_ms : 0;
    double delay = d->p.delay_ms + jit;
    if (delay < 0) delay = 0;
    int64_t release = depart + (int64_t)(delay * 1e6);
    int reordered = d->p.reorder > 0 && uniform(d) < d->p.reorder;
    if (reordered) {
      release += (int64_t)(d->p.reorder_gap_ms * 1e6);
      d->c.reordered++;
    } else {
      if (release < d->last_release_ns) release = d->last_release_ns;
      d->last_release_ns = release;
    }
    pkt_t *p = malloc(sizeof(pkt_t) + (size_t)len);
    if (p == NULL) { d->c.drop_overflow++; continue; }
    p->release_ns = release;
    p->seq = seq_counter++;
    p->dir = dir;
    p->len = len;
    memcpy(p->data, buf, (size_t)len);
    heap_push(p);
  }
}

static void release_due(int64_t now) {
  while (heap_n > 0 && heap[0]->release_ns <= now) {
    pkt_t *p = heap_pop();
    dir_t *d = &dirs[p->dir];
    record_lateness(now - p->release_ns);
    ssize_t w = write(fds[1 - p->dir], p->data, (size_t)p->len);
    if (w == p->len) { d->c.tx++; d->c.tx_bytes += (uint64_t)p->len; }
    else d->c.drop_write++;
    free(p);
  }
}

static void flush_all(void) {
  while (heap_n > 0) {
    pkt_t *p = heap_pop();
    dirs[p->dir].c.drop_down++;
    free(p);
  }
  for (int i = 0; i < 2; i++) { dirs[i].link_free_ns = 0; dirs[i].last_release_ns = 0; }
}

static int open_tun_in(const char *ns, const char *dev) {
  char path[256];
  snprintf(path, sizeof path, "/var/run/netns/%s", ns);
  int nsfd = open(path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) { fprintf(stderr, "wire: open %s: %s\n", path, strerror(errno)); return -1; }
  if (setns(nsfd, CLONE_NEWNET) < 0) { fprintf(stderr, "wire: setns %s: %s\n", ns, strerror(errno)); close(nsfd); return -1; }
  close(nsfd);
  int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) { fprintf(stderr, "wire: open /dev/net/tun: %s\n", strerror(errno)); return -1; }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  strncpy(ifr.ifr_name, dev, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) { fprintf(stderr, "wire: TUNSETIFF %s in %s: %s\n", dev, ns, strerror(errno)); close(fd); return -1; }
  return fd;
}

static void print_dir_json(FILE *f, const char *name, dir_t *d) {
  counters_t *c = &d->c;
  fprintf(f, "\"%s\":{\"rx\":%llu,\"rxBytes\":%llu,\"tx\":%llu,\"txBytes\":%llu,\"dropLoss\":%llu,\"dropQueue\":%llu,"
             "\"dropDown\":%llu,\"dropOverflow\":%llu,\"dropWrite\":%llu,\"dup\":%llu,\"reordered\":%llu}",
          name, (unsigned long long)c->rx, (unsigned long long)c->rx_bytes, (unsigned long long)c->tx, (unsigned long long)c->tx_bytes,
          (unsigned long long)c->drop_loss, (unsigned long long)c->drop_queue, (unsigned long long)c->drop_down,
          (unsigned long long)c->drop_overflow, (unsigned long long)c->drop_write, (unsigned long long)c->dup,
          (unsigned long long)c->reordered);
}

static void print_stats(void) {
  printf("{");
  print_dir_json(stdout, "a2b", &dirs[0]);
  printf(",");
  print_dir_json(stdout, "b2a", &dirs[1]);
  printf(",\"held\":%d,\"down\":%s,\"lateness\":{\"n\":%llu,\"meanUs\":%.1f,\"p50Us\":%.0f,\"p99Us\":%.0f,\"p999Us\":%.0f,\"maxUs\":%.0f}}\n",
         heap_n, link_down ? "true" : "false", (unsigned long long)late_n, late_n ? late_sum_ns / (double)late_n / 1000.0 : 0.0,
         hist_quantile_us(0.5), hist_quantile_us(0.99), hist_quantile_us(0.999), (double)late_max_ns / 1000.0);
}

static int set_param(params_t *p, const char *key, const char *val) {
  char *end;
  double v = strtod(val, &end);
  if (*end != '\0' || v < 0) return -1;
  if (!strcmp(key, "delay_ms")) p->delay_ms = v;
  else if (!strcmp(key, "jitter_ms")) p->jitter_ms = v;
  else if (!strcmp(key, "loss")) { if (v > 1) return -1; p->loss = v; }
  else if (!strcmp(key, "ge")) p->ge = v != 0;
  else if (!strcmp(key, "ge_p")) { if (v > 1) return -1; p->ge_p = v; }
  else if (!strcmp(key, "ge_r")) { if (v > 1) return -1; p->ge_r = v; }
  else if (!strcmp(key, "ge_loss_good")) { if (v > 1) return -1; p->ge_loss_good = v; }
  else if (!strcmp(key, "ge_loss_bad")) { if (v > 1) return -1; p->ge_loss_bad = v; }
  else if (!strcmp(key, "rate_kbit")) p->rate_kbit = v;
  else if (!strcmp(key, "queue_bytes")) { if (v < 1500) return -1; p->queue_bytes = (long)v; }
  else if (!strcmp(key, "reorder")) { if (v > 1) return -1; p->reorder = v; }
  else if (!strcmp(key, "reorder_gap_ms")) p->reorder_gap_ms = v;
  else if (!strcmp(key, "dup")) { if (v > 1) return -1; p->dup = v; }
  else return -2;
  return 0;
}

/* One control line; returns 1 to quit. */
static int command(char *line) {
  char *save, *word = strtok_r(line, " \t\r\n", &save);
  if (word == NULL) return 0;
  if (!strcmp(word, "quit")) return 1;
  if (!strcmp(word, "stats")) { print_stats(); return 0; }
  if (!strcmp(word, "reset")) {
    for (int i = 0; i < 2; i++) memset(&dirs[i].c, 0, sizeof(counters_t));
    memset(hist, 0, sizeof hist);
    late_n = late_max_ns = 0;
    late_sum_ns = 0;
    printf("ok\n");
    return 0;
  }
  if (!strcmp(word, "down")) { link_down = 1; flush_all(); printf("ok\n"); return 0; }
  if (!strcmp(word, "up")) { link_down = 0; printf("ok\n"); return 0; }
  if (!strcmp(word, "seed")) {
    char *v = strtok_r(NULL, " \t\r\n", &save);
    if (v == NULL) { printf("err seed needs a value\n"); return 0; }
    uint64_t s = strtoull(v, NULL, 10);
    seed_dir(&dirs[0], s, 0);
    seed_dir(&dirs[1], s, 1);
    printf("ok\n");
    return 0;
  }
  if (!strcmp(word, "set")) {
    char *which = strtok_r(NULL, " \t\r\n", &save);
    int mask = which == NULL ? 0 : !strcmp(which, "a2b") ? 1 : !strcmp(which, "b2a") ? 2 : !strcmp(which, "both") ? 3 : 0;
    if (mask == 0) { printf("err set needs a2b, b2a or both\n"); return 0; }
    params_t next[2] = { dirs[0].p, dirs[1].p };
    char *kv;
    while ((kv = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
      char *eq = strchr(kv, '=');
      if (eq == NULL) { printf("err expected key=value, got %s\n", kv); return 0; }
      *eq = '\0';
      for (int i = 0; i < 2; i++) {
        if (!(mask & (1 << i))) continue;
        int r = set_param(&next[i], kv, eq + 1);
        if (r == -2) { printf("err unknown key %s\n", kv); return 0; }
        if (r < 0) { printf("err bad value for %s: %s\n", kv, eq + 1); return 0; }
      }
    }
    dirs[0].p = next[0];
    dirs[1].p = next[1];
    printf("ok\n");
    return 0;
  }
  printf("err unknown command %s\n", word);
  return 0;
}

int main(int argc, char **argv) {
  const char *ns_a = NULL, *ns_b = NULL, *dev = "efwire0";
  uint64_t seed = 1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--ns-a") && i + 1 < argc) ns_a = argv[++i];
    else if (!strcmp(argv[i], "--ns-b") && i + 1 < argc) ns_b = argv[++i];
    else if (!strcmp(argv[i], "--dev") && i + 1 < argc) dev = argv[++i];
    else if (!strcmp(argv[i], "--seed") && i + 1 < argc) seed = strtoull(argv[++i], NULL, 10);
    else { fprintf(stderr, "usage: wire --ns-a NAME --ns-b NAME [--dev NAME] [--seed N]\n"); return 64; }
  }
  if (ns_a == NULL || ns_b == NULL) { fprintf(stderr, "wire: --ns-a and --ns-b are required\n"); return 64; }
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  for (int i = 0; i < 2; i++) {
    memset(&dirs[i], 0, sizeof(dir_t));
    dirs[i].p.queue_bytes = 1L << 30;
    dirs[i].p.reorder_gap_ms = 1;
    seed_dir(&dirs[i], seed, i);
  }
  /* Real-time priority: on a busy 2-core machine the benchmark's own node
   * processes would otherwise preempt the wire and every packet would leave
   * late (measured: p99 lateness 3-80 ms without it). The wire sleeps in
   * ppoll between packets, and the kernel's RT throttling still bounds it. */
  struct sched_param sp = { .sched_priority = 10 };
  if (sched_setscheduler(0, SCHED_FIFO, &sp) < 0) fprintf(stderr, "wire: SCHED_FIFO unavailable (%s); lateness may suffer\n", strerror(errno));
  if ((fds[0] = open_tun_in(ns_a, dev)) < 0) return 1;
  if ((fds[1] = open_tun_in(ns_b, dev)) < 0) return 1;
  printf("ready\n");

  static unsigned char buf[MAX_PKT];
  char line[4096];
  size_t line_len = 0;
  struct pollfd pfd[3] = { { fds[0], POLLIN, 0 }, { fds[1], POLLIN, 0 }, { 0, POLLIN, 0 } };
  for (;;) {
    int64_t now = now_ns();
    release_due(now);
    struct timespec ts, *tp = NULL;
    if (heap_n > 0) {
      int64_t wait = heap[0]->release_ns - now_ns();
      if (wait < 0) wait = 0;
      ts.tv_sec = wait / 1000000000LL;
      ts.tv_nsec = wait % 1000000000LL;
      tp = &ts;
    }
    int n = ppoll(pfd, 3, tp, NULL);
    if (n < 0) { if (errno == EINTR) continue; perror("wire: ppoll"); return 1; }
    now = now_ns();
    for (int i = 0; i < 2; i++) {
      if (!(pfd[i].revents & POLLIN)) continue;
      for (int k = 0; k < BATCH; k++) {
        ssize_t r = read(fds[i], buf, sizeof buf);
        if (r <= 0) break;
        enqueue(i, buf, (int)r, now);
      }
    }
    if (pfd[2].revents & (POLLIN | POLLHUP | POLLERR)) {
      ssize_t r = read(0, line + line_len, sizeof line - 1 - line_len);
      if (r <= 0) return 0; /* parent gone: the TUN devices vanish with us */
      line_len += (size_t)r;
      line[line_len] = '\0';
      char *nl;
      while ((nl = strchr(line, '\n')) != NULL) {
        *nl = '\0';
        if (command(line)) return 0;
        size_t rest = line_len - (size_t)(nl + 1 - line);
        memmove(line, nl + 1, rest);
        line_len = rest;
        line[line_len] = '\0';
      }
      if (line_len >= sizeof line - 1) { printf("err line too long\n"); line_len = 0; }
    }
  }
}
