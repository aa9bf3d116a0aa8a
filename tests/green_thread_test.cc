// The green-thread API: spawn/wait, exceptions, ordering, kill, cancel,
// link, locals, and calls from the wrong place. Sync tests run with 1, 2
// and 4 workers.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "runtime/worker.h"  // current_fiber(): a kill posted to itself
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("spawn returns values through wait", "[green_thread]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int sum = green::run(
      [] {
        std::vector<green::GreenThread<int>> threads;
        for (int i = 0; i < 100; ++i) {
          threads.push_back(green::spawn([](int x) { return x * x; }, i));
        }
        int total = 0;
        for (auto& t : threads) total += t.wait();
        return total;
      },
      with_workers(workers));
  CHECK(sum == 328350);  // sum of squares 0..99
}

TEST_CASE("wait rethrows the green thread's exception", "[green_thread]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        auto t = green::spawn([]() -> int {
          green::sleep(1ms);
          throw std::runtime_error("boom in green thread");
        });
        CHECK_THROWS_WITH(t.wait(), "boom in green thread");
        // The result stays: a second wait rethrows again.
        CHECK_THROWS_AS(t.wait(), std::runtime_error);
        CHECK(t.dead());
      },
      with_workers(workers));
}

TEST_CASE("void and move-only results", "[green_thread]") {
  green::run([] {
    bool ran = false;
    auto v = green::spawn([&ran] { ran = true; });
    v.wait();
    CHECK(ran);
    auto m = green::spawn([] { return std::make_unique<int>(7); });
    std::unique_ptr<int> p = m.wait();
    REQUIRE(p);
    CHECK(*p == 7);
    CHECK_THROWS_AS(m.wait(), std::logic_error);  // taken already
  });
}

TEST_CASE("an exception escaping main comes out of run", "[green_thread]") {
  CHECK_THROWS_WITH(
      green::run([]() -> int { throw std::runtime_error("main"); }), "main");
  // And a second runtime works after the first one ended.
  CHECK(green::run([] { return 5; }) == 5);
}

TEST_CASE("yields on one worker interleave in spawn order", "[green_thread]") {
  std::string order = green::run(
      [] {
        std::string trace;
        std::vector<green::GreenThread<void>> threads;
        for (char name : std::string("ABC")) {
          threads.push_back(green::spawn([&trace, name] {
            for (int round = 0; round < 3; ++round) {
              trace += name;
              green::sleep(0ms);
            }
          }));
        }
        for (auto& t : threads) t.wait();
        return trace;
      },
      with_workers(1));
  CHECK(order == "ABCABCABC");
}

TEST_CASE("timers fire while green threads only yield to each other",
          "[green_thread]") {
  // Yields switch between green threads directly; the worker must still
  // take its periodic turns at the reactor and the timers, or the sleeper
  // below never wakes and the yielders spin forever.
  const auto start = Clock::now();
  long yields = 0;
  green::run(
      [&yields] {
        std::atomic<bool> woke{false};
        auto sleeper = green::spawn([&woke] {
          green::sleep(20ms);
          woke.store(true, std::memory_order_relaxed);
        });
        auto spin = [&woke] {
          long n = 0;
          while (!woke.load(std::memory_order_relaxed)) {
            green::yield();
            ++n;
          }
          return n;
        };
        auto a = green::spawn(spin);
        auto b = green::spawn(spin);
        sleeper.wait();
        yields = a.wait() + b.wait();
      },
      with_workers(1));
  CHECK(yields > 0);
  CHECK(Clock::now() - start < 5s);
}

TEST_CASE("sleep lasts at least its duration, within generous bounds",
          "[green_thread]") {
  green::run([] {
    const auto start = Clock::now();
    green::sleep(50ms);
    const auto elapsed = Clock::now() - start;
    CHECK(elapsed >= 50ms);
    CHECK(elapsed < 1s);
  });
}

TEST_CASE("kill before start: the function never runs", "[green_thread]") {
  green::run(
      [] {
        bool ran = false;
        auto t = green::spawn([&ran] { ran = true; });
        t.kill();
        CHECK(t.dead());
        CHECK_FALSE(ran);
        CHECK_THROWS_AS(t.wait(), green::GreenletExit);
        t.kill();  // killing a dead green thread does nothing
      },
      with_workers(1));
}

TEST_CASE("kill while sleeping runs the target's handler before returning",
          "[green_thread]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::testing::Signal started;
        bool handler_ran = false;
        auto t = green::spawn([&] {
          started.post();
          try {
            green::sleep(10s);
          } catch (const green::GreenletExit&) {
            handler_ran = true;
            throw;
          }
        });
        started.wait();
        const auto start = Clock::now();
        t.kill();
        CHECK(handler_ran);  // Eventlet's test_kill checks this too
        CHECK(Clock::now() - start < 1s);
        CHECK_THROWS_AS(t.wait(), green::GreenletExit);
      },
      with_workers(workers));
}

TEST_CASE("two green threads that kill each other at once both end",
          "[green_thread]") {
  // Each kill() holds its target's lock while it starts its own wait; the
  // wait must not then take the caller's own lock (an interrupt is pending
  // for it: the other's kill): with each holding the other's lock, both
  // workers would spin forever (the test hangs).
  green::run(
      [&] {
        for (int round = 0; round < 300; ++round) {
          green::GreenThread<void> a, b;
          green::Event<void> handles_set;
          std::atomic<int> at_barrier{0};
          auto duel = [&](green::GreenThread<void>* other) {
            handles_set.wait();
            at_barrier.fetch_add(1);
            while (at_barrier.load() < 2) {
            }               // both kill together
            other->kill();  // or killed by the other's, in there
            green::sleep(std::chrono::hours(1));  // the other's kill ends us
          };
          a = green::spawn(duel, &b);
          b = green::spawn(duel, &a);
          handles_set.send();
          for (auto* thread : {&a, &b}) {
            CHECK_THROWS_AS(thread->wait(), green::GreenletExit);
          }
        }
      },
      with_workers(2));
}

TEST_CASE("kill_async does not wait; killing yourself throws",
          "[green_thread]") {
  green::run([] {
    green::testing::Signal started;
    auto t = green::spawn([&] {
      started.post();
      green::sleep(10s);
    });
    started.wait();
    t.kill_async();
    CHECK_THROWS_AS(t.wait(), green::GreenletExit);

    green::testing::Signal handle_ready;
    auto self = std::make_shared<green::GreenThread<bool>>();
    *self = green::spawn([&handle_ready, self] {
      handle_ready.wait();
      try {
        self->kill();
      } catch (const green::GreenletExit&) {
        return true;
      }
      return false;
    });
    handle_ready.post();
    CHECK(self->wait());

    green::GreenThread<void> empty;
    CHECK_THROWS_AS(empty.kill(), std::logic_error);
  });
}

TEST_CASE("spawn_after runs after the delay; cancel stops it",
          "[green_thread]") {
  green::run([] {
    const auto start = Clock::now();
    auto later =
        green::spawn_after(50ms, [start] { return Clock::now() - start; });
    const auto waited = later.wait();
    CHECK(waited >= 50ms);
    CHECK(waited < 2s);

    bool ran = false;
    auto cancelled = green::spawn_after(50ms, [&ran] { ran = true; });
    CHECK(cancelled.cancel());
    CHECK_THROWS_AS(cancelled.wait(), green::GreenletExit);
    CHECK_FALSE(ran);

    auto started = green::spawn_after(1ms, [] { return 3; });
    CHECK(started.wait() == 3);
    CHECK_FALSE(started.cancel());  // too late: it ran
  });
}

TEST_CASE("wait from a plain std::thread", "[green_thread]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        auto t = green::spawn([] {
          green::sleep(20ms);
          return 7;
        });
        auto failing = green::spawn([]() -> int {
          green::sleep(5ms);
          throw std::runtime_error("from green");
        });
        int seen = 0;
        std::string error;
        std::thread os_thread([&] {
          seen = t.wait();
          try {
            failing.wait();
          } catch (const std::exception& e) {
            error = e.what();
          }
        });
        t.wait();
        CHECK_THROWS(failing.wait());
        os_thread.join();
        CHECK(seen == 7);
        CHECK(error == "from green");
      },
      with_workers(workers));
}

TEST_CASE("spawn from a plain thread while the runtime runs",
          "[green_thread]") {
  green::run([] {
    int value = 0;
    std::thread os_thread([&] {
      auto t = green::spawn([] { return 11; });
      value = t.wait();
    });
    // Park this green thread until the OS thread is done, without blocking
    // the worker: the OS thread posts to us.
    green::testing::Signal done;
    auto watcher = std::thread([&] {
      os_thread.join();
      done.post();
    });
    done.wait();
    watcher.join();
    CHECK(value == 11);
  });
}

TEST_CASE("green API outside the runtime throws logic_error naming the call",
          "[green_thread]") {
  CHECK_THROWS_WITH(green::sleep(1ms), Catch::Contains("green::sleep") &&
                                           Catch::Contains("outside"));
  CHECK_THROWS_WITH(green::spawn([] {}), Catch::Contains("green::spawn"));
  CHECK_THROWS_WITH(green::spawn_n([] {}), Catch::Contains("green::spawn_n"));
  CHECK_THROWS_WITH(green::spawn_after(1ms, [] {}),
                    Catch::Contains("green::spawn_after"));
  CHECK_THROWS_AS(green::current(), std::logic_error);
  CHECK_THROWS_AS(green::worker_id(), std::logic_error);
  green::local<int> slot;
  CHECK_THROWS_AS(slot.get(), std::logic_error);
  CHECK_FALSE(green::in_green_thread());
  // run() inside run() is refused too.
  green::run([] {
    CHECK(green::in_green_thread());
    CHECK_THROWS_AS(green::run([] {}), std::logic_error);
  });
}

TEST_CASE("spawn_n exceptions are reported and the process goes on",
          "[green_thread]") {
  green::testing::StderrCapture capture;
  const int after = green::run([] {
    green::testing::Signal done;
    green::spawn_n([&done] {
      struct PostOnExit {
        green::testing::Signal& signal;
        ~PostOnExit() { signal.post(); }
      } post{done};
      throw std::runtime_error("spawn_n failure");
    });
    done.wait();
    return green::spawn([] { return 1; }).wait();
  });
  const std::string text = capture.text();
  CHECK(after == 1);
  CHECK_THAT(text, Catch::Contains("spawn_n failure") &&
                       Catch::Contains("green thread #"));
}

TEST_CASE("link runs callbacks at the end; unlink removes them",
          "[green_thread]") {
  green::run([] {
    green::testing::Signal gate;
    int linked_value = 0;
    bool unlinked_ran = false;
    auto t = green::spawn([&gate] {
      gate.wait();
      return 9;
    });
    t.link([&](green::GreenThread<int> done) { linked_value = done.wait(); });
    auto id = t.link([&](green::GreenThread<int>) { unlinked_ran = true; });
    CHECK(t.unlink(id));
    CHECK_FALSE(t.unlink(id));
    gate.post();
    t.wait();
    CHECK(linked_value == 9);
    CHECK_FALSE(unlinked_ran);
    // Linking to a dead green thread calls back at once.
    bool immediate = false;
    t.link([&](green::GreenThread<int>) { immediate = true; });
    CHECK(immediate);
  });
}

TEST_CASE("green threads end cleanly whoever holds them as they end",
          "[green_thread]") {
  // A green thread that nobody else can reach as it ends takes no lock in
  // finish() (runtime/fiber.cc); one whose handle is dropped, copied,
  // waited on or linked to at that very moment takes it. Each round races
  // those against the end on another worker: every result must arrive,
  // every link run once (TSan and ASan check the rest).
  const std::size_t workers = GENERATE(2, 4);
  std::atomic<int> ran{0};
  std::atomic<int> linked{0};
  int waited = 0;
  green::run(
      [&] {
        constexpr int kRounds = 2000;
        green::testing::Signal done;  // one post per green thread
        for (int i = 0; i < kRounds; ++i) {
          auto t = green::spawn([&ran, &done, i] {
            ran.fetch_add(1, std::memory_order_relaxed);
            done.post();
            return i;
          });
          switch (i % 4) {
            case 0:
              break;  // dropped at once
            case 1: {
              auto copy = t;  // a second handle, dropped at once
              break;
            }
            case 2:
              waited += t.wait() == i;
              break;
            case 3:
              t.link([&linked](green::GreenThread<int>) {
                linked.fetch_add(1, std::memory_order_relaxed);
              });
              break;
          }
        }
        // And spawn_n, with no handle at all.
        for (int i = 0; i < kRounds; ++i) {
          green::spawn_n([&done, &ran] {
            ran.fetch_add(1, std::memory_order_relaxed);
            done.post();
          });
        }
        for (int i = 0; i < 2 * kRounds; ++i) done.wait();
      },
      with_workers(workers));
  // All posted before main ended; run() then let them end (their links
  // included: a link does not block, so no shutdown kill can cut it).
  CHECK(ran.load() == 4000);
  CHECK(waited == 500);
  CHECK(linked.load() == 500);
}

TEST_CASE("a stack size beyond the limit fails that green thread only",
          "[green_thread]") {
  // 8 GiB does not fit the control block's 32-bit field: it must still be
  // refused as too large, not wrap around to a size that would pass.
  green::run([] {
    for (const std::size_t size :
         {std::size_t{8} << 30, (std::size_t{4} << 30) + (64 << 10)}) {
      auto t = green::spawn(green::SpawnOptions{.stack_size = size},
                            [] { return 1; });
      CHECK_THROWS_AS(t.wait(), std::invalid_argument);
    }
    CHECK(green::spawn([] { return 2; }).wait() == 2);
    // Its links run all the same (on the worker: it has no stack), and one
    // that waits for it gets the error instead of blocking the worker.
    green::Event<std::string> linked;
    auto t =
        green::spawn(green::SpawnOptions{.stack_size = std::size_t{8} << 30},
                     [] { return 1; });
    t.link([&linked](green::GreenThread<int> done) {
      try {
        done.wait();
        linked.send("no error");
      } catch (const std::invalid_argument&) {
        linked.send("invalid_argument");
      }
    });
    CHECK(linked.wait() == "invalid_argument");
    CHECK_THROWS_AS(t.wait(), std::invalid_argument);
  });
}

TEST_CASE("captures keep their alignment", "[green_thread]") {
  // A function object with an over-aligned member lives inside the green
  // thread's control block, which must honour that alignment.
  struct alignas(256) Wide {
    int value = 7;
  };
  green::run(
      [] {
        std::vector<green::GreenThread<std::uintptr_t>> threads;
        for (int i = 0; i < 50; ++i) {
          threads.push_back(green::spawn([wide = Wide{}] {
            return reinterpret_cast<std::uintptr_t>(&wide) % alignof(Wide) +
                   (wide.value == 7 ? 0 : 1);
          }));
          green::spawn_n([wide = Wide{}] { (void)wide; });
        }
        for (auto& thread : threads) CHECK(thread.wait() == 0);
      },
      with_workers(2));
  // oneTBB's size classes often align such blocks by chance; the aligned
  // allocation itself must do so always.
  for (std::size_t alignment : {64, 256, 4096}) {
    void* block =
        green::detail::Fiber::operator new (300, std::align_val_t{alignment});
    CHECK(reinterpret_cast<std::uintptr_t>(block) % alignment == 0);
    green::detail::Fiber::operator delete (block, 300,
                                           std::align_val_t{alignment});
  }
}

TEST_CASE("a kill that comes after the function ended does not cut links",
          "[green_thread]") {
  // Posted after the last blocking point, the kill is never raised in the
  // function; the links then run (and may block) without it.
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::Event<int> linked;
        auto t = green::spawn([] {
          // As a kill_async from elsewhere that lands just before the end.
          green::detail::current_fiber()->request_kill();
          return 7;
        });
        t.link([&linked](green::GreenThread<int> done) {
          green::sleep(1ms);  // a link that blocks
          linked.send(done.wait());
        });
        CHECK(linked.wait(5s) == std::optional<int>(7));
        CHECK(t.wait() == 7);
      },
      with_workers(workers));
}

TEST_CASE("green::local is per green thread", "[green_thread]") {
  static green::local<std::string> name;
  green::run(
      [] {
        std::vector<green::GreenThread<bool>> threads;
        for (int i = 0; i < 50; ++i) {
          threads.push_back(green::spawn([i] {
            if (name.find() != nullptr) return false;  // find() makes none
            *name = "thread-" + std::to_string(i);
            if (name.find() != &*name) return false;  // ...and sees ours
            for (int round = 0; round < 5; ++round) {
              green::sleep(0ms);
              if (*name != "thread-" + std::to_string(i)) return false;
            }
            return true;
          }));
        }
        for (auto& t : threads) CHECK(t.wait());
        CHECK(name.find() == nullptr);  // main never made one
        CHECK(name->empty());           // main's own slot is untouched
      },
      with_workers(2));
}

TEST_CASE("current() and worker_id() describe the caller", "[green_thread]") {
  green::run(
      [] {
        auto a = green::spawn([] { return green::current(); });
        auto b = green::spawn([] { return green::current(); });
        CHECK(a.wait() == a.id());
        CHECK(b.wait() == b.id());
        CHECK(a.id() != b.id());
        CHECK(green::current() != a.id());
        CHECK(a.id().name().rfind("green-thread-", 0) == 0);
        CHECK(green::worker_id() < 3);
      },
      with_workers(3));
}

TEST_CASE("spawning from a plain thread races safely with shutdown",
          "[green_thread]") {
  // An OS thread spawns and waits in a loop while run() ends under it:
  // every spawn either runs (or is killed by the shutdown) or is refused
  // with logic_error once the runtime closed -- none hangs or crashes.
  std::atomic<int> spawned{0};
  std::atomic<int> refused{0};
  std::thread os_thread;
  green::run(
      [&] {
        os_thread = std::thread([&] {
          for (;;) {
            try {
              auto t = green::spawn([] { return 1; });
              spawned.fetch_add(1);
              try {
                t.wait();
              } catch (const green::GreenletExit&) {
                // killed by the shutdown: fine
              }
            } catch (const std::logic_error&) {
              refused.fetch_add(1);
              return;
            }
          }
        });
        green::sleep(20ms);
      },
      with_workers(2));
  os_thread.join();
  CHECK(spawned.load() > 0);
  CHECK(refused.load() == 1);
}

TEST_CASE("a green thread may block inside a catch block and rethrow",
          "[green_thread]") {
  // The exception being handled belongs to the green thread: others that
  // throw and catch meanwhile on the same worker, and a move to another
  // worker, must not lose or swap it (else `throw;` terminates).
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        std::vector<green::GreenThread<bool>> threads;
        for (int i = 0; i < 20; ++i) {
          threads.push_back(green::spawn([i] {
            const std::string mine = "error " + std::to_string(i);
            try {
              throw std::runtime_error(mine);
            } catch (...) {
              green::sleep(1ms);
              // Yields switch straight between green threads (no trip
              // through the worker's loop): the exception state must
              // travel with those switches too.
              for (int k = 0; k < 5; ++k) green::yield();
              try {
                throw;  // rethrows the exception being handled: ours
              } catch (const std::runtime_error& e) {
                return e.what() == mine;
              }
            }
            return false;
          }));
        }
        for (auto& t : threads) CHECK(t.wait());
      },
      with_workers(workers));
}

namespace {

// Blocks in its destructor: the shape of RAII that flushes, returns a
// connection to a pool or says goodbye when its scope is unwound.
struct BlocksWhenDestroyed {
  std::chrono::milliseconds block_for;
  green::Event<void>* entered = nullptr;
  std::atomic<bool>* finished = nullptr;
  ~BlocksWhenDestroyed() {
    if (entered) entered->send();
    green::sleep(block_for);  // a blocking point during unwinding
    if (finished) *finished = true;
  }
};

}  // namespace

TEST_CASE("a kill during unwinding waits for the destructor, not terminate",
          "[green_thread]") {
  const std::size_t workers = GENERATE(1, 2);
  std::atomic<bool> finished{false};
  green::run(
      [&] {
        green::Event<void> entered;
        auto target = green::spawn([&] {
          BlocksWhenDestroyed guard{10s, &entered, &finished};
          green::sleep(10s);  // the first kill lands here
        });
        green::sleep(10ms);
        target.kill();  // returns once GreenletExit was raised
        entered.wait();
        // The target now unwinds, blocked in a destructor. A throw there
        // would call std::terminate; the second kill wakes the wait early
        // instead, and the destructor finishes.
        const auto start = Clock::now();
        target.kill();
        CHECK(Clock::now() - start < 5s);
        CHECK_THROWS_AS(target.wait(), green::GreenletExit);
      },
      with_workers(workers));
  CHECK(finished.load());
}

TEST_CASE("a Timeout that expires during unwinding goes with its scope",
          "[green_thread][timeout]") {
  green::run([] {
    bool caught = false;
    try {
      green::Timeout timeout(20ms);
      BlocksWhenDestroyed slow{2s};  // destroyed first, while it fires
      throw std::runtime_error("unwinding");
    } catch (const std::runtime_error& e) {
      caught = std::string(e.what()) == "unwinding";
    }
    CHECK(caught);
    // The Timeout's scope ended: nothing of it is raised later.
    CHECK_NOTHROW(green::sleep(50ms));
  });
}

TEST_CASE("shutdown's repeated kills spare a destructor that blocks",
          "[green_thread]") {
  std::atomic<bool> finished{false};
  green::run([&] {
    green::spawn_n([&] {
      // Blocks longer than shutdown's 100 ms between kills.
      BlocksWhenDestroyed guard{10s, nullptr, &finished};
      green::sleep(10s);
    });
    green::sleep(10ms);
  });  // main returns: shutdown kills the other green thread, then again
  CHECK(finished.load());
}

TEST_CASE("a Timeout made inside a destructor works during unwinding",
          "[green_thread][timeout]") {
  // Unlike an interrupt from outside, a Timeout created in the destructor
  // belongs to that depth: it is thrown (and caught) there.
  green::run([] {
    struct TimesOutInside {
      bool* fired;
      ~TimesOutInside() {
        *fired = !green::with_deadline(20ms, [] { green::sleep(10s); });
      }
    };
    bool fired = false;
    const auto start = Clock::now();
    try {
      TimesOutInside guard{&fired};
      throw std::runtime_error("unwinding");
    } catch (const std::runtime_error&) {
    }
    CHECK(fired);
    CHECK(Clock::now() - start < 5s);
  });
}

TEST_CASE("green threads unwinding into kills of each other both end",
          "[green_thread]") {
  // Each one's destructor kills the other while both unwind: both kills
  // are deferred (nothing may be thrown there), so each kill() returns
  // once its target waits with the kill deferred, instead of waiting for a
  // kill that waits in turn for it.
  const std::size_t workers = GENERATE(1, 2);
  std::atomic<int> kills_returned{0};
  green::run(
      [&] {
        struct KillsOther {
          green::GreenThread<void>* other;
          std::atomic<int>* returned;
          ~KillsOther() {
            other->kill();
            returned->fetch_add(1);
          }
        };
        green::GreenThread<void> a, b;
        green::Event<void> both_made;
        a = green::spawn([&] {
          both_made.wait();
          KillsOther guard{&b, &kills_returned};
          green::sleep(10s);
        });
        b = green::spawn([&] {
          both_made.wait();
          KillsOther guard{&a, &kills_returned};
          green::sleep(10s);
        });
        both_made.send();
        green::sleep(10ms);
        a.kill_async();
        b.kill_async();
        CHECK_THROWS_AS(a.wait(), green::GreenletExit);
        CHECK_THROWS_AS(b.wait(), green::GreenletExit);
      },
      with_workers(workers));
  CHECK(kills_returned.load() == 2);
}
