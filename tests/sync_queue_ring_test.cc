// Bounded FIFO queues (Queue(n), LightQueue(n), 2 <= n <= 65,536) keep
// their items in a lock-free ring (sync/bounded_ring.h) and take the lock
// only when somebody waits. These tests pin what that must not change:
// the bound, FIFO order among items, task counts, the destruction
// guarantee, and resize() retiring the ring mid-flight. (FIFO order among
// waiters: sync_queue_test, at capacities 1 and 2.)
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "green/green.h"
#include "tests/test_support.h"

using green::testing::eventually;
using green::testing::kScale;
using green::testing::with_workers;

using namespace std::chrono_literals;

TEST_CASE("ring queue: the bound, FIFO order and task counts hold",
          "[queue][ring]") {
  green::run([] {
    green::Queue<std::string> q(3);
    CHECK(q.try_put("a"));
    CHECK(q.try_put(std::string("b")));
    CHECK(q.try_put("c"));
    std::string d = "d";
    CHECK_FALSE(q.try_put(std::move(d)));
    CHECK(d == "d");  // unmoved
    CHECK(q.full());
    CHECK(q.qsize() == 3);
    CHECK(q.unfinished_tasks() == 3);
    CHECK_FALSE(q.put("e", 1ms));
    CHECK(q.try_get() == std::optional<std::string>("a"));
    CHECK_FALSE(q.full());
    CHECK(q.get() == "b");
    CHECK(q.get(1s) == std::optional<std::string>("c"));
    CHECK_FALSE(q.try_get());
    CHECK_FALSE(q.get(1ms));
    CHECK(q.empty());
    for (int i = 0; i < 3; ++i) q.task_done();
    CHECK(q.unfinished_tasks() == 0);
    CHECK_THROWS_AS(q.task_done(), std::logic_error);
    CHECK(q.join(0ns));

    // Move-only items, wrapping around the ring many times.
    green::LightQueue<std::unique_ptr<int>> ring(5);  // not a power of two
    for (int i = 0; i < 100; ++i) {
      ring.put(std::make_unique<int>(i));
      if (i % 3 == 2) {
        for (int j = i - 2; j <= i; ++j) CHECK(*ring.get() == j);
      }
    }
    CHECK(*ring.get() == 99);
  });
}

TEST_CASE("ring queue: the getter may destroy the queue once get returns",
          "[queue][ring]") {
  // The putter's last touch of the queue is the store that publishes its
  // item (or its unlock); ASan reports a use-after-free otherwise. Both
  // orders: the item first (lock-free path), the getter first (parked).
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 2000 / kScale; ++round) {
          auto* q = new green::Queue<int>(2);
          if (round % 2) {
            green::spawn_n([q, round] { q->put(round); });
            CHECK(q->get() == round);
          } else {
            auto getter = green::spawn([q] { return q->get(); });
            green::spawn_n([q, round] { q->put(round); });
            CHECK(getter.wait() == round);
          }
          delete q;
        }
        // From a plain OS thread too.
        for (int round = 0; round < 200 / kScale; ++round) {
          auto* q = new green::LightQueue<int>(4);
          std::thread putter([q, round] { q->put(round); });
          CHECK(q->get() == round);
          delete q;
          putter.join();
        }
      },
      with_workers(workers));
}

TEST_CASE("ring queue: resize while busy loses nothing and keeps order",
          "[queue][ring]") {
  // resize() retires the ring while green and OS-thread producers and
  // green consumers race through it; every item arrives exactly once, and
  // each producer's items reach each consumer in order.
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kProducers = 3;  // the last one a plain OS thread
  constexpr int kConsumers = 3;
  const std::int64_t per_producer = 20'000 / kScale;
  const std::int64_t total = per_producer * kProducers;
  auto seen = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  std::atomic<int> out_of_order{0};
  green::run(
      [&] {
        green::Queue<std::int64_t> q(8);
        std::vector<green::GreenThread<void>> consumers;
        for (int c = 0; c < kConsumers; ++c) {
          consumers.push_back(green::spawn([&] {
            std::int64_t last[kProducers] = {-1, -1, -1};
            for (;;) {
              const std::int64_t item = q.get();
              if (item < 0) return;
              const auto producer = static_cast<int>(item / per_producer);
              if (item <= last[producer]) out_of_order.fetch_add(1);
              last[producer] = item;
              seen[item].fetch_add(1, std::memory_order_relaxed);
            }
          }));
        }
        auto produce = [&](int p) {
          for (std::int64_t i = 0; i < per_producer; ++i) {
            q.put(p * per_producer + i);
          }
        };
        std::vector<green::GreenThread<void>> producers;
        for (int p = 0; p < kProducers - 1; ++p) {
          producers.push_back(green::spawn(produce, p));
        }
        std::thread os_producer(produce, kProducers - 1);
        // Retire the ring once items are flowing, then change the bound
        // again in buffer mode.
        REQUIRE(eventually([&] { return q.unfinished_tasks() > 100; }));
        q.resize(3);
        CHECK(q.maxsize() == std::optional<std::size_t>(3));
        green::sleep(1ms);
        q.resize(std::nullopt);
        for (auto& p : producers) p.wait();
        os_producer.join();
        for (int c = 0; c < kConsumers; ++c) q.put(-1);
        for (auto& c : consumers) c.wait();
        CHECK(q.empty());
        CHECK(q.getting() == 0);
        CHECK(q.putting() == 0);
      },
      with_workers(workers));
  CHECK(out_of_order.load() == 0);
  std::int64_t exactly_once = 0;
  for (std::int64_t i = 0; i < total; ++i) exactly_once += seen[i].load() == 1;
  CHECK(exactly_once == total);
}

TEST_CASE("ring queue: a full queue parks its putters until room is made",
          "[queue][ring]") {
  // Producers on other workers outrun one slow consumer: they park on the
  // full ring and are let in, in order, as it drains.
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<int> q(4);
        constexpr int kItems = 2000;
        auto producer = green::spawn([&] {
          for (int i = 0; i < kItems; ++i) q.put(i);
        });
        REQUIRE(eventually([&] { return q.putting() == 1; }));
        CHECK(q.qsize() == 4);
        for (int i = 0; i < kItems; ++i) {
          REQUIRE(q.get() == i);
          if (i % 500 == 0) green::sleep(1ms);  // the producer catches up
        }
        producer.wait();
        CHECK(q.empty());
      },
      with_workers(workers));
}

TEST_CASE("ring queue: a two-cell ring under mixed OS and green threads",
          "[queue][ring]") {
  // The smallest ring keeps it full or empty nearly all the time, so
  // callers park and lock-free calls complete under the lock as often as
  // they can. Every item arrives exactly once and nobody is left parked
  // (a lost wake-up hangs here).
  const std::size_t workers = GENERATE(1, 2, 4);
  constexpr int kGreenProducers = 2, kOsProducers = 2;
  constexpr int kGreenConsumers = 3, kOsConsumers = 1;
  constexpr int kProducers = kGreenProducers + kOsProducers;
  const std::int64_t per_producer = 20'000 / kScale;
  const std::int64_t total = per_producer * kProducers;
  auto seen = std::make_unique<std::atomic<std::uint8_t>[]>(total);
  green::run(
      [&] {
        green::LightQueue<std::int64_t> q(2);
        auto consume = [&] {
          for (;;) {
            const std::int64_t item = q.get();
            if (item < 0) return;
            seen[item].fetch_add(1, std::memory_order_relaxed);
          }
        };
        auto produce = [&](int p) {
          for (std::int64_t i = 0; i < per_producer; ++i) {
            q.put(p * per_producer + i);
          }
        };
        std::vector<green::GreenThread<void>> consumers, producers;
        std::vector<std::thread> os_consumers, os_producers;
        for (int c = 0; c < kGreenConsumers; ++c) {
          consumers.push_back(green::spawn(consume));
        }
        for (int c = 0; c < kOsConsumers; ++c)
          os_consumers.emplace_back(consume);
        for (int p = 0; p < kGreenProducers; ++p) {
          producers.push_back(green::spawn(produce, p));
        }
        for (int p = kGreenProducers; p < kProducers; ++p) {
          os_producers.emplace_back(produce, p);
        }
        for (auto& p : producers) p.wait();
        for (auto& p : os_producers) p.join();
        // Every item is in; one stop for each consumer.
        for (int c = 0; c < kGreenConsumers + kOsConsumers; ++c) q.put(-1);
        for (auto& c : consumers) c.wait();
        for (auto& c : os_consumers) c.join();
        CHECK(q.empty());
        CHECK(q.getting() == 0);
        CHECK(q.putting() == 0);
      },
      with_workers(workers));
  std::int64_t exactly_once = 0;
  for (std::int64_t i = 0; i < total; ++i) exactly_once += seen[i].load() == 1;
  CHECK(exactly_once == total);
}
