// Scheduler: the M:N runtime -- N workers, the global queue, the registry of
// live green threads, and the protocol by which idle workers park and wake.
//
// Glossary.
//   green thread  a user task on its own stack (a Fiber).
//   worker        an OS thread that runs green threads; it owns a RunQueue,
//                 a StackPool, a TimerHeap and an asio::io_context, its
//                 reactor.
//   reactor       the worker's io_context: socket readiness (deadlines of
//                 parked green threads are in the worker's TimerHeap).
//   run queue     the worker's ring of runnable fibers (runtime/run_queue.h)
//                 and the shared global queue for overflow and for fibers
//                 made runnable by threads that are not our workers.
//   spinning      a worker without work that is looking for some (stealing)
//                 instead of parking.
//
// Spinning and parking (after Go's proc.go "Worker thread parking/
// unparking" and Tokio's idle.rs). The goal: a runnable fiber never waits
// behind a parked worker while another worker could run it, yet an idle
// runtime burns no CPU, and a burst of work does not wake every worker.
//   * A thread that makes a fiber runnable calls notify_work(). It wakes a
//     parked worker only if no worker is spinning (a spinner will find the
//     work) and some worker is parked; it claims the spinning slot on the
//     woken worker's behalf (CAS 0 -> 1), so concurrent notifiers wake one
//     worker, not many.
//   * A spinning worker that finds work stops spinning; if it was the last
//     spinner it calls notify_work() so that another worker comes to look
//     for the rest of the burst. At most half the workers spin at once.
//   * A worker that found nothing publishes itself as parked, then checks
//     every queue once more, then blocks in its io_context.
// Why no wake-up is lost: the notifier writes the fiber into a queue and
// then reads the parked/spinning counters; the parker writes the counters
// and then reads the queues. Both sides put a seq_cst fence between their
// write and their read (StoreLoad), so at least one of them sees the other:
// either the notifier sees the parked worker and wakes it, or the parker
// sees the fiber and does not sleep.
#ifndef GREEN_RUNTIME_SCHEDULER_H_
#define GREEN_RUNTIME_SCHEDULER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <vector>

#include "runtime/fiber.h"
#include "runtime/global_queue.h"
#include "runtime/options.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

class Worker;

// Every fiber that has blocked or yielded at least once and is still
// alive, so that shutdown can kill the ones still blocked (or yielding). A
// fiber joins it at its first begin_park() or green::yield(), not at spawn:
// most green threads never block (spawn-join's all, skynet's leaves), and
// registering each at spawn and unlinking it on the worker that ran it cost two
// cross-core lock and list-neighbour misses per green thread (13% of spawn-join
// at 2 workers). Sharded by fiber id so that workers rarely meet on one lock.
class FiberRegistry {
 public:
  void add(Fiber* fiber) noexcept;
  void remove(Fiber* fiber) noexcept;
  // Calls f(fiber) for each live fiber, with a reference held.
  template <typename F>
  void for_each(F&& f);

 private:
  // Power of two well above any worker count we expect to spawn from at
  // once; 64 shards cost 4 KiB.
  static constexpr std::size_t kShards = 64;
  struct alignas(64) Shard {
    SpinLock lock;
    Fiber* head GREEN_GUARDED_BY(lock) = nullptr;
  };
  Shard shards_[kShards];
};

class Scheduler {
 public:
  explicit Scheduler(const Options& options);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // The runtime that is running now (one per process at a time), or null.
  // A thread that is not one of its green threads may use the result only
  // while it holds outside_spawn_mutex() shared (see SpawnTarget).
  static Scheduler* running() noexcept;
  static std::shared_mutex& outside_spawn_mutex() noexcept;
  // Set when shutdown begins: spawns from outside are refused from then on.
  bool closed_to_outside() const noexcept {
    // relaxed: written and read under outside_spawn_mutex().
    return closed_to_outside_.load(std::memory_order_relaxed);
  }

  std::size_t worker_count() const noexcept { return workers_.size(); }
  Worker& worker(std::size_t index) noexcept { return *workers_[index]; }
  std::size_t stack_size() const noexcept { return stack_size_; }

  // A new fiber enters the runtime: registered, then made runnable.
  void submit(Fiber* fiber) noexcept;
  // Makes a fiber runnable: on the calling worker's own queue when the
  // caller is one of our workers, else on the global queue.
  void schedule(Fiber* fiber, bool as_next) noexcept;
  // Called after work was made available anywhere (see the header).
  void notify_work() noexcept;
  std::uint64_t next_fiber_id() noexcept;
  // Reserves `count` consecutive ids; returns the first.
  std::uint64_t reserve_fiber_ids(std::uint64_t count) noexcept;

  GlobalQueue<Fiber>& global_queue() noexcept { return global_queue_; }
  FiberRegistry& registry() noexcept { return registry_; }

  // Called from finish() of each fiber: wakes shutdown() when it waits for
  // the last one.
  void fiber_finished() noexcept;
  // Whether any green thread submitted so far has not finished.
  bool fibers_left() const noexcept;
  bool stopping() const noexcept {
    // acquire: pairs with the release in shutdown(), so a fiber spawned
    // after it sees the flag and is killed before it starts.
    return stopping_.load(std::memory_order_acquire);
  }
  // Kills every green thread still alive, waits for all to end, stops and
  // joins the workers. Called once, from the thread that called run().
  void shutdown();

  // --- Idle protocol, called by workers. ---
  bool begin_spinning() noexcept;
  // Returns true if the caller was the last spinner.
  bool end_spinning() noexcept;
  void add_parked(Worker* worker) noexcept;
  // Removes `worker` from the parked list; false if a notifier already took
  // it (and made it a spinner).
  bool remove_parked(Worker* worker) noexcept;
  // Whether any queue holds a runnable fiber (approximate, for parking).
  bool has_work() const noexcept;
  bool shutting_down() const noexcept {
    // acquire: pairs with the release in shutdown(); workers then exit.
    return workers_exit_.load(std::memory_order_acquire);
  }

 private:
  const std::size_t stack_size_;
  std::vector<std::unique_ptr<Worker>> workers_;
  GlobalQueue<Fiber> global_queue_;
  FiberRegistry registry_;

  // Read by every green thread as it starts (stopping()), written once: a
  // line of its own, away from the idle protocol's counters, which every
  // spinning worker writes.
  alignas(64) std::atomic<bool> stopping_{false};

  alignas(64) std::atomic<std::uint64_t> next_id_{1};
  // Green threads submitted by threads that are not our workers (workers
  // count their own: Worker::count_submitted).
  std::atomic<std::uint64_t> outside_submitted_{0};
  alignas(64) std::atomic<int> spinning_{0};
  std::atomic<int> parked_count_{0};
  std::mutex parked_mutex_;
  std::vector<Worker*> parked_ GREEN_GUARDED_BY(parked_mutex_);

  std::atomic<bool> closed_to_outside_{false};
  std::atomic<bool> workers_exit_{false};
  std::mutex shutdown_mutex_;
  std::condition_variable shutdown_condition_;
};

template <typename F>
void FiberRegistry::for_each(F&& f) {
  for (Shard& shard : shards_) {
    std::vector<FiberRef> fibers;
    {
      std::lock_guard<SpinLock> guard(shard.lock);
      for (Fiber* fiber = shard.head; fiber; fiber = fiber->registry_next) {
        fibers.emplace_back(fiber);
      }
    }
    for (FiberRef& fiber : fibers) f(fiber.get());
  }
}

}  // namespace green::detail

#endif  // GREEN_RUNTIME_SCHEDULER_H_
