// Lock: a green-aware mutex (Eventlet's eventlet.lock.Lock, a
// Semaphore(1) whose release() of an unlocked lock is an error).
//
//   green::Lock mu;
//   {
//     std::lock_guard<green::Lock> hold(mu);
//     shared.push_back(x);       // may even sleep or do I/O while held
//   }
//
// A green thread that finds it locked parks (its worker runs other green
// threads meanwhile); a plain OS thread blocks. Unlike std::mutex it may
// be held across blocking points (sleep, queue get, socket I/O), which is
// what makes it useful among green threads. Like Python's Lock it has no
// owner: any thread may unlock it, and re-locking it from the holder
// deadlocks (no recursion). Waiters get it in FIFO order (unlock() hands
// it straight to the longest waiter). lock() is a blocking point.
#ifndef GREEN_SYNC_LOCK_H_
#define GREEN_SYNC_LOCK_H_

#include <chrono>
#include <optional>
#include <stdexcept>

#include "sync/deadline.h"
#include "sync/semaphore.h"

namespace green {

class Lock {
 public:
  Lock() : permits_(1, 1, detail::Permits::Overflow::kFail) {}
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

  // Lockable: std::lock_guard, std::unique_lock, std::scoped_lock.
  void lock() { permits_.acquire(true, std::nullopt); }
  bool try_lock() { return permits_.acquire(false, std::nullopt); }
  template <typename Rep, typename Period>
  bool try_lock_for(std::chrono::duration<Rep, Period> timeout) {
    return permits_.acquire(
        true, detail::deadline_after(
                  std::chrono::ceil<std::chrono::nanoseconds>(timeout)));
  }
  template <typename Clock, typename Duration>
  bool try_lock_until(std::chrono::time_point<Clock, Duration> until) {
    return try_lock_for(until - Clock::now());
  }
  // Throws std::logic_error if the lock is not locked.
  void unlock() {
    if (permits_.release(false, std::nullopt) !=
        detail::Permits::Released::kDone) {
      throw std::logic_error("green::Lock::unlock: the lock is not locked");
    }
  }

  // Eventlet's names.
  bool acquire(bool blocking = true,
               std::optional<std::chrono::nanoseconds> timeout = std::nullopt) {
    return permits_.acquire(
        blocking,
        detail::acquire_deadline("green::Lock::acquire", blocking, timeout));
  }
  void release() { unlock(); }
  bool locked() const { return permits_.count() == 0; }

 private:
  detail::Permits permits_;
};

}  // namespace green

#endif  // GREEN_SYNC_LOCK_H_
