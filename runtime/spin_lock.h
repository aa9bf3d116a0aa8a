// SpinLock: a tiny test-and-test-and-set lock for very short critical
// sections (linking a waiter into a list, flipping a flag).
//
// Why not std::mutex: the sections it guards are a handful of instructions
// and are entered from green threads, OS threads and the scheduler alike; a
// futex-based mutex costs a syscall under contention where spinning for a
// few hundred nanoseconds wins. After kSpinsBeforeYield failed attempts the
// waiter yields its OS thread, so a preempted holder cannot make a waiter
// burn a whole time slice. Never hold it across a green-thread switch.
#ifndef GREEN_RUNTIME_SPIN_LOCK_H_
#define GREEN_RUNTIME_SPIN_LOCK_H_

#include <atomic>
#include <thread>

#include "runtime/thread_annotations.h"

namespace green::detail {

// One polite busy-wait step: tells the core we are spinning (x86 `pause`),
// which saves power and frees the sibling hyperthread.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

class GREEN_CAPABILITY("mutex") SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() noexcept GREEN_ACQUIRE() {
    // acquire: the holder's writes made before its release in unlock()
    // become visible to us.
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_slow();
  }

  bool try_lock() noexcept GREEN_TRY_ACQUIRE(true) {
    // relaxed pre-check avoids bouncing the cache line on a held lock;
    // acquire on the exchange as in lock().
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }

  // Whether somebody holds the lock now; a snapshot. acquire: seeing it
  // free after the holder's unlock() also shows what it did inside.
  bool held() const noexcept { return locked_.load(std::memory_order_acquire); }

  void unlock() noexcept GREEN_RELEASE() {
    // release: publishes the critical section to the next acquirer.
    locked_.store(false, std::memory_order_release);
  }

 private:
  // Measured on 2 cores: a critical section here is < 100 ns, so 64 polls
  // cover it; beyond that the holder was most likely preempted.
  static constexpr int kSpinsBeforeYield = 64;

  void lock_slow() noexcept {
    for (int spins = 0;; ++spins) {
      // relaxed: only a hint; the exchange below is the synchronising step.
      while (locked_.load(std::memory_order_relaxed)) {
        if (++spins >= kSpinsBeforeYield) {
          std::this_thread::yield();
          spins = 0;
        } else {
          cpu_relax();
        }
      }
      if (!locked_.exchange(true, std::memory_order_acquire)) return;
    }
  }

  std::atomic<bool> locked_{false};
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_SPIN_LOCK_H_
