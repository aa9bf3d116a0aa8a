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
// Design. One SpinLock guards everything -- the buffer, the getter and
// putter wait lists (runtime/wait_list.h), the task counts -- except the
// items of a bounded FIFO queue while nobody waits (the ring, below).
// Nothing is
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
// The ring. Queue(n) and LightQueue(n) with 2 <= n <= 65,536 (and T
// nothrow-movable) keep their items in a lock-free BoundedRing
// (sync/bounded_ring.h) instead of the locked buffer: a put or get that
// finds room or an item, with nobody waiting, reserves a cell with one CAS
// and never takes the lock. Four producers on one worker and a consumer
// on another went from 6-14M to 105-135M items/s (fan-in, 2 workers),
// because they no longer share the lock's cache line. Everything above
// still holds, with the lock taken only when it is needed:
//   * Waiters. A caller about to park registers in `contended_` (seq_cst
//     store), then looks at the ring's ends again (seq_cst loads); a
//     lock-free caller reserves its cell (seq_cst CAS), then loads
//     `contended_` (seq_cst). One of the two sees the other: the waiter
//     does not park, or the other caller completes under the lock and
//     serves the waiter (an item straight into a getter's slot, a putter's
//     item into a freed cell), exactly as the buffer mode does.
//   * FIFO. The fast paths are skipped while anybody waits, so nobody
//     passes a parked waiter except a call that raced with its parking.
//     An item a leaving getter did not take is stashed ahead of the ring;
//     a cell reserved for a leaving putter becomes a hole that gets skip.
//   * Lifetimes. Without the lock, the store that publishes an item (or
//     frees a cell) is the call's last touch of the queue. A lock-free
//     caller that finds the lock held completes under it, so it cannot
//     return -- and let its owner destroy the queue -- while a locked
//     caller that handed it its item is still inside.
//   * resize() retires the ring for good: it closes it, waits for the
//     reservations already made, and moves the items into the buffer.
// What the ring gives up, all for calls that overlap: a put reserves its
// cell before it fills it, so an item put later but filled sooner waits
// behind it -- try_get() may find nothing for that moment, and a blocking
// get() spins (lock released) instead of parking while it lasts. An item
// stashed for a leaving getter or a hole counts in qsize() beside the
// ring's n cells until a get takes it (n + 1 at most).
//
// Invariants (under lock_; in ring mode read "the ring" for the buffer):
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
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/bounded_ring.h"
#include "sync/deadline.h"
#include "sync/ring_buffer.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {

// Buffer policies: FIFO (Queue, LightQueue), LIFO, and a binary heap.

// Grows `items` (geometrically) so that one more push_back cannot throw
// bad_alloc; false if the memory is not there.
template <typename T>
bool reserve_one(std::vector<T>& items) noexcept {
  if (items.size() < items.capacity()) return true;
  try {
    items.reserve(std::max<std::size_t>(8, 2 * items.capacity()));
    return true;
  } catch (...) {
    return false;
  }
}
template <typename T>
using FifoBuffer = RingBuffer<T>;  // sync/ring_buffer.h

template <typename T>
class LifoBuffer {
 public:
  bool empty() const noexcept { return items_.empty(); }
  std::size_t size() const noexcept { return items_.size(); }
  // Whether one more push cannot fail for want of memory (grows if need be).
  bool make_room_for_one() noexcept { return reserve_one(items_); }
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
  bool make_room_for_one() noexcept { return reserve_one(items_); }
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
  // Bounded FIFO queues keep their items in a lock-free BoundedRing; see
  // "The ring" at the top of this file.
  static constexpr bool kRingCapable = std::is_same_v<Buffer, FifoBuffer<T>> &&
                                       std::is_nothrow_move_constructible_v<T>;
  using Ring = BoundedRing<T>;
  using Ticket = typename Ring::Ticket;

 public:
  static_assert(std::is_move_constructible_v<T>,
                "green::Queue<T>: T must be move-constructible");

  explicit BasicQueue(std::optional<std::size_t> maxsize = std::nullopt)
      : maxsize_(maxsize) {
    if constexpr (kRingCapable) {
      if (maxsize && *maxsize >= 2 && *maxsize <= kMaxRingCapacity) {
        ring_ = std::make_unique<Ring>(*maxsize);
        // relaxed: the queue is not shared yet.
        ring_mode_.store(true, std::memory_order_relaxed);
      }
    }
  }
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
    return size_locked();
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
    if constexpr (kRingCapable) {
      if (ring_mode_.load(std::memory_order_relaxed)) retire_ring_locked(wakes);
    }
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
    if (unfinished_locked() == 0) {
      throw std::logic_error(
          "green::Queue::task_done: called more times than items were put");
    }
    ++tasks_done_;
    if (unfinished_locked() == 0) notify_joiners_locked(wakes);
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
    return unfinished_locked();
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
    if constexpr (kRingCapable) {
      // relaxed: hints. A stale "ring mode" finds the ring closed; a stale
      // "nobody waits" at worst lets this put pass a putter that started
      // parking at the same moment -- concurrent calls, either order.
      if (ring_mode_.load(std::memory_order_relaxed) &&
          contended_.load(std::memory_order_relaxed) == 0) {
        Ticket ticket;
        if (ring_->reserve_push(ticket)) {
          complete_push(ticket, item);
          return true;
        }
      }
    }
    return put_locked(item, deadline, block);
  }

  std::optional<T> get_impl(Deadline deadline, bool block) {
    if constexpr (kRingCapable) {
      // relaxed: as in put_impl.
      if (ring_mode_.load(std::memory_order_relaxed) &&
          contended_.load(std::memory_order_relaxed) == 0) {
        Ticket ticket;
        while (ring_->reserve_pop(ticket)) {
          if (std::optional<T> item = complete_pop(ticket)) return item;
        }  // (a hole: skip it)
      }
    }
    return get_locked(deadline, block);
  }

  // --- The ring's lock-free side. ---

  // Fills a reserved cell. Nobody waiting: without the lock, and the
  // publishing store is this call's last touch of the queue (so a getter
  // that takes the item may destroy the queue at once). Somebody waiting:
  // under the lock, which then serves waiting getters; a getter that took
  // our item meanwhile sees `contended_` and passes through the lock
  // before it returns (complete_pop), so it cannot destroy the queue
  // under us either.
  void complete_push(const Ticket& ticket, T& item) {
    if (!must_complete_locked()) {
      ring_->publish(ticket, std::move(item));
      return;
    }
    WakeBatch wakes;  // woken after unlock, as everywhere here
    if (!lock_unless_closed()) {
      ring_->publish(ticket, std::move(item));  // resize() drains it
      return;
    }
    ring_->publish(ticket, std::move(item));
    settle_locked(wakes);
    publish_contention_locked();
    lock_.unlock();
  }

  // Empties a reserved cell (nullopt for a hole), as complete_push.
  std::optional<T> complete_pop(const Ticket& ticket) {
    std::optional<T> item;
    if (!must_complete_locked()) {
      ring_->take(ticket, item);
      return item;
    }
    WakeBatch wakes;
    if (!lock_unless_closed()) {
      ring_->take(ticket, item);
      return item;
    }
    ring_->take(ticket, item);
    settle_locked(wakes);
    publish_contention_locked();
    lock_.unlock();
    return item;
  }

  // Whether a reserved cell must be completed under the lock:
  //  * somebody waits (or an item is stashed). seq_cst: with the
  //    reservation's seq_cst CAS, our half of the handshake with a parking
  //    waiter (register_waiter_locked).
  //  * the lock is held. Its holder may have published the item we took
  //    (or serve the cell we free) and still be inside the queue: we must
  //    not return -- and let our caller destroy the queue -- before it has
  //    let go. Having taken its item, we see its lock() (or its unlock()).
  bool must_complete_locked() const noexcept {
    return contended_.load(std::memory_order_seq_cst) != 0 || lock_.held();
  }

  // Takes lock_, unless resize() closes the ring meanwhile: it holds the
  // lock until every reserved cell is completed, so a completer must not
  // wait for it.
  bool lock_unless_closed() GREEN_NO_THREAD_SAFETY_ANALYSIS {
    for (;;) {
      // (Taken with the ring closed is impossible: resize() holds the lock
      // until our cell is completed.)
      if (lock_.try_lock()) return true;
      if (ring_->closed()) return false;
      cpu_relax();
    }
  }

  // --- Locked paths. ---

  bool put_locked(T& item, Deadline deadline, bool block) {
    // Declared first, so that the waiters it claims are woken after the
    // lock is released: by then this call no longer touches the queue, and
    // a woken getter may destroy it. Claims happen only on the way out.
    WakeBatch wakes;
    SpinUniqueLock lock(lock_);
    for (;;) {
      const bool ring = in_ring_mode_locked();
      if (ring ? put_ring_locked(item, wakes) : give_locked(item, wakes)) {
        publish_contention_locked();
        return true;
      }
      if (!block || expired(deadline)) {
        publish_contention_locked();
        return false;
      }
      if (ring && !register_waiter_locked(/*putter=*/true)) {
        back_off(lock);  // a cell is being freed: look again
        continue;
      }
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

  std::optional<T> get_locked(Deadline deadline, bool block) {
    WakeBatch wakes;  // as in put_locked
    SpinUniqueLock lock(lock_);
    for (;;) {
      const bool ring = in_ring_mode_locked();
      if (std::optional<T> item =
              ring ? take_ring_locked(wakes) : take_locked(wakes)) {
        publish_contention_locked();
        return item;
      }
      if (!block || expired(deadline)) {
        publish_contention_locked();
        return std::nullopt;
      }
      if (ring && !register_waiter_locked(/*putter=*/false)) {
        back_off(lock);  // an item is being published: look again
        continue;
      }
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
    while (unfinished_locked() > 0) {
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

  std::size_t unfinished_locked() const GREEN_REQUIRES(lock_) {
    const std::size_t ring_puts = ring_ ? ring_->pushes() - holes_ : 0;
    return ring_puts + locked_puts_ - tasks_done_;
  }

  // --- Ring mode, under the lock. ---

  bool in_ring_mode_locked() const GREEN_REQUIRES(lock_) {
    if constexpr (!kRingCapable) return false;
    // relaxed: only written under lock_.
    return ring_mode_.load(std::memory_order_relaxed);
  }

  // The parking handshake (Dekker's): a waiter stores its registration
  // (seq_cst), then looks at the ring's ends (seq_cst loads); a completer
  // reserves a cell (seq_cst CAS), then loads `contended_` (seq_cst).
  // In the single order of those operations one of the two comes first,
  // so either the completer sees the waiter and serves it under the lock,
  // or the waiter sees the reservation and does not park. Returns false
  // in the second case.
  bool register_waiter_locked(bool putter) GREEN_REQUIRES(lock_) {
    contended_.store(contention_locked() + 1, std::memory_order_seq_cst);
    return putter ? !ring_->maybe_has_room() : !ring_->maybe_nonempty();
  }

  // Lets a reserved cell's completer in (it may need the lock), then
  // looks again.
  void back_off(SpinUniqueLock& lock) GREEN_REQUIRES(lock_) {
    lock.get().unlock();
    for (int i = 0; i < 64; ++i) cpu_relax();
    lock.get().lock();
  }

  // What only the lock can serve: parked callers, a stashed item.
  std::size_t contention_locked() const GREEN_REQUIRES(lock_) {
    return getters_.size() + putters_.size() + (stash_ ? 1 : 0);
  }
  // Refreshed at the end of every locked section in ring mode; never
  // below the truth while a registered waiter is linked (it registered
  // and linked itself in one locked section).
  void publish_contention_locked() GREEN_REQUIRES(lock_) {
    // relaxed: a hint for the fast paths; the handshake's ordering comes
    // from register_waiter_locked's seq_cst store.
    if (ring_) contended_.store(contention_locked(), std::memory_order_relaxed);
  }

  // The oldest item at hand: the stash, then the ring.
  bool pop_oldest_locked(std::optional<T>& out) GREEN_REQUIRES(lock_) {
    if (stash_) {
      out.emplace(std::move(*stash_));
      stash_.reset();
      return true;
    }
    return ring_->try_pop(out);
  }

  // Gives items at hand to waiting getters, oldest to first. An item no
  // getter accepts (each was leaving) goes to the stash, ahead of the
  // ring.
  void serve_getters_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    std::optional<T> item;
    while (!getters_.empty() && pop_oldest_locked(item)) {
      if (!hand_to_getter_locked(*item, wakes)) {
        stash_.emplace(std::move(*item));
        return;
      }
      item.reset();
    }
  }

  // Moves waiting putters' items into free cells, oldest first. A cell
  // reserved for a putter that turns out to be leaving (no putter left to
  // fill it) becomes a hole.
  void refill_ring_from_putters_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    while (!putters_.empty()) {
      Ticket ticket;
      if (!ring_->reserve_push(ticket)) return;
      bool filled = false;
      while (Waiter* putter = putters_.pop_front()) {
        if (!wakes.claim(putter)) continue;  // leaving: it keeps its item
        auto* slot = static_cast<PutSlot*>(putter->payload);
        ring_->publish(ticket, std::move(*slot->item));
        slot->taken = true;
        filled = true;
        break;
      }
      if (!filled) {
        ring_->publish_hole(ticket);
        ++holes_;
      }
    }
  }

  // Moves what is at hand to whoever waits until nothing moves: parked
  // putters' items into free cells, the oldest items to parked getters.
  // Both kinds can be parked at once for a moment: a getter parks on an
  // empty ring while a pop that will free a full ring's cell is still in
  // flight; that pop's completion (here) must then serve the getter too.
  void settle_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    for (;;) {
      const std::size_t before = contention_locked();
      refill_ring_from_putters_locked(wakes);
      serve_getters_locked(wakes);
      if (contention_locked() == before) return;
    }
  }

  bool put_ring_locked(T& item, WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    // Older items go to waiting getters first; if getters still wait,
    // nothing older is left: ours goes straight to one.
    serve_getters_locked(wakes);
    if (hand_to_getter_locked(item, wakes)) {
      ++locked_puts_;
      return true;
    }
    refill_ring_from_putters_locked(wakes);  // older putters first
    if (!putters_.empty()) return false;     // full, and they wait before us
    Ticket ticket;
    if (!ring_->reserve_push(ticket)) return false;
    ring_->publish(ticket, std::move(item));
    return true;
  }

  std::optional<T> take_ring_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    serve_getters_locked(wakes);                 // they came first: if any
    if (!getters_.empty()) return std::nullopt;  // still wait, we are last
    std::optional<T> item;
    if (!pop_oldest_locked(item)) {
      // A putter may have parked while the ring drained: let it in.
      refill_ring_from_putters_locked(wakes);
      if (!pop_oldest_locked(item)) return std::nullopt;
    }
    settle_locked(wakes);  // a cell was freed
    return item;
  }

  // resize() on a ring-mode queue: from now on the queue keeps its items
  // in buffer_ under the lock, as unbounded queues do. Closes the ring,
  // waits for reservations already made (their completers see the ring
  // closed and finish without the lock), and moves the items over, oldest
  // first, serving waiting getters on the way.
  void retire_ring_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    // Room first, so that moving the items over cannot fail half-way.
    buffer_.reserve(buffer_.size() + ring_->capacity() + 1);
    // relaxed: read under lock_ or as a hint (put_impl/get_impl).
    ring_mode_.store(false, std::memory_order_relaxed);
    ring_->close();
    while (!ring_->quiescent()) std::this_thread::yield();
    auto keep = [&](T&& item) {
      if (hand_to_getter_locked(item, wakes)) return;
      buffer_.push(std::move(item));
    };
    if (stash_) {
      keep(std::move(*stash_));
      stash_.reset();
    }
    ring_->drain(keep);
    // No fast path can run any more: the hint is no longer read.
    contended_.store(0, std::memory_order_relaxed);
  }

  // --- Buffer mode (unbounded, LIFO, priority, channels, resized). ---

  bool has_room_locked() const GREEN_REQUIRES(lock_) {
    if (in_ring_mode_locked()) return size_locked() < ring_->capacity();
    return !maxsize_ || buffer_.size() < *maxsize_;
  }

  std::size_t size_locked() const GREEN_REQUIRES(lock_) {
    if (in_ring_mode_locked()) {
      return ring_->reserved_size() + (stash_ ? 1 : 0);
    }
    return buffer_.size();
  }

  // Hands `item` to the first getter that accepts it. Returns whether
  // `item` was moved from (false: every getter was leaving; none is left).
  bool hand_to_getter_locked(T& item, WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    while (Waiter* getter = getters_.pop_front()) {
      // Fill the slot first: once woken, the getter returns without the
      // lock (block_on_handoff). If it is leaving instead, take the item
      // back and try the next getter.
      auto* slot = static_cast<std::optional<T>*>(getter->payload);
      slot->emplace(std::move(item));
      if (wakes.claim(getter)) return true;
      item = std::move(**slot);
      slot->reset();
    }
    return false;
  }

  // Hands `item` to the first getter that accepts it, else buffers it if
  // there is room. Returns whether `item` was moved from.
  bool give_locked(T& item, WakeBatch& wakes) GREEN_REQUIRES(lock_) {
    if (hand_to_getter_locked(item, wakes)) {
      ++locked_puts_;
      return true;
    }
    // I2: no putter barges past putters_ waiting. They wait because the
    // queue is full -- or, rarely, because the buffer could not grow for
    // them (refill_from_putters_locked); then they still go first.
    if (!has_room_locked() || !putters_.empty()) return false;
    buffer_.push(std::move(item));
    ++locked_puts_;
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
        ++locked_puts_;
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
      // Room first: a putter is told its item is in only once the push
      // cannot fail. Without the memory it stays parked, item in hand, and
      // a later get() lets it in. (After a get's pop there is always room.)
      if (!buffer_.make_room_for_one()) return;
      std::optional<T> item = take_from_putter_locked(wakes);
      if (!item) return;
      buffer_.push(std::move(*item));
    }
  }

  // Read by every fast-path call, written rarely: a cache line of their
  // own, away from the lock's.
  alignas(64) std::atomic<bool> ring_mode_{false};  // ring_ in use
  std::atomic<std::size_t> contended_{0};  // contention_locked(), a hint
  std::unique_ptr<Ring> ring_;             // set once, in the constructor

  alignas(64) mutable SpinLock lock_;
  std::optional<std::size_t> maxsize_ GREEN_GUARDED_BY(lock_);
  Buffer buffer_ GREEN_GUARDED_BY(lock_);           // all but ring mode
  std::optional<T> stash_ GREEN_GUARDED_BY(lock_);  // ring mode: oldest item
  WaitList getters_ GREEN_GUARDED_BY(lock_);  // payload: std::optional<T>*
  WaitList putters_ GREEN_GUARDED_BY(lock_);  // payload: PutSlot*
  WaitList joiners_ GREEN_GUARDED_BY(lock_);  // join(); payload: bool* done
  // Task counts: puts are the ring's reservations (less holes) plus the
  // puts made under the lock.
  std::size_t locked_puts_ GREEN_GUARDED_BY(lock_) = 0;
  std::size_t holes_ GREEN_GUARDED_BY(lock_) = 0;
  std::size_t tasks_done_ GREEN_GUARDED_BY(lock_) = 0;
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
