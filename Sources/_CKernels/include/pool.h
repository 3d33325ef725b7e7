// disco's worker pool (Parallel.swift routes its parallel loops here): threads that stay awake
// for a short while after a parallel region, so the next region, often microseconds later,
// starts without a wake-up (a futex wake and an inter-processor interrupt per region, which on a
// virtual machine cost as much as a small region's work). After `spin` microseconds without work
// a worker sleeps on a futex, and the next region wakes it.
#pragma once

/// A task: fn(ctx, i) runs item i of a region.
typedef void (*dc_pool_fn)(void *ctx, long i);

/// Runs fn(ctx, i) for every i in 0 ..< n exactly once, on the calling thread and up to
/// `helpers` pool threads (started on first need, kept for the process), and returns when all n
/// have returned. Items are claimed one at a time, in increasing order, by whichever thread is
/// free, so no item may wait for another. Returns 0; or -1, having run nothing, when the pool is
/// busy (another region in flight: a nested call, or a second thread calling), n is not in
/// 1 ..< 65536, or helpers is not in 1 ... 255. The caller then runs the region another way.
int dc_pool_run(long n, int helpers, long spin_us, dc_pool_fn fn, void *ctx);

/// Pool threads started so far.
int dc_pool_threads(void);
