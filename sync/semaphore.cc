// Permits and the semaphores built on it: see semaphore.h.
#include "sync/semaphore.h"

#include <climits>
#include <mutex>
#include <stdexcept>
#include <string>

#include "sync/spin_guard.h"

namespace green {
namespace detail {
namespace {

// Sets the waiter's flag, then claims its wake (it is woken when `wakes`
// is released, after the lock); false (flag cleared again) if it is
// leaving (timed out or interrupted), so the caller tries the next.
bool grant(Waiter& waiter, WakeBatch& wakes) {
  auto* granted = static_cast<bool*>(waiter.payload);
  *granted = true;
  if (wakes.claim(&waiter)) return true;
  *granted = false;
  return false;
}

}  // namespace

Permits::Permits(long count, long limit, Overflow overflow)
    : limit_(limit), overflow_(overflow), count_(count) {}

bool Permits::acquire(bool block, Deadline deadline) {
  // Declared first: claimed waiters are woken after the lock is released,
  // when this call no longer touches the semaphore (runtime/wait_list.h).
  WakeBatch wakes;
  SpinUniqueLock lock(lock_);
  for (;;) {
    if (count_ > 0) {  // P2: nobody waits ahead of us
      --count_;
      // Below the limit now: a releaser waiting at the limit may finish.
      if (take_from_releaser_locked(wakes)) ++count_;
      return true;
    }
    // count_ == 0 and (P3) releasers wait only if limit_ == 0: a
    // rendezvous, the releaser's unit comes straight to us.
    if (take_from_releaser_locked(wakes)) return true;
    if (!block || expired(deadline)) return false;
    bool granted = false;
    Waiter waiter;
    waiter.payload = &granted;
    // Woken only after the releaser let go of the semaphore, and returns
    // without touching it again: either side may destroy it.
    if (block_on_handoff(acquirers_, lock.get(), waiter, deadline) ==
        WakeReason::kNotified) {
      return true;
    }
    // Timed out (checked above on the next round) or woken spuriously.
  }
}

Permits::Released Permits::release(bool block, Deadline deadline) {
  WakeBatch wakes;  // as in acquire()
  SpinUniqueLock lock(lock_);
  for (;;) {
    if (hand_to_acquirer_locked(wakes)) return Released::kDone;
    if (count_ < limit_) {
      ++count_;
      return Released::kDone;
    }
    if (overflow_ == Overflow::kFail) return Released::kOverflow;
    if (!block || expired(deadline)) return Released::kTimedOut;
    bool done = false;
    Waiter waiter;
    waiter.payload = &done;
    if (block_on_handoff(releasers_, lock.get(), waiter, deadline) ==
        WakeReason::kNotified) {
      return Released::kDone;
    }
  }
}

bool Permits::hand_to_acquirer_locked(WakeBatch& wakes) {
  while (Waiter* waiter = acquirers_.pop_front()) {
    if (grant(*waiter, wakes)) return true;
  }
  return false;
}

bool Permits::take_from_releaser_locked(WakeBatch& wakes) {
  while (Waiter* waiter = releasers_.pop_front()) {
    if (grant(*waiter, wakes)) return true;
  }
  return false;
}

long Permits::count() const {
  SpinGuard guard(lock_);
  return count_;
}

std::size_t Permits::acquiring() const {
  SpinGuard guard(lock_);
  return acquirers_.size();
}

std::size_t Permits::releasing() const {
  SpinGuard guard(lock_);
  return releasers_.size();
}

Deadline acquire_deadline(const char* call, bool blocking,
                          std::optional<std::chrono::nanoseconds> timeout) {
  if (!timeout) return std::nullopt;
  if (!blocking) {
    throw std::invalid_argument(std::string(call) +
                                ": can't specify a timeout for a "
                                "non-blocking acquire (blocking=false)");
  }
  if (timeout->count() < 0) {
    throw std::invalid_argument(std::string(call) +
                                ": the timeout must not be negative");
  }
  return deadline_after(*timeout);
}

namespace {

long checked_count(const char* call, long count) {
  if (count < 0) {
    throw std::invalid_argument(std::string(call) +
                                ": the initial count must be >= 0, got " +
                                std::to_string(count));
  }
  return count;
}

}  // namespace

}  // namespace detail

Semaphore::Semaphore(long count)
    : Semaphore(detail::checked_count("green::Semaphore", count), LONG_MAX,
                detail::Permits::Overflow::kFail, "green::Semaphore") {}

Semaphore::Semaphore(long count, long limit, detail::Permits::Overflow overflow,
                     const char* name)
    : permits_(count, limit, overflow), name_(name) {}

bool Semaphore::acquire(bool blocking,
                        std::optional<std::chrono::nanoseconds> timeout) {
  const detail::Deadline deadline =
      detail::acquire_deadline("green::Semaphore::acquire", blocking, timeout);
  return permits_.acquire(blocking, deadline);
}

void Semaphore::release() {
  if (permits_.release(false, std::nullopt) ==
      detail::Permits::Released::kDone) {
    return;
  }
  throw std::logic_error(std::string(name_) +
                         "::release: released more times than acquired "
                         "(the count would exceed " +
                         std::to_string(permits_.limit()) + ")");
}

long Semaphore::balance() const {
  // Two snapshots, each consistent on its own (like Eventlet's).
  return permits_.count() - static_cast<long>(permits_.acquiring());
}

BoundedSemaphore::BoundedSemaphore(long count)
    : Semaphore(detail::checked_count("green::BoundedSemaphore", count), count,
                detail::Permits::Overflow::kFail, "green::BoundedSemaphore") {}

namespace {

long checked_capped(long count, long limit) {
  detail::checked_count("green::CappedSemaphore", count);
  if (count > limit) {
    throw std::invalid_argument(
        "green::CappedSemaphore: count (" + std::to_string(count) +
        ") cannot be more than limit (" + std::to_string(limit) + ")");
  }
  return count;
}

}  // namespace

CappedSemaphore::CappedSemaphore(long count, long limit)
    : permits_(checked_capped(count, limit), limit,
               detail::Permits::Overflow::kWait) {}

bool CappedSemaphore::acquire(bool blocking,
                              std::optional<std::chrono::nanoseconds> timeout) {
  const detail::Deadline deadline = detail::acquire_deadline(
      "green::CappedSemaphore::acquire", blocking, timeout);
  return permits_.acquire(blocking, deadline);
}

bool CappedSemaphore::release(bool blocking,
                              std::optional<std::chrono::nanoseconds> timeout) {
  const detail::Deadline deadline = detail::acquire_deadline(
      "green::CappedSemaphore::release", blocking, timeout);
  return permits_.release(blocking, deadline) ==
         detail::Permits::Released::kDone;
}

long CappedSemaphore::balance() const {
  const long count = permits_.count();
  const long lower = count - static_cast<long>(permits_.acquiring());
  const long upper =
      (permits_.limit() - count) - static_cast<long>(permits_.releasing());
  return lower - upper;
}

}  // namespace green
