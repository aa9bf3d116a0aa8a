// Condition: a condition variable for green threads and OS threads
// (std::condition_variable_any's interface; Python's threading.Condition,
// which Eventlet provides by monkey-patching threading).
//
//   green::Lock mu;
//   green::Condition ready;
//   bool done = false;                      // guarded by mu
//   // waiter:
//   std::unique_lock<green::Lock> hold(mu);
//   ready.wait(hold, [&] { return done; });
//   // notifier:
//   { std::lock_guard<green::Lock> g(mu); done = true; }
//   ready.notify_all();
//
// Works with any lock whose unlock() never blocks: green::Lock (parks a
// green thread that waits for it), std::mutex (blocks the worker: only for
// very short sections), Semaphore. Waiters are woken in FIFO order. wait()
// is a blocking point: if kill() or a green::Timeout interrupts it, the
// lock is taken again before the exception leaves wait(), as
// std::condition_variable_any does. Spurious wake-ups are possible (as
// with std::condition_variable): use the predicate overloads.
//
// Why no wake-up is lost: wait() releases the user's lock while holding
// this Condition's SpinLock, and links itself into the wait list (in
// block_on) before letting go of that SpinLock. A notifier must take the
// same SpinLock, so it either runs before the waiter released the user's
// lock (and the waiter's predicate, checked under that lock, saw the
// state before the change: the notifier changed it under the lock
// after), or it finds the waiter linked.
#ifndef GREEN_SYNC_CONDITION_H_
#define GREEN_SYNC_CONDITION_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/deadline.h"
#include "sync/spin_guard.h"

namespace green {

class Condition {
 public:
  Condition() = default;
  Condition(const Condition&) = delete;
  Condition& operator=(const Condition&) = delete;

  // Releases `lock`, waits for a notify, takes `lock` again.
  template <typename L>
  void wait(std::unique_lock<L>& lock) {
    wait_impl(lock, std::nullopt);
  }
  template <typename L, typename Predicate>
  void wait(std::unique_lock<L>& lock, Predicate ready) {
    while (!ready()) wait_impl(lock, std::nullopt);
  }
  template <typename L, typename Rep, typename Period>
  std::cv_status wait_for(std::unique_lock<L>& lock,
                          std::chrono::duration<Rep, Period> timeout) {
    return wait_impl(lock,
                     detail::deadline_after(
                         std::chrono::ceil<std::chrono::nanoseconds>(timeout)));
  }
  // Returns ready() as of the end: false means the timeout passed first.
  template <typename L, typename Rep, typename Period, typename Predicate>
  bool wait_for(std::unique_lock<L>& lock,
                std::chrono::duration<Rep, Period> timeout, Predicate ready) {
    const detail::Deadline deadline = detail::deadline_after(
        std::chrono::ceil<std::chrono::nanoseconds>(timeout));
    while (!ready()) {
      if (wait_impl(lock, deadline) == std::cv_status::timeout) return ready();
    }
    return true;
  }

  // Wakes the longest waiter / every waiter. The woken are made runnable
  // only after lock_ is let go (WakeBatch, declared first), and never
  // touch this Condition again, so, as with std::condition_variable, it
  // may be destroyed as soon as notify_all() returns. One exception (as
  // for every primitive, sync/README.md "Lifetimes"): a waiter whose
  // deadline or kill fires at that very moment is not woken by the
  // notify and takes lock_ again on its way out; with timed or killable
  // waiters, keep the Condition until they have returned.
  void notify_one() {
    detail::WakeBatch wakes;
    detail::SpinGuard guard(lock_);
    while (detail::Waiter* waiter = waiters_.pop_front()) {
      if (wakes.claim(waiter)) return;  // else leaving: try the next
    }
  }
  void notify_all() {
    detail::WakeBatch wakes;
    detail::SpinGuard guard(lock_);
    while (detail::Waiter* waiter = waiters_.pop_front()) {
      wakes.claim(waiter, /*as_next=*/false);
    }
  }

 private:
  template <typename L>
  std::cv_status wait_impl(std::unique_lock<L>& user,
                           detail::Deadline deadline) {
    if (detail::expired(deadline)) return std::cv_status::timeout;
    detail::SpinUniqueLock lock(lock_);
    user.unlock();  // under lock_: no notify can slip in before we link
    detail::Waiter waiter;
    detail::WakeReason reason;
    try {
      // Notified, it returns with lock_ released and touches nothing of
      // this Condition again (the notifier may destroy it).
      reason = detail::block_on_handoff(waiters_, lock.get(), waiter, deadline);
    } catch (...) {
      // Interrupted (kill, Timeout); block_on_handoff released lock_.
      relock(user);
      throw;
    }
    if (lock.get().owns_lock()) lock.unlock();  // timed out: still ours
    relock(user);
    return reason == detail::WakeReason::kNotified || !detail::expired(deadline)
               ? std::cv_status::no_timeout
               : std::cv_status::timeout;
  }

  // The user's lock is held again however wait() ends, as for
  // std::condition_variable: a kill or Timeout that comes while the lock
  // (a green::Lock, say) blocks must not cut this short -- the caller's
  // unique_lock would then "own" a lock it does not hold. It stays pending
  // and is raised at the next blocking point.
  template <typename L>
  static void relock(std::unique_lock<L>& user) {
    detail::Fiber::DeferInterrupts defer;
    user.lock();
  }

  detail::SpinLock lock_;
  detail::WaitList waiters_ GREEN_GUARDED_BY(lock_);
};

}  // namespace green

#endif  // GREEN_SYNC_CONDITION_H_
