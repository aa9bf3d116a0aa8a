// GlobalQueue<T>: the one shared FIFO of runnable green threads.
//
// Design
// ------
// Every worker owns a bounded lock-free RunQueue (runtime/run_queue.h). Work
// that does not fit there, or that does not come from a worker, goes here:
//   * overflow: a worker whose ring is full moves the older half of it, plus
//     the item it was pushing, here in one batch (RunQueue::push_back);
//   * injection: a non-worker thread (a timer, the reactor, a foreign thread
//     waking a green thread) pushes here;
//   * fairness: a worker looks here every few dozen scheduling rounds even when
//     its own queue is busy, so nothing here starves.
// It is Go's global run queue (`sched.runq` in src/runtime/proc.go: runqputslow
// feeds it, globrunqput/globrunqget use it) and Tokio's `Inject` queue
// (tokio/src/runtime/scheduler/inject.rs). Both are an intrusive linked list
// under a mutex. The lock is kept here (the queue is off the hot path: the
// local rings are), but a ring's overflow travels as an array of pointers,
// not a linked chain: taking a batch then reads no item, where walking the
// links cost one cache miss per item under the lock (runtime/batched_fifo.h
// has the numbers).
//
// T has a member `T* queue_next`, used only while a single item sits in this
// queue (or in a chain being handed to it), so pushing one item never
// allocates and never fails (an overflow whose array cannot be allocated is
// linked the same way); and `bool started_running() const`, which picks the
// list (below).
//
// Two lists: woken before fresh, with aging
// -----------------------------------------
// Items are kept in two FIFO lists, chosen at push time by
// T::started_running(): `woken_` holds green threads that have run before
// (they hold a stack), `fresh_` those that never ran (they own no stack yet,
// and take one when they first run). Pops serve woken_ first, so a backlog
// of a million spawned green threads does not hold a million parked stacks
// behind it (1M sleepers of 0-100 ms peaked at 2.7 GB with one FIFO, 0.4 GB
// with woken first). Two rules keep this from starving anyone:
//   * each list is FIFO, and every push of a started item goes to the back
//     of woken_, whatever path it came by (injection, a ring's overflow
//     batch): an earlier version let woken items jump ahead of overflowed
//     ones and starved hundreds of echo connections for seconds;
//   * aging: while woken_ is never empty, every kFreshTurn-th detach still
//     starts with the oldest fresh item, so a server under full load keeps
//     starting the handlers of new connections.
//
// Invariants (hold whenever mutex_ is free)
// ---------------------------------------
//   1. Each list is a BatchedFifo (its own invariants in batched_fifo.h),
//      touched only with mutex_ held.
//   2. size_ is the sum of both lists' lengths; written only with mutex_
//      held; it may be read without it.
//   3. An item is in at most one queue (this one, a RunQueue ring, or a
//      RunQueue run-next slot) at a time; the scheduler guarantees it.
//   4. Every item of woken_ answered started_running() == true when pushed,
//      every item of fresh_ false.
//
// Memory order of size_
// ---------------------
// size() is a lock-free hint so an idle check needs no lock. Writers store it
// with relaxed order under the mutex; readers load it relaxed. That is enough
// for the scheduler's parking protocol, which puts a seq_cst fence between
// "publish work" (a push, sequenced before its fence) and "look for idle
// workers", and another between "announce I am idle" and "re-check the
// queues": two seq_cst fences order the relaxed accesses around them, so at
// least one side sees the other. A reader that needs the items themselves
// takes the lock (pop, pop_batch_into), which is authoritative and makes the
// items' contents visible (the mutex's acquire pairs with the pusher's
// unlock).
//
// Usage (scheduler side):
//   GlobalQueue<GreenThread> global;
//   global.push(thread);                         // from any thread
//   global.push_array(n, item_at);               // a ring's overflow
//   if (T* t = global.pop_batch_into(local_queue, global.size() / workers + 1))
//     run(t);                                    // local_queue got the rest
#ifndef GREEN_RUNTIME_GLOBAL_QUEUE_H_
#define GREEN_RUNTIME_GLOBAL_QUEUE_H_

#include <algorithm>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "runtime/batched_fifo.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

// Defined in runtime/run_queue.h, which includes this header; declared here so
// that this header stands alone (pop_batch_into is a template, so RunQueue
// needs to be complete only where it is instantiated).
template <typename T, std::size_t Capacity>
class RunQueue;

template <typename T>
class GlobalQueue {
 public:
  GlobalQueue() noexcept = default;
  GlobalQueue(const GlobalQueue&) = delete;
  GlobalQueue& operator=(const GlobalQueue&) = delete;
  // The queue does not own its items: destroying a non-empty queue only
  // forgets them (the scheduler drains it at shutdown).
  ~GlobalQueue() = default;

  // Appends `item` to the back of its list (woken or fresh, see above).
  // Any thread; the caller owns `item` until this returns.
  void push(T* item) noexcept GREEN_EXCLUDES(mutex_) {
    assert(item != nullptr);
    const bool woken = item->started_running();
    Lock lock(mutex_);
    (woken ? woken_ : fresh_).push_back(item);
    add_size_locked(1);
  }

  // Appends the chain first -> ... -> last (linked through queue_next, in
  // FIFO order), each item to the back of its list, in one critical
  // section. Any thread; the caller owns the chain until this returns.
  void push_batch(T* first, T* last) noexcept GREEN_EXCLUDES(mutex_) {
    assert(first != nullptr && last != nullptr);
    last->queue_next = nullptr;
    // Split the private chain outside the lock, keeping each part in order.
    Chain woken, fresh;
    T* previous = nullptr;
    for (T* item = first; item != nullptr;) {
      T* const next = item->queue_next;
      item->queue_next = nullptr;
      (item->started_running() ? woken : fresh).append(item);
      previous = item;
      item = next;
    }
    assert(previous == last);  // `last` ends the chain
    (void)previous;
    Lock lock(mutex_);
    if (woken.count > 0)
      woken_.push_chain(woken.first, woken.last, woken.count);
    if (fresh.count > 0)
      fresh_.push_chain(fresh.first, fresh.last, fresh.count);
    add_size_locked(woken.count + fresh.count);
  }

  // Appends item_at(0), ..., item_at(count - 1), in that order, each to the
  // back of its list, in one critical section, as arrays (batched_fifo.h):
  // a ring's overflow. `item_at` is called outside the lock, once per index
  // (again for every index if memory is short), and must give the same item
  // each time. Any thread; the caller owns the items until this returns.
  template <typename ItemAt>
  void push_array(std::size_t count, ItemAt&& item_at) noexcept
      GREEN_EXCLUDES(mutex_) {
    assert(count > 0 && count <= UINT32_MAX);
    Batch* woken = nullptr;
    Batch* fresh = nullptr;
    for (std::size_t i = 0; i < count; ++i) {
      T* const item = item_at(i);
      Batch*& batch = item->started_running() ? woken : fresh;
      // Created at the first item of its kind, with room for every item
      // left, so no later add() can overflow it.
      if (batch == nullptr) {
        batch = Batch::create(static_cast<std::uint32_t>(count - i));
        if (batch == nullptr) {
          // Out of memory: hand the items over linked instead, which
          // cannot fail. Same order, same lists; only the walk comes back.
          Batch::destroy_chain(woken);
          Batch::destroy_chain(fresh);
          for (std::size_t j = 0; j + 1 < count; ++j) {
            item_at(j)->queue_next = item_at(j + 1);
          }
          push_batch(item_at(0), item_at(count - 1));
          return;
        }
      }
      batch->add(item);
    }
    Lock lock(mutex_);
    if (woken) woken_.push_batch(woken);
    if (fresh) fresh_.push_batch(fresh);
    add_size_locked(count);
  }

  // Removes and returns the oldest item, or nullptr if empty. Any thread.
  T* pop() noexcept GREEN_EXCLUDES(mutex_) {
    Batch* retired = nullptr;
    T* item = nullptr;
    {
      Lock lock(mutex_);
      if (size_.load(std::memory_order_relaxed) == 0) return nullptr;
      detach_locked(
          1, [&item](T* taken) { item = taken; }, retired);
    }
    Batch::destroy_chain(retired);
    return item;
  }

  // Removes up to `max` + 1 of the oldest items: the first is returned, to be
  // run directly; the others go, in FIFO order, into `destination`, a queue
  // owned by the calling worker. Returns nullptr if empty. The caller passes
  // the fairness bound (Go's globrunqget uses size() / workers + 1, so one
  // worker does not take everything); this also never moves more than half a
  // ring, as globrunqget, nor more than `destination` has room for, so
  // nothing overflows straight back here. `woken_only`: take at most as
  // many as there are woken items (at least one), i.e. no batch of fresh
  // ones -- a busy worker's periodic check (Worker::find_runnable).
  template <std::size_t Capacity>
  T* pop_batch_into(RunQueue<T, Capacity>& destination, std::size_t max,
                    bool woken_only = false) noexcept GREEN_EXCLUDES(mutex_) {
    // Room in the destination ring. The caller owns it, so it can only gain
    // room (thieves take) until we push: the figure is safe to use later.
    const std::size_t used = destination.size();
    const std::size_t room = used < Capacity ? Capacity - used : 0;
    const std::size_t to_move = std::min({max, room, Capacity / 2});
    // The batch is copied out under the lock and pushed after it: only
    // pointers move (batched_fifo.h), and a ring push can never wait on
    // this lock (were `room` ever wrong, the ring would overflow into
    // push_array; not a deadlock).
    T* taken[Capacity / 2 + 1];
    std::size_t count;
    Batch* retired = nullptr;
    {
      Lock lock(mutex_);
      // relaxed: we hold mutex_, the only writer.
      const std::size_t size = size_.load(std::memory_order_relaxed);
      if (size == 0) return nullptr;
      count = std::min(to_move + 1, size);
      if (woken_only) {
        count = std::min(count, std::max<std::size_t>(woken_.size(), 1));
      }
      std::size_t next = 0;
      detach_locked(
          count, [&taken, &next](T* item) { taken[next++] = item; }, retired);
    }
    Batch::destroy_chain(retired);
    for (std::size_t i = 1; i < count; ++i) {
      destination.push_back(taken[i], *this);  // Fits: see `room` above.
    }
    return taken[0];
  }

  // Number of items; exact when no other thread is pushing or popping, a hint
  // otherwise (see "Memory order of size_" above). Any thread, lock-free.
  std::size_t size() const noexcept {
    // relaxed: a hint; pairs with the relaxed stores in add_size_locked and
    // detach_locked through the scheduler's seq_cst fences, not by itself.
    return size_.load(std::memory_order_relaxed);
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  using Batch = ItemBatch<T>;

  // A SpinLock (runtime/spin_lock.h), not std::mutex: with a futex-based
  // mutex a worker that found the queue locked went to sleep in the kernel
  // and the holder paid a futex wake on unlock (16,000 context switches in
  // one skynet run, 17% of its time); the critical sections here are short
  // enough to spin through. These two thin wrappers keep the names below.
  class GREEN_CAPABILITY("mutex") Mutex {
   public:
    void lock() noexcept GREEN_ACQUIRE() { lock_.lock(); }
    void unlock() noexcept GREEN_RELEASE() { lock_.unlock(); }

   private:
    SpinLock lock_;
  };
  class GREEN_SCOPED_CAPABILITY Lock {
   public:
    explicit Lock(Mutex& mutex) noexcept GREEN_ACQUIRE(mutex) : mutex_(mutex) {
      mutex_.lock();
    }
    ~Lock() GREEN_RELEASE() { mutex_.unlock(); }
    Lock(const Lock&) = delete;
    Lock& operator=(const Lock&) = delete;

   private:
    Mutex& mutex_;
  };

  // A private chain being built outside the lock (push_batch).
  struct Chain {
    T* first = nullptr;
    T* last = nullptr;
    std::size_t count = 0;
    void append(T* item) noexcept {
      if (last == nullptr) {
        first = item;
      } else {
        last->queue_next = item;
      }
      last = item;
      ++count;
    }
  };

  void add_size_locked(std::size_t count) noexcept GREEN_REQUIRES(mutex_) {
    // relaxed: writers are serialised by mutex_, so a load + store (no RMW)
    // is exact; lock-free readers only want a hint (see size()).
    size_.store(size_.load(std::memory_order_relaxed) + count,
                std::memory_order_relaxed);
  }

  // Unlinks `count` items (1 <= count <= size_) and passes them to `sink`
  // in order: woken ones first, then fresh ones, oldest first in each; on
  // every kFreshTurn-th call one fresh item leads (aging, above). Emptied
  // batches go onto `retired`, to be freed after the lock is let go.
  template <typename Sink>
  void detach_locked(std::size_t count, Sink&& sink, Batch*& retired) noexcept
      GREEN_REQUIRES(mutex_) {
    // relaxed: we hold mutex_, the only writer; same reasoning as above.
    const std::size_t size = size_.load(std::memory_order_relaxed);
    assert(count >= 1 && count <= size);
    std::size_t taken = 0;
    if (!fresh_.empty() && ++detach_calls_ % kFreshTurn == 0) {
      sink(fresh_.pop_front(retired));
      ++taken;
    }
    for (; taken < count && !woken_.empty(); ++taken) {
      sink(woken_.pop_front(retired));
    }
    for (; taken < count; ++taken) sink(fresh_.pop_front(retired));
    size_.store(size - count, std::memory_order_relaxed);  // As above.
  }

  // One detach in this many starts with a fresh item even when woken ones
  // wait (aging, above). Small enough that new connections start promptly
  // under load, large enough that woken stacks still drain first.
  static constexpr std::uint32_t kFreshTurn = 4;

  // Guards both lists (and the queue_next links of every single item in
  // them), detach_calls_, and all writes to size_. Taken only on overflow,
  // on injection from non-workers and on a worker's periodic fairness
  // check, so contention is low; Go uses sched.lock the same way.
  Mutex mutex_;
  BatchedFifo<T> woken_ GREEN_GUARDED_BY(mutex_);  // Items that have run.
  BatchedFifo<T> fresh_ GREEN_GUARDED_BY(mutex_);  // Items that never ran.
  std::uint32_t detach_calls_ GREEN_GUARDED_BY(mutex_) = 0;
  // Written under mutex_, read without it (invariant 2).
  std::atomic<std::size_t> size_{0};
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_GLOBAL_QUEUE_H_
