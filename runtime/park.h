// Blocking primitives shared by everything that waits: park a green thread
// (or block a plain OS thread) until a wait list notifies it, a deadline
// passes, or -- for green threads -- an interrupt arrives.
#ifndef GREEN_RUNTIME_PARK_H_
#define GREEN_RUNTIME_PARK_H_

#include <chrono>
#include <mutex>
#include <optional>

#include "runtime/fiber.h"
#include "runtime/spin_lock.h"
#include "runtime/wait_list.h"

namespace green::detail {

using Deadline = std::optional<std::chrono::steady_clock::time_point>;

// Parks the current fiber, already in begin_park() epoch `epoch`, until it
// is woken; with a deadline, the current worker's timer heap
// (runtime/timer_heap.h) wakes it with kTimedOut. Does not throw.
WakeReason park_until(Fiber* fiber, std::uint32_t epoch,
                      Deadline deadline) noexcept;

// The caller holds `lock` (the lock that guards `list`) and has decided to
// wait. Links `waiter` into `list`, releases the lock, blocks -- parking the
// green thread, or blocking the OS thread when called from one -- and takes
// the lock again. Returns kNotified when a notifier chose this waiter (it is
// then already unlinked, and any payload was handed over), or kTimedOut
// (unlinked here). For a green thread, an interrupt (kill, Timeout) is
// thrown after unlinking, with `lock` released -- also one that was
// already pending when the call began.
WakeReason block_on(WaitList& list, std::unique_lock<SpinLock>& lock,
                    Waiter& waiter, Deadline deadline = std::nullopt);

// block_on() for hand-offs: the same, except that on kNotified it returns
// WITHOUT taking the lock again -- `lock` is then released. The notifier
// must have written everything the waiter needs (the payload) BEFORE its
// notify() or claim() succeeded, and, to let its own side destroy the
// structure too, wake through a WakeBatch (runtime/wait_list.h). A waiter
// handed its item this way never touches the structure again, so the
// structure's owner may destroy it as soon as the notifier's call returns (a
// channel on the receiving green thread's stack, say), as
// std::condition_variable may be destroyed once notified.
WakeReason block_on_handoff(WaitList& list, std::unique_lock<SpinLock>& lock,
                            Waiter& waiter, Deadline deadline = std::nullopt);

}  // namespace green::detail

#endif  // GREEN_RUNTIME_PARK_H_
