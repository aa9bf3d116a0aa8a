// park_until / block_on: see park.h.
#include "runtime/park.h"

#include <asio/steady_timer.hpp>

#include "runtime/worker.h"

namespace green::detail {

WakeReason park_until(Fiber* fiber, std::uint32_t epoch,
                      Deadline deadline) noexcept {
  if (!deadline) return fiber->park();
  // The timer lives on this fiber's stack and on the reactor of the worker
  // it parks on. Its handler runs on that worker and only wakes the fiber
  // (never resumes it); it holds a reference so that a late expiry, after
  // the fiber woke for another reason and even ended, touches a live
  // object and is ignored as stale. cancel() and the destructor may run on
  // another worker once the fiber migrated: Asio guards a timer queue with
  // its reactor's mutex, and nothing else touches this timer object.
  asio::steady_timer timer(current_worker()->io(), *deadline);
  timer.async_wait(
      [ref = FiberRef(fiber), epoch](const std::error_code& error) {
        if (!error) ref->wake(epoch, WakeReason::kTimedOut, false);
      });
  const WakeReason reason = fiber->park();
  if (reason != WakeReason::kTimedOut) timer.cancel();
  return reason;
}

namespace {

WakeReason block(WaitList& list, std::unique_lock<SpinLock>& lock,
                 Waiter& waiter, Deadline deadline, bool relock_if_notified) {
  if (Fiber* fiber = current_fiber()) {
    waiter.fiber = fiber;
    waiter.epoch = fiber->begin_park();  // throws a pending interrupt
    list.push_back(&waiter);
    lock.unlock();
    const WakeReason reason = park_until(fiber, waiter.epoch, deadline);
    if (reason == WakeReason::kNotified && !relock_if_notified) return reason;
    lock.lock();
    if (waiter.linked) list.remove(&waiter);
    if (reason == WakeReason::kInterrupted) {
      lock.unlock();
      fiber->throw_if_interrupted();
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
      reason_ = WakeReason::kTimedOut;  // later wake() calls now fail
    }
  } else {
    condition_.wait(lock, woken);
  }
  return reason_;
}

bool ThreadParker::wake(WakeReason reason) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (reason_ != WakeReason::kNone) return false;
  reason_ = reason;
  condition_.notify_one();
  return true;
}

bool Waiter::notify(bool as_next) noexcept {
  if (fiber) return fiber->wake(epoch, WakeReason::kNotified, as_next);
  return thread->wake(WakeReason::kNotified);
}

}  // namespace green::detail
