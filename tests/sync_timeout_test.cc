// Timeout: Eventlet's timeout_test ported (with_timeout, timeout_value, an
// outer timer not caught by an inner with_timeout), plus nested timeouts,
// cancellation that is race-free against a timer firing on another worker,
// every blocking point of sync/ interrupted, and a randomized stress of
// nested timeouts that checks none is lost and none strikes late. Sweeps
// 1, 2 and 4 workers.
#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

using green::testing::kScale;

constexpr auto kDelay = 10ms;  // Eventlet's DELAY

// Runs without reaching a blocking point.
void spin_for(std::chrono::nanoseconds duration) {
  const auto until = Clock::now() + duration;
  while (Clock::now() < until) {
  }
}

}  // namespace

TEST_CASE("timeout: fires at the blocking point - the catcher knows which",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        // Taken before the Timeout starts its clock, so that a preemption
        // between the two cannot make the wait look shorter than kDelay.
        const auto start = Clock::now();
        green::Timeout t(kDelay);
        CHECK(t.pending());
        CHECK(t.duration() == std::optional<std::chrono::nanoseconds>(kDelay));
        try {
          green::sleep(10s);
          FAIL("the timeout did not fire");
        } catch (const green::Timeout& e) {
          CHECK(e == t);
          CHECK_FALSE(e.pending());
          CHECK(std::string(e.what()) == "green::Timeout");
        }
        CHECK(Clock::now() - start >= kDelay);
        CHECK(Clock::now() - start < 5s);
        CHECK_FALSE(t.pending());
        green::sleep(2 * kDelay);  // fired once only
      },
      with_workers(workers));
}

TEST_CASE("timeout: cancelled in time it never fires", "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        {
          green::Timeout t(kDelay);
          green::sleep(1ms);
          t.cancel();
          CHECK_FALSE(t.pending());
          t.cancel();  // idempotent
          green::sleep(3 * kDelay);
        }
        { green::Timeout t(kDelay); }  // the scope end cancels
        green::sleep(3 * kDelay);
        // Expired while running, cancelled before the next blocking point:
        // the posted expiry is withdrawn.
        {
          green::Timeout t(1ms);
          spin_for(5 * kDelay);
        }
        green::sleep(kDelay);
      },
      with_workers(workers));
}

TEST_CASE("timeout: std::nullopt does nothing - anywhere", "[timeout]") {
  green::Timeout off(std::nullopt);  // on a plain thread: fine
  CHECK_FALSE(off.pending());
  CHECK(off == off);
  green::Timeout other(std::nullopt);
  CHECK_FALSE(off == other);
  CHECK_THROWS_AS(green::Timeout(1s), std::logic_error);
  CHECK_THROWS_AS(green::with_timeout(1s, [] { return 1; }), std::logic_error);
  green::run([] {
    green::Timeout t(std::nullopt);
    green::sleep(kDelay);
    CHECK_FALSE(t.pending());
  });
}

TEST_CASE("timeout: a given exception is thrown instead", "[timeout]") {
  green::run([] {
    green::Timeout t(kDelay, std::runtime_error("custom"));
    CHECK_THROWS_WITH(green::sleep(10s), "custom");
    CHECK_FALSE(t.pending());
  });
}

TEST_CASE("timeout: it is not a std::exception", "[timeout]") {
  green::run([] {
    bool swallowed = false;
    bool escaped = false;
    try {
      green::Timeout t(1ms);
      try {
        green::sleep(10s);
      } catch (const std::exception&) {
        swallowed = true;
      }
    } catch (const green::Timeout&) {
      escaped = true;
    }
    CHECK_FALSE(swallowed);
    CHECK(escaped);
  });
}

TEST_CASE("timeout: with_timeout - with_timeout_or - with_deadline",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        CHECK_THROWS_AS(
            green::with_timeout(kDelay, [] { green::sleep(kDelay * 10); }),
            green::Timeout);
        CHECK(green::with_timeout_or(kDelay, std::string("X"), [] {
                green::sleep(kDelay * 10);
                return std::string("done");
              }) == "X");
        CHECK(green::with_timeout_or(kDelay * 10, std::string("X"), [] {
                green::sleep(kDelay);
                return std::string("done");
              }) == "done");
        CHECK(green::with_timeout(
                  kDelay * 10, [](int x) { return x * 2; }, 21) == 42);

        CHECK_FALSE(green::with_deadline(kDelay, [] { green::sleep(1s); }));
        CHECK(green::with_deadline(kDelay * 10, [] {}));
        CHECK(green::with_deadline(kDelay * 10, [] { return 5; }) ==
              std::optional<int>(5));
        CHECK_FALSE(green::with_deadline(kDelay, [] {
          green::sleep(1s);
          return 5;
        }));
      },
      with_workers(workers));
}

TEST_CASE("timeout: an outer timer is not caught by an inner with_timeout",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        auto longer_timeout = [] {
          return green::with_timeout_or(kDelay * 10, std::string("b"), [] {
            green::sleep(kDelay * 20);
            return std::string("a");
          });
        };
        CHECK_THROWS_AS(green::with_timeout(kDelay, longer_timeout),
                        green::Timeout);
        // The same with with_deadline inside.
        green::Timeout outer(kDelay);
        try {
          green::with_deadline(kDelay * 10, [] { green::sleep(1s); });
          FAIL("not interrupted");
        } catch (const green::Timeout& e) {
          CHECK(e == outer);
        }
      },
      with_workers(workers));
}

TEST_CASE("timeout: nested timeouts are independent", "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        // The inner one fires; the outer stays pending, then fires itself.
        green::Timeout outer(kDelay * 5);
        try {
          {
            green::Timeout inner(kDelay);
            try {
              green::sleep(1s);
              FAIL("inner did not fire");
            } catch (const green::Timeout& e) {
              CHECK(e == inner);
              CHECK_FALSE(e == outer);
              CHECK(outer.pending());
            }
          }
          green::sleep(1s);
          FAIL("outer did not fire");
        } catch (const green::Timeout& e) {
          CHECK(e == outer);
        }

        // The outer one fires inside the inner scope: the inner catch
        // rethrows it, the inner one never fires.
        green::Timeout outer2(kDelay);
        bool inner_caught = false;
        try {
          green::Timeout inner(kDelay * 50);
          try {
            green::sleep(1s);
          } catch (const green::Timeout& e) {
            if (e != inner) throw;
            inner_caught = true;
          }
          FAIL("outer2 did not fire");
        } catch (const green::Timeout& e) {
          CHECK(e == outer2);
        }
        CHECK_FALSE(inner_caught);
      },
      with_workers(workers));
}

TEST_CASE("timeout: an inner timeout after the outer one was caught fires",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Timeout outer(1ms);
        try {
          green::sleep(1s);
        } catch (const green::Timeout& e) {
          REQUIRE(e == outer);
        }
        // Still in outer's scope, outer fired and was caught: a new inner
        // timeout must still work.
        green::Timeout inner(kDelay);
        try {
          green::sleep(1s);
          FAIL("inner did not fire");
        } catch (const green::Timeout& e) {
          CHECK(e == inner);
        }
      },
      with_workers(workers));
}

TEST_CASE("timeout: interrupts every blocking point of sync/ - consistently",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        auto times_out = [](auto&& body) {
          green::Timeout t(kDelay);
          try {
            body();
          } catch (const green::Timeout& e) {
            return e == t;
          }
          return false;
        };
        green::Queue<int> q(1);
        CHECK(times_out([&] { q.get(); }));
        CHECK(q.getting() == 0);
        q.put(1);
        CHECK(times_out([&] { q.put(2); }));
        CHECK(q.putting() == 0);
        CHECK(q.get() == 1);
        CHECK_FALSE(q.try_get());

        green::Event<int> evt;
        CHECK(times_out([&] { evt.wait(); }));
        CHECK(evt.waiting() == 0);

        green::Semaphore sem(0);
        CHECK(times_out([&] { sem.acquire(); }));
        CHECK(sem.balance() == 0);

        green::Lock mu;
        mu.lock();
        CHECK(times_out([&] { mu.lock(); }));
        mu.unlock();
        CHECK_FALSE(mu.locked());

        green::Condition cond;
        std::unique_lock<green::Lock> hold(mu);
        CHECK(times_out([&] { cond.wait(hold); }));
        CHECK(hold.owns_lock());
        hold.unlock();

        auto sleeper = green::spawn([] { green::sleep(10s); });
        CHECK(times_out([&] { sleeper.wait(); }));
        sleeper.kill();

        green::GreenPool pool(1);
        green::Event<void> release;
        pool.spawn_n([&] { release.wait(); });
        CHECK(times_out([&] { pool.spawn_n([] {}); }));  // pool full
        CHECK(pool.waiting() == 0);
        release.send();
        pool.waitall();
        CHECK(pool.free() == 1);
      },
      with_workers(workers));
}

TEST_CASE("timeout: cancel races with the timer firing on another worker",
          "[timeout]") {
  const std::size_t workers = GENERATE(2, 4);
  const int rounds = 1000 / kScale;
  green::run(
      [rounds] {
        // Hogs keep the workers busy so that the green thread below moves
        // between workers while its timers fire on the worker that created
        // them.
        std::atomic<bool> stop{false};
        std::vector<green::GreenThread<void>> hogs;
        for (int i = 0; i < 2; ++i) {
          hogs.push_back(green::spawn([&] {
            while (!stop.load(std::memory_order_relaxed)) {
              spin_for(20us);
              green::sleep(0ms);
            }
          }));
        }
        std::mt19937 random(12345);
        std::uniform_int_distribution<int> micros(0, 150);
        int fired = 0;
        for (int i = 0; i < rounds; ++i) {
          green::Timeout t(std::chrono::microseconds(micros(random)));
          try {
            if (i % 2) {
              spin_for(std::chrono::microseconds(micros(random)));
            } else {
              green::sleep(std::chrono::microseconds(micros(random)));
            }
            if (i % 3 == 0) green::sleep(0ms);
          } catch (const green::Timeout& e) {
            REQUIRE(e == t);
            ++fired;
          }
        }
        // A late expiry would strike here (and escape the test).
        green::sleep(5ms);
        green::sleep(0ms);
        stop = true;
        for (auto& h : hogs) h.wait();
        CHECK(fired > 0);
        CHECK(fired < rounds);
      },
      with_workers(workers));
}

TEST_CASE("timeout: randomized nested timeouts: none lost - none late",
          "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int rounds = 400 / kScale;
  green::run(
      [rounds] {
        std::mt19937 random(777);
        std::uniform_int_distribution<int> micros(0, 1500);
        auto random_work = [&] {
          switch (random() % 3) {
            case 0:
              spin_for(std::chrono::microseconds(micros(random)));
              break;
            case 1:
              green::sleep(std::chrono::microseconds(micros(random)));
              break;
            default:
              green::sleep(0ms);
          }
        };
        for (int i = 0; i < rounds; ++i) {
          const auto outer_duration = std::chrono::microseconds(micros(random));
          const auto start = Clock::now();
          green::Timeout outer(outer_duration);
          try {
            {
              green::Timeout inner(std::chrono::microseconds(micros(random)));
              try {
                random_work();
                random_work();
              } catch (const green::Timeout& e) {
                if (e != inner) throw;
              }
            }
            random_work();
            // However the inner one ended, the outer one must strike.
            green::sleep(2s);
            FAIL("the outer timeout was lost");
          } catch (const green::Timeout& e) {
            REQUIRE(e == outer);
          }
          CHECK(Clock::now() - start >= outer_duration);
        }
        green::sleep(5ms);  // nothing late
      },
      with_workers(workers));
}

TEST_CASE("timeout: many green threads with timeouts at once", "[timeout]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int threads = 1000 / kScale;
  green::run(
      [threads] {
        green::Event<void> never;
        std::atomic<int> timed_out{0};
        std::vector<green::GreenThread<void>> waiters;
        for (int i = 0; i < threads; ++i) {
          waiters.push_back(green::spawn([&, i] {
            green::Timeout t(std::chrono::microseconds(100 + i % 1000));
            try {
              never.wait();
            } catch (const green::Timeout& e) {
              if (e == t) timed_out.fetch_add(1);
            }
          }));
        }
        for (auto& w : waiters) w.wait();
        CHECK(timed_out.load() == threads);
        CHECK(never.waiting() == 0);
      },
      with_workers(workers));
}

TEST_CASE("timeout: huge durations neither overflow nor fire", "[timeout]") {
  green::run([] {
    green::Timeout t(std::chrono::nanoseconds::max());
    CHECK(t.pending());
    green::sleep(1ms);
    CHECK(t.pending());
    green::Queue<int> q;
    q.put(1);
    CHECK(q.get(std::chrono::nanoseconds::max()) == std::optional<int>(1));
    green::Event<void> e;
    e.send();
    CHECK(e.wait(std::chrono::nanoseconds::max()));
    green::Semaphore sem(1);
    CHECK(sem.acquire(true, std::chrono::nanoseconds::max()));
  });
}
