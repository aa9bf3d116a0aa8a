// Tests for RunQueue (runtime/run_queue.h) and GlobalQueue
// (runtime/global_queue.h).
//
// Single-threaded tests pin exact behaviour: FIFO order, run-next preference,
// Go's overflow batches, steal counts, wraparound of the uint32 positions.
// The stress tests check the one property that matters under concurrency:
// every item is consumed exactly once. Consumers also write a plain field of
// each item, so under ThreadSanitizer a missing happens-before edge between
// producer and consumer, or a double hand-out, is reported as a race. The
// stress mode uses ring capacity 4 so overflow and steal races happen often.
// 200,000 items per run take ~20 ms plain and ~150 ms under TSan (measured on
// the 2-core dev machine), so no quick mode is needed.
#include "runtime/run_queue.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"
#include "runtime/global_queue.h"

namespace green::detail {
namespace {

struct Item {
  Item* queue_next = nullptr;
  int value = 0;
  // Plain on purpose, like a green thread's saved context: the producer
  // writes `payload` just before each push, the consumer reads it and writes
  // `runs`. Without a happens-before edge through the queue, TSan reports it.
  int payload = -1;
  int runs = 0;
  // Which GlobalQueue list the item joins (a green thread that has run).
  bool started = false;
  bool started_running() const noexcept { return started; }
};

using Global = GlobalQueue<Item>;
using Ring = RunQueue<Item>;
using TinyRing = RunQueue<Item, 4>;  // The stress-mode capacity.

std::vector<Item> make_items(int count) {
  std::vector<Item> items(count);
  for (int i = 0; i < count; ++i) items[i].value = i;
  return items;
}

// Pops everything and returns the values in pop order.
template <typename Queue>
std::vector<int> drain(Queue& queue) {
  std::vector<int> values;
  while (Item* item = queue.pop()) values.push_back(item->value);
  return values;
}

std::vector<int> iota_values(int begin, int end) {
  std::vector<int> values;
  for (int i = begin; i < end; ++i) values.push_back(i);
  return values;
}

TEST_CASE("RunQueue pops in FIFO order", "[run_queue]") {
  Global global;
  Ring queue;
  auto items = make_items(10);
  for (Item& item : items) queue.push_back(&item, global);
  CHECK(queue.size() == 10);
  CHECK(drain(queue) == iota_values(0, 10));
  CHECK(queue.empty());
  CHECK(queue.pop() == nullptr);
  CHECK(global.empty());
}

TEST_CASE("RunQueue prefers the run-next slot", "[run_queue]") {
  Global global;
  Ring queue;
  auto items = make_items(3);
  queue.push_back(&items[0], global);
  queue.push_back(&items[1], global);
  queue.push_next(&items[2], global);
  CHECK(queue.size() == 3);
  CHECK(drain(queue) == std::vector<int>{2, 0, 1});
}

TEST_CASE("peek shows what the next pops will return, in pop order",
          "[run_queue]") {
  Global global;
  Ring queue;
  auto items = make_items(3);
  CHECK(queue.peek(0) == nullptr);
  queue.push_back(&items[0], global);
  queue.push_back(&items[1], global);
  CHECK(queue.peek(0) == &items[0]);
  CHECK(queue.peek(1) == &items[1]);
  CHECK(queue.peek(2) == nullptr);
  queue.push_next(&items[2], global);  // the run-next slot comes first
  for (std::uint32_t ahead = 0; ahead < 4; ++ahead) {
    Item* const expected = ahead < 3 ? &items[(ahead + 2) % 3] : nullptr;
    CHECK(queue.peek(ahead) == expected);
  }
  CHECK(drain(queue) == std::vector<int>{2, 0, 1});  // peek took nothing
}

TEST_CASE("push_next displaces the previous run-next to the back",
          "[run_queue]") {
  Global global;
  Ring queue;
  auto items = make_items(3);
  queue.push_back(&items[0], global);
  queue.push_next(&items[1], global);
  queue.push_next(&items[2], global);
  CHECK(drain(queue) == std::vector<int>{2, 0, 1});
}

TEST_CASE("pop_ring skips the run-next slot", "[run_queue]") {
  Global global;
  Ring queue;
  auto items = make_items(2);
  queue.push_back(&items[0], global);
  queue.push_next(&items[1], global);
  CHECK(queue.pop_ring() == &items[0]);
  CHECK(queue.pop_ring() == nullptr);
  CHECK(queue.size() == 1);
  CHECK(queue.pop() == &items[1]);
  CHECK(queue.empty());
}

TEST_CASE(
    "A full ring moves its older half plus the new item to the global "
    "queue",
    "[run_queue]") {
  Global global;
  TinyRing queue;
  auto items = make_items(20);
  for (Item& item : items) queue.push_back(&item, global);
  // Each overflow moves the 2 oldest of the 4 ring items, then the item being
  // pushed, as Go's runqputslow. Ring items keep FIFO order among themselves
  // (0 1 2 3 5 6 8 9 ...); each batch is FIFO.
  const std::vector<int> expected_global = {0, 1, 4,  2,  3,  7,  5,  6,  10,
                                            8, 9, 13, 11, 12, 16, 14, 15, 19};
  CHECK(global.size() == expected_global.size());
  CHECK(queue.size() == 2);
  CHECK(drain(queue) == std::vector<int>{17, 18});
  CHECK(drain(global) == expected_global);
}

TEST_CASE("push_next overflows through push_back", "[run_queue]") {
  Global global;
  TinyRing queue;
  auto items = make_items(6);
  for (Item& item : items) queue.push_next(&item, global);
  // 5 is run-next; 0..3 filled the ring, then 4 overflowed with 0 and 1.
  CHECK(drain(global) == std::vector<int>{0, 1, 4});
  CHECK(drain(queue) == std::vector<int>{5, 2, 3});
}

TEST_CASE("steal_into takes half, returns one and leaves the rest",
          "[run_queue]") {
  Global global;
  Ring victim;
  Ring thief;
  auto items = make_items(12);
  SECTION("even count: takes 10 - 10 / 2 = 5") {
    for (int i = 0; i < 10; ++i) victim.push_back(&items[i], global);
    victim.push_next(&items[11], global);
    Item* stolen = victim.steal_into(thief, /*take_next=*/true);
    REQUIRE(stolen == &items[4]);  // The newest stolen is run directly.
    CHECK(drain(thief) == std::vector<int>{0, 1, 2, 3});
    CHECK(victim.size() == 6);  // 5 in the ring + run-next, untouched.
    CHECK(drain(victim) == std::vector<int>{11, 5, 6, 7, 8, 9});
  }
  SECTION("odd count: takes 7 - 7 / 2 = 4") {
    for (int i = 0; i < 7; ++i) victim.push_back(&items[i], global);
    CHECK(victim.steal_into(thief, false) == &items[3]);
    CHECK(drain(thief) == std::vector<int>{0, 1, 2});
    CHECK(drain(victim) == std::vector<int>{4, 5, 6});
  }
  SECTION("one item is returned, none queued") {
    victim.push_back(&items[0], global);
    CHECK(victim.steal_into(thief, false) == &items[0]);
    CHECK(thief.empty());
    CHECK(victim.empty());
  }
  SECTION("run-next is taken only with take_next and an empty ring") {
    victim.push_next(&items[0], global);
    CHECK(victim.steal_into(thief, /*take_next=*/false) == nullptr);
    CHECK(victim.size() == 1);
    CHECK(victim.steal_into(thief, /*take_next=*/true) == &items[0]);
    CHECK(victim.empty());
    CHECK(thief.empty());
  }
  SECTION("empty victim") { CHECK(victim.steal_into(thief, true) == nullptr); }
}

TEST_CASE("steal_into fills at most the destination's free room",
          "[run_queue]") {
  Global global;
  TinyRing victim;
  TinyRing thief;
  auto items = make_items(8);
  for (int i = 0; i < 4; ++i) victim.push_back(&items[i], global);
  for (int i = 4; i < 8; ++i) thief.push_back(&items[i], global);
  // Half the victim would be 2, but the thief's ring is full: one is taken
  // and returned, nothing is queued.
  CHECK(victim.steal_into(thief, false) == &items[0]);
  CHECK(thief.size() == 4);
  CHECK(victim.size() == 3);
  CHECK(thief.pop() == &items[4]);
  // One slot free: 2 taken, 1 queued, 1 returned.
  CHECK(victim.steal_into(thief, false) == &items[2]);
  CHECK(drain(thief) == std::vector<int>{5, 6, 7, 1});
  CHECK(drain(victim) == std::vector<int>{3});
  CHECK(global.empty());
}

TEST_CASE("RunQueue positions wrap around 2^32", "[run_queue]") {
  Global global;
  // Start just before the wrap, so the operations below cross it.
  TinyRing queue(UINT32_MAX - 2);
  TinyRing thief(UINT32_MAX);
  auto items = make_items(9);
  for (int i = 0; i < 4; ++i) queue.push_back(&items[i], global);
  CHECK(queue.size() == 4);
  CHECK(queue.pop() == &items[0]);
  queue.push_back(&items[4], global);
  queue.push_back(&items[5], global);  // Full: 1, 2 and 5 overflow.
  CHECK(queue.size() == 2);
  CHECK(queue.steal_into(thief, false) == &items[3]);  // 2 - 2 / 2 = 1.
  for (int i = 6; i < 9; ++i) queue.push_back(&items[i], global);
  CHECK(queue.steal_into(thief, false) == &items[6]);  // 4 queued there.
  CHECK(thief.size() == 1);
  CHECK(drain(thief) == std::vector<int>{4});
  CHECK(drain(queue) == std::vector<int>{7, 8});
  CHECK(drain(global) == std::vector<int>{1, 2, 5});
}

TEST_CASE("GlobalQueue is FIFO and counts its items", "[global_queue]") {
  Global global;
  auto items = make_items(6);
  CHECK(global.pop() == nullptr);
  global.push(&items[0]);
  // A batch 1 -> 2 -> 3, linked by the caller.
  items[1].queue_next = &items[2];
  items[2].queue_next = &items[3];
  global.push_batch(&items[1], &items[3]);
  global.push(&items[4]);
  CHECK(global.size() == 5);
  CHECK(global.pop() == &items[0]);
  CHECK(global.size() == 4);
  global.push(&items[5]);
  CHECK(drain(global) == std::vector<int>{1, 2, 3, 4, 5});
  CHECK(global.size() == 0);
  CHECK(global.empty());
}

TEST_CASE("GlobalQueue::pop_batch_into respects its bounds", "[global_queue]") {
  Global global;
  auto items = make_items(10);
  for (Item& item : items) global.push(&item);
  SECTION("max") {
    Ring local;
    CHECK(global.pop_batch_into(local, 3) == &items[0]);
    CHECK(drain(local) == std::vector<int>{1, 2, 3});
    CHECK(global.size() == 6);
  }
  SECTION("max 0 still returns one") {
    Ring local;
    CHECK(global.pop_batch_into(local, 0) == &items[0]);
    CHECK(local.empty());
    CHECK(global.size() == 9);
  }
  SECTION("half a ring at most") {
    TinyRing local;
    CHECK(global.pop_batch_into(local, 100) == &items[0]);
    CHECK(drain(local) == std::vector<int>{1, 2});
    CHECK(global.size() == 7);
  }
  SECTION("no more than the destination's room") {
    TinyRing local;
    Global other;
    auto mine = make_items(3);
    for (Item& item : mine) local.push_back(&item, other);
    CHECK(global.pop_batch_into(local, 100) == &items[0]);
    CHECK(local.size() == 4);
    CHECK(global.size() == 8);
    CHECK(other.empty());
  }
  SECTION("takes what there is") {
    Ring local;
    while (global.size() > 2) global.pop();
    CHECK(global.pop_batch_into(local, 100) == &items[8]);
    CHECK(drain(local) == std::vector<int>{9});
    CHECK(global.empty());
    CHECK(global.pop_batch_into(local, 100) == nullptr);
  }
}

// Counts consumptions per item; the verdict is read after the threads join.
class Ledger {
 public:
  explicit Ledger(std::vector<Item>& items)
      : items_(items),
        counts_(std::make_unique<std::atomic<int>[]>(items.size())) {}
  // Called by the producer just before it pushes `item`.
  static Item* prepare(Item& item) {
    item.payload = item.value;
    return &item;
  }
  void consume(Item* item) {
    // A race here is a double hand-out or a missing edge.
    if (item->payload != item->value)
      bad_payloads_.fetch_add(1, std::memory_order_relaxed);
    item->runs++;
    // relaxed: per-item tallies, read after join(), which synchronises.
    counts_[item->value].fetch_add(1, std::memory_order_relaxed);
    // relaxed: only a progress counter for the loops' exit condition.
    consumed_.fetch_add(1, std::memory_order_relaxed);
  }
  bool done() const {
    // relaxed: exit condition only; results are read after join().
    return consumed_.load(std::memory_order_relaxed) ==
           static_cast<std::int64_t>(items_.size());
  }
  // Call after joining every thread.
  void check_each_consumed_once() const {
    std::int64_t bad = 0;
    for (std::size_t i = 0; i < items_.size(); ++i) {
      if (counts_[i].load(std::memory_order_relaxed) != 1 ||
          items_[i].runs != 1) {
        ++bad;
      }
    }
    CHECK(bad == 0);
    CHECK(bad_payloads_.load(std::memory_order_relaxed) == 0);
    CHECK(consumed_.load(std::memory_order_relaxed) ==
          static_cast<std::int64_t>(items_.size()));
  }

 private:
  std::vector<Item>& items_;
  std::unique_ptr<std::atomic<int>[]> counts_;
  std::atomic<std::int64_t> consumed_{0};
  std::atomic<std::int64_t> bad_payloads_{0};  // relaxed: read after join().
};

// One owner pushes every item (push_back, and push_next for 1 in
// kNextEvery) and pops some; `thieves` threads steal into their own queues,
// steal from each other, pop the global queue and re-publish some items
// through their own run-next slot; everyone drains at the end.
template <std::size_t Capacity>
void stress_steal(int item_count, int thieves) {
  // Shape of the owner's loop, chosen to keep the ring near full so that
  // overflow, steals and pops all race: push 3, pop 1.
  constexpr int kNextEvery = 7;
  constexpr int kPopEvery = 3;
  constexpr int kPopRingEvery = 5;  // Of the owner's pops, 1 in 5 is pop_ring.
  constexpr std::size_t kOwnerGlobalBatch = 8;  // Arbitrary, > half of 4.
  // Thieves: how often to steal with a non-empty queue, and how often to
  // hand a taken item on through push_next instead of consuming it.
  constexpr std::uint32_t kStealAnywayEvery = 5;
  constexpr std::uint32_t kHandOnEvery = 3;
  constexpr std::uint32_t kOtherThiefEvery =
      4;  // Else the victim is the owner.
  constexpr std::size_t kThiefGlobalBatch = 3;
  using Queue = RunQueue<Item, Capacity>;
  auto items = make_items(item_count);
  Ledger ledger(items);
  Global global;
  std::vector<std::unique_ptr<Queue>> queues;  // [0] is the owner's.
  for (int i = 0; i <= thieves; ++i)
    queues.push_back(std::make_unique<Queue>());

  std::vector<std::thread> threads;
  threads.emplace_back([&] {
    Queue& mine = *queues[0];
    for (int i = 0; i < item_count; ++i) {
      if (i % kNextEvery == 0) {
        mine.push_next(Ledger::prepare(items[i]), global);
      } else {
        mine.push_back(Ledger::prepare(items[i]), global);
      }
      if (i % kPopEvery == 0) {
        Item* item =
            i % (kPopEvery * kPopRingEvery) == 0 ? mine.pop_ring() : mine.pop();
        if (item != nullptr) ledger.consume(item);
      }
    }
    while (!ledger.done()) {
      Item* item = mine.pop();
      if (item == nullptr)
        item = global.pop_batch_into(mine, kOwnerGlobalBatch);
      if (item != nullptr) {
        ledger.consume(item);
      } else {
        std::this_thread::yield();
      }
    }
  });
  for (int t = 1; t <= thieves; ++t) {
    threads.emplace_back([&, t] {
      Queue& mine = *queues[t];
      std::uint32_t round = 0;
      while (!ledger.done()) {
        ++round;
        // Own work first, as a worker does; but every kStealAnywayEvery-th
        // round steal anyway, so steals also land in non-empty queues.
        Item* item = round % kStealAnywayEvery == 0 ? nullptr : mine.pop();
        if (item == nullptr) {
          // Mostly the owner, sometimes another thief (with its run-next).
          const int victim = round % kOtherThiefEvery == 0
                                 ? 1 + (t + round / kOtherThiefEvery) % thieves
                                 : 0;
          if (victim != t) {
            item = queues[victim]->steal_into(mine, round % 2 == 0);
          }
          (void)queues[victim]->size();  // Racy hint: must be race-free.
        }
        if (item == nullptr) {
          item = round % 2 == 0
                     ? global.pop()
                     : global.pop_batch_into(mine, kThiefGlobalBatch);
        }
        if (item == nullptr) item = mine.pop();
        if (item == nullptr) {
          std::this_thread::yield();
          continue;
        }
        if (round % kHandOnEvery == 0) {
          // Re-publish it in our run-next slot, where others may steal it.
          mine.push_next(item, global);
          continue;
        }
        ledger.consume(item);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ledger.check_each_consumed_once();
  CHECK(global.empty());
  for (auto& queue : queues) CHECK(queue->empty());
}

TEST_CASE("Concurrent push, pop, steal and overflow hand out each item once",
          "[run_queue][stress]") {
  constexpr int kItems = 200'000;
  SECTION("capacity 4 (stress mode), 3 thieves") { stress_steal<4>(kItems, 3); }
  SECTION("capacity 4 (stress mode), 2 thieves") { stress_steal<4>(kItems, 2); }
  SECTION("capacity 256, 2 thieves") { stress_steal<256>(kItems, 2); }
}

TEST_CASE(
    "GlobalQueue under 4 producer-consumer threads hands out each item "
    "once",
    "[global_queue][stress]") {
  constexpr int kThreads = 4;
  constexpr int kItems = 200'000;
  constexpr int kBatch = 3;  // Every other push is a batch of this many.
  auto items = make_items(kItems);
  Ledger ledger(items);
  Global global;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      TinyRing local;
      auto consume_some = [&](int round) {
        Item* item =
            round % 2 == 0 ? global.pop() : global.pop_batch_into(local, 2);
        if (item != nullptr) ledger.consume(item);
        while (Item* mine = local.pop()) ledger.consume(mine);
        return item != nullptr;
      };
      // This thread's share: items t, t + kThreads, ...
      int round = 0;
      for (int i = t; i < kItems; ++round) {
        if (round % 2 == 0) {
          global.push(Ledger::prepare(items[i]));
          i += kThreads;
        } else {
          Item* first = Ledger::prepare(items[i]);
          Item* last = first;
          int count = 1;
          for (i += kThreads; count < kBatch && i < kItems; i += kThreads) {
            last->queue_next = Ledger::prepare(items[i]);
            last = &items[i];
            ++count;
          }
          global.push_batch(first, last);
        }
        consume_some(round);
      }
      while (!ledger.done()) {
        if (!consume_some(++round)) std::this_thread::yield();
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  ledger.check_each_consumed_once();
  CHECK(global.empty());
}

TEST_CASE("GlobalQueue: started items first, FIFO in each list") {
  Item items[8];
  for (int i = 0; i < 8; ++i) {
    items[i].value = i;
    items[i].started = i >= 2 && i != 5;
  }
  Global global;
  global.push(&items[0]);  // never started
  global.push(&items[1]);
  global.push(&items[2]);  // started
  global.push(&items[3]);
  std::vector<int> order;
  order.push_back(global.pop()->value);  // the first started
  // A batch (a ring's overflow) is split by kind, each part in order, and
  // each goes behind the items of its kind already queued.
  items[4].queue_next = &items[5];
  items[5].queue_next = &items[6];
  global.push_batch(&items[4], &items[6]);
  global.push(&items[7]);
  while (Item* item = global.pop()) order.push_back(item->value);
  // Four pops in, aging lets the oldest fresh item (0) through once.
  CHECK(order == std::vector<int>{2, 3, 4, 0, 6, 7, 1, 5});
  CHECK(global.empty());
}

TEST_CASE("GlobalQueue: fresh items age through a stream of started ones") {
  // A busy server: started items keep coming, and the fresh ones (new
  // connections' handlers) must still get a regular turn.
  std::vector<Item> fresh = make_items(10);
  std::vector<Item> started = make_items(1000);
  for (Item& item : started) item.started = true;
  Global global;
  for (Item& item : fresh) global.push(&item);
  int pops = 0;
  int fresh_seen = 0;
  int last_fresh = -1;
  for (Item& item : started) {
    global.push(&item);
    Item* popped = global.pop();
    ++pops;
    if (!popped->started) {
      CHECK(popped->value == last_fresh + 1);  // FIFO among fresh
      last_fresh = popped->value;
      ++fresh_seen;
    }
    if (fresh_seen == 10) break;
  }
  CHECK(fresh_seen == 10);
  CHECK(pops <= 10 * 4 + 4);  // one fresh item at least every fourth pop
}

TEST_CASE("GlobalQueue: a woken-only batch takes no fresh items but one") {
  // A busy worker's periodic check: every woken item may come (I/O wakes
  // must not wait behind the ring), but fresh spawns only one at a time.
  std::vector<Item> items = make_items(8);
  for (int i = 0; i < 3; ++i) items[i].started = true;
  Global global;
  for (int i = 3; i < 8; ++i) global.push(&items[i]);  // fresh, queued first
  for (int i = 0; i < 3; ++i) global.push(&items[i]);
  Ring ring;
  Item* first = global.pop_batch_into(ring, 100, /*woken_only=*/true);
  REQUIRE(first != nullptr);
  CHECK(first->value == 0);
  CHECK(ring.size() == 2);  // 1 and 2; no fresh item came along
  CHECK(global.pop_batch_into(ring, 100, /*woken_only=*/true)->value == 3);
  CHECK(ring.size() == 2);  // still: one fresh item, run at once
  CHECK(ring.pop()->value == 1);
  CHECK(ring.pop()->value == 2);
  // An ordinary batch takes the rest.
  CHECK(global.pop_batch_into(ring, 100)->value == 4);
  CHECK(ring.size() == 3);
  CHECK(global.empty());
}

}  // namespace
}  // namespace green::detail
