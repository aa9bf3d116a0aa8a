// The scheduler under load: exactly-once execution, migration between
// workers, park/wake across workers and OS threads (with racing timeouts),
// many sleepers, idle CPU, and shutdown with green threads still blocked.
// Bounded in count and time; run under --config=tsan as well.
#include <time.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
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
#if defined(__SANITIZE_THREAD__)
// TSan reserves over a megabyte of trace per live fiber: keep the number of
// green threads alive at once in the thousands.
constexpr int kLiveScale = 100;
#else
constexpr int kLiveScale = kScale;
#endif

double process_cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Counts the green threads that unwound (a kill at shutdown unwinds).
struct CountOnUnwind {
  std::atomic<int>* counter;
  ~CountOnUnwind() { counter->fetch_add(1); }
};

}  // namespace

TEST_CASE("100,000 green threads spawned from many green threads run once",
          "[scheduler]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kSpawners = 100;
  const int per_spawner = 1000 / kScale;
  const int total = kSpawners * per_spawner;
  auto runs = std::make_unique<std::atomic<int>[]>(total);
  const auto start = Clock::now();
  green::run(
      [&] {
        std::vector<green::GreenThread<void>> spawners;
        for (int s = 0; s < kSpawners; ++s) {
          spawners.push_back(green::spawn([&, s] {
            std::vector<green::GreenThread<void>> children;
            children.reserve(per_spawner);
            for (int i = 0; i < per_spawner; ++i) {
              const int id = s * per_spawner + i;
              children.push_back(green::spawn([&runs, id] {
                runs[id].fetch_add(1, std::memory_order_relaxed);
              }));
            }
            for (auto& child : children) child.wait();
          }));
        }
        for (auto& spawner : spawners) spawner.wait();
      },
      with_workers(workers));
  int exactly_once = 0;
  for (int i = 0; i < total; ++i) exactly_once += runs[i].load() == 1;
  CHECK(exactly_once == total);
  CHECK(Clock::now() - start < 30s);
}

TEST_CASE("green threads migrate, and worker_id() follows the OS thread",
          "[scheduler]") {
  // One green thread yields in a loop while CPU hogs keep landing on its
  // worker: each round it spawns a short and a long hog and yields behind
  // them, so that it sits in a busy worker's queue while the other worker,
  // done with whichever hog it stole, comes to steal it. Every observation
  // pairs worker_id() with the OS thread actually running; if "current worker"
  // were cached across a switch, a pair would disagree.
  std::set<std::size_t> seen_workers;
  std::map<std::size_t, std::thread::id> thread_of_worker;
  bool consistent = true;
  green::run(
      [&] {
        auto observer = green::spawn([&] {
          const auto deadline = Clock::now() + 10s;
          while (seen_workers.size() < 2 && Clock::now() < deadline) {
            for (auto busy : {10ms, 30ms}) {
              green::spawn_n([busy] {
                const auto until = Clock::now() + busy;
                while (Clock::now() < until) {
                }
              });
            }
            green::sleep(0ms);
            const std::size_t worker = green::worker_id();
            const auto thread = std::this_thread::get_id();
            auto [it, inserted] = thread_of_worker.emplace(worker, thread);
            if (it->second != thread) consistent = false;
            seen_workers.insert(worker);
          }
        });
        observer.wait();
      },
      with_workers(2));
  CHECK(seen_workers.size() == 2);
  CHECK(consistent);
  std::set<std::thread::id> threads;
  for (auto& [worker, thread] : thread_of_worker) threads.insert(thread);
  CHECK(threads.size() == thread_of_worker.size());
}

TEST_CASE("work made runnable while a worker is busy wakes a parked worker",
          "[scheduler]") {
  // A hog holds one worker for a second without yielding; the other worker
  // is parked. A plain OS thread then spawns a probe: it must start at once
  // on the parked worker, not wait behind the hog.
  std::chrono::nanoseconds latency{};
  green::run(
      [&] {
        green::testing::Signal hog_started, probe_done;
        auto hog = green::spawn([&] {
          hog_started.post();
          const auto until = Clock::now() + 1s;
          while (Clock::now() < until) {
          }
        });
        std::thread os_thread([&] {
          hog_started.wait();
          const auto spawned = Clock::now();
          auto probe = green::spawn([] { return Clock::now(); });
          latency = probe.wait() - spawned;
          probe_done.post();
        });
        probe_done.wait();
        os_thread.join();
        hog.wait();
      },
      with_workers(2));
  CHECK(latency < 250ms);
}

TEST_CASE("park/wake ping-pong across workers", "[scheduler][stress]") {
  const std::size_t workers = GENERATE(2, 4);
  constexpr int kPairs = 8;
  const int rounds = 2000 / kScale;
  std::atomic<long> exchanges{0};
  green::run(
      [&] {
        std::vector<green::GreenThread<void>> threads;
        std::vector<std::unique_ptr<green::testing::Signal[]>> signals;
        for (int p = 0; p < kPairs; ++p) {
          signals.push_back(std::make_unique<green::testing::Signal[]>(2));
          auto* pair = signals.back().get();
          threads.push_back(green::spawn([&, pair] {
            for (int r = 0; r < rounds; ++r) {
              pair[0].post();
              pair[1].wait();
              exchanges.fetch_add(1, std::memory_order_relaxed);
            }
          }));
          threads.push_back(green::spawn([&, pair] {
            for (int r = 0; r < rounds; ++r) {
              pair[0].wait();
              pair[1].post();
            }
          }));
        }
        for (auto& t : threads) t.wait();
      },
      with_workers(workers));
  CHECK(exchanges.load() == long{kPairs} * rounds);
}

TEST_CASE("timeouts racing with posts lose nothing", "[scheduler][stress]") {
  // Producers (green and plain OS threads) post units; consumers wait with
  // tiny timeouts so that expiry and hand-over race constantly. Every unit
  // posted is consumed exactly once: none lost to a waiter that timed out
  // at the moment it was handed one.
  const std::size_t workers = GENERATE(1, 2, 4);
  const long per_producer = 20000 / kScale;
  constexpr int kGreenProducers = 2;
  constexpr int kThreadProducers = 2;
  constexpr int kConsumers = 8;
  const long total = per_producer * (kGreenProducers + kThreadProducers);
  std::atomic<long> consumed{0};
  std::atomic<long> timeouts{0};
  green::run(
      [&] {
        green::testing::Signal units;
        std::vector<green::GreenThread<void>> threads;
        for (int c = 0; c < kConsumers; ++c) {
          threads.push_back(green::spawn([&, c] {
            std::minstd_rand random(c + 1);
            while (consumed.load(std::memory_order_relaxed) < total) {
              const auto timeout = std::chrono::microseconds(random() % 50);
              if (units.wait(timeout)) {
                consumed.fetch_add(1, std::memory_order_relaxed);
              } else {
                timeouts.fetch_add(1, std::memory_order_relaxed);
              }
            }
          }));
        }
        for (int p = 0; p < kGreenProducers; ++p) {
          threads.push_back(green::spawn([&] {
            for (long i = 0; i < per_producer; ++i) {
              units.post();
              if (i % 64 == 0) green::sleep(0ms);
            }
          }));
        }
        std::vector<std::thread> os_producers;
        for (int p = 0; p < kThreadProducers; ++p) {
          os_producers.emplace_back([&] {
            for (long i = 0; i < per_producer; ++i) units.post();
          });
        }
        for (auto& t : threads) t.wait();
        for (auto& t : os_producers) t.join();
        CHECK(units.count() == 0);
      },
      with_workers(workers));
  CHECK(consumed.load() == total);
  CHECK(timeouts.load() > 0);  // the race was really exercised
}

TEST_CASE("100,000 sleepers of 50 ms end within seconds", "[scheduler]") {
  const int count = 100000 / kLiveScale;
  std::atomic<int> woke{0};
  const auto start = Clock::now();
  green::run(
      [&] {
        std::vector<green::GreenThread<void>> sleepers;
        sleepers.reserve(count);
        for (int i = 0; i < count; ++i) {
          sleepers.push_back(green::spawn([&woke] {
            green::sleep(50ms);
            woke.fetch_add(1, std::memory_order_relaxed);
          }));
        }
        for (auto& s : sleepers) s.wait();
      },
      with_workers(2));
  const auto elapsed = Clock::now() - start;
  CHECK(woke.load() == count);
  CHECK(elapsed >= 50ms);
  CHECK(elapsed < 20s);
}

TEST_CASE("timers fire on time while a backlog of green threads waits",
          "[scheduler]") {
  // A busy worker must still poll its reactor: a sleeper's timer fires
  // while 50,000 short CPU-bound green threads wait in the global queue,
  // not after all of them ran (the global-queue check once starved the
  // reactor when both fell due on the same round).
  std::chrono::nanoseconds ticker_took{}, backlog_took{};
  green::run(
      [&] {
        const auto start = Clock::now();
        std::vector<green::GreenThread<void>> backlog;
        for (int i = 0; i < 50000; ++i) {
          backlog.push_back(green::spawn([] {
            const auto until = Clock::now() + 10us;
            while (Clock::now() < until) {
            }
          }));
        }
        auto ticker = green::spawn([] {
          for (int i = 0; i < 10; ++i) green::sleep(1ms);
        });
        ticker.wait();
        ticker_took = Clock::now() - start;
        for (auto& t : backlog) t.wait();
        backlog_took = Clock::now() - start;
      },
      with_workers(1));
  CHECK(backlog_took > 400ms);
  CHECK(ticker_took < backlog_took / 2);
}

TEST_CASE("sleepers wake in deadline order, early wakes unlink timers",
          "[scheduler]") {
  // One worker: its timer heap expires due deadlines in order, and the
  // wakes run FIFO, so the order of wake-ups is the order of deadlines,
  // whatever the order of the calls.
  std::vector<int> order;
  std::vector<bool> waited_in_time;
  green::run(
      [&] {
        std::vector<int> delays(100);
        for (int i = 0; i < 100; ++i) delays[i] = 2 * i + 1;
        std::shuffle(delays.begin(), delays.end(), std::mt19937(7));
        // Deadlines from one base, so that slow spawning (TSan) does not
        // reorder them.
        const auto base = Clock::now() + 300ms;
        std::vector<green::GreenThread<void>> sleepers;
        for (int delay : delays) {
          sleepers.push_back(green::spawn([&order, base, delay] {
            green::sleep(base + std::chrono::milliseconds(delay) -
                         Clock::now());
            order.push_back(delay);  // one worker: no race
          }));
        }
        // Waits that end early, by an event, must take their timers out of
        // the heap: the timers would otherwise fire into green threads
        // that have finished (ASan) or wake them spuriously later.
        green::Event<void> early;
        std::vector<green::GreenThread<bool>> waiters;
        for (int i = 0; i < 50; ++i) {
          waiters.push_back(
              green::spawn([&early] { return early.wait(100ms); }));
        }
        green::yield();  // let the waiters park
        early.send();
        for (auto& w : waiters) waited_in_time.push_back(w.wait());
        for (auto& s : sleepers) s.wait();
        green::sleep(150ms);  // past the cancelled deadlines
      },
      with_workers(1));
  std::vector<int> sorted = order;
  std::sort(sorted.begin(), sorted.end());
  CHECK(order.size() == 100);
  CHECK(order == sorted);
  CHECK(std::count(waited_in_time.begin(), waited_in_time.end(), true) == 50);
}

TEST_CASE("an idle runtime burns no CPU", "[scheduler]") {
  double used = 0;
  green::run(
      [&] {
        const double before = process_cpu_seconds();
        green::sleep(1s);
        used = process_cpu_seconds() - before;
      },
      with_workers(2));
  // Parked workers block in epoll; a busy-polling runtime would use ~2 s.
  CHECK(used < 0.1);
}

TEST_CASE("shutdown kills green threads still blocked and unwinds them",
          "[scheduler]") {
  std::atomic<int> unwound{0};
  green::testing::Signal never;  // outlives the runtime: waiters link in
  green::testing::Signal started;
  const auto start = Clock::now();
  green::run(
      [&] {
        for (int i = 0; i < 100; ++i) {
          green::spawn_n([&] {
            CountOnUnwind guard{&unwound};
            started.post();
            green::sleep(1h);
          });
          green::spawn_n([&] {
            CountOnUnwind guard{&unwound};
            started.post();
            never.wait();  // blocked on a wait list, not a timer
          });
        }
        for (int i = 0; i < 200; ++i) started.wait();
      },
      with_workers(2));
  CHECK(unwound.load() == 200);
  CHECK(Clock::now() - start < 5s);
}

TEST_CASE("shutdown kills green threads that first block or only yield",
          "[scheduler]") {
  // A green thread joins the registry shutdown sweeps only when it first
  // blocks or yields (runtime/scheduler.h). One that only ever yields must
  // be killed; so must one that neither blocked nor yielded before
  // shutdown began and blocks only then -- at once, not after a sweep.
  std::atomic<int> unwound{0};
  std::atomic<int> yielders{0};
  std::atomic<bool> busy{false};
  std::atomic<bool> main_done{false};
  const auto start = Clock::now();
  green::run(
      [&] {
        for (int i = 0; i < 2; ++i) {
          green::spawn_n([&] {
            CountOnUnwind guard{&unwound};
            yielders.fetch_add(1);
            for (;;) green::yield();
          });
        }
        green::spawn_n([&] {
          CountOnUnwind guard{&unwound};
          busy = true;
          // Holds its worker (no yield, no block) until main is gone.
          while (!main_done.load()) std::this_thread::yield();
          green::sleep(1h);
        });
        // Yielding lets idle workers take us from a worker the busy one
        // holds.
        while (yielders.load() < 2 || !busy.load()) green::yield();
        main_done = true;
      },
      with_workers(4));
  CHECK(unwound.load() == 3);
  CHECK(Clock::now() - start < 5s);
}
