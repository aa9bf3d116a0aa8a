// Scheduler: workers, the idle protocol and shutdown. Design in scheduler.h.
#include "runtime/scheduler.h"

#include <chrono>
#include <stdexcept>
#include <thread>

#include "runtime/errors.h"
#include "runtime/worker.h"

namespace green::detail {
namespace {

// One runtime per process at a time; run() sets it for its duration.
std::atomic<Scheduler*> running_scheduler{nullptr};

}  // namespace

// --- FiberRegistry ---

void FiberRegistry::add(Fiber* fiber) noexcept {
  Shard& shard = shards_[fiber->id() % kShards];
  std::lock_guard<SpinLock> guard(shard.lock);
  fiber->registry_prev = nullptr;
  fiber->registry_next = shard.head;
  if (shard.head) shard.head->registry_prev = fiber;
  shard.head = fiber;
}

void FiberRegistry::remove(Fiber* fiber) noexcept {
  Shard& shard = shards_[fiber->id() % kShards];
  std::lock_guard<SpinLock> guard(shard.lock);
  (fiber->registry_prev ? fiber->registry_prev->registry_next : shard.head) =
      fiber->registry_next;
  if (fiber->registry_next) {
    fiber->registry_next->registry_prev = fiber->registry_prev;
  }
  fiber->registry_prev = fiber->registry_next = nullptr;
}

// --- Scheduler ---

Scheduler::Scheduler(const Options& options) : stack_size_(options.stack_size) {
  std::size_t count = options.workers;
  if (count == 0) count = std::max(1u, std::thread::hardware_concurrency());
  if (options.guarded_stacks) set_guarded_stack_limit(*options.guarded_stacks);
  Scheduler* expected = nullptr;
  // acq_rel: publishes this scheduler to threads that spawn from outside.
  if (!running_scheduler.compare_exchange_strong(expected, this,
                                                 std::memory_order_acq_rel)) {
    throw std::logic_error(
        "green::run: a green runtime is already running in this process; "
        "spawn into it instead of calling run() again");
  }
  workers_.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    workers_.push_back(std::make_unique<Worker>(*this, i, stack_size_));
  }
  for (auto& worker : workers_) worker->start();
}

Scheduler::~Scheduler() {
  {
    // Exclusive: no outside spawn holds a pointer to us any more.
    std::unique_lock<std::shared_mutex> lock(outside_spawn_mutex());
    // release: pairs with the acquire in running().
    running_scheduler.store(nullptr, std::memory_order_release);
  }
  workers_.clear();  // joins (shutdown() already stopped them)
}

std::shared_mutex& Scheduler::outside_spawn_mutex() noexcept {
  static std::shared_mutex mutex;
  return mutex;
}

Scheduler* Scheduler::running() noexcept {
  // acquire: pairs with the release/acq_rel stores in the ctor and dtor.
  return running_scheduler.load(std::memory_order_acquire);
}

std::uint64_t Scheduler::next_fiber_id() noexcept {
  Worker* worker = current_worker();
  if (worker && &worker->scheduler() == this) return worker->take_fiber_id();
  return reserve_fiber_ids(1);
}

std::uint64_t Scheduler::reserve_fiber_ids(std::uint64_t count) noexcept {
  // relaxed: ids only need to be unique.
  return next_id_.fetch_add(count, std::memory_order_relaxed);
}

void Scheduler::submit(Fiber* fiber) noexcept {
  Worker* worker = current_worker();
  if (worker && &worker->scheduler() == this) {
    worker->count_submitted();
  } else {
    // release: as Worker::count_submitted.
    outside_submitted_.fetch_add(1, std::memory_order_release);
  }
  if (stopping()) fiber->request_kill();  // dies before it starts
  schedule(fiber, false);
}

void Scheduler::schedule(Fiber* fiber, bool as_next) noexcept {
  Worker* worker = current_worker();
  if (worker && &worker->scheduler() == this) {
    if (!worker->schedule_local(fiber, as_next)) return;
  } else {
    global_queue_.push(fiber);
  }
  notify_work();
}

void Scheduler::notify_work() noexcept {
  for (;;) {
    // seq_cst fence: orders our queue write (made before this call) before
    // the reads of the counters below; pairs with the fences in
    // add_parked() and end_spinning() (StoreLoad, see the header).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // relaxed loads: ordered by the fence above.
    if (spinning_.load(std::memory_order_relaxed) != 0) return;
    if (parked_count_.load(std::memory_order_relaxed) == 0) return;
    int expected = 0;
    // relaxed: the CAS only elects one waker; the parked list's mutex
    // orders the hand-over of the worker.
    if (!spinning_.compare_exchange_strong(expected, 1,
                                           std::memory_order_relaxed)) {
      return;  // somebody else is spinning now, or just woke a worker
    }
    Worker* worker = nullptr;
    {
      std::lock_guard<std::mutex> guard(parked_mutex_);
      if (!parked_.empty()) {
        worker = parked_.back();
        parked_.pop_back();
        // relaxed: read only after a fence, as above.
        parked_count_.fetch_sub(1, std::memory_order_relaxed);
      }
    }
    if (worker) {
      worker->unpark();  // it wakes as a spinner (remove_parked() says so)
      return;
    }
    // Nobody to wake after all. While we held the spinning slot another
    // notifier may have skipped its wake-up, trusting a "spinner": like a
    // real spinner, the last one out looks again.
    if (!end_spinning() || !has_work()) return;
  }
}

bool Scheduler::begin_spinning() noexcept {
  // relaxed: a heuristic cap (at most half the workers spin); correctness
  // rests on end_spinning()'s re-check, not on this count.
  const int spinning = spinning_.load(std::memory_order_relaxed);
  if (2 * spinning >= static_cast<int>(workers_.size())) return false;
  spinning_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool Scheduler::end_spinning() noexcept {
  // seq_cst: the caller may re-check the queues next; this RMW and the
  // fence order that re-check after our leaving the count, pairing with the
  // fence in notify_work() (a notifier that saw us spinning did not wake
  // anybody, so the last spinner must look again).
  const bool last = spinning_.fetch_sub(1, std::memory_order_seq_cst) == 1;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  return last;
}

void Scheduler::add_parked(Worker* worker) noexcept {
  {
    std::lock_guard<std::mutex> guard(parked_mutex_);
    parked_.push_back(worker);
    // relaxed: ordered against the caller's re-check by the fence below.
    parked_count_.fetch_add(1, std::memory_order_relaxed);
  }
  // seq_cst fence: pairs with notify_work()'s (see the header).
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool Scheduler::remove_parked(Worker* worker) noexcept {
  std::lock_guard<std::mutex> guard(parked_mutex_);
  for (auto it = parked_.begin(); it != parked_.end(); ++it) {
    if (*it == worker) {
      parked_.erase(it);
      parked_count_.fetch_sub(1, std::memory_order_relaxed);
      return true;
    }
  }
  return false;  // a notifier took it and counted it as spinning
}

bool Scheduler::has_work() const noexcept {
  if (!global_queue_.empty()) return true;
  for (const auto& worker : workers_) {
    if (!worker->run_queue().empty()) return true;
  }
  return false;
}

void Scheduler::fiber_finished() noexcept {
  if (!stopping()) return;
  std::lock_guard<std::mutex> guard(shutdown_mutex_);
  shutdown_condition_.notify_all();
}

bool Scheduler::fibers_left() const noexcept {
  // Finished counts first, then submitted ones: a fiber's submission
  // happens before its finish, and our acquire of the finish count makes
  // the submission count visible too, so the difference never misses a
  // live fiber, and 0 means none is left.
  std::uint64_t finished = 0;
  for (const auto& worker : workers_) finished += worker->finished_count();
  std::uint64_t submitted = outside_submitted_.load(std::memory_order_acquire);
  for (const auto& worker : workers_) submitted += worker->submitted_count();
  return submitted != finished;
}

void Scheduler::shutdown() {
  {
    // Waits for spawns from outside under way; refuses later ones, which
    // would otherwise race with the workers' exit.
    std::unique_lock<std::shared_mutex> lock(outside_spawn_mutex());
    closed_to_outside_.store(true, std::memory_order_relaxed);
  }
  // release: a fiber submitted after this sees it and is killed at once.
  stopping_.store(true, std::memory_order_release);
  // Kill what is left until nothing is. A green thread that catches
  // GreenletExit and blocks again is killed again on the next round.
  // Measured: 100 ms rounds keep shutdown prompt without busy looping.
  constexpr auto kKillRound = std::chrono::milliseconds(100);
  std::unique_lock<std::mutex> lock(shutdown_mutex_);
  // (Fibers that never blocked are not in the registry: not started, they
  // die as they start (Fiber::entry); running, they join it at their first
  // block and see `stopping_` there.)
  while (fibers_left()) {
    lock.unlock();
    registry_.for_each([](Fiber* fiber) { fiber->request_kill(); });
    lock.lock();
    shutdown_condition_.wait_for(lock, kKillRound,
                                 [this] { return !fibers_left(); });
  }
  lock.unlock();
  // release: pairs with the acquire in shutting_down().
  workers_exit_.store(true, std::memory_order_release);
  for (auto& worker : workers_) worker->unpark();
  for (auto& worker : workers_) worker->join();
}

}  // namespace green::detail
