// WaitList: an intrusive FIFO of blocked callers, green threads and plain OS
// threads alike.
//
// A Waiter lives on the stack of whoever waits, so waiting allocates
// nothing. The list and every Waiter in it are guarded by the lock of the
// object that owns the list (a Queue's, an Event's, a Fiber's); the waiter
// takes that lock again after it wakes, before its Waiter goes out of scope,
// so a notifier holding the lock never touches a dead Waiter.
//
// notify() can fail: the waiter may have been woken a moment earlier by its
// deadline or an interrupt, and is now waiting for the lock to unlink
// itself. A notifier that hands something over (an item, a permit) must
// therefore pop and notify until a notify() succeeds -- that is how no item
// is lost when a timeout races with a put.
#ifndef GREEN_RUNTIME_WAIT_LIST_H_
#define GREEN_RUNTIME_WAIT_LIST_H_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>

namespace green::detail {

class Fiber;
enum class WakeReason : std::uint8_t;

// Blocks one plain OS thread; the first wake() wins.
class ThreadParker {
 public:
  // Returns kNotified, or kTimedOut once `deadline` passed with no wake.
  WakeReason wait(
      std::optional<std::chrono::steady_clock::time_point> deadline) noexcept;
  bool wake(WakeReason reason) noexcept;
  // wake(kNotified) in two steps (see Fiber::claim): once claimed, the
  // waiting thread neither times out nor returns until released.
  bool claim() noexcept;
  void release_claim() noexcept;

 private:
  std::mutex mutex_;
  std::condition_variable condition_;
  WakeReason reason_{};   // guarded by mutex_; kNone until woken
  bool claimed_ = false;  // guarded by mutex_
};

struct Waiter {
  // Exactly one of the two is set.
  Fiber* fiber = nullptr;
  std::uint32_t epoch = 0;  // the fiber's park epoch
  ThreadParker* thread = nullptr;

  // Whatever the owner of the list wants to hand over (e.g. a Queue item).
  void* payload = nullptr;

  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  bool linked = false;

  // Wakes the waiter with kNotified; false if it was already woken.
  // `as_next`: run a green waiter next on this worker (message passing).
  bool notify(bool as_next = true) noexcept;
  // notify() in two steps, for a notifier that must let go of the
  // structure (unlock it) before the waiter may run: see WakeBatch.
  bool claim() noexcept;
  void release_claim(bool as_next) noexcept;
  bool wake_as_next = false;  // WakeBatch's note for release_claim()
};

// Waiters claimed under a structure's lock and woken after it is
// released, so that a woken waiter that owns the structure (and destroys
// it as soon as it returns) never races with its notifier, which is done
// with the structure by then (Go's channels wake after unlocking too).
// Declare it before the lock guard: it wakes in its destructor, after the
// guard's. Links the claimed waiters through Waiter::next (they are off
// their list); a claimed waiter cannot leave, so they stay valid.
class WakeBatch {
 public:
  WakeBatch() = default;
  WakeBatch(const WakeBatch&) = delete;
  WakeBatch& operator=(const WakeBatch&) = delete;
  ~WakeBatch() { release_all(); }

  // Claims `waiter` (already unlinked); false if it is leaving (timed out,
  // interrupted): the caller takes back what it handed over.
  bool claim(Waiter* waiter, bool as_next = true) noexcept {
    if (!waiter->claim()) return false;
    waiter->wake_as_next = as_next;
    waiter->next = nullptr;
    (last_ ? last_->next : first_) = waiter;
    last_ = waiter;
    return true;
  }

  void release_all() noexcept {
    while (Waiter* waiter = first_) {
      first_ = waiter->next;  // read first: released, it may be gone
      waiter->release_claim(waiter->wake_as_next);
    }
    last_ = nullptr;
  }

 private:
  Waiter* first_ = nullptr;
  Waiter* last_ = nullptr;
};

class WaitList {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  std::size_t size() const noexcept { return size_; }

  void push_back(Waiter* waiter) noexcept {
    waiter->prev = tail_;
    waiter->next = nullptr;
    (tail_ ? tail_->next : head_) = waiter;
    tail_ = waiter;
    waiter->linked = true;
    ++size_;
  }

  Waiter* pop_front() noexcept {
    Waiter* waiter = head_;
    if (waiter) remove(waiter);
    return waiter;
  }

  void remove(Waiter* waiter) noexcept {
    (waiter->prev ? waiter->prev->next : head_) = waiter->next;
    (waiter->next ? waiter->next->prev : tail_) = waiter->prev;
    waiter->prev = waiter->next = nullptr;
    waiter->linked = false;
    --size_;
  }

  // Notifies waiters from the front until one accepts; returns it (already
  // unlinked) or nullptr if none would.
  Waiter* notify_one(bool as_next = true) noexcept {
    while (Waiter* waiter = pop_front()) {
      if (waiter->notify(as_next)) return waiter;
    }
    return nullptr;
  }

  // Notifies every waiter; returns how many accepted.
  std::size_t notify_all() noexcept {
    std::size_t woken = 0;
    while (Waiter* waiter = pop_front()) woken += waiter->notify(false);
    return woken;
  }

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_WAIT_LIST_H_
