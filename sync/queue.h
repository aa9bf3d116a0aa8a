// Queue<T>, LightQueue<T>, PriorityQueue<T>, LifoQueue<T>: Eventlet's queue
// module, safe when the two ends run on different workers at the same
// moment, or on plain OS threads that are not green threads at all.
//
//   green::Queue<std::string> q(100);     // at most 100 buffered items
//   green::spawn([&] { q.put("hello"); });
//   std::string s = q.get();              // parks this green thread
//   std::optional<std::string> t = q.get(50ms);   // empty after 50 ms
//
// Constructors (as Eventlet's `Queue(maxsize=None)`):
//   Queue<T>()          unbounded: put() never blocks.
//   Queue<T>(n), n > 0  at most n buffered items; put() blocks while full.
//   Queue<T>(0)         a channel: put() blocks until a getter takes the
//                       item (a rendezvous); nothing is ever buffered.
//
// The C++ idiom (one, used throughout sync/): nothing here throws
// QueueEmpty/QueueFull. An operation that may fail without blocking says
// so in its return value: try_get() and get(timeout) return an empty
// std::optional, try_put() and put(item, timeout) return false -- and then
// leave an rvalue argument unmoved, so a move-only item is not lost.
// Blocking calls (put(item), get()) are blocking points: kill() and
// green::Timeout interrupt them, and the queue stays consistent.
//
// Design. One SpinLock guards everything: the buffer, the getter and
// putter wait lists (runtime/wait_list.h) and the task counter. Nothing is
// ever handed over by "push, then wake somebody to come and look": an item
// goes straight from the hand of whoever has it into the hand of the first
// waiter that accepts it, through the waiter's `payload` (a slot on the
// waiter's stack), under the lock:
//   * a putter that finds getters waiting pops them in FIFO order and
//     notifies each until one accepts (notify() fails for a waiter whose
//     deadline or interrupt woke it a moment earlier: it is leaving), then
//     moves the item into that getter's slot;
//   * a getter that takes an item from a full buffer moves the first
//     waiting putter's item (its payload points at it) into the buffer;
//     with an empty buffer (a channel) it takes the putter's item itself.
// A woken waiter looks only at its own slot, so FIFO order holds among
// getters and among putters, nobody can barge in between a wake and the
// waiter running, and a waiter that times out or is killed just as an item
// arrives either got it (notify succeeded: it returns the item) or did not
// (notify failed: the item went to the next waiter, or into the buffer).
//
// Lifetimes. "Notify" is a claim under the lock (Waiter::claim: the wake
// is decided, the waiter can no longer time out or be interrupted out of
// it) and the actual wake after the lock is released (WakeBatch): the
// waking call is done with the queue before the woken one runs, and the
// woken one returns without touching the queue again (block_on_handoff).
// So either side may own the queue and destroy it as soon as its own call
// returns -- skynet's parent does, after its last get().
//
// Invariants (under lock_):
//   I1. getters_ non-empty  =>  buffer_ empty and putters_ empty.
//   I2. putters_ non-empty  =>  getters_ empty and the buffer is full
//       (size >= maxsize; a channel's buffer is always full).
//   I3. An item is in exactly one place: a putter's hand, the buffer, or
//       a getter's slot (then that getter was notified and will return it).
// T's move constructor runs under the SpinLock: keep it cheap and
// non-blocking (as moves are).
#ifndef GREEN_SYNC_QUEUE_H_
#define GREEN_SYNC_QUEUE_H_

#include <algorithm>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/deadline.h"
#include "sync/ring_buffer.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {

// Buffer policies: FIFO (Queue, LightQueue), LIFO, and a binary heap.
template <typename T>
using FifoBuffer = RingBuffer<T>;  // sync/ring_buffer.h

template <typename T>
class LifoBuffer {
 public:
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& item) { items_.push_back(std::move(item)); }
  T pop() {
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }

 private:
  std::vector<T> items_;
};

// Smallest first, as Python's heapq (Eventlet's PriorityQueue): with
// Compare = std::less<T>, pop() returns the least item.
template <typename T, typename Compare>
class HeapBuffer {
 public:
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  void push(T&& item) {
    items_.push_back(std::move(item));
    std::push_heap(items_.begin(), items_.end(), Greater{&compare_});
  }
  T pop() {
    std::pop_heap(items_.begin(), items_.end(), Greater{&compare_});
    T item = std::move(items_.back());
    items_.pop_back();
    return item;
  }

 private:
  // std::*_heap build a max-heap; inverting the order makes it a min-heap.
  struct Greater {
    Compare* compare;
    bool operator()(const T& a, const T& b) const { return (*compare)(b, a); }
  };
  std::vector<T> items_;
  Compare compare_;
};

// The queue itself; the public classes below only pick a buffer and
// whether task_done()/join() are offered.
template <typename T, typename Buffer, bool kTracksTasks>
class BasicQueue {
 public:
  static_assert(std::is_move_constructible_v<T>,
                "green::Queue<T>: T must be move-constructible");

  explicit BasicQueue(std::optional<std::size_t> maxsize = std::nullopt)
      : maxsize_(maxsize) {}
  BasicQueue(const BasicQueue&) = delete;
  BasicQueue& operator=(const BasicQueue&) = delete;

  // --- Putting (any thread; green threads park, OS threads block). ---

  // Blocks while the queue is full (for a channel: until a getter takes
  // the item).
  template <typename U = T>
  requires std::constructible_from<T, U&&>
  void put(U&& item) { put_forward(std::forward<U>(item), std::nullopt, true); }
  // Waits at most `timeout`; returns false (item unmoved) if still full.
  template <typename U = T>
  requires std::constructible_from<T, U&&>
  bool put(U&& item, std::chrono::nanoseconds timeout) {
    return put_forward(std::forward<U>(item), deadline_after(timeout), true);
  }
  // Never blocks (Eventlet's put_nowait): false if full and no getter
  // waits; an rvalue argument is then left unmoved.
  template <typename U = T>
  requires std::constructible_from<T, U&&>
  bool try_put(U&& item) {
    return put_forward(std::forward<U>(item), std::nullopt, false);
  }

  // --- Getting (any thread). ---

  // Blocks until an item is available.
  T get() { return *get_impl(std::nullopt, true); }
  // Waits at most `timeout` (<= 0: does not wait); empty if none came.
  std::optional<T> get(std::chrono::nanoseconds timeout) {
    return get_impl(deadline_after(timeout), true);
  }
  // Never blocks (Eventlet's get_nowait): empty if no item is at hand.
  std::optional<T> try_get() { return get_impl(std::nullopt, false); }

  // --- Inspection (any thread; a snapshot, stale once returned). ---

  // Buffered items (not counting putters still holding theirs).
  std::size_t qsize() const {
    SpinGuard guard(lock_);
    return buffer_.size();
  }
  bool empty() const { return qsize() == 0; }
  // Whether put() would block; a channel is always full.
  bool full() const {
    SpinGuard guard(lock_);
    return !has_room_locked();
  }
  // nullopt: unbounded.
  std::optional<std::size_t> maxsize() const {
    SpinGuard guard(lock_);
    return maxsize_;
  }
  // How many callers are blocked in get() / put().
  std::size_t getting() const {
    SpinGuard guard(lock_);
    return getters_.size();
  }
  std::size_t putting() const {
    SpinGuard guard(lock_);
    return putters_.size();
  }

  // Changes the bound (nullopt: unbounded). Growing it moves waiting
  // putters' items into the buffer at once (FIFO); shrinking it drops
  // nothing, later puts just block until the queue has drained below it.
  void resize(std::optional<std::size_t> maxsize) {
    WakeBatch wakes;  // woken after the guard lets go (wait_list.h)
    SpinGuard guard(lock_);
    maxsize_ = maxsize;
    refill_from_putters_locked(wakes);
  }

  // --- Task tracking (Queue, PriorityQueue, LifoQueue; not LightQueue). ---

  // Marks one item taken by get() as processed; join() returns when every
  // item ever put has been marked. Throws std::logic_error if called more
  // often than items were put.
  void task_done() requires kTracksTasks {
    WakeBatch wakes;  // woken after the guard lets go (wait_list.h)
    SpinGuard guard(lock_);
    if (unfinished_ == 0) {
      throw std::logic_error(
          "green::Queue::task_done: called more times than items were put");
    }
    if (--unfinished_ == 0) notify_joiners_locked(wakes);
  }
  // Blocks until every item put so far has been marked by task_done().
  void join() requires kTracksTasks { join_impl(std::nullopt); }
  // Waits at most `timeout`; returns whether all tasks were done.
  bool join(std::chrono::nanoseconds timeout) requires kTracksTasks {
    return join_impl(deadline_after(timeout));
  }
  // Items put but not yet marked done.
  std::size_t unfinished_tasks() const requires kTracksTasks {
    SpinGuard guard(lock_);
    return unfinished_;
  }
  // How many callers are blocked in join().
  std::size_t joining() const requires kTracksTasks {
    SpinGuard guard(lock_);
    return joiners_.size();
  }

 private:
  // A blocked putter's payload: the item stays in the putter's hands
  // (`item` points into its frame) until a getter moves it out.
  struct PutSlot {
    T* item;
    bool taken = false;
  };

  template <typename U>
  bool put_forward(U&& item, Deadline deadline, bool block) {
    if constexpr (std::is_same_v<std::remove_cvref_t<U>, T> &&
                  !std::is_lvalue_reference_v<U> &&
                  !std::is_const_v<std::remove_reference_t<U>>) {
      return put_impl(item, deadline, block);  // moved from only on success
    } else {
      T copy(std::forward<U>(item));  // the caller's object is untouched
      return put_impl(copy, deadline, block);
    }
  }

  // Moves from `item` only when returning true.
  bool put_impl(T& item, Deadline deadline, bool block) {
    // Declared first, so that the waiters it claims are woken after the
    // lock is released: by then this call no longer touches the queue, and
    // a woken getter may destroy it. Claims happen only on the way out.
    WakeBatch wakes;
    SpinUniqueLock lock(lock_);
    for (;;) {
      if (give_locked(item, wakes)) return true;
      if (!block || expired(deadline)) return false;
      PutSlot slot{&item};
      Waiter waiter;
      waiter.payload = &slot;
      // A putter whose item was taken returns without touching the queue
      // again: the getter may own the queue and destroy it at once.
      if (block_on_handoff(putters_, lock.get(), waiter, deadline) ==
          WakeReason::kNotified) {
        return true;
      }
      if (slot.taken) return true;
      // Timed out, or a spurious wake: look again (then check the clock).
    }
  }

  std::optional<T> get_impl(Deadline deadline, bool block) {
    WakeBatch wakes;  // as in put_impl
    SpinUniqueLock lock(lock_);
    for (;;) {
      if (std::optional<T> item = take_locked(wakes)) return item;
      if (!block || expired(deadline)) return std::nullopt;
      std::optional<T> slot;
      Waiter waiter;
      waiter.payload = &slot;
      // Likewise a getter handed its item (its slot was filled before the
      // putter's notify()).
      if (block_on_handoff(getters_, lock.get(), waiter, deadline) ==
          WakeReason::kNotified) {
        return slot;
      }
      if (slot) return slot;
    }
  }

  bool join_impl(Deadline deadline) {
    SpinUniqueLock lock(lock_);
    while (unfinished_ > 0) {
      if (expired(deadline)) return false;
      bool done = false;
      Waiter waiter;
      waiter.payload = &done;
      // Woken only after task_done() let go of the queue (WakeBatch), and
      // returns without touching it again: either side may destroy it.
      if (block_on_handoff(joiners_, lock.get(), waiter, deadline) ==
          WakeReason::kNotified) {
        return true;
      }
      if (done) return true;
    }
    return true;
  }

  // Tells every joiner that all tasks are done: its flag, then a claim
  // (woken once the lock is released).
  void notify_joiners_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    while (Waiter* joiner = joiners_.pop_front()) {
      auto* done = static_cast<bool*>(joiner->payload);
      *done = true;
      if (!wakes.claim(joiner, false)) *done = false;  // leaving: timed out
    }
  }

  bool has_room_locked() const GREEN_REQUIRES(lock_) {
    return !maxsize_ || buffer_.size() < *maxsize_;
  }

  void count_put_locked() GREEN_REQUIRES(lock_) {
    if constexpr (kTracksTasks) ++unfinished_;
  }

  // Hands `item` to the first getter that accepts it, else buffers it if
  // there is room. Returns whether `item` was moved from.
  bool give_locked(T& item, WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    while (Waiter* getter = getters_.pop_front()) {
      // Fill the slot first: once woken, the getter returns without the
      // lock (block_on_handoff). If it is leaving instead, take the item
      // back and try the next getter.
      auto* slot = static_cast<std::optional<T>*>(getter->payload);
      slot->emplace(std::move(item));
      if (wakes.claim(getter)) {
        count_put_locked();
        return true;
      }
      item = std::move(**slot);
      slot->reset();
    }
    if (!has_room_locked()) return false;  // I2: no putter barges past
    buffer_.push(std::move(item));         // putters_ waiting (full)
    count_put_locked();
    return true;
  }

  // Takes the item of the first waiting putter that accepts; it must be
  // moved out before notify(): a notified putter returns at once and its
  // item (on its stack) is gone.
  std::optional<T> take_from_putter_locked(WakeBatch& wakes)
      GREEN_REQUIRES(lock_) {
    while (Waiter* putter = putters_.pop_front()) {
      auto* slot = static_cast<PutSlot*>(putter->payload);
      std::optional<T> item(std::move(*slot->item));
      slot->taken = true;
      if (wakes.claim(putter)) {
        count_put_locked();
        return item;
      }
      *slot->item = std::move(*item);  // it is leaving: give it back
      slot->taken = false;
    }
    return std::nullopt;
  }

  // Takes the next item: from the buffer (then lets the first waiting
  // putter in), or straight from a waiting putter (a channel).
  std::optional<T> take_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    if (!buffer_.empty()) {
      std::optional<T> item(buffer_.pop());
      refill_from_putters_locked(wakes);
      return item;
    }
    return take_from_putter_locked(wakes);
  }

  void refill_from_putters_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    while (has_room_locked() && !putters_.empty()) {
      std::optional<T> item = take_from_putter_locked(wakes);
      if (!item) return;
      buffer_.push(std::move(*item));
    }
  }

  mutable SpinLock lock_;
  std::optional<std::size_t> maxsize_ GREEN_GUARDED_BY(lock_);
  Buffer buffer_ GREEN_GUARDED_BY(lock_);
  WaitList getters_ GREEN_GUARDED_BY(lock_);  // payload: std::optional<T>*
  WaitList putters_ GREEN_GUARDED_BY(lock_);  // payload: PutSlot*
  WaitList joiners_ GREEN_GUARDED_BY(lock_);  // join(); payload: bool* done
  std::size_t unfinished_ GREEN_GUARDED_BY(lock_) = 0;
};

}  // namespace detail

// Eventlet's LightQueue: the cheapest queue; no task_done()/join().
// Unbounded by default; LightQueue<T>(n) bounds it like Queue.
template <typename T>
class LightQueue : public detail::BasicQueue<T, detail::FifoBuffer<T>, false> {
 public:
  using detail::BasicQueue<T, detail::FifoBuffer<T>, false>::BasicQueue;
};

// Eventlet's Queue: FIFO, with task_done()/join().
template <typename T>
class Queue : public detail::BasicQueue<T, detail::FifoBuffer<T>, true> {
 public:
  using detail::BasicQueue<T, detail::FifoBuffer<T>, true>::BasicQueue;
};

// Eventlet's PriorityQueue: get() returns the least item first (by
// Compare, std::less<T> by default), like Python's heapq; items that
// compare equal come out in no particular order.
template <typename T, typename Compare = std::less<T>>
class PriorityQueue
    : public detail::BasicQueue<T, detail::HeapBuffer<T, Compare>, true> {
 public:
  using detail::BasicQueue<T, detail::HeapBuffer<T, Compare>, true>::BasicQueue;
};

// Eventlet's LifoQueue: get() returns the most recently put item.
template <typename T>
class LifoQueue : public detail::BasicQueue<T, detail::LifoBuffer<T>, true> {
 public:
  using detail::BasicQueue<T, detail::LifoBuffer<T>, true>::BasicQueue;
};

}  // namespace green

#endif  // GREEN_SYNC_QUEUE_H_
