/* The server's OutputChunk slices (declared in core/rpc-internal.h): a pool of large buffers
 * and the message around one. */
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>

#include "rpc-internal.h"
#include "tsan.h"

/* Large chunk buffers come from a small pool of mmap'd buffers, one free list per power of
 * two from CHUNK_POOL_MIN to RPC_CHUNK_DATA_MAX. Streams send a 256 KiB to 1 MiB message
 * every few hundred microseconds each. From malloc, blocks this size start out mmap'd per
 * allocation (a page fault per 4 KiB of every message), until glibc's dynamic threshold moves
 * them into the arena of whichever thread frees them. Pooled, a buffer is reused warm, its
 * data page-aligned for the log's pread, and what the pool keeps is bounded (CHUNK_POOL_KEEP
 * bytes; more is unmapped). The bound is four times the stream budget (core/server-stream.c):
 * gRPC holds a buffer past its turn, until the transport has framed and encrypted it, and with
 * the budget's own 2 MiB, 100 readers fell at times into mapping, faulting and unmapping a buffer
 * per message (a quarter of the aggregate rate, bench/RESULTS.md). */
#define CHUNK_POOL_MIN     (64 * 1024)
#define CHUNK_POOL_CLASSES 5 /* 64 KiB .. 1 MiB */
#define CHUNK_POOL_KEEP    (8 * 1024 * 1024)

struct pool_buf {
    struct pool_buf *next;
    int cls;
};

/* A buffer goes out on one thread and comes back through gRPC's slice refcount on another;
 * Debian's libgrpc is not instrumented, so ThreadSanitizer cannot see that edge: state it
 * (as tag_publish/tag_arrived do for the server's tags). No-ops without TSan. */
#if RUNJOB_TSAN
#include <sanitizer/tsan_interface.h>
#define pool_handoff_out(b) __tsan_release(b)
#define pool_handoff_in(b)  __tsan_acquire(b)
#else
#define pool_handoff_out(b) ((void)(b))
#define pool_handoff_in(b)  ((void)(b))
#endif

static pthread_mutex_t pool_mu = PTHREAD_MUTEX_INITIALIZER;
static struct pool_buf *pool_free[CHUNK_POOL_CLASSES];
static size_t pool_kept;

/* The mapping behind class cls: a page for the pool_buf and the chunk's header room, then the
 * class's capacity (so that the data starts page-aligned past RPC_CHUNK_HDR_MAX). */
static size_t pool_map_len(int cls)
{
    return 4096 + ((size_t)CHUNK_POOL_MIN << cls);
}

static void pool_put(void *p)
{
    struct pool_buf *b = p;
    size_t len;

    pool_handoff_in(b);
    len = pool_map_len(b->cls);

    (void)pthread_mutex_lock(&pool_mu);
    if (pool_kept + len <= CHUNK_POOL_KEEP) {
        b->next = pool_free[b->cls];
        pool_free[b->cls] = b;
        pool_kept += len;
        b = NULL;
    }
    (void)pthread_mutex_unlock(&pool_mu);
    if (b)
        (void)munmap(b, len);
}

grpc_slice rpc_chunk_slice_new(size_t cap)
{
    struct pool_buf *b = NULL;
    int cls = 0;

    if (cap < CHUNK_POOL_MIN || cap > RPC_CHUNK_DATA_MAX)
        return grpc_slice_malloc(RPC_CHUNK_HDR_MAX + cap);
    while (((size_t)CHUNK_POOL_MIN << cls) < cap)
        cls++;
    (void)pthread_mutex_lock(&pool_mu);
    if (pool_free[cls]) {
        b = pool_free[cls];
        pool_free[cls] = b->next;
        pool_kept -= pool_map_len(cls);
    }
    (void)pthread_mutex_unlock(&pool_mu);
    if (!b) {
        void *p = mmap(NULL, pool_map_len(cls), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                       -1, 0);
        if (p == MAP_FAILED) /* let gRPC's allocator have a go (it aborts on failure) */
            return grpc_slice_malloc(RPC_CHUNK_HDR_MAX + cap);
        b = p;
        b->cls = cls;
    }
    pool_handoff_out(b);
    return grpc_slice_new_with_user_data((char *)b + 4096 - RPC_CHUNK_HDR_MAX,
                                         RPC_CHUNK_HDR_MAX + cap, pool_put, b);
}

grpc_byte_buffer *rpc_chunk_finish(grpc_slice s, size_t n, int stream, uint64_t offset,
                                   int64_t time_ms)
{
    uint8_t hdr[RPC_CHUNK_HDR_MAX + 8];
    size_t h = rpc_chunk_header_encode(hdr, stream, offset, time_ms, n);
    grpc_byte_buffer *bb;
    grpc_slice sub;

    memcpy(GRPC_SLICE_START_PTR(s) + RPC_CHUNK_HDR_MAX - h, hdr, h);
    sub = grpc_slice_sub(s, RPC_CHUNK_HDR_MAX - h, RPC_CHUNK_HDR_MAX + n);
    grpc_slice_unref(s);
    bb = grpc_raw_byte_buffer_create(&sub, 1);
    grpc_slice_unref(sub);
    return bb;
}
