// Green threads: spawn, spawn_n, spawn_after, sleep, GreenThread<R>.
//
//   green::run([] {
//     green::GreenThread<int> t = green::spawn([](int x) { return x * 2; },
//     21); green::sleep(std::chrono::milliseconds(10));  // others run
//     meanwhile return t.wait();                              // 42
//   });
//
// The names are Eventlet's (eventlet.spawn, spawn_n, spawn_after, sleep,
// GreenThread.wait/kill/cancel/link/unlink/dead). A green thread runs on
// whichever worker has time; it may move between workers at any blocking
// point, so it must not keep OS-thread identity across one (see
// green::local<T> instead of thread_local).
#ifndef GREEN_RUNTIME_GREEN_THREAD_H_
#define GREEN_RUNTIME_GREEN_THREAD_H_

#include <chrono>
#include <concepts>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/errors.h"
#include "runtime/fiber.h"
#include "runtime/options.h"

namespace green {

template <typename R>
class GreenThread;

namespace detail {

// The scheduler to spawn into, held for the duration of one spawn. A green
// thread spawns into its own runtime. A plain OS thread spawns into the
// running runtime, and holds it open meanwhile: shutdown waits for spawns
// under way from outside and refuses later ones, so no green thread can slip
// into a runtime that already stopped (or is gone). Throws std::logic_error
// naming `call` when there is no runtime to spawn into.
class SpawnTarget {
 public:
  explicit SpawnTarget(const char* call);
  ~SpawnTarget();
  SpawnTarget(const SpawnTarget&) = delete;
  SpawnTarget& operator=(const SpawnTarget&) = delete;
  Scheduler& scheduler() const noexcept { return *scheduler_; }

 private:
  Scheduler* scheduler_ = nullptr;
  bool external_ = false;
};
// Submits a new fiber to the runtime.
void submit(Scheduler& scheduler, Fiber* fiber) noexcept;
std::uint64_t next_fiber_id(Scheduler& scheduler) noexcept;
// Prints an exception that escaped a spawn_n green thread.
void report_unhandled(std::uint64_t id, std::exception_ptr error) noexcept;

// Result storage of a green thread with a handle.
template <typename R>
class Task : public Fiber {
 public:
  using Fiber::Fiber;

 protected:
  void set_exception(std::exception_ptr error) noexcept override {
    error_ = std::move(error);
  }

 protected:
  friend class green::GreenThread<R>;
  std::exception_ptr error_;
  std::conditional_t<std::is_void_v<R>, bool, std::optional<R>> value_{};
};

template <typename R, typename Fn>
class TaskImpl final : public Task<R> {
 public:
  TaskImpl(Scheduler& scheduler, std::uint64_t id, std::size_t stack_size,
           Fn fn)
      : Task<R>(scheduler, id, stack_size), fn_(std::move(fn)) {}

 protected:
  void run() override {
    if constexpr (std::is_void_v<R>) {
      (*fn_)();
    } else {
      this->value_.emplace((*fn_)());
    }
    fn_.reset();  // release what the function captured, on its own stack
  }

 private:
  std::optional<Fn> fn_;
};

// A green thread nobody waits for (spawn_n): an escaping exception is
// reported on stderr and the process goes on.
template <typename Fn>
class DetachedTask final : public Fiber {
 public:
  DetachedTask(Scheduler& scheduler, std::uint64_t id, std::size_t stack_size,
               Fn fn)
      : Fiber(scheduler, id, stack_size), fn_(std::move(fn)) {}

 protected:
  void run() override {
    (*fn_)();
    fn_.reset();
  }
  void set_exception(std::exception_ptr error) noexcept override {
    report_unhandled(id(), std::move(error));
  }

 private:
  std::optional<Fn> fn_;
};

template <typename F, typename... Args>
auto bind_call(F&& f, Args&&... args) {
  return [f = std::forward<F>(f),
          ... args = std::forward<Args>(args)]() mutable -> decltype(auto) {
    return std::invoke(std::move(f), std::move(args)...);
  };
}

template <typename F, typename... Args>
using BoundResult = std::invoke_result_t<decltype(bind_call(
    std::declval<F>(), std::declval<Args>()...))&>;

// Lets spawn() build handles without making the constructor public.
struct GreenThreadAccess {
  template <typename R>
  static GreenThread<R> make(Task<R>* task) {
    return GreenThread<R>(task);
  }
};

template <typename T>
concept NotSpawnOptions = !std::is_same_v<std::decay_t<T>, SpawnOptions>;

}  // namespace detail

// The id of a green thread, unique within the process.
struct GreenThreadId {
  std::uint64_t value = 0;
  std::string name() const { return "green-thread-" + std::to_string(value); }
  friend auto operator<=>(const GreenThreadId&, const GreenThreadId&) = default;
};

// A handle to a spawned green thread (Eventlet's GreenThread). Copies share
// the same green thread. Any thread may use it: wait() parks a green thread
// and blocks a plain OS thread.
template <typename R>
class GreenThread {
 public:
  static_assert(!std::is_reference_v<R>,
                "a green thread returns values; wrap references with "
                "std::ref or return a pointer");
  GreenThread() = default;

  // Waits for the green thread to end and returns its value, or rethrows
  // its exception (GreenletExit if it was killed). Callable repeatedly; a
  // move-only value can be taken once.
  R wait() {
    detail::Task<R>* task = checked("wait");
    task->join();
    if (task->error_) std::rethrow_exception(task->error_);
    if constexpr (!std::is_void_v<R>) {
      if constexpr (std::is_copy_constructible_v<R>) {
        return *task->value_;
      } else {
        if (!task->value_) {
          throw std::logic_error(
              "green::GreenThread::wait: the move-only result was already "
              "taken by an earlier wait()");
        }
        R value = std::move(*task->value_);
        task->value_.reset();
        return value;
      }
    }
  }

  // Raises GreenletExit inside the green thread at its next blocking point
  // (or keeps it from starting) and waits until it has handled it: when
  // kill() returns, the target has ended or reached its next blocking
  // point. If the target runs on another worker at that moment, kill()
  // waits for it to block. Killing a dead green thread does nothing;
  // killing yourself throws GreenletExit at once.
  void kill() { checked("kill")->kill_and_wait(); }
  // The same without waiting.
  void kill_async() { checked("kill_async")->request_kill(); }
  // For spawn_after: kills the green thread if its function has not
  // started yet; returns whether it had not.
  bool cancel() { return checked("cancel")->cancel_if_not_started(); }
  bool dead() const { return checked("dead")->finished(); }

  using LinkId = detail::Fiber::LinkId;
  // Calls callback(handle) when the green thread ends, on the ending green
  // thread; at once, on the caller, if it has ended already.
  template <typename F>
  LinkId link(F callback) {
    GreenThread self = *this;
    return checked("link")->link(
        [self, callback = std::move(callback)]() mutable { callback(self); });
  }
  bool unlink(LinkId id) { return checked("unlink")->unlink(id); }

  GreenThreadId id() const { return {checked("id")->id()}; }
  explicit operator bool() const noexcept { return static_cast<bool>(task_); }

 private:
  friend struct detail::GreenThreadAccess;
  explicit GreenThread(detail::Task<R>* task) : task_(task) {}

  detail::Task<R>* checked(const char* call) const {
    if (!task_) {
      throw std::logic_error(std::string("green::GreenThread::") + call +
                             ": empty handle (default-constructed)");
    }
    return static_cast<detail::Task<R>*>(task_.get());
  }

  detail::FiberRef task_;
};

// Starts f(args...) in a new green thread; returns its handle. The new
// green thread runs when a worker gets to it (the caller goes on).
template <typename F, typename... Args>
auto spawn(SpawnOptions options, F&& f, Args&&... args)
    -> GreenThread<detail::BoundResult<F, Args...>> {
  using R = detail::BoundResult<F, Args...>;
  detail::SpawnTarget target("green::spawn");
  detail::Scheduler& scheduler = target.scheduler();
  auto fn = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
  auto* task = new detail::TaskImpl<R, decltype(fn)>(
      scheduler, detail::next_fiber_id(scheduler), options.stack_size,
      std::move(fn));
  // A second reference, beside the runtime's.
  GreenThread<R> handle = detail::GreenThreadAccess::make<R>(task);
  detail::submit(scheduler, task);
  return handle;
}

template <detail::NotSpawnOptions F, typename... Args>
auto spawn(F&& f, Args&&... args) {
  return spawn(SpawnOptions{}, std::forward<F>(f), std::forward<Args>(args)...);
}

// Starts f(args...) in a green thread with no handle: the cheapest spawn.
// An exception escaping it is reported on stderr with the green thread's
// id; the process and the other green threads go on.
template <typename F, typename... Args>
void spawn_n(SpawnOptions options, F&& f, Args&&... args) {
  detail::SpawnTarget target("green::spawn_n");
  detail::Scheduler& scheduler = target.scheduler();
  auto fn = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
  auto* task = new detail::DetachedTask<decltype(fn)>(
      scheduler, detail::next_fiber_id(scheduler), options.stack_size,
      std::move(fn));
  detail::submit(scheduler, task);
}

template <detail::NotSpawnOptions F, typename... Args>
void spawn_n(F&& f, Args&&... args) {
  spawn_n(SpawnOptions{}, std::forward<F>(f), std::forward<Args>(args)...);
}

// Starts f(args...) after `delay`; cancel() before then keeps it from
// running (wait() then throws GreenletExit).
template <typename Rep, typename Period, typename F, typename... Args>
auto spawn_after(std::chrono::duration<Rep, Period> delay, F&& f,
                 Args&&... args)
    -> GreenThread<detail::BoundResult<F, Args...>> {
  using R = detail::BoundResult<F, Args...>;
  detail::SpawnTarget target("green::spawn_after");
  detail::Scheduler& scheduler = target.scheduler();
  auto fn = detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
  auto* task = new detail::TaskImpl<R, decltype(fn)>(
      scheduler, detail::next_fiber_id(scheduler), 0, std::move(fn));
  task->set_start_delay(
      std::chrono::duration_cast<std::chrono::nanoseconds>(delay));
  GreenThread<R> handle = detail::GreenThreadAccess::make<R>(task);
  detail::submit(scheduler, task);
  return handle;
}

// Suspends the calling green thread for `duration`; others run meanwhile.
// sleep(0) (or any non-positive duration) yields: the caller goes to the
// back of its worker's run queue. A blocking point: kill() and Timeout
// interrupt it.
void sleep(std::chrono::nanoseconds duration);
template <typename Rep, typename Period>
void sleep(std::chrono::duration<Rep, Period> duration) {
  sleep(std::chrono::duration_cast<std::chrono::nanoseconds>(duration));
}
inline void yield() { sleep(std::chrono::nanoseconds(0)); }

// The running green thread's id. Throws std::logic_error on a plain thread.
GreenThreadId current();
// The index (0..workers-1) of the worker running the caller. Throws
// std::logic_error on a plain thread.
std::size_t worker_id();
// Whether the caller runs in a green thread.
bool in_green_thread() noexcept;

}  // namespace green

#endif  // GREEN_RUNTIME_GREEN_THREAD_H_
