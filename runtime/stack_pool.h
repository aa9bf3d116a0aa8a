// Stacks for green threads: a per-worker cache in front of two process-wide
// sources, plus stack-overflow detection.
//
// Why two sources. A guarded stack (one mmap, lowest page mprotect'ed
// PROT_NONE) costs two kernel mappings, and vm.max_map_count (65,530 here,
// see /work/shared/notes/kernel-limits.md) caps a process at ~32,700 of them,
// far from the million green threads users expect. So guard pages are a
// budget: while the process holds fewer guarded stacks than
// guarded_stack_limit(), a new stack gets its own guard page; beyond it,
// stacks are carved from large slabs that cost two mappings per
// kSlabSlots stacks.
//
// Slab layout (P = page size, S = stack size, Z = kCanaryZoneBytes = 64):
//
//   [guard P][pad P-Z][slot 0: S-Z][zone Z][slot 1: S-Z][zone Z][slot 2...
//
// Slots repeat with a fixed stride of S, each a stack of S - Z usable bytes
// followed by the canary zone of the slot above it. Every slot's `limit`
// sits Z bytes below a page boundary, so every top() sits 2Z bytes below
// one: a parked green thread's frames (up to P - 2Z bytes) and the canary
// of the slot above share that one page, and an idle green thread keeps
// one touched page. An earlier layout gave every slot a whole multiple of
// P and moved each slot's page offset by Z; then the frames of about a
// third of idle green threads straddled two pages (5.9 KB per idle green
// thread instead of ~4.3 KB).
// Slot 0 lies P - Z bytes above the slab's guard page, so it is reported
// as guarded (and needs no canary), but it does not count towards the
// budget. The slab's last zone holds no canary.
//
// What is caught.
//   * Guarded stacks: any access to the guard page raises SIGSEGV. The
//     handler installed by install_overflow_handler() reports it as a stack
//     overflow if the fault lies in the guard page below the running stack
//     (see set_running_stack) and aborts. A frame larger than a page can
//     jump over the guard; build with -fstack-clash-protection to probe.
//   * Unguarded (slab) stacks: an overflow writes into the zone below
//     `limit` and then into the top of the slot below, i.e. the neighbour's
//     stack. It is not prevented; it is caught at the next switch, when the
//     scheduler calls canary_intact(), and only if a write touched the 8
//     canary bytes [limit - 8, limit). Writes that jump over them go unseen.
//
// Invariants.
//   1. A stack's nominal size (nominal_size(): what it was allocated as) is
//      a multiple of the page size in [kMinStackSize, kMaxStackSize].
//      Stack::size is the nominal size for stacks with their own guard
//      page, and the nominal size - Z for slab stacks. top() is 16-byte
//      aligned.
//   2. Stacks with their own guard page have a page-aligned `limit`; slab
//      stacks never do (the layout above). deallocate() tells them apart
//      this way, so a Stack must come from StackPool unmodified.
//   3. guarded_stacks_in_use() counts stacks with their own guard page that
//      are not unmapped, including those in worker caches.
//   4. Slabs are never unmapped; a free slab stack lives either in a
//      worker's cache (pages kept) or in its arena's free list (all pages
//      entirely within the slot released with MADV_DONTNEED).
//   5. All memory is MAP_NORESERVE: only touched pages count.
//
// Usage, in a worker:
//   green::detail::install_overflow_handler();   // once per worker thread
//   StackPool pool(64 * 1024);
//   Stack s = pool.allocate();
//   // ... on every switch into the green thread owning `s`:
//   set_running_stack(&s);
//   // ... on every switch out of it:
//   if (!canary_intact(s)) report_stack_overflow(s);
//   set_running_stack(nullptr);
//   pool.deallocate(s);   // when the green thread has finished
#ifndef GREEN_RUNTIME_STACK_POOL_H_
#define GREEN_RUNTIME_STACK_POOL_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace green::detail {

// A green thread's stack: usable bytes are [limit, limit + size); it grows
// down from top().
struct Stack {
  char* limit = nullptr;  // lowest usable byte
  std::size_t size = 0;   // usable bytes (invariant 1)
  bool guarded = false;   // a PROT_NONE page lies below `limit` (directly,
                          // or for slab slot 0 with kCanaryZoneBytes of pad)
  char* top() const { return limit + size; }
  explicit operator bool() const { return limit != nullptr; }
};

// Stacks for one worker thread. NOT thread-safe: called only by the owning
// worker. A stack allocated from one pool may be deallocated to another
// (green threads migrate between workers).
class StackPool {
 public:
  // A burst of short-lived green threads (an accept loop) recycles up to
  // this many stacks per worker without a syscall or the slab mutex; the
  // price is at most 64 x stack size of possibly dirty memory per worker
  // (4 MiB at 64 KiB stacks). Not measured yet: revisit with the spawn
  // benchmark.
  static constexpr std::size_t kDefaultCacheLimit = 64;

  // Throws std::invalid_argument if default_stack_size is 0 or above
  // kMaxStackSize; other sizes are rounded up (see round_stack_size).
  explicit StackPool(std::size_t default_stack_size,
                     std::size_t cache_limit = kDefaultCacheLimit);
  ~StackPool();  // releases its cached stacks
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  std::size_t default_stack_size() const { return default_size_; }
  // A stack of the default size: from the cache (LIFO), else new.
  Stack allocate();
  // A stack of any size, rounded up; the cache serves only the default
  // size. Throws std::invalid_argument for 0 or sizes above kMaxStackSize,
  // std::system_error if the memory cannot be mapped.
  Stack allocate(std::size_t size);
  // To the cache if it is of the default size and the cache has room, else
  // released (unmapped, or back to its slab).
  void deallocate(Stack stack) noexcept;
  std::size_t cached() const { return cache_.size(); }

 private:
  std::size_t default_size_;
  Stack allocate_rounded(std::size_t size);  // size already rounded

  std::size_t cache_limit_;
  std::vector<Stack> cache_;  // capacity cache_limit_: push never allocates
  // Room to release a batch of slab stacks from deallocate() (noexcept)
  // without allocating or using much of the caller's stack.
  std::unique_ptr<std::uintptr_t[]> release_scratch_;
};

// The size `stack` was allocated as (a multiple of the page size; for a
// slab stack, kCanaryZoneBytes more than its usable size).
inline std::size_t nominal_size(const Stack& stack) noexcept;

// True unless an overflow of an unguarded stack hit its canary. Always true
// for guarded stacks: their guard page stops an overflow instead.
// Checked by the scheduler at every switch, hence inline.
inline bool canary_intact(const Stack& stack) noexcept;

// The process-wide guard-page budget, in stacks. Default: one quarter of
// vm.max_map_count (read from /proc, 65,530 if unreadable) for guard
// mappings, i.e. max_map_count / 8 stacks at two mappings each; the rest is
// left to the application and to slabs. 0 disables per-stack guard pages
// (slabs keep their one guard page). Lowering it does not unmap stacks
// already guarded. Any thread.
void set_guarded_stack_limit(std::size_t stacks);
// Freed stacks with their own guard page are kept mapped for reuse (they
// still count in guarded_stacks_in_use()); this unmaps them.
void release_free_stacks() noexcept;
std::size_t guarded_stack_limit();
std::size_t guarded_stacks_in_use();

// Call once on each worker thread before running green threads: installs
// (once per process) a SIGSEGV and SIGBUS handler that reports overflows of
// guarded stacks, and (per thread, unless it has one) an alternate signal
// stack for it, freed at thread exit. Faults it does not recognise go to
// the previously installed action.
void install_overflow_handler();

// Tells the overflow handler which green thread stack is running on this
// thread (nullptr: the worker's own stack). *stack must stay valid while
// it is set. A plain thread_local store, cheap enough for every switch.
inline void set_running_stack(const Stack* stack) noexcept;

// Async-signal-safe: writes "green thread stack overflow (stack size N
// bytes)" and a hint to stderr, then abort()s.
[[noreturn]] void report_stack_overflow(const Stack& stack) noexcept;

// ---------------------------------------------------------------------------
// Details.

// 16 KiB: Boost.Context's record plus the scheduler's frames leave room for
// ordinary library calls (glibc's printf family and getaddrinfo use several
// KiB of stack); a smaller stack overflows on them.
inline constexpr std::size_t kMinStackSize = std::size_t{16} << 10;
// 1 GiB: 128 x the main thread's default 8 MiB; anything larger is a bug
// (e.g. a negative number converted to size_t), not a stack.
inline constexpr std::size_t kMaxStackSize = std::size_t{1} << 30;
// The zone below a slab stack's limit that holds its canary: 64 bytes, one
// cache line, keeps top() 16-byte aligned and leaves slack below the magic.
inline constexpr std::size_t kCanaryZoneBytes = 64;
// Freed slab stacks are released to the kernel this many at a time
// (stack_pool.cc, kReleaseBatch).
inline constexpr std::size_t kSlabReleaseBatch = 4096;
// Arbitrary, but unlikely to be written by a program: not a small integer,
// not a canonical user-space pointer, not a repeated byte.
inline constexpr std::uint64_t kStackCanary = 0xC0DE57AC4B1E5EEDull;

// The page size (sysconf(_SC_PAGESIZE)), cached.
std::size_t page_size() noexcept;
// `size` rounded up to the page size and to at least kMinStackSize. Throws
// std::invalid_argument for 0 or sizes above kMaxStackSize.
std::size_t round_stack_size(std::size_t size);

inline std::size_t nominal_size(const Stack& stack) noexcept {
  const bool slab =
      reinterpret_cast<std::uintptr_t>(stack.limit) % page_size() !=
      0;  // invariant 2
  return slab ? stack.size + kCanaryZoneBytes : stack.size;
}

inline bool canary_intact(const Stack& stack) noexcept {
  if (stack.guarded) return true;
  std::uint64_t magic;
  std::memcpy(&magic, stack.limit - sizeof magic, sizeof magic);
  return magic == kStackCanary;
}

// Read by the signal handler on this thread, hence a plain pointer with
// constant initialisation (no TLS wrapper function, no lazy allocation).
// initial-exec: see tls_worker in worker.cc.
inline __attribute__((tls_model(
    "initial-exec"))) thread_local const Stack* tls_running_stack = nullptr;

inline void set_running_stack(const Stack* stack) noexcept {
  tls_running_stack = stack;
}

}  // namespace green::detail

#endif  // GREEN_RUNTIME_STACK_POOL_H_
