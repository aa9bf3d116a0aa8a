// Worker: one OS thread that runs green threads, with its own run queue,
// stack pool and reactor (an asio::io_context).
//
// The loop (Worker::loop):
//   1. Every kGlobalQueueInterval rounds take from the global queue first,
//      so fibers there are not starved by a busy local ring.
//   2. Every kReactorPollInterval rounds poll the reactor without blocking,
//      so I/O completions and timers are not starved by a long run queue.
//      While other work waits, the green threads this poll wakes go to the
//      back of the global queue, not into the ring: they became ready after
//      everything already queued, and a ring refilled by every poll would
//      leave the global queue one turn in 61 (at 1,000 echo connections
//      that was a p99.9 of 0.4 s; Go's netpoll injects into its global
//      queue the same way).
//   3. Run the next local fiber: run-next slot, then the ring.
//   4. Else the global queue, then the reactor (non-blocking), then steal
//      half of a random victim's ring (while spinning), then park.
// Parking blocks in io_context::run_one(), or run_one_until() the earliest
// deadline in the worker's TimerHeap, so a socket or a timer still wakes a
// parked worker; other threads wake it by posting to it. Green sockets are
// not Asio's: they wait in the worker's ReadinessPoller (an epoll set whose
// own descriptor sits in Asio's while the worker is parked). Every poll of
// the reactor also expires due timers and drains that poller.
//
// Trap designed out (1): a green thread is never resumed from inside an Asio
// completion handler. Handlers only make fibers runnable (push them onto
// this worker's queue); fibers run from this loop, outside run_one()/poll(),
// so Asio's per-thread call stack never contains a fiber that may later
// migrate to another thread.
//
// Trap designed out (2): the "current worker" is a thread_local, and a
// compiler may cache the address of a thread_local across a call that
// switches stacks -- and the fiber may come back on another OS thread. Every
// read goes through current_worker(), a non-inlined function with a compiler
// barrier; nothing caches its result across a switch.
#ifndef GREEN_RUNTIME_WORKER_H_
#define GREEN_RUNTIME_WORKER_H_

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <boost/context/fiber.hpp>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>

#include "runtime/block_cache.h"
#include "runtime/fiber.h"
#include "runtime/readiness_poller.h"
#include "runtime/run_queue.h"
#include "runtime/stack_pool.h"
#include "runtime/timer_heap.h"

namespace green::detail {

class Scheduler;

class Worker {
 public:
  Worker(Scheduler& scheduler, std::size_t index, std::size_t stack_size);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  void start();
  void join();

  std::size_t index() const noexcept { return index_; }
  Scheduler& scheduler() const noexcept { return scheduler_; }
  asio::io_context& io() noexcept { return io_; }
  // The epoll set of the green sockets whose home is this worker.
  ReadinessPoller& poller() noexcept { return poller_; }
  RunQueue<Fiber>& run_queue() noexcept { return run_queue_; }

  // --- Called only on this worker's thread. ---
  Fiber* current_fiber() const noexcept { return current_; }
  StackPool& stack_pool() noexcept { return *stack_pool_; }
  // The fiber whose finish() this worker runs on its own stack, the fiber
  // having none (Fiber::finish_without_stack): its link callbacks run here
  // and may wait for it. Worker thread only.
  const Fiber* finishing_without_stack() const noexcept {
    return finishing_without_stack_;
  }
  void set_finishing_without_stack(const Fiber* fiber) noexcept {
    finishing_without_stack_ = fiber;
  }
  // Control blocks freed and allocated on this worker (block_cache.h).
  BlockCache& block_cache() noexcept { return block_cache_; }
  // Deadlines of green threads parked here (park_until).
  TimerHeap& timers() noexcept { return timers_; }
  // Makes `fiber` runnable here. `as_next`: the run-next slot (a message
  // was handed to it), capped so two fibers passing messages cannot starve
  // the ring. Returns whether idle workers should be told (false when
  // `fiber` only took the empty run-next slot: it runs here next).
  bool schedule_local(Fiber* fiber, bool as_next) noexcept;

  // A process-unique green thread id, from a block this worker reserved,
  // so that workers spawning at once do not contend on one counter.
  std::uint64_t take_fiber_id() noexcept;

  // Green threads submitted from / finished on this worker, for the
  // scheduler's count of live ones (Scheduler::fibers_left). Only this
  // worker's thread writes them, so counting is a load and a store, no
  // read-modify-write: release, so that shutdown, reading with acquire,
  // sees what happened before each count.
  void count_submitted() noexcept {
    submitted_.store(submitted_.load(std::memory_order_relaxed) + 1,
                     std::memory_order_release);
  }
  void count_finished() noexcept {
    finished_.store(finished_.load(std::memory_order_relaxed) + 1,
                    std::memory_order_release);
  }
  std::uint64_t submitted_count() const noexcept {
    return submitted_.load(std::memory_order_acquire);  // see above
  }
  std::uint64_t finished_count() const noexcept {
    return finished_.load(std::memory_order_acquire);  // see above
  }

  // What the fiber that switched back asks of this worker.
  enum class AfterSwitch : std::uint8_t { kYield, kPark, kFinish };

  // Called by the running green thread `from` as it yields (`after` is
  // kYield) or parks (kPark, after begin_park()): switches straight to the
  // next runnable green thread that has run before, without the round trip
  // through this worker's loop, and then does for `from` what the loop
  // would (queue it behind, or commit its park). Returns true once `from`
  // runs again (perhaps on another worker: the caller must not use its
  // Worker* afterwards); false if the loop has to do the switch (periodic
  // checks due, nothing else runnable, a fresh green thread next, or a
  // sanitizer build).
  bool switch_directly(Fiber* from, AfterSwitch after) noexcept;

  void set_after_switch(AfterSwitch after) noexcept { after_switch_ = after; }
  void* tsan_fiber() const noexcept { return tsan_fiber_; }

  // --- Any thread. ---
  // Wakes this worker if it is parked in its io_context.
  void unpark() noexcept;
  // Set by a notifier that took this worker off the parked list and
  // counted it as spinning.
  void set_woken_as_spinner() noexcept {
    // relaxed: published to the worker by the post() in unpark(), which
    // goes through the io_context's mutex.
    woken_as_spinner_.store(true, std::memory_order_relaxed);
  }

 private:
  // As Go's schedule(): check the global queue once in 61 rounds. 61 is
  // prime so it does not beat against other periodic patterns.
  static constexpr std::uint32_t kGlobalQueueInterval = 61;
  // As Tokio's event_interval: poll the reactor once in 61 rounds.
  static constexpr std::uint32_t kReactorPollInterval = 61;
  // Rounds over all victims before a spinner gives up (Go uses 4).
  static constexpr int kStealRounds = 4;
  // Run-next hand-offs in a row before one goes to the back of the ring
  // instead (Tokio caps its LIFO slot similarly), so that ping-ponging
  // fibers cannot starve the rest of the ring.
  static constexpr std::uint32_t kMaxRunNextStreak = 16;
  // Ids reserved at a time: one shared atomic add per 1024 spawns.
  static constexpr std::uint64_t kFiberIdBlock = 1024;

  void loop();
  // The next fiber to run, parking when there is none (then nullptr).
  Fiber* find_work();
  // One pass over every source of work, stealing if allowed to spin.
  Fiber* find_runnable() noexcept;
  Fiber* take_from_global(bool woken_only = false) noexcept;
  Fiber* steal() noexcept;
  void park();
  void run(Fiber* fiber) noexcept;
  // Expires due timers and collects socket readiness; with `with_asio`,
  // also runs the io_context's ready handlers (resolver results: rare, so
  // the idle-path poll skips that second epoll_wait and leaves them to the
  // periodic poll and to park()).
  std::size_t poll_reactor(bool with_asio) noexcept;
  // The periodic poll of step 2, with its wakes sent to the global queue.
  void poll_reactor_behind_queued_work() noexcept;

  Scheduler& scheduler_;
  const std::size_t index_;
  const std::size_t stack_size_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work_guard_;
  ReadinessPoller poller_;  // after io_: its descriptor lives in io_
  RunQueue<Fiber> run_queue_;
  TimerHeap timers_;
  std::unique_ptr<StackPool> stack_pool_;  // created on the worker thread
  BlockCache block_cache_;                 // used on the worker thread only
  const Fiber* finishing_without_stack_ = nullptr;  // worker thread only
  std::thread thread_;

  // Owner-only state.
  Fiber* current_ = nullptr;
  AfterSwitch after_switch_ = AfterSwitch::kYield;
  std::uint32_t tick_ = 0;
  std::uint32_t run_next_streak_ = 0;
  std::uint64_t next_fiber_id_ = 0;
  std::uint64_t fiber_id_limit_ = 0;
  bool spinning_ = false;
  // A fresh green thread popped by switch_directly(), which cannot switch to
  // it (it has no context yet): the loop runs it next.
  Fiber* handed_over_ = nullptr;
  // This thread's C++ exception state (__cxa_get_globals), cached.
  Fiber::ExceptionState* exceptions_ = nullptr;
  // Set during poll_reactor_behind_queued_work(): schedule_local() then
  // collects plain wakes in wake_batch_ (a chain through queue_next).
  bool batching_wakes_ = false;
  Fiber* wake_batch_first_ = nullptr;
  Fiber* wake_batch_last_ = nullptr;
  std::minstd_rand random_;
  void* tsan_fiber_ = nullptr;
  void* asan_fake_stack_ = nullptr;

  std::atomic<bool> woken_as_spinner_{false};

  // Owner-written, read by shutdown: a line of their own, away from
  // woken_as_spinner_, which other workers write.
  alignas(64) std::atomic<std::uint64_t> submitted_{0};
  std::atomic<std::uint64_t> finished_{0};
};

// The worker running the calling thread, or nullptr on any other thread.
// Not inlined, with a compiler barrier: see trap (2) above.
Worker* current_worker() noexcept;
// The fiber running the calling code, or nullptr on a plain thread (or on a
// worker's own stack).
Fiber* current_fiber() noexcept;

}  // namespace green::detail

#endif  // GREEN_RUNTIME_WORKER_H_
