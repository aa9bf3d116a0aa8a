// Fiber: parking, waking, interrupts and completion. The protocol is
// described in fiber.h; this file keeps every transition of `state_` in one
// place.
#include "runtime/fiber.h"

#include <tbb/scalable_allocator.h>

#include <algorithm>
#include <cassert>
#include <cstdio>
#include <new>
#include <stdexcept>

#include "runtime/errors.h"
#include "runtime/local_storage.h"
#include "runtime/park.h"
#include "runtime/sanitizer_hooks.h"
#include "runtime/scheduler.h"
#include "runtime/worker.h"

namespace green::detail {

Fiber::Fiber(Scheduler& scheduler, std::uint64_t id, std::size_t stack_size)
    : scheduler_(&scheduler),
      id_(id),
      // Saturated: anything above 4 GiB is above kMaxStackSize as well, and
      // the stack pool refuses it (an exception from the green thread).
      stack_size_(static_cast<std::uint32_t>(
          std::min<std::size_t>(stack_size, UINT32_MAX))) {
  static_assert(kMaxStackSize < UINT32_MAX, "stack sizes fit 32 bits");
}

Fiber::~Fiber() = default;

void* Fiber::operator new(std::size_t size) {
#if defined(GREEN_ASAN) || defined(GREEN_TSAN)
  // The sanitizers see malloc, not oneTBB's pools: keep their checks.
  return ::operator new(size);
#else
  if (Worker* worker = current_worker()) {
    return worker->block_cache().allocate(size);
  }
  // Spawned from a plain thread: a worker may cache the block when it
  // frees it, so it must have its class's full size.
  return BlockCache::allocate_uncached(size);
#endif
}

void Fiber::operator delete(void* pointer, std::size_t size) noexcept {
#if defined(GREEN_ASAN) || defined(GREEN_TSAN)
  ::operator delete(pointer);
  (void)size;
#else
  // Any block may go straight back to oneTBB (block_cache.h, invariant 1).
  if (Worker* worker = current_worker()) {
    worker->block_cache().deallocate(pointer, size);
  } else {
    scalable_free(pointer);
  }
#endif
}

void* Fiber::operator new(std::size_t size, std::align_val_t alignment) {
#if defined(GREEN_ASAN) || defined(GREEN_TSAN)
  return ::operator new(size, alignment);
#else
  if (void* pointer =
          scalable_aligned_malloc(size, static_cast<std::size_t>(alignment))) {
    return pointer;
  }
  throw std::bad_alloc();
#endif
}

void Fiber::operator delete(void* pointer, std::size_t size,
                            std::align_val_t alignment) noexcept {
#if defined(GREEN_ASAN) || defined(GREEN_TSAN)
  ::operator delete(pointer, size, alignment);
#else
  (void)size, (void)alignment;
  scalable_aligned_free(pointer);
#endif
}

LocalStorage& Fiber::locals() {
  if (!locals_) locals_ = std::make_unique<LocalStorage>();
  return *locals_;
}

bool Fiber::join_registry() noexcept {
  // From now on shutdown can find us (scheduler.h).
  scheduler_->registry().add(this);
  registered_ = true;
  return scheduler_->stopping();  // its sweep may have passed
}

void Fiber::register_for_shutdown() {
  if (join_registry()) request_kill();
}

bool Fiber::begin_park_holding_lock(std::uint32_t& epoch) noexcept {
  // A kill that registering owes is posted by raise_interrupt(), once the
  // caller has let go of its lock.
  if (!registered_ && join_registry()) {
    kill_owed_ = true;
    return false;
  }
  // relaxed throughout: only this fiber moves the word out of kRunning, and
  // wakers learn the new epoch through a wait list's lock or a timer's
  // capture, both of which order them after this store.
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    // raise_interrupt() throws it -- unless it must stay pending (a
    // destructor running during unwinding): then this park goes ahead
    // with the bit kept, and a later interrupt still wakes it.
    if (s & kInterruptPending) {
      if (!deferred(s)) return false;
      // Parking with it deferred counts, for kill(), as reaching the
      // blocking point: the killer is released (by the caller, once its
      // lock is gone: release_kill_waiters_if_owed) rather than waiting for
      // a kill that may wait in turn for the killer -- who may hold the
      // lock a Condition re-takes, or be unwinding into a kill of us.
      interrupt_raised_ = true;
    }
    assert((s & kPhaseMask) == kRunning);
    epoch = epoch_of(s) + 1;
    const std::uint64_t parking =
        (static_cast<std::uint64_t>(epoch) << kEpochShift) |
        (s & (kStarted | kInterruptPending | kRaiseDepthMask)) | kParking;
    if (state_.compare_exchange_weak(s, parking, std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
}

Fiber::DeferInterrupts::DeferInterrupts() noexcept : fiber_(current_fiber()) {
  if (fiber_) ++fiber_->defer_depth_;
}

Fiber::DeferInterrupts::~DeferInterrupts() {
  if (fiber_) --fiber_->defer_depth_;
}

void Fiber::raise_interrupt() {
  if (std::exchange(kill_owed_, false)) request_kill();
  throw_if_interrupted();
}

void Fiber::release_kill_waiters_if_owed() noexcept {
  if (interrupt_raised_) release_kill_waiters();
}

std::uint32_t Fiber::begin_park() {
  // The caller holds no lock: raise what is pending here, then release the
  // kill waiters owed one.
  std::uint32_t epoch;
  while (!begin_park_holding_lock(epoch)) raise_interrupt();
  release_kill_waiters_if_owed();
  return epoch;
}

WakeReason Fiber::park() noexcept {
  Worker* worker = current_worker();
  if (!worker->switch_directly(this, Worker::AfterSwitch::kPark)) {
    worker->set_after_switch(Worker::AfterSwitch::kPark);
    switch_to_worker();
  }
  // acquire: pairs with the waker's CAS, so whatever it handed over before
  // waking us (a queue item, a permit) is visible.
  return reason_of(state_.load(std::memory_order_acquire));
}

void Fiber::yield() noexcept {
  Worker* worker = current_worker();
  if (worker->switch_directly(this, Worker::AfterSwitch::kYield)) return;
  worker->set_after_switch(Worker::AfterSwitch::kYield);
  switch_to_worker();
}

bool Fiber::commit_park() noexcept {
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    const std::uint64_t phase = s & kPhaseMask;
    if (phase == kParking) {
      // release: publishes `context_` (stored by the worker just before)
      // to the waker; pairs with the acquire in wake()/post_interrupt().
      if (state_.compare_exchange_weak(s, (s & ~kPhaseMask) | kParked,
                                       std::memory_order_release,
                                       std::memory_order_relaxed)) {
        return true;
      }
      continue;
    }
    if (phase != kWoken) {
      std::fprintf(stderr,
                   "green: internal error: fiber #%llu in phase %llu at "
                   "commit_park\n",
                   static_cast<unsigned long long>(id_),
                   static_cast<unsigned long long>(phase));
      std::abort();
    }
    // Woken while switching out: the caller re-queues it. relaxed: the
    // caller's queue push publishes `context_` to whoever runs it next.
    if (state_.compare_exchange_weak(s, (s & ~kPhaseMask) | kRunning,
                                     std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      return false;
    }
  }
}

bool Fiber::claim(std::uint32_t epoch, WakeReason reason) noexcept {
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (epoch_of(s) != epoch || (s & kClaimed)) return false;
    const std::uint64_t phase = s & kPhaseMask;
    if (phase != kParking && phase != kParked) return false;  // woken
    // The phase stays: commit_park() may still turn kParking into kParked.
    // release: publishes what the claimer handed over (read after the
    // fiber resumes, through release_claim's release). relaxed would not
    // do for a claimer that hands over and then releases on another path.
    if (state_.compare_exchange_weak(s, with_reason(s, reason) | kClaimed,
                                     std::memory_order_release,
                                     std::memory_order_relaxed)) {
      return true;
    }
  }
}

void Fiber::release_claim(bool as_next) noexcept {
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    assert(s & kClaimed);
    const std::uint64_t phase = s & kPhaseMask;
    // Still switching out: kWoken, and the worker that parks it re-queues
    // it (commit_park fails). Parked: ours to queue.
    const std::uint64_t next =
        (s & ~(kClaimed | kPhaseMask)) | (phase == kParked ? kRunning : kWoken);
    // acq_rel: as in wake() (acquire: we may queue it and need context_).
    if (state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      if (phase == kParked) enqueue(as_next);
      return;
    }
  }
}

bool Fiber::wake(std::uint32_t epoch, WakeReason reason,
                 bool as_next) noexcept {
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  for (;;) {
    if (epoch_of(s) != epoch) return false;  // a stale wake-up
    if (s & kClaimed) return false;          // claimed: its waker wakes it
    const std::uint64_t phase = s & kPhaseMask;
    std::uint64_t next;
    if (phase == kParking) {
      next = (with_reason(s, reason) & ~kPhaseMask) | kWoken;
    } else if (phase == kParked) {
      next = (with_reason(s, reason) & ~kPhaseMask) | kRunning;
    } else {
      return false;  // somebody else woke it first
    }
    // acq_rel: acquire pairs with commit_park()'s release (we may hand the
    // fiber to a run queue, whose reader needs `context_`); release
    // publishes what the caller handed over before waking it.
    if (state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      if (phase == kParked) enqueue(as_next);
      return true;
    }
  }
}

void Fiber::enqueue(bool as_next) noexcept {
  scheduler_->schedule(this, as_next);
}

bool Fiber::post_interrupt(std::exception_ptr exception, bool is_kill,
                           bool only_if_not_started, unsigned depth) {
  if (is_kill) depth = 0;  // a kill belongs to the green thread itself
  const std::uint64_t depth_bits =
      static_cast<std::uint64_t>(std::min(depth, kMaxRaiseDepth))
      << kRaiseDepthShift;
  if (result_ready_) return false;  // ended: nothing left to interrupt
  if (interrupt_ && interrupt_is_kill_ && !is_kill) return false;  // kill wins
  std::uint64_t s = state_.load(std::memory_order_relaxed);
  std::uint64_t phase;
  for (;;) {
    if (only_if_not_started && (s & kStarted)) return false;
    phase = s & kPhaseMask;
    std::uint64_t next =
        (s & ~kRaiseDepthMask) | kInterruptPending | depth_bits;
    if (s & kClaimed) {
      // A claimed wake is under way: the fiber raises the interrupt at its
      // next blocking point; its claimer makes it runnable.
      phase = kRunning;  // nothing to queue below
    } else if (phase == kParking) {
      next =
          (with_reason(next, WakeReason::kInterrupted) & ~kPhaseMask) | kWoken;
    } else if (phase == kParked) {
      next = (with_reason(next, WakeReason::kInterrupted) & ~kPhaseMask) |
             kRunning;
    }
    // acq_rel: as in wake().
    if (state_.compare_exchange_weak(s, next, std::memory_order_acq_rel,
                                     std::memory_order_relaxed)) {
      break;
    }
  }
  interrupt_ = std::move(exception);
  interrupt_is_kill_ = is_kill;
  if (phase == kParked) enqueue(false);
  return true;
}

void Fiber::interrupt(std::exception_ptr exception, bool is_kill,
                      unsigned depth) {
  std::lock_guard<SpinLock> guard(lock_);
  post_interrupt(std::move(exception), is_kill, false, depth);
}

void Fiber::request_kill() {
  interrupt(std::make_exception_ptr(GreenletExit{}), true);
}

bool Fiber::withdraw_interrupt(const std::exception_ptr& exception) noexcept {
  std::lock_guard<SpinLock> guard(lock_);
  if (!interrupt_ || interrupt_ != exception) return false;
  take_interrupt_locked();
  return true;
}

std::exception_ptr Fiber::take_interrupt_locked() noexcept {
  // relaxed: cleared under lock_ (or, finishing unreachable, by the fiber
  // alone), which also guards setting the bit with its payload, so bit and
  // payload cannot be torn apart.
  state_.fetch_and(~kInterruptPending, std::memory_order_relaxed);
  interrupt_is_kill_ = false;
  return std::exchange(interrupt_, nullptr);
}

bool Fiber::cancel_if_not_started() {
  std::lock_guard<SpinLock> guard(lock_);
  return post_interrupt(std::make_exception_ptr(GreenletExit{}), true, true);
}

void Fiber::throw_if_interrupted() {
  // acquire: pairs with the acq_rel CAS in post_interrupt(); the payload
  // itself is read under lock_ below.
  if (!(state_.load(std::memory_order_acquire) & kInterruptPending)) return;
  std::exception_ptr exception;
  {
    std::lock_guard<SpinLock> guard(lock_);
    // Decided under lock_, where the payload and its depth are posted
    // together: a kill replacing a Timeout changes the depth.
    if (deferred(state_.load(std::memory_order_relaxed))) return;
    exception = take_interrupt_locked();
  }
  if (!exception) return;
  interrupt_raised_ = true;
  std::rethrow_exception(exception);
}

void Fiber::release_kill_waiters() noexcept {
  interrupt_raised_ = false;
  std::lock_guard<SpinLock> guard(lock_);
  kill_waiters_.notify_all();
}

void Fiber::finish_without_stack(std::exception_ptr error) noexcept {
  set_exception(std::move(error));
  Worker* worker = current_worker();
  worker->set_finishing_without_stack(this);
  finish();
  worker->set_finishing_without_stack(nullptr);
}

void Fiber::join() {
  if (finished()) return;
  Worker* worker = current_worker();
  if (current_fiber() == this ||
      (worker != nullptr && worker->finishing_without_stack() == this)) {
    // A link callback, running on this fiber as it ends, reads the result.
    if (result_ready_) return;
    throw std::logic_error(
        "green::GreenThread::wait: a green thread cannot wait for itself");
  }
  std::unique_lock<SpinLock> lock(lock_);
  while (!finished_.load(std::memory_order_relaxed)) {
    Waiter waiter;
    block_on(joiners_, lock, waiter);
  }
}

void Fiber::kill_and_wait() {
  if (current_fiber() == this) throw GreenletExit{};
  std::unique_lock<SpinLock> lock(lock_);
  // A kill is refused only by a finished fiber.
  if (!post_interrupt(std::make_exception_ptr(GreenletExit{}), true, false)) {
    return;
  }
  // Released at the target's next blocking point after it raised the
  // interrupt, or when it ends (release_kill_waiters(), finish()). A
  // return without that notification is our own interrupt, deferred
  // because we are unwinding (interrupt_raisable): a spurious wake-up, so
  // wait again while the kill has not even been raised.
  for (;;) {
    Waiter waiter;
    if (block_on(kill_waiters_, lock, waiter) == WakeReason::kNotified ||
        result_ready_ || !interrupt_ || !interrupt_is_kill_) {
      return;
    }
  }
}

Fiber::LinkId Fiber::link(std::function<void()> callback) {
  {
    std::lock_guard<SpinLock> guard(lock_);
    if (!result_ready_) {
      links_.emplace_back(next_link_id_, std::move(callback));
      return next_link_id_++;
    }
  }
  callback();
  return 0;
}

bool Fiber::unlink(LinkId id) {
  std::lock_guard<SpinLock> guard(lock_);
  for (auto it = links_.begin(); it != links_.end(); ++it) {
    if (it->first == id) {
      links_.erase(it);
      return true;
    }
  }
  return false;
}

namespace {

void report_link_exception(std::uint64_t id) noexcept {
  try {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "green: a link callback of green thread #%llu threw: %s\n",
                 static_cast<unsigned long long>(id), e.what());
  } catch (...) {
    std::fprintf(stderr,
                 "green: a link callback of green thread #%llu threw a "
                 "non-standard exception\n",
                 static_cast<unsigned long long>(id));
  }
}

}  // namespace

bool Fiber::reachable_only_by_us() const noexcept {
  // Every other way to this fiber holds a counted reference (handles,
  // timeout chains; a joiner or kill() caller waits through a handle) or
  // goes through the shutdown registry; wakers that hold a bare pointer
  // (wait lists, timers) are done with it before it runs again. So with
  // the scheduler's reference -- ours -- the only one left, and no
  // registry entry, nobody else can call link(), join(), interrupt() or
  // anything else that takes lock_. acquire: pairs with the acq_rel
  // decrements of the owners that left, so what they did (a link()) is
  // visible here.
  return !registered_ && refs_.load(std::memory_order_acquire) == 1;
}

void Fiber::finish() noexcept GREEN_NO_THREAD_SAFETY_ANALYSIS {
  // Links run first, on this fiber; joiners and kill() callers are released
  // only after them, so that whoever waits sees what the links did (as in
  // Eventlet, where links run before the waiters get to run). A fiber
  // nobody else can reach (most spawn_n ones) skips lock_: its two
  // exchanges were three quarters of finish() in spawn-join.
  std::vector<std::pair<LinkId, std::function<void()>>> links;
  if (reachable_only_by_us()) {
    result_ready_ = true;
    links.swap(links_);
    drop_pending_interrupt_locked();  // nobody else can post one: no lock
  } else {
    std::lock_guard<SpinLock> guard(lock_);
    result_ready_ = true;  // link() from now on calls back at once, and
                           // post_interrupt() refuses
    links.swap(links_);
    drop_pending_interrupt_locked();
  }
  for (auto& link : links) {
    try {
      link.second();
    } catch (...) {
      report_link_exception(id_);
    }
  }
  // Asked again: a link may have handed out a reference.
  if (reachable_only_by_us()) {
    // release: pairs with the acquire in finished(). Nobody waits: a
    // joiner or kill() caller would hold a reference.
    finished_.store(true, std::memory_order_release);
  } else {
    std::lock_guard<SpinLock> guard(lock_);
    // release: pairs with the acquire in finished(); the result is stored.
    finished_.store(true, std::memory_order_release);
    joiners_.notify_all();
    kill_waiters_.notify_all();
  }
  if (registered_) scheduler_->registry().remove(this);
  current_worker()->count_finished();
  scheduler_->fiber_finished();
}

void Fiber::drop_pending_interrupt_locked() noexcept {
  // A kill or Timeout posted after the function's last blocking point
  // comes too late: the function has ended (killing a finished green
  // thread does nothing, as in Eventlet). Links run without it, so one
  // that blocks is not cut short.
  // relaxed: the bit changes only under lock_ (or, unreachable, here).
  if (state_.load(std::memory_order_relaxed) & kInterruptPending) {
    take_interrupt_locked();
  }
}

void Fiber::switch_to_worker() noexcept {
  Worker* worker = current_worker();
  tsan_switch(worker->tsan_fiber());
  asan_start_switch_to_worker(annotations_, /*ending=*/false);
  worker_context_ = std::move(worker_context_).resume();
  // Possibly on another worker now: learn its stack for the next switch.
  asan_finish_switch_from_worker(annotations_, /*first=*/false);
}

boost::context::fiber Fiber::entry(boost::context::fiber&& worker_context) {
  worker_context_ = std::move(worker_context);
  asan_finish_switch_from_worker(annotations_, /*first=*/true);
  try {
    if (start_delay_.count() > 0) {
      const std::uint32_t epoch = begin_park();
      park_until(this, epoch, std::chrono::steady_clock::now() + start_delay_);
    }
    // Spawned before shutdown began but not yet started: shutdown does
    // not see us (we are not in its registry), so we die here.
    if (scheduler_->stopping()) request_kill();
    // acq_rel: the kStarted bit decides races with cancel(), which sets
    // kInterruptPending only while kStarted is clear (one RMW each).
    const std::uint64_t before =
        state_.fetch_or(kStarted, std::memory_order_acq_rel);
    if (before & kInterruptPending) throw_if_interrupted();
    run();
  } catch (...) {
    set_exception(std::current_exception());
  }
  locals_.reset();
  finish();
  Worker* worker = current_worker();
  worker->set_after_switch(Worker::AfterSwitch::kFinish);
  // No tsan_switch here, unlike every other switch: Boost.Context still
  // runs instrumented frames of this fiber after we return (the record's
  // run() and fiber_entry unwinding onto fiber_exit), and TSan must pop
  // them from this fiber's shadow stack, not the worker's. The worker
  // switches TSan back as soon as resume() returns (Worker::run).
  asan_start_switch_to_worker(annotations_, /*ending=*/true);
  return std::move(worker_context_);
}

}  // namespace green::detail
