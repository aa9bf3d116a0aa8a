// park_until / block_on: see park.h.
#include "runtime/park.h"

#include <new>

#include "runtime/worker.h"

namespace green::detail {

WakeReason park_until(Fiber* fiber, std::uint32_t epoch,
                      Deadline deadline) noexcept {
  if (!deadline) return fiber->park();
  // The node lives in this frame and in the timer heap of the worker we
  // park on (runtime/timer_heap.h). Woken for another reason, we unlink it
  // (perhaps from another worker, after a migration); cancel() waits for
  // an expiry in progress, so nothing touches the node once we return.
  // Timed out, the expiry already unlinked it.
  TimerNode node;
  node.deadline = *deadline;
  node.fiber = fiber;
  node.epoch = epoch;
  try {
    current_worker()->timers().add(node);
  } catch (const std::bad_alloc&) {
    // No room for the deadline: time out at once rather than sleep
    // forever (the caller sees an expired wait and loses nothing).
    fiber->wake(epoch, WakeReason::kTimedOut, false);
  }
  const WakeReason reason = fiber->park();
  if (reason != WakeReason::kTimedOut) node.heap->cancel(node);
  return reason;
}

namespace {

WakeReason block(WaitList& list, std::unique_lock<SpinLock>& lock,
                 Waiter& waiter, Deadline deadline, bool relock_if_notified) {
  if (Fiber* fiber = current_fiber()) {
    waiter.fiber = fiber;
    // Holding `lock` (perhaps another fiber's lock_), this takes no lock
    // of ours; a pending interrupt is thrown with `lock` released, as one
    // that comes while parked is: a caller that catches it may block on
    // another lock (Condition takes the user's lock again).
    if (!fiber->begin_park_holding_lock(waiter.epoch)) {
      lock.unlock();
      fiber->raise_interrupt();      // throws
      lock.lock();                   // nothing was pending after all:
      return WakeReason::kTimedOut;  // a spurious return; callers re-check
    }
    list.push_back(&waiter);
    lock.unlock();
    fiber->release_kill_waiters_if_owed();
    const WakeReason reason = park_until(fiber, waiter.epoch, deadline);
    if (reason == WakeReason::kNotified && !relock_if_notified) return reason;
    lock.lock();
    if (waiter.linked) list.remove(&waiter);
    if (reason == WakeReason::kInterrupted) {
      lock.unlock();
      fiber->throw_if_interrupted();
      // Kept pending (Fiber::interrupt_raisable): a spurious return, with
      // the lock held as promised.
      lock.lock();
    }
    return reason == WakeReason::kNotified ? reason : WakeReason::kTimedOut;
  }
  ThreadParker parker;
  waiter.thread = &parker;
  list.push_back(&waiter);
  lock.unlock();
  const WakeReason reason = parker.wait(deadline);
  if (reason == WakeReason::kNotified && !relock_if_notified) return reason;
  lock.lock();
  if (waiter.linked) list.remove(&waiter);
  return reason;
}

}  // namespace

WakeReason block_on(WaitList& list, std::unique_lock<SpinLock>& lock,
                    Waiter& waiter, Deadline deadline) {
  return block(list, lock, waiter, deadline, true);
}

WakeReason block_on_handoff(WaitList& list, std::unique_lock<SpinLock>& lock,
                            Waiter& waiter, Deadline deadline) {
  return block(list, lock, waiter, deadline, false);
}

WakeReason ThreadParker::wait(
    std::optional<std::chrono::steady_clock::time_point> deadline) noexcept {
  std::unique_lock<std::mutex> lock(mutex_);
  auto woken = [this] { return reason_ != WakeReason::kNone; };
  if (deadline) {
    if (!condition_.wait_until(lock, *deadline, woken)) {
      if (claimed_) {
        condition_.wait(lock, woken);  // a notifier claimed us: it wakes us
      } else {
        reason_ = WakeReason::kTimedOut;  // later wake() calls now fail
      }
    }
  } else {
    condition_.wait(lock, woken);
  }
  return reason_;
}

bool ThreadParker::wake(WakeReason reason) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (reason_ != WakeReason::kNone || claimed_) return false;
  reason_ = reason;
  condition_.notify_one();
  return true;
}

bool ThreadParker::claim() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (reason_ != WakeReason::kNone || claimed_) return false;
  claimed_ = true;
  return true;
}

void ThreadParker::release_claim() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  reason_ = WakeReason::kNotified;
  claimed_ = false;
  condition_.notify_one();
}

bool Waiter::claim() noexcept {
  if (fiber) return fiber->claim(epoch, WakeReason::kNotified);
  return thread->claim();
}

void Waiter::release_claim(bool as_next) noexcept {
  if (fiber) {
    fiber->release_claim(as_next);
  } else {
    thread->release_claim();
  }
}

bool Waiter::notify(bool as_next) noexcept {
  if (fiber) return fiber->wake(epoch, WakeReason::kNotified, as_next);
  return thread->wake(WakeReason::kNotified);
}

}  // namespace green::detail
