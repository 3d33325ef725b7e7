// disco's worker pool (see pool.h).
//
// One region at a time. Its items are claimed through one 64-bit word, `claim` = generation (32
// bits) | n (16) | next item (16): a thread reads the word, then the region's task, and takes item
// i by a compare-and-swap from (g, n, i) to (g, n, i + 1). The swap succeeds only while region g
// still has unclaimed items, so the caller, who waits for all n items to finish, cannot have
// published the next region's task in between: a thread that read a task it should not have
// (late, or from the next region) fails its swap and runs nothing. The generation makes the word
// differ between regions with the same n and position.
#define _GNU_SOURCE
#include "pool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define relax() _mm_pause()
#elif defined(__aarch64__)
#define relax() __asm__ __volatile__("yield")
#else
#define relax() ((void)0)
#endif

enum { MAX_HELPERS = 255 };

static _Atomic int busy;                // 1 while a region is in flight (its caller holds it)
static _Atomic uint64_t claim;          // generation | n | next item
static _Atomic uint32_t finished;       // items of the current region that returned
static _Atomic int caller_asleep;       // the caller waits on `finished` in futex_wait
static _Atomic(dc_pool_fn) task_fn;     // the current region's task, published by claim's store
static _Atomic(void *) task_ctx;
static _Atomic uint32_t wake_seq;       // bumped per region; sleeping threads wait on it
static _Atomic int sleepers;            // threads in (or entering) futex_wait
static _Atomic long spin_ns;            // how long a thread stays awake after a region
static _Atomic int started;             // pool threads started (only the busy holder adds some)

static long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000L + t.tv_nsec;
}

// Claims and runs items of the region in `claim` until none is left.
static void work(void) {
    uint64_t c = atomic_load_explicit(&claim, memory_order_acquire);
    for (;;) {
        const long n = (long)((c >> 16) & 0xffff), i = (long)(c & 0xffff);
        if (i >= n) return;
        const dc_pool_fn fn = atomic_load_explicit(&task_fn, memory_order_relaxed);
        void *const ctx = atomic_load_explicit(&task_ctx, memory_order_relaxed);
        if (atomic_compare_exchange_weak_explicit(&claim, &c, c + 1, memory_order_acq_rel, memory_order_acquire)) {
            fn(ctx, i);
            // The last item wakes a caller that went to sleep (the same handshake as `helper`'s).
            if (atomic_fetch_add(&finished, 1) + 1 == (uint32_t)n && atomic_load(&caller_asleep))
                syscall(SYS_futex, (uint32_t *)&finished, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
            c = atomic_load_explicit(&claim, memory_order_acquire);
        }
    }
}

static void *helper(void *unused) {
    (void)unused;
    uint32_t seen = atomic_load(&wake_seq);
    for (;;) {
        const uint32_t now = atomic_load_explicit(&wake_seq, memory_order_acquire);
        if (now != seen) { seen = now; work(); continue; }
        // Awake for spin_ns, looking for the next region.
        const long limit = atomic_load_explicit(&spin_ns, memory_order_relaxed), t0 = now_ns();
        int woke = 0;
        for (unsigned k = 1;; k++) {
            relax();
            if (atomic_load_explicit(&wake_seq, memory_order_relaxed) != seen) { woke = 1; break; }
            if ((k & 63) == 0 && now_ns() - t0 > limit) break;
        }
        if (woke) continue;
        // Asleep. The caller bumps wake_seq, then reads sleepers; we count ourselves, then read
        // wake_seq (both sequentially consistent): one of us sees the other. futex_wait returns
        // at once if wake_seq has moved.
        atomic_fetch_add(&sleepers, 1);
        if (atomic_load(&wake_seq) == seen)
            syscall(SYS_futex, (uint32_t *)&wake_seq, FUTEX_WAIT_PRIVATE, seen, NULL, NULL, 0);
        atomic_fetch_sub(&sleepers, 1);
    }
    return NULL;
}

int dc_pool_run(long n, int helpers, long spin_us, dc_pool_fn fn, void *ctx) {
    if (n < 1 || n >= 65536 || helpers < 1 || helpers > MAX_HELPERS || !fn) return -1;
    int idle = 0;
    if (!atomic_compare_exchange_strong(&busy, &idle, 1)) return -1;
    while (atomic_load(&started) < helpers) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        const int err = pthread_create(&t, &attr, helper, NULL);
        pthread_attr_destroy(&attr);
        if (err) break;
        atomic_fetch_add(&started, 1);
    }
    if (atomic_load(&started) == 0) { atomic_store(&busy, 0); return -1; }

    atomic_store_explicit(&spin_ns, (spin_us < 0 ? 0 : spin_us) * 1000, memory_order_relaxed);
    atomic_store_explicit(&task_fn, fn, memory_order_relaxed);
    atomic_store_explicit(&task_ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&finished, 0, memory_order_relaxed);
    const uint64_t generation = (atomic_load_explicit(&claim, memory_order_relaxed) >> 32) + 1;
    atomic_store(&claim, (generation << 32) | ((uint64_t)n << 16));  // publishes the task
    atomic_fetch_add(&wake_seq, 1);
    if (atomic_load(&sleepers) > 0)
        syscall(SYS_futex, (uint32_t *)&wake_seq, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);

    work();
    // The last items may still be running on other threads: spin for as long as the helpers
    // would, then sleep until the last one wakes us.
    const long t0 = now_ns(), limit = atomic_load_explicit(&spin_ns, memory_order_relaxed);
    for (unsigned k = 1; atomic_load_explicit(&finished, memory_order_acquire) < (uint32_t)n; k++) {
        relax();
        if ((k & 63) == 0 && now_ns() - t0 > limit) {
            atomic_store(&caller_asleep, 1);
            uint32_t f;
            while ((f = atomic_load(&finished)) < (uint32_t)n)
                syscall(SYS_futex, (uint32_t *)&finished, FUTEX_WAIT_PRIVATE, f, NULL, NULL, 0);
            atomic_store(&caller_asleep, 0);
            break;
        }
    }
    atomic_store_explicit(&busy, 0, memory_order_release);
    return 0;
}

int dc_pool_threads(void) { return atomic_load(&started); }
