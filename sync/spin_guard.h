// Internal to sync/: RAII holders of a runtime SpinLock that clang's
// -Wthread-safety understands (libstdc++'s std::lock_guard and
// std::unique_lock carry no annotations, so with them the analysis sees
// every guarded field accessed without its lock).
//
//   SpinGuard        a lock_guard: for sections that never block.
//   SpinUniqueLock   wraps the std::unique_lock that block_on() releases
//                    and retakes while the caller waits. To the analysis
//                    the lock is held from construction to destruction (or
//                    an explicit unlock()): block_on() returns holding it,
//                    and when it throws, the unique_lock knows it is free.
#ifndef GREEN_SYNC_SPIN_GUARD_H_
#define GREEN_SYNC_SPIN_GUARD_H_

#include <mutex>

#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

class GREEN_SCOPED_CAPABILITY SpinGuard {
 public:
  explicit SpinGuard(SpinLock& lock) GREEN_ACQUIRE(lock) : lock_(lock) {
    lock_.lock();
  }
  ~SpinGuard() GREEN_RELEASE() { lock_.unlock(); }
  SpinGuard(const SpinGuard&) = delete;
  SpinGuard& operator=(const SpinGuard&) = delete;

 private:
  SpinLock& lock_;
};

class GREEN_SCOPED_CAPABILITY SpinUniqueLock {
 public:
  explicit SpinUniqueLock(SpinLock& lock) GREEN_ACQUIRE(lock) : lock_(lock) {}
  ~SpinUniqueLock() GREEN_RELEASE() {}
  SpinUniqueLock(const SpinUniqueLock&) = delete;
  SpinUniqueLock& operator=(const SpinUniqueLock&) = delete;

  // What block_on() takes.
  std::unique_lock<SpinLock>& get() noexcept { return lock_; }
  void unlock() GREEN_RELEASE() { lock_.unlock(); }

 private:
  std::unique_lock<SpinLock> lock_;
};

}  // namespace green::detail

#endif  // GREEN_SYNC_SPIN_GUARD_H_
