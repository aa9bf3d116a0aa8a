// Stack pool, guard-page budget, slabs and the overflow handler. The design,
// the slab layout and the invariants are described in stack_pool.h; this
// file adds the reasoning behind each mechanism where it is implemented.
//
// Process-wide state, and who may touch it:
//   * g_guarded_in_use, guard_limit(): atomics, any thread.
//   * slabs(): the slab arenas, under Slabs::mu.
//   * g_old_segv, g_old_bus, g_page: written once by install_overflow_handler()
//     before the handler can run, then only read (by the handler).
//   * tls_running_stack (header), tls_alt_stack: per thread.
#include "runtime/stack_pool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

namespace green::detail {
namespace {

// Stacks per slab. Each slab costs two mappings (stacks + guard), so a
// million green threads need 3,907 slabs, 7,814 mappings: 12% of
// vm.max_map_count, next to the 25% the guard budget takes. At 64 KiB
// stacks a slab reserves 16 MiB of address space (not memory), and a slab
// is created (one mmap, mprotect, madvise) once per 256 spawns.
constexpr std::size_t kSlabSlots = 256;

// vm.max_map_count's kernel default, used when /proc is unreadable.
constexpr std::size_t kDefaultMaxMapCount = 65530;
// max_map_count / kMapCountPerGuardedStack guarded stacks: a quarter of the
// mappings for guards, at two mappings (guard + stack) per stack.
constexpr std::size_t kMapCountPerGuardedStack = 8;

// The alternate signal stack. The handler itself needs a few hundred bytes,
// but after it restores the previous action the previous handler (e.g. a
// sanitizer's, which symbolises) runs on it too; 64 KiB is above glibc's
// SIGSTKSZ and covers an x86 AVX-512 signal frame (~3 KiB) many times over.
constexpr std::size_t kAltStackSize = std::size_t{64} << 10;

constexpr int kMapFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE |
                          MAP_STACK;  // MAP_STACK: no THP on Linux >= 6.7

bool page_aligned(const void* p) {
  return reinterpret_cast<std::uintptr_t>(p) % page_size() == 0;
}
char* page_down(char* p) {
  auto a = reinterpret_cast<std::uintptr_t>(p);
  return reinterpret_cast<char*>(a - a % page_size());
}
char* page_up(char* p) { return page_down(p + page_size() - 1); }

void write_canary(const Stack& s) {
  std::memcpy(s.limit - sizeof kStackCanary, &kStackCanary,
              sizeof kStackCanary);
}

[[noreturn]] void throw_map_error(int err, const char* call,
                                  std::size_t stack_size, const char* what) {
  throw std::system_error(
      err, std::generic_category(),
      std::string("green: ") + call + " failed for " + what + " of " +
          std::to_string(stack_size) +
          "-byte stacks (out of memory, or of mappings: vm.max_map_count; "
          "use smaller stacks via Options::stack_size or fewer guard pages "
          "via set_guarded_stack_limit)");
}

// write(2) all of [p, p + n), retrying after EINTR and short writes.
void write_all(const char* p, std::size_t n) noexcept {
  while (n > 0) {
    ssize_t w = ::write(STDERR_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

// ---- Guard-page budget ----------------------------------------------------

std::size_t default_guard_limit() {
  std::size_t count = 0;
  int fd = ::open("/proc/sys/vm/max_map_count", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[32];
    ssize_t n = ::read(fd, buf, sizeof buf);
    ::close(fd);
    for (ssize_t i = 0; i < n && buf[i] >= '0' && buf[i] <= '9'; ++i) {
      count = count * 10 + static_cast<std::size_t>(buf[i] - '0');
    }
  }
  if (count == 0) count = kDefaultMaxMapCount;
  return count / kMapCountPerGuardedStack;
}

// Relaxed: a tuning knob; no other memory is published through it.
std::atomic<std::size_t>& guard_limit() {
  static std::atomic<std::size_t> limit{default_guard_limit()};
  return limit;
}

// Stacks with their own guard page, mapped and not yet unmapped. Relaxed:
// it is only a count (RMWs on one atomic are totally ordered, so it never
// loses an update); no memory is published through it.
std::atomic<std::size_t> g_guarded_in_use{0};

// A stack with its own guard page, or an empty Stack if the budget is
// spent or the kernel refuses (the caller then falls back to a slab).
Stack map_guarded(std::size_t size) {
  // Reserve first, then check: two racing threads cannot both take the
  // last unit. A reservation that is rolled back may briefly make another
  // thread see the budget as spent; it then takes a slab stack, harmless.
  std::size_t limit = guard_limit().load(std::memory_order_relaxed);
  if (g_guarded_in_use.fetch_add(1, std::memory_order_relaxed) >= limit) {
    g_guarded_in_use.fetch_sub(1, std::memory_order_relaxed);
    return {};
  }
  const std::size_t page = page_size();
  void* p =
      ::mmap(nullptr, page + size, PROT_READ | PROT_WRITE, kMapFlags, -1, 0);
  if (p != MAP_FAILED && ::mprotect(p, page, PROT_NONE) == 0) {
    return Stack{static_cast<char*>(p) + page, size, /*guarded=*/true};
  }
  // mprotect fails with ENOMEM when splitting the mapping would exceed
  // vm.max_map_count: the application uses more mappings than we assumed.
  if (p != MAP_FAILED) ::munmap(p, page + size);
  g_guarded_in_use.fetch_sub(1, std::memory_order_relaxed);
  return {};
}

void unmap_guarded(const Stack& s) noexcept {
  const std::size_t page = page_size();
  // Unmapping part of a merged mapping can fail (ENOMEM) if the split
  // would exceed vm.max_map_count; the stack then stays mapped and counted.
  if (::munmap(s.limit - page, page + s.size) == 0) {
    g_guarded_in_use.fetch_sub(1, std::memory_order_relaxed);
  }
}

// ---- Slabs -----------------------------------------------------------------

// Free-list entries are limits (64-byte aligned), tagged in bit 0 when the
// stack is a slab's slot 0, which the slab's guard page guards.
constexpr std::uintptr_t kSlotZeroTag = 1;

std::uintptr_t free_entry(char* limit, bool slot_zero) {
  return reinterpret_cast<std::uintptr_t>(limit) |
         (slot_zero ? kSlotZeroTag : 0);
}

// The stacks of one size, in slabs that are never unmapped.
struct Arena {
  // Limits of the free stacks; LIFO so that a recently freed stack, whose
  // pages are still resident, is reused first. Capacity >= slots, so a
  // push (in deallocate, noexcept) never allocates.
  std::vector<std::uintptr_t> free;  // see free_entry()
  std::size_t slots = 0;             // stacks in all slabs of this size
  // The last `dirty` entries of `free` still hold their touched pages.
  std::size_t dirty = 0;
};

// Freed slab stacks keep their pages until kSlabReleaseBatch of them have
// gathered; then they are released together, sorted by address, one
// madvise per run of neighbours. Measured (a million sleepers waking at
// once, 2 cores): one madvise per stack -- a TLB shoot-down each -- took
// half the run time; batches of 256 still 45%; batches of 4096 coalesce
// into long runs. What free stacks may hold is capped at that many stacks'
// touched pages per stack size (~16-32 MiB at the default size).

struct Slabs {
  std::mutex mu;
  std::map<std::size_t, Arena> arenas;  // guarded by mu; key: stack size
  // Freed stacks with their own guard page, by size: kept mapped and
  // reused (they still count against the guard budget). Unmapping and
  // mapping them again per green thread -- munmap, mmap and mprotect, each
  // with a TLB shoot-down -- took half the time of 200k short sleepers.
  // At most guarded_stack_limit() stacks exist, so this is bounded.
  std::map<std::size_t, std::vector<char*>> guarded_free;  // guarded by mu
};

// Leaked on purpose: stacks may be released by thread_local or static
// destructors that run after this one would have.
Slabs& slabs() {
  static Slabs* s = new Slabs;
  return *s;
}

// Maps a slab of kSlabSlots stacks of nominal `size` bytes and adds them to
// `arena`. Layout (stack_pool.h): [guard P][pad P-Z][slot 0][zone]...,
// a fixed stride of `size`, each limit Z bytes below a page boundary.
void add_slab(Arena& arena, std::size_t size) {
  const std::size_t page = page_size();
  const std::size_t first_limit = 2 * page - kCanaryZoneBytes;
  // The last slot ends Z bytes below a page boundary: round up.
  const std::size_t bytes = first_limit + kSlabSlots * size + kCanaryZoneBytes;
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, kMapFlags, -1, 0);
  if (p == MAP_FAILED) throw_map_error(errno, "mmap", size, "a slab");
  char* base = static_cast<char*>(p);
  if (::mprotect(base, page, PROT_NONE) != 0) {
    int err = errno;
    ::munmap(base, bytes);
    throw_map_error(err, "mprotect", size, "the guard page of a slab");
  }
  // A slab is large enough for transparent huge pages, which would turn
  // one touched byte into 2 MiB of RSS. Advice only: failure is harmless.
  ::madvise(base + page, bytes - page, MADV_NOHUGEPAGE);

  std::size_t needed = arena.slots + kSlabSlots;
  if (arena.free.capacity() < needed) {
    arena.free.reserve(std::max(needed, 2 * arena.free.capacity()));
  }
  arena.slots = needed;
  // Reversed, so slot 0 is handed out first: slots then go out in address
  // order, and a slot's canary page is its in-use neighbour's top page.
  for (std::size_t k = kSlabSlots; k-- > 0;) {
    arena.free.push_back(free_entry(base + first_limit + k * size, k == 0));
  }
}

Stack carve_from_slab(std::size_t size) {
  std::uintptr_t entry;
  {
    Slabs& s = slabs();
    // The mmap of a new slab happens under the lock, so that two workers
    // do not both add one; it is rare (once per kSlabSlots stacks).
    std::lock_guard<std::mutex> lock(s.mu);
    Arena& arena = s.arenas[size];
    if (arena.free.empty()) add_slab(arena, size);
    entry = arena.free.back();
    arena.free.pop_back();
    if (arena.dirty > 0) --arena.dirty;
  }
  // The top Z bytes of the slot are the canary zone of the slot above.
  return Stack{reinterpret_cast<char*>(entry & ~kSlotZeroTag),
               size - kCanaryZoneBytes,
               /*guarded=*/(entry & kSlotZeroTag) != 0};
}

// Releases the pages of `count` free stacks of `size` usable bytes (limits in
// `entries`, tags included): sorted by address, so that neighbouring free
// stacks go back in one call. Only pages lying entirely within a run of
// free stacks are released; the partial pages at a run's ends are shared
// with stacks that may be in use (and hold their canaries).
void release_pages(std::uintptr_t* entries, std::size_t count,
                   std::size_t size) noexcept {
  std::sort(entries, entries + count);
  std::size_t first = 0;
  for (std::size_t i = 1; i <= count; ++i) {
    char* previous_top =
        reinterpret_cast<char*>(entries[i - 1] & ~kSlotZeroTag) + size;
    if (i < count) {
      char* limit = reinterpret_cast<char*>(entries[i] & ~kSlotZeroTag);
      // Neighbours are one canary zone apart.
      if (limit > previous_top && limit - previous_top == kCanaryZoneBytes) {
        continue;
      }
    }
    char* lo = page_up(reinterpret_cast<char*>(entries[first] & ~kSlotZeroTag));
    char* hi = page_down(previous_top);
    if (hi > lo) {
      ::madvise(lo, static_cast<std::size_t>(hi - lo), MADV_DONTNEED);
    }
    first = i;
  }
}

void return_to_slab(const Stack& s, std::uintptr_t* batch) noexcept {
  std::size_t batch_size = 0;
  Slabs& slabs_ref = slabs();
  {
    std::lock_guard<std::mutex> lock(slabs_ref.mu);
    auto it = slabs_ref.arenas.find(nominal_size(s));
    if (it == slabs_ref.arenas.end()) {
      static constexpr char kMsg[] =
          "green: StackPool::deallocate of a stack it did not allocate\n";
      write_all(kMsg, sizeof kMsg - 1);
      std::abort();
    }
    Arena& arena = it->second;
    // Within capacity (Arena::free): no allocation.
    arena.free.push_back(free_entry(s.limit, s.guarded));
    if (++arena.dirty < kSlabReleaseBatch) return;
    // Take the dirty stacks out of the free list while their pages are
    // released without the lock, so nobody is handed one meanwhile.
    batch_size = arena.dirty;
    std::copy(arena.free.end() - batch_size, arena.free.end(), batch);
    arena.free.resize(arena.free.size() - batch_size);
    arena.dirty = 0;
  }
  release_pages(batch, batch_size, s.size);
  std::lock_guard<std::mutex> lock(slabs_ref.mu);
  Arena& arena = slabs_ref.arenas.find(nominal_size(s))->second;
  // Clean entries go below the dirty ones, which are better to reuse first.
  arena.free.insert(arena.free.end() - arena.dirty, batch, batch + batch_size);
}

// Back to the process: unmapped, or to its slab.
// `scratch` holds kSlabReleaseBatch entries (StackPool::release_scratch_).
void release(const Stack& s, std::uintptr_t* scratch) noexcept {
  if (!page_aligned(s.limit)) {
    return_to_slab(s, scratch);
    return;
  }
  // invariant 2: only stacks with their own guard are page-aligned.
  Slabs& slabs_ref = slabs();
  const bool within_budget = g_guarded_in_use.load(std::memory_order_relaxed) <=
                             guard_limit().load(std::memory_order_relaxed);
  if (within_budget) {
    std::lock_guard<std::mutex> lock(slabs_ref.mu);
    std::vector<char*>& free = slabs_ref.guarded_free[s.size];
    if (free.size() < free.capacity()) {  // no allocation while noexcept
      free.push_back(s.limit);
      return;
    }
  }
  unmap_guarded(s);  // over a lowered budget, or no room: give it back
}

}  // namespace

void release_free_stacks() noexcept {
  Slabs& slabs_ref = slabs();
  std::map<std::size_t, std::vector<char*>> free;
  {
    std::lock_guard<std::mutex> lock(slabs_ref.mu);
    for (auto& [size, limits] : slabs_ref.guarded_free) {
      free[size].swap(limits);
      limits.reserve(free[size].capacity());
    }
  }
  for (auto& [size, limits] : free) {
    for (char* limit : limits) unmap_guarded(Stack{limit, size, true});
  }
}

namespace {

// A freed guarded stack of `size` bytes, or an empty Stack.
Stack reuse_guarded(std::size_t size) {
  Slabs& slabs_ref = slabs();
  std::lock_guard<std::mutex> lock(slabs_ref.mu);
  std::vector<char*>& free = slabs_ref.guarded_free[size];
  // Room for every guarded stack that may exist, so release() never has to
  // allocate (it is noexcept); reserved here, where allocating may throw.
  const std::size_t room = std::min<std::size_t>(
      guard_limit().load(std::memory_order_relaxed), std::size_t{1} << 16);
  if (free.capacity() < room) free.reserve(room);
  if (free.empty()) return {};
  if (g_guarded_in_use.load(std::memory_order_relaxed) >
      guard_limit().load(std::memory_order_relaxed)) {
    return {};  // the budget was lowered: let these go (release_free_stacks)
  }
  char* limit = free.back();
  free.pop_back();
  return Stack{limit, size, /*guarded=*/true};
}

Stack new_stack(std::size_t size) {
  Stack s = reuse_guarded(size);
  if (!s) s = map_guarded(size);
  if (!s) s = carve_from_slab(size);
  return s;
}

// ---- Overflow handler ------------------------------------------------------

// Written by install_overflow_handler() before the handler is installed,
// then only read (by the handler); the sigaction call orders the two.
struct sigaction g_old_segv;
struct sigaction g_old_bus;
std::size_t g_page = 0;

// How far below an unguarded stack's limit a stack pointer still counts as
// that stack's overflow: far more than any frame, far less than the
// distance to unrelated memory a wild pointer would hit.
constexpr std::uintptr_t kOverflowReach = std::uintptr_t{256} << 20;

std::uintptr_t stack_pointer_of(void* context) noexcept {
  const auto* uc = static_cast<const ucontext_t*>(context);
#if defined(__x86_64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.gregs[REG_RSP]);
#elif defined(__aarch64__)
  return static_cast<std::uintptr_t>(uc->uc_mcontext.sp);
#else
  (void)uc;
  return 0;
#endif
}

void overflow_handler(int sig, siginfo_t* info, void* context) {
  const Stack* s = tls_running_stack;
  if (s != nullptr) {
    const auto limit = reinterpret_cast<std::uintptr_t>(s->limit);
    if (s->guarded) {
      // The guard page lies in the page below the one holding `limit`
      // (directly below it, or below slab slot 0's pad).
      auto addr = reinterpret_cast<std::uintptr_t>(info->si_addr);
      auto guard_end = limit - limit % g_page;
      if (addr < guard_end && addr >= guard_end - g_page) {
        report_stack_overflow(*s);
      }
    }
    // An unguarded stack has no guard page of its own: a runaway recursion
    // runs through the slots below it until it faults somewhere. The
    // stack pointer then still lies below the running stack's limit.
    const std::uintptr_t sp = stack_pointer_of(context);
    if (sp != 0 && sp < limit && limit - sp < kOverflowReach) {
      report_stack_overflow(*s);
    }
  }
  // Not a stack overflow: restore the previous action and return, so the
  // faulting instruction runs again and the process dies as it would have
  // (or the previous handler runs). Our handler stays uninstalled.
  const int saved_errno = errno;  // the interrupted code's
  ::sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, nullptr);
  // A signal sent by kill() or raise() (si_code <= 0) would not come back
  // by itself: send it again. It stays pending until we return.
  if (info->si_code <= 0) ::raise(sig);
  errno = saved_errno;
}

// This thread's alternate signal stack, if install_overflow_handler()
// allocated it; freed at thread exit.
struct AltStack {
  void* mem = nullptr;
  ~AltStack() {
    if (mem == nullptr) return;
    stack_t current;
    if (::sigaltstack(nullptr, &current) == 0 && current.ss_sp == mem) {
      stack_t off{};
      off.ss_flags = SS_DISABLE;
      ::sigaltstack(&off, nullptr);
    }
    ::munmap(mem, kAltStackSize);
  }
};
thread_local AltStack tls_alt_stack;

void install_process_handler() {
  g_page = page_size();
  for (int sig : {SIGSEGV, SIGBUS}) {
    // Save the old action before installing ours, so that the handler
    // never sees it unset.
    struct sigaction* old = sig == SIGSEGV ? &g_old_segv : &g_old_bus;
    struct sigaction sa {};
    sa.sa_sigaction = overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (::sigaction(sig, nullptr, old) != 0 ||
        ::sigaction(sig, &sa, nullptr) != 0) {
      throw std::system_error(errno, std::generic_category(),
                              "green: sigaction failed installing the stack "
                              "overflow handler");
    }
  }
}

void install_alt_stack() {
  if (tls_alt_stack.mem != nullptr) return;
  stack_t current;
  if (::sigaltstack(nullptr, &current) == 0 &&
      (current.ss_flags & SS_DISABLE) == 0) {
    return;  // the thread has one (e.g. a sanitizer's): share it
  }
  void* mem = ::mmap(nullptr, kAltStackSize, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    throw std::system_error(errno, std::generic_category(),
                            "green: mmap of the alternate signal stack failed "
                            "in install_overflow_handler");
  }
  stack_t ss{};
  ss.ss_sp = mem;
  ss.ss_size = kAltStackSize;
  if (::sigaltstack(&ss, nullptr) != 0) {
    int err = errno;
    ::munmap(mem, kAltStackSize);
    throw std::system_error(err, std::generic_category(),
                            "green: sigaltstack failed in "
                            "install_overflow_handler");
  }
  tls_alt_stack.mem = mem;
}

}  // namespace

// ---- Public functions ------------------------------------------------------

std::size_t page_size() noexcept {
  static const std::size_t page =
      static_cast<std::size_t>(::sysconf(_SC_PAGESIZE));
  return page;
}

std::size_t round_stack_size(std::size_t size) {
  if (size == 0 || size > kMaxStackSize) {
    throw std::invalid_argument(
        "green: stack size " + std::to_string(size) +
        " is out of range; give a size in (0, " +
        std::to_string(kMaxStackSize) +
        "] bytes (it is rounded up to whole pages and to at least " +
        std::to_string(kMinStackSize) + ")");
  }
  if (size < kMinStackSize) size = kMinStackSize;
  const std::size_t page = page_size();
  return (size + page - 1) / page * page;
}

StackPool::StackPool(std::size_t default_stack_size, std::size_t cache_limit)
    : default_size_(round_stack_size(default_stack_size)),
      cache_limit_(cache_limit) {
  cache_.reserve(cache_limit_);
  release_scratch_ = std::make_unique<std::uintptr_t[]>(kSlabReleaseBatch);
}

StackPool::~StackPool() {
  for (const Stack& s : cache_) release(s, release_scratch_.get());
}

Stack StackPool::allocate() {
  // The spawn path: no size to validate or round.
  return allocate_rounded(default_size_);
}

Stack StackPool::allocate(std::size_t size) {
  return allocate_rounded(round_stack_size(size));
}

Stack StackPool::allocate_rounded(std::size_t size) {
  Stack s;
  if (size == default_size_ && !cache_.empty()) {
    s = cache_.back();
    cache_.pop_back();
  } else {
    s = new_stack(size);
  }
  // Rewritten at every hand-out, so that a canary smashed after the
  // previous owner's last check is not blamed on the new one.
  if (!s.guarded) write_canary(s);
  return s;
}

void StackPool::deallocate(Stack stack) noexcept {
  if (!stack) return;
  if (nominal_size(stack) == default_size_ && cache_.size() < cache_limit_) {
    cache_.push_back(stack);  // within the reserved capacity
  } else {
    release(stack, release_scratch_.get());
  }
}

void set_guarded_stack_limit(std::size_t stacks) {
  guard_limit().store(stacks, std::memory_order_relaxed);
}

std::size_t guarded_stack_limit() {
  return guard_limit().load(std::memory_order_relaxed);
}

std::size_t guarded_stacks_in_use() {
  return g_guarded_in_use.load(std::memory_order_relaxed);
}

void install_overflow_handler() {
  static std::once_flag once;
  std::call_once(once, install_process_handler);
  install_alt_stack();
}

void report_stack_overflow(const Stack& stack) noexcept {
  // No malloc, no stdio: format the size by hand.
  char digits[24];
  std::size_t n = 0;
  std::size_t v = nominal_size(stack);  // the size the user configured
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  char line[64];
  std::size_t len = 0;
  for (const char* p = "green thread stack overflow (stack size "; *p; ++p) {
    line[len++] = *p;
  }
  while (n > 0) line[len++] = digits[--n];
  for (const char* p = " bytes)\n"; *p; ++p) line[len++] = *p;
  write_all(line, len);
  static constexpr char kHint[] =
      "green: give green threads bigger stacks with Options::stack_size, or "
      "this one with spawn's stack size argument\n";
  write_all(kHint, sizeof kHint - 1);
  std::abort();
}

}  // namespace green::detail
