// Queue family: Eventlet's queue_test ported, plus FIFO order, move-only
// items, killed/timed-out waiters, and OS threads on either end. Every
// test sweeps 1, 2 and 4 workers.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
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

TEST_CASE("queue: put then get - and a getter woken by a later put",
          "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<std::string> q;
        q.put("hi");
        CHECK(q.get() == "hi");

        auto getter = green::spawn(
            [&] { return green::with_timeout(5s, [&] { return q.get(); }); });
        REQUIRE(eventually([&] { return q.getting() == 1; }));
        q.put("hi2");
        CHECK(getter.wait() == "hi2");
        CHECK(q.getting() == 0);
      },
      with_workers(workers));
}

TEST_CASE("queue: a bounded queue blocks its putter while full", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<std::string> q(2);
        CHECK(q.maxsize() == std::optional<std::size_t>(2));
        std::atomic<int> put_count{0};
        auto putter = green::spawn([&] {
          for (const char* s : {"a", "b", "c"}) {
            q.put(s);
            put_count.fetch_add(1);
          }
        });
        REQUIRE(eventually([&] { return q.putting() == 1; }));
        CHECK(put_count.load() == 2);
        CHECK(q.full());
        CHECK(q.qsize() == 2);
        CHECK(q.get() == "a");  // lets the putter's "c" in
        REQUIRE(eventually([&] { return put_count.load() == 3; }));
        CHECK(q.qsize() == 2);
        CHECK(q.get() == "b");
        CHECK(q.get() == "c");
        putter.wait();
        CHECK(q.empty());
      },
      with_workers(workers));
}

TEST_CASE("queue: maxsize 0 is a channel: put blocks until a get", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<std::string> q(0);
        CHECK(q.full());
        CHECK(q.empty());
        // Nobody gets: the put cannot complete.
        CHECK_FALSE(q.put("lost", 20ms));
        CHECK_FALSE(q.try_put("lost"));
        CHECK_FALSE(q.try_get());

        green::Event<std::string> sent;
        auto sender = green::spawn([&] {
          q.put("hi");
          sent.send("done");
        });
        REQUIRE(eventually([&] { return q.putting() == 1; }));
        CHECK_FALSE(sent.ready());
        CHECK(q.qsize() == 0);  // the item stays in the putter's hands
        auto receiver = green::spawn([&] { return q.get(); });
        CHECK(receiver.wait() == "hi");
        CHECK(sent.wait() == "done");
        sender.wait();
      },
      with_workers(workers));
}

TEST_CASE("queue: channel with waiting getters - try_put hands over",
          "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<int> c(0);
        std::vector<green::GreenThread<int>> getters;
        for (int i = 0; i < 3; ++i) {
          getters.push_back(green::spawn([&] { return c.get(); }));
        }
        REQUIRE(eventually([&] { return c.getting() == 3; }));
        CHECK(c.try_put(1));  // a getter waits: the put completes at once
        std::vector<green::GreenThread<void>> putters;
        for (int i = 2; i <= 3; ++i) {
          putters.push_back(green::spawn([&, i] { c.put(i); }));
        }
        for (auto& p : putters) p.wait();
        CHECK(c.getting() == 0);
        std::vector<int> results;
        for (auto& g : getters) results.push_back(g.wait());
        std::sort(results.begin(), results.end());
        CHECK(results == std::vector<int>{1, 2, 3});
      },
      with_workers(workers));
}

TEST_CASE("queue: try_get takes from a blocked channel putter", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<int> q(0);
        auto putter = green::spawn([&] { q.put(5); });
        REQUIRE(eventually([&] { return q.putting() == 1; }));
        CHECK(q.empty());
        CHECK(q.full());
        CHECK(q.try_get() == std::optional<int>(5));
        putter.wait();
        CHECK(q.empty());
        CHECK(q.putting() == 0);
      },
      with_workers(workers));
}

TEST_CASE("queue: resize up unblocks putters - down drops nothing", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (std::optional<std::size_t> bigger :
             {std::optional<std::size_t>(1), std::optional<std::size_t>()}) {
          green::Queue<std::string> q(0);
          green::Event<void> sent;
          auto sender = green::spawn([&] {
            q.put("hi");
            sent.send();
          });
          REQUIRE(eventually([&] { return q.putting() == 1; }));
          CHECK_FALSE(sent.ready());
          q.resize(bigger);
          CHECK(sent.wait(5s));
          CHECK(q.qsize() == 1);
          CHECK(q.maxsize() == bigger);
          sender.wait();
        }

        green::Queue<int> q(5);
        for (int i = 0; i < 5; ++i) q.put(i);
        q.resize(1);
        CHECK(q.qsize() == 5);
        CHECK_FALSE(q.try_put(5));
        for (int i = 0; i < 5; ++i) CHECK(q.get() == i);
        CHECK(q.try_put(5));
        CHECK_FALSE(q.try_put(6));
      },
      with_workers(workers));
}

TEST_CASE("queue: getters and putters are served in FIFO order", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  // 2: the lock-free ring of bounded queues (sync/bounded_ring.h); 1: the
  // locked buffer.
  const int capacity = GENERATE(1, 2);
  constexpr int kWaiters = 8;
  green::run(
      [capacity] {
        green::Queue<int> q(capacity);
        std::vector<green::GreenThread<int>> getters;
        for (int i = 0; i < kWaiters; ++i) {
          getters.push_back(green::spawn([&] { return q.get(); }));
          // Each is linked before the next one starts.
          REQUIRE(eventually([&] { return q.getting() == i + 1u; }));
        }
        for (int i = 0; i < kWaiters; ++i) q.put(i);
        for (int i = 0; i < kWaiters; ++i) CHECK(getters[i].wait() == i);
        CHECK(q.empty());

        for (int f = -capacity; f < 0; ++f) q.put(f);   // now full: putters
        std::vector<green::GreenThread<void>> putters;  // queue up
        for (int i = 0; i < kWaiters; ++i) {
          putters.push_back(green::spawn([&, i] { q.put(i); }));
          REQUIRE(eventually([&] { return q.putting() == i + 1u; }));
        }
        for (int f = -capacity; f < 0; ++f) CHECK(q.get() == f);
        for (int i = 0; i < kWaiters; ++i) CHECK(q.get() == i);
        for (auto& p : putters) p.wait();
        CHECK(q.unfinished_tasks() == std::size_t(kWaiters * 2 + capacity));
      },
      with_workers(workers));
}

TEST_CASE("queue: a getter that times out loses nothing", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<std::string> q;
        // Eventlet's do_bail: Timeout(0, RuntimeError) around get().
        auto bail = [&]() -> std::string {
          green::Timeout t(0ns, std::runtime_error("bail"));
          try {
            return q.get();
          } catch (const std::runtime_error&) {
            return "timed out";
          }
        };
        CHECK(green::spawn(bail).wait() == "timed out");
        q.put("hi");
        CHECK(q.get() == "hi");

        // Two bogus waiters, then a put: the item stays in the queue.
        auto b1 = green::spawn(bail);
        auto b2 = green::spawn(bail);
        CHECK(b1.wait() == "timed out");
        CHECK(b2.wait() == "timed out");
        q.put("sent");
        CHECK(q.get() == "sent");

        // get(timeout): empty on expiry, then works.
        const auto start = Clock::now();
        CHECK_FALSE(q.get(20ms));
        CHECK(Clock::now() - start >= 20ms);
        q.put("later");
        CHECK(q.get(1s) == std::optional<std::string>("later"));
        CHECK(q.getting() == 0);
      },
      with_workers(workers));
}

TEST_CASE("queue: two waiters - one dies - the other gets the item",
          "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<std::string> q;
        auto dying = green::spawn([&]() -> std::string {
          auto got = q.get(1ms);
          return got ? *got : "timed out";
        });
        auto waiting = green::spawn([&] { return q.get(); });
        CHECK(dying.wait() == "timed out");
        REQUIRE(eventually([&] { return q.getting() == 1; }));
        q.put("hi");
        CHECK(waiting.wait() == "hi");
      },
      with_workers(workers));
}

TEST_CASE("queue: killed waiters leave the queue consistent", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<int> q(1);
        auto getter = green::spawn([&] { return q.get(); });
        REQUIRE(eventually([&] { return q.getting() == 1; }));
        getter.kill();
        CHECK_THROWS_AS(getter.wait(), green::GreenletExit);
        CHECK(q.getting() == 0);
        q.put(1);  // buffered, not handed to the dead getter
        CHECK(q.qsize() == 1);

        auto putter = green::spawn([&] { q.put(2); });  // full: blocks
        REQUIRE(eventually([&] { return q.putting() == 1; }));
        putter.kill();
        CHECK(q.putting() == 0);
        CHECK(q.get() == 1);
        CHECK_FALSE(q.try_get());  // the killed putter's 2 never went in
      },
      with_workers(workers));
}

TEST_CASE("queue: try_put and try_get never block", "[queue]") {
  green::run([] {
    green::Queue<int> q(1);
    CHECK(q.try_put(2));
    CHECK_FALSE(q.try_put(3));
    CHECK(q.try_get() == std::optional<int>(2));
    CHECK_FALSE(q.try_get());
    CHECK_FALSE(q.get(0ns));
    CHECK_FALSE(q.get(-1s));
  });
}

TEST_CASE("queue: task_done and join", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        green::Queue<int> empty;
        empty.join();  // nothing put: returns at once
        CHECK_THROWS_AS(empty.task_done(), std::logic_error);

        green::Queue<int> channel(0);
        auto putter = green::spawn([&] { channel.put(7); });
        CHECK(channel.get() == 7);
        CHECK(channel.unfinished_tasks() == 1);
        channel.task_done();
        CHECK(channel.unfinished_tasks() == 0);
        putter.wait();

        green::Queue<int> q;
        std::atomic<int> processed{0};
        for (int i = 0; i < 10; ++i) q.put(i);
        CHECK_FALSE(q.join(1ms));
        std::vector<green::GreenThread<void>> consumers;
        for (int w = 0; w < 3; ++w) {
          consumers.push_back(green::spawn([&] {
            for (;;) {
              int item = q.get();
              if (item < 0) return;
              processed.fetch_add(1);
              q.task_done();
            }
          }));
        }
        q.join();
        CHECK(processed.load() == 10);
        for (int w = 0; w < 3; ++w) q.put(-1);
        for (auto& c : consumers) c.wait();
      },
      with_workers(workers));
}

TEST_CASE("queue: move-only items - unmoved when a put fails", "[queue]") {
  green::run([] {
    green::Queue<std::unique_ptr<int>> q(1);
    q.put(std::make_unique<int>(1));
    auto two = std::make_unique<int>(2);
    CHECK_FALSE(q.try_put(std::move(two)));
    REQUIRE(two != nullptr);  // still ours
    CHECK_FALSE(q.put(std::move(two), 1ms));
    REQUIRE(two != nullptr);
    CHECK(*q.get() == 1);
    CHECK(q.try_put(std::move(two)));
    CHECK(two == nullptr);
    CHECK(*q.get() == 2);

    // Through a channel, from a green thread to another.
    green::Queue<std::unique_ptr<int>> channel(0);
    auto getter = green::spawn([&] { return *channel.get(); });
    channel.put(std::make_unique<int>(3));
    CHECK(getter.wait() == 3);
  });
}

TEST_CASE("queue: PriorityQueue - LifoQueue - LightQueue", "[queue]") {
  green::run([] {
    green::PriorityQueue<int> pq;
    for (int v : {5, 1, 4, 2, 3}) pq.put(v);
    for (int v = 1; v <= 5; ++v) CHECK(pq.get() == v);

    green::PriorityQueue<int, std::greater<int>> max_first;
    for (int v : {5, 1, 4, 2, 3}) max_first.put(v);
    for (int v = 5; v >= 1; --v) CHECK(max_first.get() == v);

    green::PriorityQueue<std::unique_ptr<int>,
                         bool (*)(const std::unique_ptr<int>&,
                                  const std::unique_ptr<int>&)>
        by_value;
    (void)by_value;  // compiles with move-only items and a custom order

    green::LifoQueue<int> lifo;
    for (int v = 0; v < 5; ++v) lifo.put(v);
    for (int v = 4; v >= 0; --v) CHECK(lifo.get() == v);
    CHECK(lifo.unfinished_tasks() == 5);
    for (int v = 0; v < 5; ++v) lifo.task_done();
    lifo.join();

    green::LightQueue<std::string> light;
    CHECK(light.maxsize() == std::nullopt);
    CHECK_FALSE(light.full());
    for (int i = 0; i < 1000; ++i) light.put(std::to_string(i));
    CHECK(light.qsize() == 1000);
    for (int i = 0; i < 1000; ++i) CHECK(light.get() == std::to_string(i));
  });
}

TEST_CASE("queue: plain OS threads on either end", "[queue]") {
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        // An OS thread blocks in get() until a green thread puts.
        green::Queue<int> to_thread(0);
        green::Queue<int> to_green(0);
        // Catch2's assertions are not thread-safe: the OS thread only
        // records, the green thread checks.
        std::atomic<bool> timed_out{false};
        std::thread os([&] {
          for (int i = 0; i < 100; ++i) to_green.put(to_thread.get() + 1);
          timed_out = !to_thread.get(1ms);  // and times out, too
        });
        int wrong = 0;
        for (int i = 0; i < 100; ++i) {
          to_thread.put(i);
          wrong += to_green.get() != i + 1;
        }
        os.join();
        CHECK(wrong == 0);
        CHECK(timed_out.load());
      },
      with_workers(workers));

  // With no green thread at all, two OS threads.
  green::Queue<int> q(1);
  std::thread producer([&] {
    for (int i = 0; i < 1000; ++i) q.put(i);
  });
  long sum = 0;
  for (int i = 0; i < 1000; ++i) sum += q.get();
  producer.join();
  CHECK(sum == 999 * 1000 / 2);
}

TEST_CASE("queue: a joiner may destroy the queue as soon as join returns",
          "[queue]") {
  // join() returns only once the last task_done() has let go of the queue.
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 200; ++round) {
          auto* q = new green::Queue<int>;
          q->put(round);
          green::spawn_n([q] {
            q->get();
            q->task_done();
          });
          q->join();
          CHECK(q->unfinished_tasks() == 0);
          delete q;
        }
      },
      with_workers(workers));
}

TEST_CASE("queue: the last task_done may destroy the queue it completes",
          "[queue]") {
  // join() returns without touching the queue once told all is done, so
  // the green thread calling the last task_done() may delete it (ASan
  // reports a use-after-free otherwise).
  const std::size_t workers = GENERATE(1, 2, 4);
  green::run(
      [] {
        for (int round = 0; round < 50; ++round) {
          auto* q = new green::Queue<int>;
          q->put(round);
          auto joiner = green::spawn([q] { q->join(); });
          CHECK(q->get() == round);
          // The joiner must be parked in join() before the last task_done.
          REQUIRE(eventually([&] { return q->joining() == 1; }));
          q->task_done();
          delete q;
          joiner.wait();
        }
      },
      with_workers(workers));
}

TEST_CASE("queue: the ring buffer keeps FIFO order across wrap and growth",
          "[queue]") {
  // Counts live items, so that a leak or a double destruction shows.
  static int live = 0;
  struct Item {
    explicit Item(int v) : value(std::make_unique<int>(v)) { ++live; }
    Item(Item&& other) noexcept : value(std::move(other.value)) { ++live; }
    ~Item() { --live; }
    std::unique_ptr<int> value;  // move-only
  };
  {
    green::detail::RingBuffer<Item> ring;
    int next_in = 0, next_out = 0;
    // Push and pop at different rates so the head walks around the ring
    // while it grows from 16 to 256 slots.
    for (int round = 0; round < 200; ++round) {
      for (int i = 0; i < 3; ++i) ring.push(Item(next_in++));
      for (int i = 0; i < 2; ++i) {
        REQUIRE(*ring.pop().value == next_out++);
      }
    }
    CHECK(ring.size() == static_cast<std::size_t>(next_in - next_out));
    CHECK(live == next_in - next_out);
    for (int i = 0; i < 50; ++i) REQUIRE(*ring.pop().value == next_out++);
  }  // the other 150 items are destroyed with the ring
  CHECK(live == 0);
}

TEST_CASE(
    "queue: a buffer that cannot grow leaves putters waiting - loses nothing",
    "[queue]") {
  // resize() lets parked putters in; when the buffer cannot grow for them
  // (here: a copy that throws, standing in for bad_alloc), they must stay
  // parked with their items rather than be told they are in.
  static bool fail_copies = false;
  struct Flaky {
    explicit Flaky(int v) : value(v) {}
    Flaky(const Flaky& other) : value(other.value) {
      if (fail_copies) throw std::bad_alloc();
    }
    Flaky(Flaky&& other) noexcept(false) : value(other.value) {}  // so the
    Flaky& operator=(Flaky&&) = default;  // buffer grows by copying
    Flaky& operator=(const Flaky&) = default;
    int value;
  };
  green::run([] {
    green::Queue<Flaky> q(16);  // not nothrow-movable: the locked buffer
    for (int i = 0; i < 16; ++i) q.put(Flaky(i));
    std::vector<green::GreenThread<void>> putters;
    for (int i = 16; i < 18; ++i) {
      putters.push_back(green::spawn([&q, i] { q.put(Flaky(i)); }));
      REQUIRE(eventually([&] { return q.putting() == std::size_t(i - 15); }));
    }
    fail_copies = true;
    q.resize(32);  // room now, but the buffer cannot grow to take them
    CHECK(q.putting() == 2);
    CHECK(q.qsize() == 16);
    CHECK_FALSE(q.try_put(Flaky(99)));  // no passing the parked putters
    fail_copies = false;
    for (int i = 0; i < 18; ++i) CHECK(q.get().value == i);
    for (auto& p : putters) p.wait();
    CHECK(q.empty());
    CHECK(q.unfinished_tasks() == 18);
  });
}
