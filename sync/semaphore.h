// Semaphore, BoundedSemaphore, CappedSemaphore: Eventlet's
// eventlet.semaphore, safe across workers and OS threads.
//
//   green::Semaphore slots(10);          // at most 10 at once
//   {
//     std::lock_guard<green::Semaphore> hold(slots);   // RAII: acquire
//     fetch(url);                                      // ... release
//   }
//   if (slots.acquire(true, 50ms)) { ...; slots.release(); }
//
// acquire(blocking = true, timeout = nullopt) -> bool, as Eventlet: with
// blocking=false it never waits; a timeout together with blocking=false,
// or a negative timeout, is std::invalid_argument (Eventlet: ValueError);
// timeout 0 means "do not wait". A negative initial count is
// std::invalid_argument too. Every type is a Lockable (lock()/unlock()/
// try_lock()/try_lock_for()/try_lock_until()), so std::lock_guard,
// std::unique_lock and std::scoped_lock are the RAII guards.
//
// Waiters are served strictly FIFO: release() hands its unit straight to
// the longest-waiting acquirer (through the waiter's payload, under the
// lock), so a newcomer can never take a unit from under a woken waiter.
// acquire() is a blocking point (kill(), green::Timeout).
//
//   Semaphore(n)              release() always succeeds (the count grows).
//   BoundedSemaphore(n)       release() above n throws std::logic_error.
//   CappedSemaphore(n, limit) release() above limit BLOCKS until somebody
//                             acquires (Eventlet's "blockingly bounded").
#ifndef GREEN_SYNC_SEMAPHORE_H_
#define GREEN_SYNC_SEMAPHORE_H_

#include <chrono>
#include <cstdint>
#include <optional>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/deadline.h"

namespace green {
namespace detail {

// The counter and its two wait lists, shared by every semaphore type and
// by Lock.
//
// Invariants (under lock_):
//   P1. 0 <= count_ <= limit_.
//   P2. acquirers_ non-empty  =>  count_ == 0 (release() hands units to
//       waiting acquirers before it would raise the count).
//   P3. releasers_ non-empty  =>  count_ == limit_ (only a capped
//       semaphore's release() waits, and only at the limit).
class Permits {
 public:
  enum class Overflow : std::uint8_t {
    kFail,  // release() at the limit returns kOverflow (Bounded, Lock)
    kWait,  // release() at the limit waits (Capped)
  };
  enum class Released : std::uint8_t { kDone, kOverflow, kTimedOut };

  Permits(long count, long limit, Overflow overflow);
  Permits(const Permits&) = delete;
  Permits& operator=(const Permits&) = delete;

  // Takes a unit; false if `block` is false or `deadline` passed first.
  bool acquire(bool block, Deadline deadline);
  Released release(bool block, Deadline deadline);

  long count() const;
  long limit() const noexcept { return limit_; }
  std::size_t acquiring() const;
  std::size_t releasing() const;

 private:
  // Hands one unit to the first waiting acquirer that accepts it.
  bool hand_to_acquirer_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_);
  // Completes the release of the first waiting releaser that accepts.
  bool take_from_releaser_locked(WakeBatch& wakes) GREEN_REQUIRES(lock_);

  const long limit_;
  const Overflow overflow_;
  mutable SpinLock lock_;
  long count_ GREEN_GUARDED_BY(lock_);
  WaitList acquirers_ GREEN_GUARDED_BY(lock_);  // payload: bool* granted
  WaitList releasers_ GREEN_GUARDED_BY(lock_);  // payload: bool* done
};

// Validates Eventlet's (blocking, timeout) pair; throws
// std::invalid_argument naming `call`.
Deadline acquire_deadline(const char* call, bool blocking,
                          std::optional<std::chrono::nanoseconds> timeout);

}  // namespace detail

class Semaphore {
 public:
  // Throws std::invalid_argument if `count` < 0.
  explicit Semaphore(long count = 1);
  Semaphore(const Semaphore&) = delete;
  Semaphore& operator=(const Semaphore&) = delete;

  // Takes one unit, waiting while there is none; see the file comment for
  // `blocking` and `timeout`. Returns whether it took one.
  bool acquire(bool blocking = true,
               std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Gives one unit back (to the longest waiter, if any). A
  // BoundedSemaphore throws std::logic_error instead of going above its
  // initial count.
  void release();

  // Whether acquire() would wait now (Eventlet: counter <= 0).
  bool locked() const { return permits_.count() <= 0; }
  // The count minus the number of waiting acquirers (Eventlet's balance):
  // negative means that many green threads wait.
  long balance() const;
  // Units available now (Eventlet's counter).
  long counter() const { return permits_.count(); }

  // Lockable, for std::lock_guard / std::unique_lock.
  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }
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

 protected:
  Semaphore(long count, long limit, detail::Permits::Overflow overflow,
            const char* name);
  detail::Permits permits_;
  const char* const name_;
};

// Eventlet's BoundedSemaphore: release() beyond the initial count throws
// std::logic_error ("released too many times").
class BoundedSemaphore : public Semaphore {
 public:
  explicit BoundedSemaphore(long count = 1);
};

// Eventlet's CappedSemaphore(count, limit): 0 <= count <= limit. acquire()
// waits while the count is 0; release() waits while it is at `limit`
// (until an acquire() takes a unit). Both take (blocking, timeout).
class CappedSemaphore {
 public:
  // Throws std::invalid_argument unless 0 <= count <= limit.
  CappedSemaphore(long count, long limit);
  CappedSemaphore(const CappedSemaphore&) = delete;
  CappedSemaphore& operator=(const CappedSemaphore&) = delete;

  bool acquire(bool blocking = true,
               std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
  // Returns false if it could not release (non-blocking at the limit, or
  // the timeout passed).
  bool release(bool blocking = true,
               std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

  bool locked() const { return permits_.count() <= 0; }
  // As Eventlet (the lower bound's balance minus the upper bound's):
  //   (count - waiting acquirers) - (limit - count - waiting releasers).
  long balance() const;
  long counter() const { return permits_.count(); }
  long limit() const noexcept { return permits_.limit(); }

  void lock() { acquire(); }
  void unlock() { release(); }
  bool try_lock() { return acquire(false); }

 private:
  detail::Permits permits_;
};

}  // namespace green

#endif  // GREEN_SYNC_SEMAPHORE_H_
