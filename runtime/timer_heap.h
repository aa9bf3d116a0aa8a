// TimerHeap: the deadlines of green threads parked on one worker.
//
// Why not Asio's timers. Every asio::steady_timer went into the reactor's
// timer queue, and the reactor kept a timerfd armed for the earliest one:
// each expiry re-armed it with timerfd_settime(), which in a VM programs
// the host's timer (an MSR write and a VM exit). With a million sleepers
// that was 22% of the run. Here a worker keeps its own binary min-heap and
// reads the clock when it polls for events anyway; when it parks, the
// earliest deadline becomes the timeout of its epoll_wait (Asio's
// run_one_until), which costs no extra system call. Go's timers work the
// same way (per-P heaps, checked in the scheduler, netpoll with a timeout).
//
// Design. A TimerNode lives in the frame of the green thread that parks
// (park_until), or in a green::Timeout's state, and is linked into the
// heap of the worker it parks on (or where the Timeout was made), by
// index, so that removal is O(log n). The heap is 4-ary and keeps each
// deadline beside its node pointer: sifting compares without touching the
// nodes, which sit on a million different stacks (comparing through the
// pointers was 25% of a million sleepers' run). Adding happens only on the
// heap's own worker; removal (a green thread woken early, perhaps after it
// migrated) and expiry may race, so the heap has a lock. Expiry wakes the green
// thread WITH the lock held: the green thread's cancel() takes the same
// lock, so its frame (the node) and the Fiber stay alive until the expiry
// is done with them; after the wake the expiry never touches the node.
//
// Invariants (under lock_): entries_[i].node->index == i and
// entries_[i].deadline == entries_[i].node->deadline for every entry; a
// node not in the heap has index == kNotInHeap; 4-ary heap order on
// deadline (ties in any order).
#ifndef GREEN_RUNTIME_TIMER_HEAP_H_
#define GREEN_RUNTIME_TIMER_HEAP_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

class Fiber;
class TimerHeap;

struct TimerNode {
  static constexpr std::size_t kNotInHeap = ~std::size_t{0};
  std::chrono::steady_clock::time_point deadline;
  // What expiry does: wake `fiber` from park `epoch` (kTimedOut), or, when
  // set, call on_expiry(context) instead (green::Timeout). Either runs on
  // the heap's worker with the heap's lock held, so it must not take a
  // lock that anyone holds while calling add() or cancel().
  Fiber* fiber = nullptr;
  std::uint32_t epoch = 0;  // the fiber's park epoch
  void (*on_expiry)(void* context) noexcept = nullptr;
  void* context = nullptr;
  std::size_t index = kNotInHeap;  // guarded by heap->lock_
  TimerHeap* heap = nullptr;       // set by add()
};

class TimerHeap {
 public:
  using Clock = std::chrono::steady_clock;

  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;

  // Links `node` (deadline, fiber and epoch set). The owning worker only.
  // Throws std::bad_alloc if the heap cannot grow.
  void add(TimerNode& node);
  // Unlinks `node` if it is still linked. Any thread; after it returns, no
  // expiry touches `node` or its fiber any more.
  void cancel(TimerNode& node) noexcept;
  // Wakes (kTimedOut) the fibers whose deadline is not after `now`; returns
  // how many nodes expired. The owning worker only.
  std::size_t expire(Clock::time_point now) noexcept;
  // The earliest deadline, if any. The owning worker only (a lock-free
  // size check first, so an empty heap costs no lock).
  std::optional<Clock::time_point> earliest() noexcept;
  bool empty() const noexcept {
    // relaxed: a hint for the owner, which alone adds; a racing cancel()
    // can only make it empty, and expire()/earliest() re-check under lock_.
    return size_.load(std::memory_order_relaxed) == 0;
  }

 private:
  struct Entry {
    Clock::time_point deadline;
    TimerNode* node;
  };
  static constexpr std::size_t kArity = 4;

  // Moves `entry` to position i and tells its node.
  void place(std::size_t i, Entry entry) noexcept GREEN_REQUIRES(lock_);
  // Restore heap order for `entry`, which is to go at (hole) i.
  void sift_up(std::size_t i, Entry entry) noexcept GREEN_REQUIRES(lock_);
  void sift_down(std::size_t i, Entry entry) noexcept GREEN_REQUIRES(lock_);
  void remove_at(std::size_t i) noexcept GREEN_REQUIRES(lock_);

  SpinLock lock_;
  std::vector<Entry> entries_ GREEN_GUARDED_BY(lock_);
  std::atomic<std::size_t> size_{0};  // entries_.size(), written under lock_
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_TIMER_HEAP_H_
