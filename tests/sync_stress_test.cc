// Bounded stress across workers and OS threads: items moved through a
// Queue from plain std::threads to green threads with no loss, duplicate or
// reordering; timeouts, Timeouts and kills racing with puts and gets lose
// nothing; semaphores keep their count under timeouts. Counts shrink under
// sanitizers so each configuration stays well under a minute.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::with_workers;

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// The 1,000,000-item run keeps its full size under TSan and ASan (the issue
// asks for it under TSan): measured on 2 cores at ~0.15 s per worker count
// plain and ~0.7 s under TSan. The other tests shrink 10x under sanitizers.
using green::testing::kScale;

}  // namespace

TEST_CASE("stress: 4 OS-thread producers - 16 green consumers - no loss",
          "[stress]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kProducers = 4;
  constexpr int kConsumers = 16;
  const std::int64_t total = 1'000'000;
  const std::int64_t per_producer = total / kProducers;
  // One flag per item: a second delivery or a missing one is caught
  // exactly, and the sums double-check it.
  auto seen = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  std::atomic<std::int64_t> received{0};
  std::atomic<std::int64_t> checksum{0};
  std::atomic<int> out_of_order{0};
  const auto start = Clock::now();
  green::run(
      [&] {
        green::Queue<std::int64_t> q(256);
        std::vector<green::GreenThread<void>> consumers;
        for (int c = 0; c < kConsumers; ++c) {
          consumers.push_back(green::spawn([&] {
            std::int64_t last[kProducers] = {-1, -1, -1, -1};
            for (;;) {
              const std::int64_t item = q.get();
              if (item < 0) return;
              const int producer = static_cast<int>(item / per_producer);
              const std::int64_t seq = item % per_producer;
              // The queue is FIFO: one producer's items reach any one
              // consumer in the order they were put.
              if (seq <= last[producer]) out_of_order.fetch_add(1);
              last[producer] = seq;
              seen[item].fetch_add(1, std::memory_order_relaxed);
              checksum.fetch_add(item, std::memory_order_relaxed);
              received.fetch_add(1, std::memory_order_relaxed);
            }
          }));
        }
        std::atomic<int> producers_left{kProducers};
        std::vector<std::thread> producers;
        for (int p = 0; p < kProducers; ++p) {
          producers.emplace_back([&, p] {
            for (std::int64_t i = 0; i < per_producer; ++i) {
              q.put(p * per_producer + i);
            }
            if (producers_left.fetch_sub(1) == 1) {
              for (int c = 0; c < kConsumers; ++c) q.put(-1);
            }
          });
        }
        for (auto& c : consumers) c.wait();
        for (auto& p : producers) p.join();  // done: they sent the stops
        CHECK(q.empty());
        CHECK(q.getting() == 0);
        CHECK(q.putting() == 0);
      },
      with_workers(workers));
  const std::int64_t n = per_producer * kProducers;
  CHECK(received.load() == n);
  CHECK(checksum.load() == n * (n - 1) / 2);
  CHECK(out_of_order.load() == 0);
  std::int64_t exactly_once = 0;
  for (std::int64_t i = 0; i < n; ++i) exactly_once += seen[i].load() == 1;
  CHECK(exactly_once == n);
  CHECK(Clock::now() - start < 60s);
}

TEST_CASE("stress: timeouts and kills racing with puts lose nothing",
          "[stress]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int per_producer = 20'000 / kScale;
  constexpr int kGreenProducers = 2;
  constexpr int kOsProducers = 2;
  constexpr int kConsumers = 12;
  std::atomic<std::int64_t> put_count{0}, put_sum{0};
  std::atomic<std::int64_t> got_count{0}, got_sum{0};
  green::run(
      [&] {
        // A small bound, so putters time out too.
        green::Queue<std::int64_t> q(4);
        auto record_put = [&](std::int64_t v) {
          put_count.fetch_add(1);
          put_sum.fetch_add(v);
        };
        // The item is recorded before the next blocking point, so a kill
        // arriving after get() returned cannot make it vanish.
        auto record_get = [&](std::int64_t v) {
          got_count.fetch_add(1);
          got_sum.fetch_add(v);
        };
        std::atomic<bool> stop{false};
        std::vector<green::GreenThread<void>> consumers;
        for (int c = 0; c < kConsumers; ++c) {
          consumers.push_back(green::spawn([&, c] {
            std::minstd_rand random(c);
            while (!stop.load()) {
              const auto wait = std::chrono::microseconds(random() % 300);
              switch (random() % 3) {
                case 0:  // get with a timeout
                  if (auto v = q.get(wait)) record_get(*v);
                  break;
                case 1: {  // a green::Timeout around a blocking get
                  green::Timeout t(wait);
                  try {
                    record_get(q.get());
                  } catch (const green::Timeout& e) {
                    if (e != t) throw;
                  }
                  break;
                }
                default:
                  if (auto v = q.try_get()) record_get(*v);
                  green::sleep(0ms);
              }
            }
          }));
        }
        // A killer: kills consumers blocked in get and replaces them.
        auto killer = green::spawn([&] {
          std::minstd_rand random(99);
          std::vector<green::GreenThread<void>> replacements;
          while (!stop.load()) {
            green::sleep(std::chrono::microseconds(200 + random() % 500));
            auto victim = green::spawn([&] {
              for (;;) record_get(q.get());
            });
            green::sleep(std::chrono::microseconds(random() % 300));
            victim.kill();
          }
        });
        auto produce = [&](int p, bool green_thread) {
          std::minstd_rand random(1000 + p);
          for (int i = 0; i < per_producer; ++i) {
            const std::int64_t v = std::int64_t(p) * per_producer + i + 1;
            if (random() % 2) {
              q.put(v);
              record_put(v);
            } else if (q.put(v, std::chrono::microseconds(random() % 200))) {
              record_put(v);
            } else if (green_thread) {
              green::sleep(0ms);
            }
          }
        };
        std::vector<green::GreenThread<void>> green_producers;
        for (int p = 0; p < kGreenProducers; ++p) {
          green_producers.push_back(green::spawn(produce, p, true));
        }
        green::Event<void> os_done;
        std::atomic<int> os_left{kOsProducers};
        std::vector<std::thread> os_producers;
        for (int p = 0; p < kOsProducers; ++p) {
          os_producers.emplace_back([&, p] {
            produce(kGreenProducers + p, false);
            if (os_left.fetch_sub(1) == 1) os_done.send();
          });
        }
        for (auto& p : green_producers) p.wait();
        os_done.wait();
        for (auto& p : os_producers) p.join();
        stop = true;
        killer.wait();
        for (auto& c : consumers) c.wait();
        while (auto v = q.try_get()) record_get(*v);  // the leftovers
        CHECK(q.getting() == 0);
        CHECK(q.putting() == 0);
      },
      with_workers(workers));
  CHECK(put_count.load() > 0);
  CHECK(got_count.load() == put_count.load());
  CHECK(got_sum.load() == put_sum.load());
}

TEST_CASE("stress: a channel between OS threads and green threads",
          "[stress]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int rounds = 20'000 / kScale;
  green::run(
      [rounds] {
        green::Queue<int> ping(0), pong(0);
        green::Event<void> done;
        std::thread os([&] {
          for (int i = 0; i < rounds; ++i) pong.put(ping.get() + 1);
          done.send();
        });
        auto relay = green::spawn([&] {
          int v = 0;
          for (int i = 0; i < rounds; ++i) {
            ping.put(v);
            v = pong.get();
          }
          return v;
        });
        CHECK(relay.wait() == rounds);
        done.wait();
        os.join();
      },
      with_workers(workers));
}

TEST_CASE("stress: semaphores and locks under timeouts keep their count",
          "[stress]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  const int iterations = 5'000 / kScale;
  green::run(
      [iterations] {
        constexpr long kUnits = 3;
        green::Semaphore sem(kUnits);
        green::Lock mu;
        std::atomic<int> holding{0};
        std::atomic<int> most{0};
        long guarded = 0;  // guarded by mu
        std::atomic<long> increments{0};
        auto body = [&](int seed) {
          std::minstd_rand random(seed);
          for (int i = 0; i < iterations; ++i) {
            if (sem.acquire(true, std::chrono::microseconds(random() % 100))) {
              const int now = holding.fetch_add(1) + 1;
              int seen = most.load();
              while (now > seen && !most.compare_exchange_weak(seen, now)) {
              }
              holding.fetch_sub(1);
              sem.release();
            }
            if (mu.try_lock_for(std::chrono::microseconds(random() % 100))) {
              ++guarded;
              increments.fetch_add(1);
              mu.unlock();
            }
            if (green::in_green_thread() && random() % 8 == 0) green::yield();
          }
        };
        std::vector<green::GreenThread<void>> threads;
        for (int t = 0; t < 8; ++t) threads.push_back(green::spawn(body, t));
        green::Event<void> os_done;
        std::thread os([&] {
          body(100);
          os_done.send();
        });
        for (auto& t : threads) t.wait();
        os_done.wait();
        os.join();
        CHECK(most.load() <= kUnits);
        CHECK(sem.counter() == kUnits);
        CHECK(sem.balance() == kUnits);
        CHECK_FALSE(mu.locked());
        CHECK(guarded == increments.load());
      },
      with_workers(workers));
}
