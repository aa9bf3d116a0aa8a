// Tests for BatchedFifo (runtime/batched_fifo.h) and for GlobalQueue's
// array hand-over (GlobalQueue::push_array), including its out-of-memory
// fallback: exact FIFO order across single items and batches, and every
// batch freed once.
#include "runtime/batched_fifo.h"

#include <algorithm>
#include <deque>
#include <new>
#include <random>
#include <vector>

#include "catch2/catch.hpp"
#include "runtime/global_queue.h"
#include "runtime/run_queue.h"

namespace {

// Counts the nothrow allocations (ItemBatch::create is the only caller in
// these tests) and fails them on demand, to reach push_array's fallback:
// with allocations_until_failure = n >= 0, the n+1-th from now fails.
int nothrow_allocations = 0;
int failed_allocations = 0;
int allocations_until_failure = -1;  // never

}  // namespace

void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  if (allocations_until_failure >= 0 && allocations_until_failure-- == 0) {
    ++failed_allocations;
    return nullptr;
  }
  ++nothrow_allocations;
  try {
    return ::operator new(size);  // the same family as the plain delete
  } catch (const std::bad_alloc&) {
    return nullptr;
  }
}

namespace green::detail {
namespace {

struct Item {
  Item* queue_next = nullptr;
  int value = 0;
  bool started = false;
  bool started_running() const noexcept { return started; }
};

using Fifo = BatchedFifo<Item>;
using Batch = ItemBatch<Item>;

std::vector<Item> make_items(int count) {
  std::vector<Item> items(count);
  for (int i = 0; i < count; ++i) items[i].value = i;
  return items;
}

Batch* make_batch(std::vector<Item>& items, int begin, int end) {
  Batch* batch = Batch::create(end - begin);
  REQUIRE(batch != nullptr);
  for (int i = begin; i < end; ++i) batch->add(&items[i]);
  return batch;
}

// Pops everything, freeing emptied batches as GlobalQueue does; returns the
// values in pop order.
std::vector<int> drain(Fifo& fifo) {
  std::vector<int> values;
  while (!fifo.empty()) {
    Batch* retired = nullptr;
    values.push_back(fifo.pop_front(retired)->value);
    Batch::destroy_chain(retired);
  }
  return values;
}

std::vector<int> iota_values(int begin, int end) {
  std::vector<int> values;
  for (int i = begin; i < end; ++i) values.push_back(i);
  return values;
}

TEST_CASE("BatchedFifo keeps push order across singles and batches",
          "[batched_fifo]") {
  auto items = make_items(12);
  Fifo fifo;
  fifo.push_back(&items[0]);
  fifo.push_batch(make_batch(items, 1, 4));
  fifo.push_back(&items[4]);
  fifo.push_back(&items[5]);
  fifo.push_batch(make_batch(items, 6, 8));
  items[8].queue_next = &items[9];  // a chain of two, linked by the caller
  fifo.push_chain(&items[8], &items[9], 2);
  CHECK(fifo.size() == 10);
  CHECK(drain(fifo) == iota_values(0, 10));
}

TEST_CASE("BatchedFifo orders pushes made while a batch is half taken",
          "[batched_fifo]") {
  auto items = make_items(12);
  Fifo fifo;
  fifo.push_batch(make_batch(items, 0, 3));
  Batch* retired = nullptr;
  CHECK(fifo.pop_front(retired) == &items[0]);
  CHECK(retired == nullptr);  // the batch still holds 1 and 2
  fifo.push_back(&items[3]);  // behind the rest of the batch
  fifo.push_batch(make_batch(items, 4, 6));
  fifo.push_back(&items[6]);
  CHECK(fifo.pop_front(retired) == &items[1]);
  CHECK(fifo.pop_front(retired) == &items[2]);
  CHECK(retired != nullptr);  // emptied: handed back to be freed
  Batch::destroy_chain(retired);
  retired = nullptr;
  CHECK(fifo.pop_front(retired) == &items[3]);
  CHECK(fifo.pop_front(retired) == &items[4]);
  CHECK(fifo.pop_front(retired) == &items[5]);
  Batch::destroy_chain(retired);
  // No batch is queued now, and single 6 still is. Two more singles, then
  // a batch: all three singles come first.
  fifo.push_back(&items[7]);
  fifo.push_back(&items[8]);
  fifo.push_batch(make_batch(items, 9, 11));
  fifo.push_back(&items[11]);
  CHECK(drain(fifo) == iota_values(6, 12));
}

TEST_CASE("BatchedFifo matches a deque under random pushes and pops",
          "[batched_fifo]") {
  std::mt19937 random(20261126);
  auto items = make_items(20000);
  Fifo fifo;
  std::deque<int> model;
  int next = 0;
  const int allocations_before = nothrow_allocations;
  int batches = 0, retired_batches = 0;
  while (next < 20000 || !model.empty()) {
    const int choice = next < 20000 ? int(random() % 8) : 7;
    if (choice <= 1) {
      fifo.push_back(&items[next]);
      model.push_back(next++);
    } else if (choice == 2 && next + 3 <= 20000) {
      items[next].queue_next = &items[next + 1];
      items[next + 1].queue_next = &items[next + 2];
      items[next + 2].queue_next = nullptr;
      fifo.push_chain(&items[next], &items[next + 2], 3);
      for (int i = 0; i < 3; ++i) model.push_back(next++);
    } else if (choice <= 4) {
      const int end = std::min(20000, next + 1 + int(random() % 40));
      fifo.push_batch(make_batch(items, next, end));
      ++batches;
      while (next < end) model.push_back(next++);
    } else {
      for (int pops = int(random() % 30); pops > 0 && !model.empty(); --pops) {
        Batch* retired = nullptr;
        REQUIRE(fifo.pop_front(retired)->value == model.front());
        model.pop_front();
        if (retired != nullptr) ++retired_batches;  // one pop empties <= 1
        Batch::destroy_chain(retired);
      }
    }
    REQUIRE(fifo.size() == model.size());
  }
  // Every batch came back exactly once, as it emptied.
  CHECK(retired_batches == batches);
  CHECK(nothrow_allocations - allocations_before == batches);
}

TEST_CASE("GlobalQueue::push_array splits woken from fresh, in order",
          "[global_queue]") {
  GlobalQueue<Item> global;
  auto items = make_items(10);
  for (int i : {1, 4, 5, 8}) items[i].started = true;
  global.push(&items[9]);  // fresh, queued before the array
  global.push_array(9, [&items](std::size_t i) { return &items[i]; });
  CHECK(global.size() == 10);
  std::vector<int> order;
  while (Item* item = global.pop()) order.push_back(item->value);
  // Woken first (FIFO), then fresh (FIFO), except that the 4th detach
  // starts with the oldest fresh one (aging, global_queue.h).
  CHECK(order == std::vector<int>{1, 4, 5, 9, 8, 0, 2, 3, 6, 7});
}

// Pops everything from a GlobalQueue through a ring, as a worker does.
std::vector<int> drain_through(GlobalQueue<Item>& global) {
  RunQueue<Item, 4> ring;
  std::vector<int> order;
  while (Item* first = global.pop_batch_into(ring, 100)) {
    order.push_back(first->value);
    while (Item* item = ring.pop()) order.push_back(item->value);
  }
  return order;
}

TEST_CASE("GlobalQueue::push_array links its items when memory is short",
          "[global_queue]") {
  // Items 1-5 as an array after single 0, single 6 after them; item 2 has
  // run (woken list), the others not. Whether no batch or only the first
  // of the two can be allocated, nothing is lost and the order is the one
  // the arrays give.
  for (const int allocations_before_failure : {0, 1}) {
    GlobalQueue<Item> global;
    auto items = make_items(7);
    items[2].started = true;
    global.push(&items[0]);
    const int failed_before = failed_allocations;
    const int allocated_before = nothrow_allocations;
    allocations_until_failure = allocations_before_failure;
    global.push_array(5, [&items](std::size_t i) { return &items[i + 1]; });
    allocations_until_failure = -1;
    CHECK(failed_allocations - failed_before == 1);
    CHECK(nothrow_allocations - allocated_before ==
          allocations_before_failure);  // and freed again (ASan: no leak)
    global.push(&items[6]);
    CHECK(global.size() == 7);
    CHECK(drain_through(global) == std::vector<int>{2, 0, 1, 3, 4, 5, 6});
  }
}

TEST_CASE("A ring's overflow reaches the global queue as one array",
          "[global_queue]") {
  GlobalQueue<Item> global;
  RunQueue<Item, 4> ring;
  auto items = make_items(5);
  const int allocations_before = nothrow_allocations;
  for (Item& item : items) ring.push_back(&item, global);
  // The older half (0, 1) and the item that did not fit (4).
  CHECK(nothrow_allocations - allocations_before == 1);
  CHECK(global.size() == 3);
  std::vector<int> order;
  while (Item* item = global.pop()) order.push_back(item->value);
  CHECK(order == std::vector<int>{0, 1, 4});
}

}  // namespace
}  // namespace green::detail
