// Event<T>: Eventlet's event_test ported (waiters all get the value, the
// exception, reset rules, wait with a timeout), plus OS-thread waiters and
// the reset-after-send race. Sweeps 1, 2 and 4 workers.
#include <atomic>
#include <chrono>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::eventually;
using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("event: a waiter gets the value sent by another green thread",
          "[event]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Event<std::string> evt;
        green::spawn_n([&] { evt.send("some stuff"); });
        CHECK(evt.wait() == "some stuff");
        CHECK(evt.ready());
        CHECK(evt.has_value());
        CHECK_FALSE(evt.has_exception());
      },
      with_workers(workers));
}

TEST_CASE("event: every waiter wakes with the same value or exception",
          "[event]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const bool with_exception = GENERATE(false, true);
  constexpr int kWaiters = 20;
  green::run(
      [with_exception] {
        green::Event<int> evt;
        std::vector<green::GreenThread<int>> waiters;
        for (int i = 0; i < kWaiters; ++i) {
          waiters.push_back(green::spawn([&] { return evt.wait(); }));
        }
        REQUIRE(eventually([&] { return evt.waiting() == kWaiters; }));
        if (with_exception) {
          evt.send_exception(std::runtime_error("boom"));
        } else {
          evt.send(42);
        }
        for (auto& w : waiters) {
          if (with_exception) {
            CHECK_THROWS_AS(w.wait(), std::runtime_error);
          } else {
            CHECK(w.wait() == 42);
          }
        }
        CHECK(evt.waiting() == 0);
        // Later waiters return at once.
        if (with_exception) {
          CHECK_THROWS_WITH(evt.wait(), "boom");
        } else {
          CHECK(evt.wait() == 42);
        }
      },
      with_workers(workers));
}

TEST_CASE("event: send twice and reset before send are errors", "[event]") {
  green::run([] {
    green::Event<std::string> evt;
    CHECK_THROWS_AS(evt.reset(), std::logic_error);
    green::spawn_n([&] { evt.send("some stuff"); });
    CHECK(evt.wait() == "some stuff");
    CHECK_THROWS_AS(evt.send("second stuff"), std::logic_error);
    CHECK_THROWS_AS(evt.send_exception(std::runtime_error("x")),
                    std::logic_error);
    CHECK(evt.wait() == "some stuff");  // unchanged
    evt.reset();
    CHECK_FALSE(evt.ready());
    green::spawn_n([&] { evt.send("second stuff"); });
    CHECK(evt.wait() == "second stuff");

    green::Event<void> done;
    CHECK_THROWS_AS(done.reset(), std::logic_error);
    done.send();
    CHECK_THROWS_AS(done.send(), std::logic_error);
    done.wait();
  });
}

TEST_CASE("event: an exception is not seen again after reset", "[event]") {
  green::run([] {
    green::Event<int> evt;
    evt.send_exception(std::runtime_error("from test_double_exception"));
    CHECK_THROWS_AS(evt.wait(), std::runtime_error);
    CHECK(evt.has_exception());
    evt.reset();
    // Eventlet: Timeout(0.001) then wait() raises the Timeout.
    green::Timeout t(1ms);
    try {
      evt.wait();
      FAIL("wait() returned");
    } catch (const green::Timeout& e) {
      CHECK(e == t);
    }
  });
}

TEST_CASE("event: wait with a timeout", "[event]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        constexpr auto kDelay = 50ms;
        {
          green::Event<bool> evt;
          // Taken before the timer starts: it bounds the wait from below.
          const auto start = Clock::now();
          green::spawn_after(kDelay, [&] { evt.send(true); });
          auto result = evt.wait(kDelay * 20);
          CHECK(result == std::optional<bool>(true));
          CHECK(Clock::now() - start >= kDelay);
        }
        {
          green::Event<bool> evt;
          auto late = green::spawn_after(kDelay * 4, [&] { evt.send(true); });
          const auto start = Clock::now();
          CHECK_FALSE(evt.wait(kDelay));
          CHECK(Clock::now() - start >= kDelay);
          late.wait();
        }
        {
          green::Event<void> evt;
          CHECK_FALSE(evt.wait(1ms));
          evt.send();
          CHECK(evt.wait(0ns));
        }
      },
      with_workers(workers));
}

TEST_CASE("event: waiters woken by a send keep its value across reset",
          "[event]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 50; ++round) {
          green::Event<int> evt;
          std::vector<green::GreenThread<int>> waiters;
          for (int i = 0; i < 4; ++i) {
            waiters.push_back(green::spawn([&] { return evt.wait(); }));
          }
          REQUIRE(eventually([&] { return evt.waiting() == 4; }));
          evt.send(1);
          evt.reset();  // before the woken waiters even ran
          evt.send(2);
          for (auto& w : waiters) CHECK(w.wait() == 1);
        }
      },
      with_workers(workers));
}

TEST_CASE("event: plain OS threads wait and send", "[event]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::Event<int> to_threads;
        green::Event<void> from_thread;
        std::atomic<int> sum{0};
        std::vector<std::thread> threads;
        for (int i = 0; i < 3; ++i) {
          threads.emplace_back([&] { sum.fetch_add(to_threads.wait()); });
        }
        std::atomic<bool> sender_timed_out{false};
        std::thread sender([&] {  // no Catch2 assertion off the test thread
          sender_timed_out = !from_thread.wait(1ms);
          from_thread.send();
        });
        from_thread.wait();  // a green thread waits for an OS thread
        REQUIRE(eventually([&] { return to_threads.waiting() == 3; }));
        to_threads.send(5);
        for (auto& t : threads) t.join();
        sender.join();
        CHECK(sum.load() == 15);
        CHECK(sender_timed_out.load());
      },
      with_workers(workers));
}

TEST_CASE("event: a killed waiter does not disturb the others", "[event]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Event<int> evt;
        auto victim = green::spawn([&] { return evt.wait(); });
        auto survivor = green::spawn([&] { return evt.wait(); });
        REQUIRE(eventually([&] { return evt.waiting() == 2; }));
        victim.kill();
        CHECK_THROWS_AS(victim.wait(), green::GreenletExit);
        CHECK(evt.waiting() == 1);
        evt.send(9);
        CHECK(survivor.wait() == 9);
      },
      with_workers(workers));
}

TEST_CASE("event: a waiter may destroy the event as soon as wait returns",
          "[event]") {
  // The usual shape: an event in the waiter's frame, sent by another green
  // thread. wait() returns only once send() has let go of the event (a
  // sender still inside send() while its waiter destroyed the event was a
  // use-after-free, seen as a spurious wake of the waiter's next wait).
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 200; ++round) {
          auto* evt = new green::Event<int>;
          green::spawn_n([evt, round] { evt->send(round); });
          CHECK(evt->wait() == round);
          delete evt;
        }
      },
      with_workers(workers));
}

TEST_CASE("event: the sender may destroy the event as soon as send returns",
          "[event]") {
  // Woken waiters must not touch the event again (they are handed the
  // result before they wake); under ASan a waiter that re-locked a deleted
  // event is a heap-use-after-free.
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        constexpr int kWaiters = 8;
        for (int round = 0; round < 20; ++round) {
          auto* evt = new green::Event<int>;
          std::vector<green::GreenThread<int>> waiters;
          for (int i = 0; i < kWaiters; ++i) {
            waiters.push_back(green::spawn([evt] { return evt->wait(); }));
          }
          REQUIRE(eventually([&] { return evt->waiting() == kWaiters; }));
          evt->send(round);
          delete evt;
          for (auto& waiter : waiters) CHECK(waiter.wait() == round);
        }
      },
      with_workers(workers));
}
