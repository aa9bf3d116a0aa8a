// GreenPool and GreenPile: Eventlet's greenpool_test ported (spawn,
// spawn_n, waiting, re-entrancy, resize, exceptions, imap/starmap order and
// errors, waitall, piles), plus the pool's size observed concurrently,
// imap's bounded window, slots released by killed members, and OS-thread
// spawners. Sweeps 1, 2 and 4 workers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <mutex>
#include <optional>
#include <random>
#include <ranges>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::eventually;
using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using green::testing::kScale;

int passthru(int a) {
  green::sleep(1ms);
  return a;
}

// Eventlet's assert_pool_has_free: exactly `free` spawns go through at
// once, the next one would block (a Timeout(0, RuntimeError) says so).
void assert_pool_has_free(green::GreenPool& pool, long free) {
  CHECK(pool.free() == free);
  green::Event<void> release;
  {
    green::Timeout t(1s);
    for (long i = 0; i < free; ++i) pool.spawn([&] { release.wait(); });
  }
  {
    green::Timeout t(0ns, std::runtime_error("would block"));
    CHECK_THROWS_AS(pool.spawn([&] { release.wait(); }), std::runtime_error);
  }
  release.send();
  REQUIRE(eventually([&] { return pool.free() == free; }));
}

}  // namespace

TEST_CASE("pool: spawn returns handles with the results", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(4);
        CHECK(p.size() == 4);
        std::vector<green::GreenThread<int>> waiters;
        for (int i = 0; i < 10; ++i) waiters.push_back(p.spawn(passthru, i));
        for (int i = 0; i < 10; ++i) CHECK(waiters[i].wait() == i);
        CHECK(green::GreenPool().size() == 1000);
      },
      with_workers(workers));
}

// Touches `kib` KiB of its own stack; returns a checksum of it.
[[gnu::noinline]] int use_stack(int kib) {
  volatile char buffer[1024 * 1024];
  const int bytes = kib * 1024;
  for (int i = 0; i < bytes; i += 512) buffer[i] = static_cast<char>(i / 512);
  int sum = 0;
  for (int i = 0; i < bytes; i += 512) sum += buffer[i];
  return sum;
}

TEST_CASE("pool: spawn and spawn_n take SpawnOptions", "[pool]") {
  // A 1 MiB frame: far past the default stack (64 KiB; 256 KiB under
  // sanitizers), so these run only if the pool passes the stack size on.
  green::run([] {
    green::GreenPool p(2);
    const green::SpawnOptions big{.stack_size = 4 << 20};
    auto a = p.spawn(big, use_stack, 768);
    std::atomic<int> b{0};
    green::Event<void> done;
    p.spawn_n(big, [&] {
      b = use_stack(768);
      done.send();
    });
    done.wait();
    CHECK(a.wait() == b.load());
    CHECK(a.wait() != 0);
    p.waitall();
  });
}

TEST_CASE("pool: spawn_n and waitall", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(4);
        std::mutex mutex;
        std::set<int> results;
        for (int i = 0; i < 10; ++i) {
          p.spawn_n(
              [&](int a) {
                green::sleep(1ms);
                std::lock_guard<std::mutex> guard(mutex);
                results.insert(a);
              },
              i);
        }
        p.waitall();
        CHECK(results.size() == 10);
        CHECK(p.running() == 0);
        CHECK(p.free() == 4);
        green::GreenPool idle;
        idle.waitall();  // waitall on nothing
        CHECK(idle.waitall(0ns));
      },
      with_workers(workers));
}

TEST_CASE("pool: waiting() and running()", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool pool(1);
        green::Event<void> done;
        auto waiter = [&] { pool.spawn([&] { done.wait(); }).wait(); };
        std::vector<green::GreenThread<void>> waiters;
        CHECK(pool.running() == 0);
        waiters.push_back(green::spawn(waiter));
        REQUIRE(eventually([&] { return pool.running() == 1; }));
        CHECK(pool.waiting() == 0);
        waiters.push_back(green::spawn(waiter));
        REQUIRE(eventually([&] { return pool.waiting() == 1; }));
        waiters.push_back(green::spawn(waiter));
        REQUIRE(eventually([&] { return pool.waiting() == 2; }));
        CHECK(pool.running() == 1);
        done.send();
        for (auto& w : waiters) w.wait();
        CHECK(pool.waiting() == 0);
        CHECK(pool.running() == 0);  // released before wait() returned
      },
      with_workers(workers));
}

TEST_CASE("pool: a full pool runs its own members' spawns inline", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool pool(1);
        auto outer = pool.spawn([&] {
          auto inner = pool.spawn([](std::string a) { return a; }, "reenter");
          return inner.wait();
        });
        CHECK(outer.wait() == "reenter");

        green::Event<std::string> evt;
        pool.spawn_n([&] {
          pool.spawn_n([](std::string) {}, "reenter");
          evt.send("done");
        });
        CHECK(evt.wait() == "done");

        // An inline item's exception lands in its handle.
        auto failing = pool.spawn([&] {
          auto inner =
              pool.spawn([]() -> int { throw std::runtime_error("x"); });
          CHECK_THROWS_AS(inner.wait(), std::runtime_error);
          return 1;
        });
        CHECK(failing.wait() == 1);
        pool.waitall();
      },
      with_workers(workers));
}

TEST_CASE("pool: an inline spawn lets a custom-exception Timeout through",
          "[pool]") {
  // The Timeout belongs to the member that armed it: its exception, here a
  // std::runtime_error, must not be kept as the inline item's result.
  green::run([] {
    green::GreenPool pool(1);
    auto member = pool.spawn([&] {
      green::Timeout t(10ms, std::runtime_error("deadline"));
      try {
        auto inline_item = pool.spawn([] {
          green::sleep(5s);
          return 1;
        });
        return std::string("not interrupted");
      } catch (const std::runtime_error& e) {
        return std::string(e.what());
      }
    });
    CHECK(member.wait() == "deadline");
    // Outside any Timeout's scope the same type is an ordinary error.
    auto failing = pool.spawn([&] {
      auto inner = pool.spawn(
          []() -> int { throw std::runtime_error("the item's own"); });
      CHECK_THROWS_WITH(inner.wait(), "the item's own");
      return 1;
    });
    CHECK(failing.wait() == 1);
  });
}

TEST_CASE("pool: waitall from a member is a clear error", "[pool]") {
  green::run([] {
    green::GreenPool p;
    auto gt = p.spawn([&] { p.waitall(); });
    CHECK_THROWS_AS(gt.wait(), std::logic_error);
    auto again = p.spawn([&] { p.waitall(); });  // kept alive while
    CHECK_THROWS_WITH(again.wait(),              // what() is read
                      Catch::Contains("own green threads"));
  });
}

TEST_CASE("pool: resize", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool pool(2);
        green::Event<void> evt;
        pool.spawn([&] { evt.wait(); });
        pool.spawn([&] { evt.wait(); });
        CHECK(pool.free() == 0);
        CHECK(pool.running() == 2);
        assert_pool_has_free(pool, 0);
        // Shrinking drops the excess as members end.
        pool.resize(1);
        CHECK(pool.free() == -1);
        evt.send();
        REQUIRE(eventually([&] { return pool.running() == 0; }));
        CHECK(pool.free() == 1);
        assert_pool_has_free(pool, 1);
        pool.resize(2);
        CHECK(pool.free() == 2);
        assert_pool_has_free(pool, 2);

        // Growing lets a waiting spawner in at once.
        green::GreenPool small(1);
        green::Event<void> hold;
        small.spawn_n([&] { hold.wait(); });
        auto spawner = green::spawn([&] { small.spawn_n([] {}); });
        REQUIRE(eventually([&] { return small.waiting() == 1; }));
        small.resize(2);
        spawner.wait();
        hold.send();
        small.waitall();
      },
      with_workers(workers));
}

TEST_CASE("pool: spawn_n counts - exceptions free the slot", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(2);
        CHECK(p.free() == 2);
        auto gt = p.spawn([] { return 1; });
        gt.wait();
        CHECK(p.free() == 2);

        // Eventlet's test_exceptions, for spawn and spawn_n.
        green::testing::StderrCapture stderr_capture;
        for (int round = 0; round < 2; ++round) {
          auto raiser = [] { throw std::runtime_error("intentional"); };
          auto exiter = [] { throw green::GreenletExit(); };
          assert_pool_has_free(p, 2);
          if (round == 0) {
            auto h = p.spawn(raiser);
            CHECK_THROWS_AS(h.wait(), std::runtime_error);
          } else {
            p.spawn_n(raiser);
          }
          p.waitall();
          assert_pool_has_free(p, 2);
          if (round == 0) {
            p.spawn(exiter);
          } else {
            p.spawn_n(exiter);
          }
          p.waitall();
          assert_pool_has_free(p, 2);
        }
        const std::string err = stderr_capture.text();
        CHECK(err.find("intentional") != std::string::npos);
        CHECK(err.find("spawn_n") != std::string::npos);
      },
      with_workers(workers));
}

TEST_CASE("pool: a member killed before it starts gives its slot back",
          "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(1);
        std::atomic<bool> ran{false};
        auto gt = p.spawn([&] { ran = true; });
        gt.kill();  // before it started on 1 worker; maybe not on more
        try {
          gt.wait();
          CHECK(ran.load());  // it had finished before the kill
        } catch (const green::GreenletExit&) {
        }
        REQUIRE(eventually([&] { return p.free() == 1; }));
        CHECK(p.running() == 0);
        auto ok = p.spawn([] { return 3; });
        CHECK(ok.wait() == 3);

        // Killed while running.
        green::Event<void> never;
        auto blocked = p.spawn([&] { never.wait(); });
        REQUIRE(eventually([&] { return never.waiting() == 1; }));
        blocked.kill();
        CHECK(p.free() == 1);
      },
      with_workers(workers));
}

TEST_CASE("pool: never runs more than its size - whoever spawns", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int per_spawner = 200 / kScale;
  green::run(
      [per_spawner] {
        constexpr std::size_t kSize = 5;
        green::GreenPool pool(kSize);
        std::atomic<int> inside{0};
        std::atomic<int> most{0};
        std::atomic<int> done{0};
        auto work = [&](int i) {
          const int now = inside.fetch_add(1) + 1;
          int seen = most.load();
          while (now > seen && !most.compare_exchange_weak(seen, now)) {
          }
          if (i % 3 == 0) green::sleep(std::chrono::microseconds(i % 200));
          if (i % 3 == 1) green::sleep(0ms);
          inside.fetch_sub(1);
          done.fetch_add(1);
        };
        std::vector<green::GreenThread<void>> spawners;
        for (int s = 0; s < 3; ++s) {
          spawners.push_back(green::spawn([&] {
            for (int i = 0; i < per_spawner; ++i) {
              if (i % 2) {
                pool.spawn_n(work, i);
              } else {
                pool.spawn(work, i);
              }
            }
          }));
        }
        green::Event<void> os_done;
        std::thread os([&] {
          for (int i = 0; i < per_spawner; ++i) pool.spawn_n(work, i);
          os_done.send();
        });
        for (auto& s : spawners) s.wait();
        // Not os.join() straight away: that would block this worker, which
        // the OS thread's spawns may need (with one worker, forever).
        os_done.wait();
        os.join();
        pool.waitall();
        CHECK(done.load() == 4 * per_spawner);
        CHECK(most.load() <= static_cast<int>(kSize));
        CHECK(most.load() >= 1);
        CHECK(pool.free() == static_cast<long>(kSize));
      },
      with_workers(workers));
}

TEST_CASE("pool: imap yields in input order with random delays", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(4);
        std::vector<int> input(50);
        for (int i = 0; i < 50; ++i) input[i] = i;
        std::vector<int> delays_us(50);
        std::mt19937 random(42);
        for (int& d : delays_us) d = random() % 2000;
        std::vector<int> results;
        for (int r : p.imap(
                 [&](int i) {
                   green::sleep(std::chrono::microseconds(delays_us[i]));
                   return i * 10;
                 },
                 input)) {
          results.push_back(r);
        }
        REQUIRE(results.size() == 50);
        for (int i = 0; i < 50; ++i) CHECK(results[i] == i * 10);

        // Empty input.
        auto empty = p.imap(passthru, std::vector<int>{});
        CHECK(empty.begin() == empty.end());

        // Several ranges, zipped up to the shortest; an rvalue range.
        std::list<std::string> names{"a", "b", "c", "d"};
        std::vector<std::tuple<int, std::string>> pairs;
        for (auto t : p.imap(
                 [](int i, const std::string&s) {
                   green::sleep(std::chrono::microseconds((5 - i) * 200));
                   return std::make_tuple(i, s);
                 },
                 std::vector<int>{0, 1, 2}, names)) {
          pairs.push_back(t);
        }
        CHECK(pairs == std::vector<std::tuple<int, std::string>>{
                           {0, "a"}, {1, "b"}, {2, "c"}});

        // A void function yields std::monostate.
        int count = 0;
        for (auto unit : p.imap([](int) {}, input)) {
          (void)unit;
          ++count;
        }
        CHECK(count == 50);
      },
      with_workers(workers));
}

TEST_CASE("pool: imap exceptions surface at their item", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool p(4);
        auto raiser = [](int item) {
          if (item == 1 || item == 7) throw std::runtime_error("intentional");
          return item;
        };
        std::vector<std::string> results;
        auto items = p.imap(raiser, std::views::iota(0, 10));
        for (auto it = items.begin(); it != items.end(); ++it) {
          try {
            results.push_back(std::to_string(*it));
          } catch (const std::runtime_error&) {
            results.push_back("r");
          }
        }
        CHECK(results == std::vector<std::string>{"0", "r", "2", "3", "4", "5",
                                                  "6", "r", "8", "9"});
      },
      with_workers(workers));
}

TEST_CASE("pool: starmap", "[pool]") {
  green::run([] {
    green::GreenPool p(4);
    std::vector<std::tuple<int, int>> args;
    for (int i = 0; i < 10; ++i) args.emplace_back(i, i + 10);
    std::vector<int> results;
    for (int r : p.starmap([](int a, int b) { return a + b; }, args)) {
      results.push_back(r);
    }
    for (int i = 0; i < 10; ++i) CHECK(results[i] == 2 * i + 10);
  });
}

TEST_CASE("pool: imap memory is bounded by the pool size", "[pool]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int count = 1000 / kScale;
  green::run(
      [count] {
        for (std::size_t size : {1u, 5u, 50u}) {
          green::GreenPool p(size);
          std::atomic<int> started{0};
          int consumed = 0;
          int latest = -1;
          for (int i : p.imap(
                   [&](int x) {
                     started.fetch_add(1);
                     if (x % 7 == 0) green::sleep(0ms);
                     return x;
                   },
                   std::views::iota(0, count))) {
            CHECK(i == latest + 1);
            latest = i;
            ++consumed;
            // Spawned but not consumed: at most the pool's size.
            CHECK(started.load() - consumed <= static_cast<int>(size));
            if (i % 5 == 0) green::sleep(0ms);
          }
          CHECK(latest == count - 1);
        }
      },
      with_workers(workers));
}

TEST_CASE("pool: members may outlive the GreenPool object", "[pool]") {
  green::run([] {
    green::Event<void> release;
    std::atomic<bool> finished{false};
    {
      green::GreenPool p(2);
      p.spawn_n([&] {
        release.wait();
        finished = true;
      });
    }  // destroyed with a member still running
    release.send();
    REQUIRE(eventually([&] { return finished.load(); }));
  });
}

TEST_CASE("pile: results come back in spawn order", "[pile]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPile<int> p(4);
        std::mt19937 random(7);
        for (int i = 0; i < 10; ++i) {
          const int delay = random() % 2000;
          p.spawn(
              [delay](int a) {
                green::sleep(std::chrono::microseconds(delay));
                return a;
              },
              i);
        }
        CHECK(p.pending() == 10);
        std::vector<int> results;
        for (int r : p) results.push_back(r);
        for (int i = 0; i < 10; ++i) CHECK(results[i] == i);
        CHECK_FALSE(p.next());
        CHECK(p.begin() == p.end());

        // next(), an exception at its item, then the rest.
        green::GreenPile<std::string> q(2);
        q.spawn([] { return std::string("a"); });
        q.spawn([]() -> std::string { throw std::runtime_error("b"); });
        q.spawn([] { return "c"; });  // converted to std::string
        CHECK(q.next() == std::optional<std::string>("a"));
        CHECK_THROWS_AS(q.next(), std::runtime_error);
        CHECK(q.next() == std::optional<std::string>("c"));
        CHECK_FALSE(q.next());

        green::GreenPile<void> v;
        v.spawn([] { return 5; });
        CHECK(v.next());
        CHECK_FALSE(v.next());
      },
      with_workers(workers));
}

TEST_CASE("pile: a spawn that times out does not break the sequence",
          "[pile]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPile<int> p(4);
        green::Event<void> go;
        for (int i = 0; i < 4; ++i) {
          p.spawn(
              [&go](int a) {
                go.wait();
                return a;
              },
              i);
        }
        {
          green::Timeout t(0ns);  // the pool is full: spawn() must wait
          CHECK_THROWS_AS(p.spawn([] { return -1; }), green::Timeout);
        }
        go.send();
        for (int i = 4; i < 10; ++i) p.spawn(passthru, i);
        std::vector<int> results;
        for (int r : p) results.push_back(r);
        std::vector<int> expected;
        for (int i = 0; i < 10; ++i) expected.push_back(i);
        CHECK(results == expected);
      },
      with_workers(workers));
}

TEST_CASE("pile: a next() that times out waiting for a spawn loses nothing",
          "[pile]") {
  // The spawn is counted before it gets a pool slot; a next() that gave
  // up waiting for its handle (Timeout) must leave it to the next call.
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::GreenPool pool(1);
        green::Event<void> go;
        pool.spawn_n([&go] { go.wait(); });  // the pool is full
        green::GreenPile<int> pile(pool);
        green::Event<void> spawning;
        auto spawner = green::spawn([&] {
          spawning.send();
          pile.spawn(passthru, 42);  // counted, then waits for the pool
        });
        spawning.wait();
        while (pile.pending() == 0) green::yield();
        {
          green::Timeout t(10ms);
          CHECK_THROWS_AS(pile.next(), green::Timeout);
        }
        CHECK(pile.pending() == 1);
        go.send();
        spawner.wait();
        CHECK(pile.next() == std::optional<int>(42));
        CHECK_FALSE(pile.next());
      },
      with_workers(workers));
}

TEST_CASE("pile: two piles share a pool", "[pile]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::GreenPool pool(2);
        green::GreenPile<int> pile1(pool);
        green::GreenPile<int> pile2(pool);
        auto bunch_of_work = [](green::GreenPile<int>& pile, int unique) {
          for (int i = 0; i < 10; ++i) pile.spawn(passthru, i + unique);
        };
        auto s1 = green::spawn(bunch_of_work, std::ref(pile1), 0);
        auto s2 = green::spawn(bunch_of_work, std::ref(pile2), 100);
        s1.wait();
        s2.wait();
        std::vector<int> r1, r2;
        for (int r : pile2) r2.push_back(r);
        for (int r : pile1) r1.push_back(r);
        for (int i = 0; i < 10; ++i) {
          CHECK(r1[i] == i);
          CHECK(r2[i] == 100 + i);
        }
        CHECK(&pile1.pool() == &pool);
      },
      with_workers(workers));
}

TEST_CASE("pile: order per spawner under pressure", "[pile]") {
  const std::size_t workers = GENERATE(2, 4);
  const int iters = 300 / kScale;
  green::run(
      [iters] {
        // An item's exception. Caught by type only: reading an exception
        // object that a finished green thread's last reference may free on
        // another worker trips TSan (libstdc++'s exception_ptr refcount is
        // not instrumented), although the refcount orders it.
        struct Pressure {};
        green::GreenPile<std::pair<int, int>> p(5);
        auto pressure = [iters](std::pair<int, int> token) {
          std::minstd_rand random(token.first * 100003 + token.second);
          while (random() % 2) {
            green::sleep(std::chrono::microseconds(random() % 200));
          }
          if (random() % 5 == 0 && token.second != iters - 1) throw Pressure{};
          return token;
        };
        std::vector<green::GreenThread<void>> makers;
        for (int unique = 1; unique <= 3; ++unique) {
          makers.push_back(green::spawn([&, unique] {
            for (int i = 0; i < iters; ++i) {
              p.spawn(pressure, std::pair(unique, i));
            }
          }));
        }
        int latest[4] = {-1, -1, -1, -1};
        int received = 0;
        int errors = 0;
        bool ordered = true;
        const auto deadline = Clock::now() + 30s;
        while (received < 3 * iters && Clock::now() < deadline) {
          std::optional<std::pair<int, int>> got;
          try {
            got = p.next();
            if (!got) {  // the makers have not spawned more yet
              green::sleep(0ms);
              continue;
            }
          } catch (const Pressure&) {
            ++received;
            ++errors;
            continue;
          }
          ++received;
          ordered = ordered && latest[got->first] < got->second;
          latest[got->first] = got->second;
        }
        for (auto& m : makers) m.wait();
        CHECK(ordered);
        CHECK(received == 3 * iters);
        CHECK(errors > 0);
        for (int u = 1; u <= 3; ++u) CHECK(latest[u] == iters - 1);
      },
      with_workers(workers));
}
