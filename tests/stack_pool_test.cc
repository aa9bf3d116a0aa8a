// Tests for runtime/stack_pool.h: the per-worker cache, sizes, the
// guard-page budget and its slab fallback, canaries, page release, and the
// overflow handler (in fork()ed children, since it aborts the process).
//
// Slab arenas are process-wide and never unmapped, so each test that looks
// at slab layout uses a stack size no other test uses: its arena starts
// empty. Tests that change the guard budget restore it (LimitGuard).
// A stack is a slab stack iff its limit is not page-aligned (invariant 2 in
// stack_pool.h).
#include "runtime/stack_pool.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/context/fiber.hpp>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "catch2/catch.hpp"

namespace green::detail {
namespace {

bool from_slab(const Stack& s) {
  return reinterpret_cast<std::uintptr_t>(s.limit) % page_size() != 0;
}

// Sets the guard budget for one test and restores the old one.
class LimitGuard {
 public:
  explicit LimitGuard(std::size_t limit) : old_(guarded_stack_limit()) {
    set_guarded_stack_limit(limit);
  }
  ~LimitGuard() { set_guarded_stack_limit(old_); }
  LimitGuard(const LimitGuard&) = delete;
  LimitGuard& operator=(const LimitGuard&) = delete;

 private:
  std::size_t old_;
};

std::size_t resident_pages() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  REQUIRE(f != nullptr);
  unsigned long size = 0, resident = 0;
  REQUIRE(std::fscanf(f, "%lu %lu", &size, &resident) == 2);
  std::fclose(f);
  return resident;
}

TEST_CASE("a deallocated stack is reused LIFO; the cache is bounded") {
  const std::size_t in_use = guarded_stacks_in_use();
  {
    StackPool pool(64 << 10, /*cache_limit=*/2);
    REQUIRE(pool.default_stack_size() == (64 << 10));
    Stack a = pool.allocate();
    Stack b = pool.allocate();
    Stack c = pool.allocate();
    REQUIRE(a.limit != b.limit);
    pool.deallocate(a);
    pool.deallocate(b);
    REQUIRE(pool.cached() == 2);
    pool.deallocate(c);  // the cache is full: released
    REQUIRE(pool.cached() == 2);
    Stack b2 = pool.allocate();
    REQUIRE(b2.limit == b.limit);  // last in, first out
    Stack a2 = pool.allocate();
    REQUIRE(a2.limit == a.limit);
    REQUIRE(pool.cached() == 0);

    // Other sizes bypass the cache.
    Stack big = pool.allocate(128 << 10);
    REQUIRE(big.size == (128 << 10));
    pool.deallocate(big);
    REQUIRE(pool.cached() == 0);

    // A stack may be deallocated to another worker's pool.
    StackPool other(64 << 10);
    other.deallocate(a2);
    REQUIRE(other.cached() == 1);
    REQUIRE(other.allocate().limit == a.limit);
    other.deallocate(a2);
    pool.deallocate(b2);
  }
  // The pools' destructors released everything: guarded stacks wait in the
  // process-wide free list until release_free_stacks().
  release_free_stacks();
  REQUIRE(guarded_stacks_in_use() == in_use);
}

TEST_CASE("stacks are writable end to end, 16-aligned and rounded up") {
  const bool guarded = GENERATE(true, false);
  LimitGuard limit(guarded ? guarded_stacks_in_use() + 16 : 0);
  const std::size_t page = page_size();
  const std::size_t requested = GENERATE(
      std::size_t{1}, std::size_t{16} << 10, (std::size_t{16} << 10) + 1,
      std::size_t{100000}, std::size_t{1} << 20);
  const std::size_t expected =
      (std::max(requested, kMinStackSize) + page - 1) / page * page;
  StackPool pool(64 << 10);
  Stack s = pool.allocate(requested);
  REQUIRE(s);
  REQUIRE(nominal_size(s) == expected);
  // A slab stack gives the top kCanaryZoneBytes of its slot to the canary
  // of the slot above.
  REQUIRE(s.size == (guarded ? expected : expected - kCanaryZoneBytes));
  REQUIRE(round_stack_size(requested) == expected);
  REQUIRE(reinterpret_cast<std::uintptr_t>(s.top()) % 16 == 0);
  REQUIRE(from_slab(s) == !guarded);
  std::memset(s.limit, 0x5A, s.size);
  REQUIRE(s.limit[0] == 0x5A);
  REQUIRE(s.top()[-1] == 0x5A);
  REQUIRE(canary_intact(s));
  pool.deallocate(s);
}

TEST_CASE("sizes of 0 or above kMaxStackSize are rejected") {
  StackPool pool(64 << 10);
  REQUIRE_THROWS_AS(pool.allocate(0), std::invalid_argument);
  REQUIRE_THROWS_AS(pool.allocate(kMaxStackSize + 1), std::invalid_argument);
  REQUIRE_THROWS_AS(pool.allocate(static_cast<std::size_t>(-1)),
                    std::invalid_argument);
  REQUIRE_THROWS_AS(StackPool(0), std::invalid_argument);
  REQUIRE_THROWS_WITH(pool.allocate(0),
                      Catch::Contains("stack size 0 is out of range"));
}

TEST_CASE("guard pages are a budget; beyond it stacks come from slabs") {
  release_free_stacks();  // free guarded stacks of earlier tests
  const std::size_t base = guarded_stacks_in_use();
  LimitGuard limit(base + 4);
  REQUIRE(guarded_stack_limit() == base + 4);
  constexpr std::size_t kSize = 80 << 10;  // this test's own slab arena
  StackPool pool(kSize, /*cache_limit=*/0);
  std::vector<Stack> stacks;
  for (int i = 0; i < 10; ++i) stacks.push_back(pool.allocate());

  for (int i = 0; i < 4; ++i) {
    REQUIRE(stacks[i].guarded);
    REQUIRE_FALSE(from_slab(stacks[i]));
  }
  REQUIRE(guarded_stacks_in_use() == base + 4);
  // Stack 4 is slot 0 of a new slab, guarded by the slab's guard page
  // (a page minus kCanaryZoneBytes below it) but not counted in the budget.
  REQUIRE(from_slab(stacks[4]));
  REQUIRE(stacks[4].guarded);
  REQUIRE(reinterpret_cast<std::uintptr_t>(stacks[4].limit) % page_size() ==
          page_size() - kCanaryZoneBytes);
  for (int i = 5; i < 10; ++i) {
    REQUIRE(from_slab(stacks[i]));
    REQUIRE_FALSE(stacks[i].guarded);
    REQUIRE(canary_intact(stacks[i]));
    // In address order, one canary zone apart.
    REQUIRE(stacks[i].limit == stacks[i - 1].top() + kCanaryZoneBytes);
  }

  // A freed guarded stack stays mapped for reuse, and counted; the next
  // allocation of its size takes it back.
  char* const first = stacks[0].limit;
  pool.deallocate(stacks[0]);
  REQUIRE(guarded_stacks_in_use() == base + 4);
  stacks[0] = pool.allocate();
  REQUIRE(stacks[0].limit == first);
  // release_free_stacks() unmaps the free ones, returning their budget.
  pool.deallocate(stacks[0]);
  release_free_stacks();
  REQUIRE(guarded_stacks_in_use() == base + 3);
  stacks[0] = pool.allocate();
  REQUIRE_FALSE(from_slab(stacks[0]));
  REQUIRE(guarded_stacks_in_use() == base + 4);

  // A limit of 0 disables per-stack guard pages.
  set_guarded_stack_limit(0);
  Stack s = pool.allocate();
  REQUIRE(from_slab(s));
  pool.deallocate(s);

  for (Stack& st : stacks) pool.deallocate(st);
  REQUIRE(guarded_stacks_in_use() == base);
}

TEST_CASE("the default budget is a quarter of vm.max_map_count") {
  // Set by another test? Each restores it, so this is the default.
  std::size_t count = 65530;
  if (std::FILE* f = std::fopen("/proc/sys/vm/max_map_count", "r")) {
    REQUIRE(std::fscanf(f, "%zu", &count) == 1);
    std::fclose(f);
  }
  REQUIRE(guarded_stack_limit() == count / 8);
}

TEST_CASE("20,000 unguarded stacks coexist without committing memory") {
  LimitGuard limit(0);
  constexpr std::size_t kStacks = 20000;
  constexpr std::size_t kSize = 72 << 10;  // this test's own slab arena
  StackPool pool(kSize, /*cache_limit=*/0);
  std::vector<Stack> stacks;
  stacks.reserve(kStacks);
  const std::size_t before = resident_pages();
  for (std::size_t i = 0; i < kStacks; ++i) stacks.push_back(pool.allocate());
  const std::size_t grown = resident_pages() - before;

  std::vector<Stack> sorted = stacks;
  std::sort(sorted.begin(), sorted.end(),
            [](const Stack& a, const Stack& b) { return a.limit < b.limit; });
  std::size_t unguarded = 0;
  for (std::size_t i = 0; i < kStacks; ++i) {
    REQUIRE(nominal_size(sorted[i]) == kSize);
    REQUIRE(sorted[i].size == kSize - kCanaryZoneBytes);
    REQUIRE(from_slab(sorted[i]));
    // Fixed layout: every top sits 2Z below a page boundary, so a parked
    // green thread's frames (up to a page - 2Z) touch one page.
    REQUIRE(reinterpret_cast<std::uintptr_t>(sorted[i].top()) % page_size() ==
            page_size() - 2 * kCanaryZoneBytes);
    if (!sorted[i].guarded) {
      ++unguarded;
      REQUIRE(canary_intact(sorted[i]));
    }
    // Disjoint, with room for the next stack's canary zone; within a slab,
    // exactly that.
    if (i + 1 < kStacks) {
      REQUIRE(sorted[i].top() + kCanaryZoneBytes <= sorted[i + 1].limit);
      if (!sorted[i + 1].guarded) {
        REQUIRE(sorted[i].top() + kCanaryZoneBytes == sorted[i + 1].limit);
      }
    }
  }
  // Only slot 0 of each slab is guarded (by the slab's guard page).
  REQUIRE(unguarded >= kStacks - kStacks / 256 - 1);
  // Each stack touched one page, for its canary (that page also holds the
  // top of the stack below, so a busy slab pays no extra page for
  // canaries), not the 18 pages of a committed 72 KiB stack.
#if !defined(__SANITIZE_THREAD__)
  // (Not under TSan: its shadow memory for the canary writes is resident
  // too and counts against the process.)
  REQUIRE(grown <= kStacks + kStacks / 8);
#else
  (void)grown;
#endif

  for (const Stack& s : stacks) pool.deallocate(s);
}

TEST_CASE("an overflow into the canary zone breaks the canary") {
  LimitGuard limit(0);
  StackPool pool(24 << 10, /*cache_limit=*/1);  // this test's own arena
  Stack s = pool.allocate();
  if (s.guarded) s = pool.allocate();  // slot 0 has no canary
  REQUIRE_FALSE(s.guarded);
  REQUIRE(canary_intact(s));
  std::memset(s.limit, 0xFF, s.size);  // the whole usable range is fine
  REQUIRE(canary_intact(s));
  s.limit[-1] = 0;  // one byte below limit
  REQUIRE_FALSE(canary_intact(s));
  // Handing the stack out again rewrites its canary.
  pool.deallocate(s);
  Stack again = pool.allocate();
  REQUIRE(again.limit == s.limit);
  REQUIRE(canary_intact(again));
  // Guarded stacks have no canary: always intact.
  Stack as_guarded = again;
  as_guarded.guarded = true;
  again.limit[-1] = 0;
  REQUIRE_FALSE(canary_intact(again));
  REQUIRE(canary_intact(as_guarded));
  pool.deallocate(again);
}

TEST_CASE("freed slab stacks release their pages in batches") {
  LimitGuard limit(0);
  StackPool pool(40 << 10, /*cache_limit=*/1);  // this test's own arena
  const std::size_t page = page_size();
  constexpr std::size_t kCount = kSlabReleaseBatch + 40;
  std::vector<Stack> stacks;
  for (std::size_t i = 0; i < kCount + 1; ++i) {
    stacks.push_back(pool.allocate());
    std::memset(stacks.back().limit, 0xAB, stacks.back().size);
  }
  // stacks[0] is slot 0; keep it allocated so no run reaches the slab's
  // first page. stacks[1] goes to the cache; the next kSlabReleaseBatch to
  // the slab, where the last of them releases the whole batch; the rest
  // stay dirty (pages kept, cheap to reuse).
  for (std::size_t i = 1; i <= kCount; ++i) pool.deallocate(stacks[i]);
  auto first_whole_page = [&](const Stack& st) {
    const std::uintptr_t misalign =
        reinterpret_cast<std::uintptr_t>(st.limit) % page;
    REQUIRE(misalign != 0);
    return st.limit + (page - misalign);
  };
  CHECK(static_cast<unsigned char>(*first_whole_page(stacks[1])) == 0xAB);
  std::size_t released = 0;
  for (std::size_t i = 2; i < 2 + kSlabReleaseBatch; ++i) {
    released += *first_whole_page(stacks[i]) == 0 &&
                stacks[i].top()[-static_cast<std::ptrdiff_t>(page) - 1] == 0;
  }
  CHECK(released == kSlabReleaseBatch);
  for (std::size_t i = 2 + kSlabReleaseBatch; i <= kCount; ++i) {
    CHECK(static_cast<unsigned char>(*first_whole_page(stacks[i])) == 0xAB);
  }
  // A reused stack gets a fresh canary whatever happened to its pages.
  Stack reused = pool.allocate();
  CHECK(canary_intact(reused));
  pool.deallocate(reused);
  pool.deallocate(stacks[0]);
}

// ---- Overflow handler, in fork()ed children --------------------------------

struct Child {
  int status = 0;
  std::string err;  // its stderr
};

// Runs body() in a child with stderr on a pipe; body should not return.
template <typename Body>
Child run_in_child(Body body) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    ::dup2(fds[1], STDOUT_FILENO);
    ::dup2(fds[1], STDERR_FILENO);
    // Catch2's fatal-signal handlers, inherited from the parent, would be
    // the "previous action": start from a plain process's defaults.
    for (int sig : {SIGSEGV, SIGBUS, SIGABRT}) ::signal(sig, SIG_DFL);
    body();
    ::_exit(99);
  }
  ::close(fds[1]);
  Child child;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) child.err.append(buf, n);
  ::close(fds[0]);
  REQUIRE(::waitpid(pid, &child.status, 0) == pid);
  return child;
}

bool killed_by(const Child& c, int sig) {
  return WIFSIGNALED(c.status) && WTERMSIG(c.status) == sig;
}

volatile int g_depth_limit = -1;  // never reached: recursion without bound

__attribute__((noinline)) int recurse(int depth) {
  volatile char frame[512];
  frame[0] = static_cast<char>(depth);
  if (depth == g_depth_limit) return frame[0];
  return recurse(depth + 1) + frame[0];
}

// Boost.Context must not free a stack the pool owns.
struct PooledStackAllocator {
  void deallocate(boost::context::stack_context&) noexcept {}
};

// Runs fn on `stack` in a Boost.Context fiber, as the scheduler will.
template <typename Fn>
void run_on(const Stack& stack, Fn fn) {
  namespace ctx = boost::context;
  ctx::stack_context sctx;
  sctx.sp = stack.top();
  sctx.size = stack.size;
  ctx::fiber f(std::allocator_arg,
               ctx::preallocated(stack.top(), stack.size, sctx),
               PooledStackAllocator{}, [&](ctx::fiber&& caller) {
                 fn();
                 return std::move(caller);
               });
  std::move(f).resume();
}

TEST_CASE("an overflow of a guarded stack is reported, then aborts") {
  Child c = run_in_child([] {
    install_overflow_handler();
    StackPool pool(64 << 10);
    Stack s = pool.allocate();
    if (!s.guarded || from_slab(s)) ::_exit(98);
    set_running_stack(&s);
    run_on(s, [] { recurse(0); });
  });
  INFO("child stderr: " << c.err);
  REQUIRE(killed_by(c, SIGABRT));
  REQUIRE_THAT(c.err, Catch::Contains("green thread stack overflow (stack "
                                      "size 65536 bytes)"));
  REQUIRE_THAT(c.err, Catch::Contains("Options::stack_size"));
}

TEST_CASE("other faults are not reported as stack overflows") {
  auto died_of_segv = [](const Child& c) {
    INFO("child stderr: " << c.err);
    REQUIRE_THAT(c.err, !Catch::Contains("stack overflow"));
    REQUIRE(killed_by(c, SIGSEGV));
  };
  SECTION("a wild write, with a green thread's stack running") {
    died_of_segv(run_in_child([] {
      install_overflow_handler();
      StackPool pool(64 << 10);
      Stack s = pool.allocate();
      set_running_stack(&s);
      run_on(s, [] {
        int* volatile wild = reinterpret_cast<int*>(16);
        *wild = 1;
      });
    }));
  }
  SECTION("a write to the guard page of a stack that is not running") {
    died_of_segv(run_in_child([] {
      install_overflow_handler();
      StackPool pool(64 << 10);
      Stack running = pool.allocate();
      Stack other = pool.allocate();
      if (!other.guarded || from_slab(other)) ::_exit(98);
      set_running_stack(&running);
      char* volatile guard = other.limit - 1;
      *guard = 1;
    }));
  }
  SECTION("a SIGSEGV sent by raise()") {
    died_of_segv(run_in_child([] {
      install_overflow_handler();
      ::raise(SIGSEGV);
    }));
  }
  SECTION("a previously installed handler gets the fault") {
    Child c = run_in_child([] {
      struct sigaction sa {};
      sa.sa_handler = [](int) {
        static constexpr char kMsg[] = "previous handler ran\n";
        ::write(STDERR_FILENO, kMsg, sizeof kMsg - 1);
        ::_exit(42);
      };
      ::sigaction(SIGSEGV, &sa, nullptr);
      install_overflow_handler();
      int* volatile wild = reinterpret_cast<int*>(16);
      *wild = 1;
    });
    INFO("child stderr: " << c.err);
    REQUIRE(WIFEXITED(c.status));
    REQUIRE(WEXITSTATUS(c.status) == 42);
    REQUIRE_THAT(c.err, Catch::Contains("previous handler ran"));
  }
}

TEST_CASE("a failed mapping throws std::system_error naming the call") {
  // In a child, with so little address space left that neither a guarded
  // 1 GiB stack nor a slab of them can be mapped.
  Child c = run_in_child([] {
    StackPool pool(64 << 10);
    unsigned long pages = 0;
    if (std::FILE* f = std::fopen("/proc/self/statm", "r")) {
      if (std::fscanf(f, "%lu", &pages) != 1) ::_exit(97);
      std::fclose(f);
    }
    rlimit as{};
    as.rlim_cur = as.rlim_max = pages * page_size() + (std::size_t{512} << 20);
    if (::setrlimit(RLIMIT_AS, &as) != 0) ::_exit(97);
    try {
      pool.allocate(kMaxStackSize);
    } catch (const std::system_error& e) {
      std::fprintf(stderr, "caught: %s\n", e.what());
      ::_exit(0);
    }
  });
  INFO("child output: " << c.err);
  REQUIRE(WIFEXITED(c.status));
  REQUIRE(WEXITSTATUS(c.status) == 0);
  REQUIRE_THAT(c.err, Catch::Contains("caught: green: mmap failed for a slab "
                                      "of 1073741824-byte stacks"));
  REQUIRE_THAT(c.err, Catch::Contains("Options::stack_size"));
}

}  // namespace
}  // namespace green::detail
