// Semaphore, BoundedSemaphore, CappedSemaphore, Lock, Condition: Eventlet's
// semaphore_test ported, plus FIFO order, timeouts racing with releases,
// and OS threads. Sweeps 1, 2 and 4 workers.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "runtime/worker.h"  // current_fiber(): a kill posted to itself
#include "tests/test_support.h"

using green::testing::eventually;
using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

TEST_CASE("semaphore: arguments are checked as Eventlet does", "[semaphore]") {
  CHECK_THROWS_AS(green::Semaphore(-1), std::invalid_argument);
  CHECK_THROWS_AS(green::BoundedSemaphore(-1), std::invalid_argument);
  CHECK_THROWS_AS(green::CappedSemaphore(-1, 3), std::invalid_argument);
  CHECK_THROWS_AS(green::CappedSemaphore(4, 3), std::invalid_argument);
  green::Semaphore zero(0);
  green::Semaphore one(1);
  CHECK_THROWS_AS(one.acquire(false, 1s), std::invalid_argument);
  CHECK_THROWS_AS(one.acquire(true, -1s), std::invalid_argument);
  CHECK_FALSE(zero.acquire(false));  // blocking=false never waits
  CHECK(one.acquire(false));
  CHECK(one.locked());
  CHECK_FALSE(one.acquire(true, 0s));  // timeout 0: no waiting either
}

TEST_CASE("semaphore: acquire with a timeout waits that long", "[semaphore]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Semaphore sem(0);
        const auto start = Clock::now();
        CHECK_FALSE(sem.acquire(true, 50ms));
        CHECK(Clock::now() - start >= 50ms);
        CHECK(sem.balance() == 0);
        green::spawn_after(20ms, [&] { sem.release(); });
        CHECK(sem.acquire(true, 10s));
      },
      with_workers(workers));
  // And on a plain OS thread.
  green::Semaphore sem(0);
  CHECK_FALSE(sem.acquire(true, 10ms));
}

TEST_CASE("semaphore: waiters are served in FIFO order", "[semaphore]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kWaiters = 10;
  green::run(
      [] {
        green::Semaphore sem(0);
        std::mutex order_mutex;
        std::vector<int> order;
        std::vector<green::GreenThread<void>> waiters;
        for (int i = 0; i < kWaiters; ++i) {
          waiters.push_back(green::spawn([&, i] {
            sem.acquire();
            std::lock_guard<std::mutex> guard(order_mutex);
            order.push_back(i);
          }));
          REQUIRE(eventually([&] { return sem.balance() == -(i + 1); }));
        }
        // One release at a time, each seen through before the next: the
        // order in which the waiters record themselves is then the order
        // in which they were served.
        for (int i = 0; i < kWaiters; ++i) {
          sem.release();
          REQUIRE(eventually([&] {
            std::lock_guard<std::mutex> guard(order_mutex);
            return order.size() == i + 1u;
          }));
        }
        for (auto& w : waiters) w.wait();
        std::vector<int> expected;
        for (int i = 0; i < kWaiters; ++i) expected.push_back(i);
        CHECK(order == expected);
        CHECK(sem.counter() == 0);
      },
      with_workers(workers));
}

TEST_CASE("semaphore: a release is never lost to a timing-out waiter",
          "[semaphore]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        // Waiters with tiny timeouts race with releases; afterwards, every
        // unit released is either held by a waiter that got it or still in
        // the semaphore.
        green::Semaphore sem(0);
        std::atomic<int> acquired{0};
        constexpr int kRounds = 200;
        std::vector<green::GreenThread<void>> waiters;
        for (int i = 0; i < kRounds; ++i) {
          waiters.push_back(green::spawn([&, i] {
            if (sem.acquire(true, std::chrono::microseconds(i % 50)))
              acquired.fetch_add(1);
          }));
          if (i % 2 == 0) sem.release();
        }
        for (auto& w : waiters) w.wait();
        CHECK(acquired.load() + sem.counter() == kRounds / 2);
      },
      with_workers(workers));
}

TEST_CASE("semaphore: BoundedSemaphore refuses to go above its count",
          "[semaphore]") {
  green::BoundedSemaphore sem(2);
  CHECK_THROWS_AS(sem.release(), std::logic_error);
  sem.acquire();
  sem.release();
  CHECK_THROWS_AS(sem.release(), std::logic_error);
  CHECK(sem.counter() == 2);
  // Through the base class too.
  green::Semaphore& base = sem;
  CHECK_THROWS_AS(base.release(), std::logic_error);
  green::Semaphore unbounded(0);
  for (int i = 0; i < 5; ++i) unbounded.release();
  CHECK(unbounded.counter() == 5);
}

TEST_CASE("semaphore: CappedSemaphore blocks release at its limit",
          "[semaphore]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        // Eventlet's test_bounded.
        green::CappedSemaphore sem(2, 3);
        CHECK(sem.acquire());
        CHECK(sem.acquire());
        auto gt1 = green::spawn([&] { return sem.release(); });
        CHECK(sem.acquire());
        CHECK(sem.balance() == -3);
        sem.release();
        sem.release();
        sem.release();
        CHECK(sem.counter() == 3);
        CHECK_FALSE(sem.release(false));  // at the limit: would block
        auto gt2 = green::spawn([&] { return sem.acquire(); });
        sem.release();  // waits for gt2's acquire
        CHECK(sem.balance() == 3);
        CHECK(gt1.wait());
        CHECK(gt2.wait());
        CHECK_FALSE(sem.release(true, 1ms));

        // test_bounded_with_zero_limit: a rendezvous.
        green::CappedSemaphore zero(0, 0);
        auto acquirer = green::spawn([&] { return zero.acquire(); });
        zero.release();
        CHECK(acquirer.wait());
        auto releaser = green::spawn([&] { return zero.release(); });
        CHECK(zero.acquire());
        CHECK(releaser.wait());
      },
      with_workers(workers));
}

TEST_CASE("semaphore: lock_guard and unique_lock are the RAII guards",
          "[semaphore]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Semaphore sem(2);
        std::atomic<int> inside{0};
        std::atomic<int> most{0};
        std::vector<green::GreenThread<void>> threads;
        for (int i = 0; i < 20; ++i) {
          threads.push_back(green::spawn([&] {
            std::lock_guard<green::Semaphore> hold(sem);
            const int now = inside.fetch_add(1) + 1;
            int seen = most.load();
            while (now > seen && !most.compare_exchange_weak(seen, now)) {
            }
            green::sleep(1ms);
            inside.fetch_sub(1);
          }));
        }
        for (auto& t : threads) t.wait();
        CHECK(most.load() <= 2);
        CHECK(most.load() >= 1);
        CHECK(sem.counter() == 2);
        std::unique_lock<green::Semaphore> held(sem, std::try_to_lock);
        CHECK(held.owns_lock());
        CHECK(sem.try_lock_for(1ms));
        CHECK_FALSE(sem.try_lock_for(1ms));
        sem.unlock();
      },
      with_workers(workers));
}

TEST_CASE("lock: a green mutex held across blocking points", "[lock]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Lock mu;
        CHECK_THROWS_AS(mu.unlock(), std::logic_error);
        long counter = 0;  // guarded by mu
        std::vector<green::GreenThread<void>> threads;
        for (int t = 0; t < 8; ++t) {
          threads.push_back(green::spawn([&] {
            for (int i = 0; i < 200; ++i) {
              std::lock_guard<green::Lock> hold(mu);
              const long seen = counter;
              if (i % 50 == 0) green::sleep(0ms);  // others run meanwhile
              counter = seen + 1;
            }
          }));
        }
        std::thread os([&] {
          for (int i = 0; i < 200; ++i) {
            std::lock_guard<green::Lock> hold(mu);
            ++counter;
          }
        });
        for (auto& t : threads) t.wait();
        os.join();
        CHECK(counter == 9 * 200);
        CHECK_FALSE(mu.locked());
        CHECK(mu.try_lock());
        CHECK(mu.locked());
        CHECK_FALSE(mu.try_lock_for(1ms));
        CHECK_FALSE(mu.acquire(false));
        mu.release();
      },
      with_workers(workers));
}

TEST_CASE("lock: a killed waiter does not take the lock with it", "[lock]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Lock mu;
        mu.lock();
        auto victim = green::spawn([&] {
          mu.lock();
          mu.unlock();
        });
        auto next = green::spawn([&] {
          std::lock_guard<green::Lock> hold(mu);
          return 7;
        });
        green::sleep(5ms);  // most likely both wait now; either way works
        victim.kill();
        mu.unlock();
        CHECK(next.wait() == 7);
        CHECK_FALSE(mu.locked());
      },
      with_workers(workers));
}

TEST_CASE("condition: wait - notify_one - notify_all - wait_for",
          "[condition]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Lock mu;
        green::Condition cond;
        int stage = 0;  // guarded by mu
        std::atomic<int> woken{0};
        std::vector<green::GreenThread<void>> waiters;
        for (int i = 0; i < 5; ++i) {
          waiters.push_back(green::spawn([&] {
            std::unique_lock<green::Lock> hold(mu);
            cond.wait(hold, [&] { return stage >= 1; });
            woken.fetch_add(1);
          }));
        }
        green::sleep(5ms);
        CHECK(woken.load() == 0);
        {
          std::lock_guard<green::Lock> hold(mu);
          stage = 1;
        }
        cond.notify_all();
        for (auto& w : waiters) w.wait();
        CHECK(woken.load() == 5);

        // wait_for times out, and a notify from an OS thread wakes it.
        std::unique_lock<green::Lock> hold(mu);
        const auto start = Clock::now();
        CHECK(cond.wait_for(hold, 20ms) == std::cv_status::timeout);
        CHECK(Clock::now() - start >= 20ms);
        CHECK(hold.owns_lock());
        std::thread os([&] {
          std::lock_guard<green::Lock> g(mu);
          stage = 2;
          cond.notify_one();
        });
        CHECK(cond.wait_for(hold, 10s, [&] { return stage == 2; }));
        hold.unlock();
        os.join();
      },
      with_workers(workers));
}

TEST_CASE("condition: killed in wait() it still re-locks", "[condition]") {
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::Lock mu;
        green::Condition cond;
        std::atomic<bool> owned_on_exit{false};
        std::atomic<bool> locked_once{false};
        auto waiter = green::spawn([&] {
          std::unique_lock<green::Lock> hold(mu);
          locked_once = true;
          try {
            cond.wait(hold);
          } catch (const green::GreenletExit&) {
            owned_on_exit = hold.owns_lock() && mu.locked();
            throw;
          }
        });
        // Locked, then released by wait(): the waiter is in wait().
        REQUIRE(eventually([&] { return locked_once && !mu.locked(); }));
        waiter.kill();
        CHECK(owned_on_exit.load());
        CHECK_FALSE(mu.locked());  // unique_lock released it on unwind
      },
      with_workers(workers));
}

TEST_CASE("condition: a kill while wait() re-takes a held lock waits for it",
          "[condition]") {
  // Notified, the waiter must take the user's lock again, and here the
  // killer holds it; the kill must not make wait() throw without the lock
  // (its unique_lock would then release a lock it does not hold --
  // someone else's). It returns holding the lock, and the kill is raised
  // at its next blocking point. kill() itself returns at once: the waiter
  // has reached a blocking point, where the kill waits for the lock the
  // killer holds.
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        green::Lock mu;
        green::Condition cond;
        std::atomic<bool> returned_with_lock{false};
        green::Event<void> waiting;
        auto waiter = green::spawn([&] {
          std::unique_lock<green::Lock> hold(mu);
          waiting.send();
          cond.wait(hold);  // re-locking blocks behind main
          returned_with_lock = hold.owns_lock() && mu.locked();
          green::sleep(10s);  // the kill is raised here
        });
        waiting.wait();
        {
          std::lock_guard<green::Lock> guard(mu);  // wait() let go of it
          cond.notify_one();
          green::sleep(20ms);  // the waiter now blocks re-taking `mu`
          waiter.kill();       // must not wait for `mu`, which we hold
        }
        CHECK_THROWS_AS(waiter.wait(), green::GreenletExit);
        CHECK(returned_with_lock.load());
        // Exactly one unlock each: the lock is free, and takes one owner.
        CHECK(mu.try_lock());
        CHECK_FALSE(mu.try_lock());
        mu.unlock();
      },
      with_workers(workers));
}

TEST_CASE("condition: works with std::mutex between OS threads",
          "[condition]") {
  std::mutex mu;
  green::Condition cond;
  bool ready = false;
  std::thread t([&] {
    std::lock_guard<std::mutex> g(mu);
    ready = true;
    cond.notify_all();
  });
  std::unique_lock<std::mutex> hold(mu);
  CHECK(cond.wait_for(hold, 10s, [&] { return ready; }));
  hold.unlock();
  t.join();
}

TEST_CASE("condition: the notifier may destroy it once notify_all returns",
          "[condition]") {
  // As with std::condition_variable: woken waiters never touch the
  // condition again (under ASan, one that re-locked a deleted condition
  // is a heap-use-after-free).
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        constexpr int kWaiters = 8;
        for (int round = 0; round < 50; ++round) {
          green::Lock mu;
          auto* cond = new green::Condition;
          int waiting = 0;  // guarded by mu
          bool go = false;  // guarded by mu
          std::vector<green::GreenThread<void>> waiters;
          for (int i = 0; i < kWaiters; ++i) {
            waiters.push_back(green::spawn([&, cond] {
              std::unique_lock<green::Lock> hold(mu);
              ++waiting;
              cond->wait(hold, [&] { return go; });
            }));
          }
          // A waiter lets go of mu only once it is linked (or about to be,
          // holding the condition's own lock): all of them wait now.
          REQUIRE(eventually([&] {
            std::lock_guard<green::Lock> hold(mu);
            return waiting == kWaiters;
          }));
          {
            std::lock_guard<green::Lock> hold(mu);
            go = true;
          }
          cond->notify_all();
          delete cond;
          for (auto& waiter : waiters) waiter.wait();
        }
      },
      with_workers(workers));
}

TEST_CASE("condition: a wait entered with a kill pending lets go first",
          "[condition]") {
  // The kill is raised as the wait begins, before it parks. The waiter
  // must then take the user's lock back WITHOUT holding the condition's
  // own lock: here the user's lock has gone to another green thread,
  // which notifies under it; a waiter that kept the condition's lock
  // while it waited for the user's deadlocked both (the test hangs).
  struct SemaphoreLock {  // a Lockable whose waiters can be counted
    green::Semaphore semaphore{1};
    void lock() { semaphore.acquire(); }
    void unlock() { semaphore.release(); }
  };
  const std::size_t workers = GENERATE(1, 2);
  green::run(
      [] {
        SemaphoreLock mu;
        green::Condition cond;
        green::testing::Signal holding;
        auto waiter = green::spawn([&] {
          std::unique_lock<SemaphoreLock> hold(mu);
          holding.post();
          // The notifier queues for mu behind us.
          while (mu.semaphore.balance() != -1) green::yield();
          // A kill posted while we run (kill_async from anywhere lands
          // the same way): it is raised at the next blocking point.
          green::detail::current_fiber()->request_kill();
          cond.wait(hold, [] { return false; });
        });
        holding.wait();
        auto notifier = green::spawn([&] {
          std::lock_guard<SemaphoreLock> hold(mu);
          cond.notify_all();
        });
        CHECK_THROWS_AS(waiter.wait(), green::GreenletExit);
        notifier.wait();
        CHECK(mu.semaphore.balance() == 1);
      },
      with_workers(workers));
}

TEST_CASE("semaphore: an acquirer may destroy it as soon as acquire returns",
          "[semaphore]") {
  // acquire() returns only once the releaser has let go of the semaphore.
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 200; ++round) {
          auto* semaphore = new green::Semaphore(0);
          green::spawn_n([semaphore] { semaphore->release(); });
          CHECK(semaphore->acquire());
          delete semaphore;
        }
      },
      with_workers(workers));
}

TEST_CASE("semaphore: the releaser may destroy it as soon as release returns",
          "[semaphore]") {
  // A woken acquirer is handed its unit and never touches the semaphore
  // again (ASan reports a use-after-free otherwise).
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 50; ++round) {
          auto* semaphore = new green::Semaphore(0);
          auto acquirer =
              green::spawn([semaphore] { return semaphore->acquire(); });
          REQUIRE(eventually([&] { return semaphore->balance() == -1; }));
          semaphore->release();
          delete semaphore;
          CHECK(acquirer.wait());
        }
      },
      with_workers(workers));
}
