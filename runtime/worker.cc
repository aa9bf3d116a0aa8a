// Worker: the scheduling loop of one OS thread. Design notes in worker.h.
#include "runtime/worker.h"

#include <cxxabi.h>

#include <asio/post.hpp>
#include <cstdio>
#include <utility>

#include "runtime/sanitizer_hooks.h"
#include "runtime/scheduler.h"

namespace green::detail {
namespace {

// initial-exec: a plain %fs-relative load instead of a __tls_get_addr call
// when the runtime is linked as a shared library (as Bazel links tests);
// greenrt is never dlopen()ed late, which is the model's only restriction.
__attribute__((tls_model("initial-exec"))) thread_local Worker* tls_worker =
    nullptr;

// Returns a finished fiber's stack to the pool of the worker it ends on.
// Boost.Context calls deallocate() on the worker's stack, after the switch
// away from the dead fiber (fiber_exit), so the stack is no longer in use.
struct StackReturn {
  Fiber* fiber;
  Stack* stack;
  boost::context::stack_context allocate() {
    std::abort();  // never called: stacks are preallocated
  }
  void deallocate(boost::context::stack_context&) noexcept {
    // The fiber's last switch: check its canary like every other.
    if (!canary_intact(*stack)) report_stack_overflow(*stack);
    current_worker()->stack_pool().deallocate(*stack);
    *stack = Stack{};
  }
};

}  // namespace

__attribute__((noinline)) Worker* current_worker() noexcept {
  // The barrier keeps the compiler from reusing a TLS address computed
  // before a stack switch (trap (2) in worker.h).
  asm volatile("" ::: "memory");
  return tls_worker;
}

__attribute__((noinline)) Fiber* current_fiber() noexcept {
  asm volatile("" ::: "memory");
  Worker* worker = tls_worker;
  return worker ? worker->current_fiber() : nullptr;
}

Worker::Worker(Scheduler& scheduler, std::size_t index, std::size_t stack_size)
    : scheduler_(scheduler),
      index_(index),
      stack_size_(stack_size),
      io_(1),  // one thread runs it: Asio may skip some locking on its own
               // thread, and still locks for posts from other threads
      poller_(io_),
      random_(static_cast<unsigned>(index * 7919 + 1)) {
  // poller_'s construction made Asio create its reactor (epoll, eventfd and
  // timerfd descriptors) and the poller's epoll set: a process at its
  // descriptor limit fails here, at start, not in the middle of a park.
  work_guard_.emplace(io_.get_executor());
}

Worker::~Worker() { join(); }

void Worker::start() {
  thread_ = std::thread([this] {
    tls_worker = this;
    exceptions_ =
        reinterpret_cast<Fiber::ExceptionState*>(abi::__cxa_get_globals());
    tsan_fiber_ = tsan_current_fiber();
    stack_pool_ = std::make_unique<StackPool>(stack_size_);
    install_overflow_handler();
    loop();
    stack_pool_.reset();
    // Control blocks freed from now on (by handles that outlive the
    // runtime) go straight to oneTBB: this thread is no worker any more.
    block_cache_.flush();
    tls_worker = nullptr;
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::unpark() noexcept {
  asio::post(io_, [] {});
}

std::uint64_t Worker::take_fiber_id() noexcept {
  if (next_fiber_id_ == fiber_id_limit_) {
    next_fiber_id_ = scheduler_.reserve_fiber_ids(kFiberIdBlock);
    fiber_id_limit_ = next_fiber_id_ + kFiberIdBlock;
  }
  return next_fiber_id_++;
}

bool Worker::schedule_local(Fiber* fiber, bool as_next) noexcept {
  if (as_next) {
    // The streak cap is for fairness to the ring: with nothing else queued
    // here there is nobody to be fair to, and pushing to the ring would
    // notify another worker that then steals one of the pair.
    if (++run_next_streak_ < kMaxRunNextStreak || run_queue_.ring_empty()) {
      // Into an empty run-next slot: this worker runs it as soon as the
      // current green thread parks (a message hand-off), so waking another
      // worker would only have it spin, or steal the message's receiver
      // and bounce the pair between cores. Tokio skips the notification
      // for its LIFO slot the same way.
      return run_queue_.push_next(fiber, scheduler_.global_queue());
    }
    run_next_streak_ = 0;
  }
  if (batching_wakes_) {
    fiber->queue_next = nullptr;
    if (wake_batch_last_) {
      wake_batch_last_->queue_next = fiber;
    } else {
      wake_batch_first_ = fiber;
    }
    wake_batch_last_ = fiber;
    return false;  // notified once the batch is in the global queue
  }
  // A full ring moves its older half to the global queue (Go's runqput).
  // That queue serves green threads that have run before ahead of fresh
  // ones (global_queue.h), so a woken thread's stack is freed promptly even
  // behind a million spawns. Sending the woken thread itself to the global
  // queue instead kept the ring full, and the global queue then got one
  // turn in 61: hundreds of echo connections starved for seconds.
  run_queue_.push_back(fiber, scheduler_.global_queue());
  return true;
}

void Worker::loop() {
  for (;;) {
    if (Fiber* fiber = find_work()) {
      run(fiber);
    } else if (scheduler_.shutting_down()) {
      return;
    }
  }
}

std::size_t Worker::poll_reactor(bool with_asio) noexcept {
  // Timers first: their wakes queue behind the ones already runnable.
  std::size_t events =
      timers_.empty() ? 0 : timers_.expire(std::chrono::steady_clock::now());
  events += poller_.poll();
  if (!with_asio) return events;
  try {
    return events + io_.poll();
  } catch (const std::exception& e) {
    // Handlers are ours and do not throw; say so loudly if one ever does.
    std::fprintf(stderr, "green: reactor handler threw: %s\n", e.what());
    return events + 1;
  }
}

void Worker::poll_reactor_behind_queued_work() noexcept {
  if (run_queue_.empty() && scheduler_.global_queue().empty()) {
    // Nothing waits: the wakes may go straight to the ring.
    poll_reactor(/*with_asio=*/true);
    return;
  }
  batching_wakes_ = true;
  poll_reactor(/*with_asio=*/true);
  batching_wakes_ = false;
  if (wake_batch_first_ == nullptr) return;
  scheduler_.global_queue().push_batch(wake_batch_first_, wake_batch_last_);
  wake_batch_first_ = wake_batch_last_ = nullptr;
  // The batched wakes did not notify (schedule_local returned false for
  // them): one notification now that the batch is visible to all.
  scheduler_.notify_work();
}

Fiber* Worker::take_from_global(bool woken_only) noexcept {
  GlobalQueue<Fiber>& global = scheduler_.global_queue();
  if (global.empty()) return nullptr;
  // As Go's globrunqget: a fair share, at most half a ring. The periodic
  // check of a busy worker (`woken_only`) takes a batch only of green
  // threads that have run before -- I/O wakes and overflowed running work,
  // which must not wait behind the ring (echo-1000's tail) -- and else one
  // fresh one, as Go's schedule() takes one: a batch of fresh spawns every
  // 61 rounds ran skynet breadth-first (~450 -> ~600 ms).
  const std::size_t share = global.size() / scheduler_.worker_count() + 1;
  const std::size_t half_ring = kDefaultRunQueueCapacity / 2;
  return global.pop_batch_into(run_queue_, std::min(share, half_ring),
                               woken_only);
}

Fiber* Worker::find_work() {
  Fiber* fiber = find_runnable();
  if (spinning_) {
    // Leaving the spinning state, with or without work. A worker that runs
    // fibers while still counted as spinning would make notify_work()
    // believe somebody is looking for work and wake nobody.
    spinning_ = false;
    const bool was_last = scheduler_.end_spinning();
    if (fiber) {
      // The last spinner found work: there may be more, so bring another
      // worker to look (Go's resetspinning).
      if (was_last) scheduler_.notify_work();
      return fiber;
    }
    // The last spinner re-checks after leaving the spinning count: a
    // notifier that saw it spinning woke nobody (Tokio's
    // transition_worker_from_searching).
    if (was_last && scheduler_.has_work()) return nullptr;
  }
  if (fiber) return fiber;
  park();
  return nullptr;
}

Fiber* Worker::find_runnable() noexcept {
  if (Fiber* fiber = std::exchange(handed_over_, nullptr)) return fiber;
  ++tick_;
  // The reactor first: the global-queue check below may return, and with
  // equal intervals it used to starve the reactor whenever the global
  // queue held anything (timers then fired only after the backlog).
  if (tick_ % kReactorPollInterval == 0) poll_reactor_behind_queued_work();
  if (tick_ % kGlobalQueueInterval == 0) {
    if (Fiber* fiber = take_from_global(/*woken_only=*/true)) return fiber;
  }
  if (Fiber* fiber = run_queue_.pop()) return fiber;
  if (Fiber* fiber = take_from_global()) return fiber;
  if (poll_reactor(/*with_asio=*/false) > 0) {
    if (Fiber* fiber = run_queue_.pop()) return fiber;
  }
  if (!spinning_) spinning_ = scheduler_.begin_spinning();
  return spinning_ ? steal() : nullptr;
}

Fiber* Worker::steal() noexcept {
  const std::size_t count = scheduler_.worker_count();
  for (int round = 0; round < kStealRounds; ++round) {
    const bool take_next = round == kStealRounds - 1;
    const std::size_t start = random_() % count;
    for (std::size_t i = 0; i < count; ++i) {
      const std::size_t victim = (start + i) % count;
      if (victim == index_) continue;
      if (Fiber* fiber = scheduler_.worker(victim).run_queue().steal_into(
              run_queue_, take_next)) {
        return fiber;
      }
    }
    if (Fiber* fiber = take_from_global()) return fiber;
  }
  return nullptr;
}

void Worker::park() {
  scheduler_.add_parked(this);
  // add_parked() ends with a seq_cst fence: this re-check cannot miss a
  // fiber whose notifier did not see us parked (scheduler.h).
  if (scheduler_.has_work() || scheduler_.shutting_down() ||
      !run_queue_.empty()) {
    if (!scheduler_.remove_parked(this)) spinning_ = true;
    return;
  }
  try {
    auto earliest = timers_.earliest();
    if (!poller_.prepare_to_park()) {
      // Out of memory for the poller's wait: sleep 1 ms at most, so that
      // socket edges are still noticed, if late.
      const auto soon =
          std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
      if (!earliest || soon < *earliest) earliest = soon;
    }
    if (earliest) {
      io_.run_one_until(*earliest);  // epoll_wait's timeout: no timerfd
    } else {
      io_.run_one();
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "green: reactor handler threw: %s\n", e.what());
  }
  // A notifier that took us off the parked list counted us as spinning.
  if (!scheduler_.remove_parked(this)) spinning_ = true;
}

bool Worker::switch_directly(Fiber* from, AfterSwitch after) noexcept {
#if defined(GREEN_ASAN) || defined(GREEN_TSAN)
  // The sanitizers' switch annotations assume every switch goes through
  // the worker's own stack (sanitizer_hooks.h); keep to that there.
  (void)from;
  (void)after;
  return false;
#else
  // The loop's periodic checks (reactor, timers, global queue) fall due on
  // the next tick: let the loop take it.
  if ((tick_ + 1) % kReactorPollInterval == 0 ||
      (tick_ + 1) % kGlobalQueueInterval == 0) {
    return false;
  }
  Fiber* const next = run_queue_.pop();
  if (next == nullptr) return false;  // the loop looks further, or parks
  if (!next->started_running()) {
    // Needs a stack and a context: the loop's job. This pop was the
    // round's pick, so it counts as the round's tick (the loop hands it
    // out first, without another).
    ++tick_;
    handed_over_ = next;
    return false;
  }
  ++tick_;
  if (!canary_intact(from->stack_)) report_stack_overflow(from->stack_);
  current_ = next;
  set_running_stack(&next->stack_);
  from->exception_state_ = *exceptions_;
  *exceptions_ = next->exception_state_;
  // On `next`'s stack, before it goes on: save `from`'s context, then do
  // what Worker::run would after a switch back -- queue it (yield), or
  // commit its park and queue it only if a wake already came. From then on
  // another worker may run it, so it is not touched again. `next` is
  // handed the worker context `from` was holding; its pending resume
  // returns it as its own.
  from->worker_context_ =
      std::move(next->context_)
          .resume_with([from, after](boost::context::fiber&& from_context) {
            boost::context::fiber worker_context =
                std::move(from->worker_context_);
            from->context_ = std::move(from_context);
            Worker* worker = current_worker();
            if (after == AfterSwitch::kYield) {
              worker->run_queue_.push_back(from,
                                           worker->scheduler_.global_queue());
            } else if (!from->commit_park()) {
              // Woken while switching out: queue it, and tell idle
              // workers (this one goes on with `next`).
              if (worker->schedule_local(from, false)) {
                worker->scheduler_.notify_work();
              }
            }
            return worker_context;
          });
  // Running again, maybe on another worker, resumed by its loop or by a
  // direct switch; either handed us the worker context (stored above).
  return true;
#endif
}

void Worker::run(Fiber* fiber) noexcept {
  if (!fiber->context_) {
    // First run: bind a stack now, not at spawn, so that a million spawned
    // but not yet started green threads cost no stacks.
    try {
      fiber->stack_ = fiber->stack_size_
                          ? stack_pool_->allocate(fiber->stack_size_)
                          : stack_pool_->allocate();
    } catch (...) {
      fiber->finish_without_stack(std::current_exception());
      fiber->release();
      return;
    }
    Stack& stack = fiber->stack_;
    tsan_create_fiber(fiber->annotations_);
    // Boost.Context jumps onto the new stack once while creating the
    // fiber; tell TSan whose stack that is.
    tsan_switch(fiber->annotations_);
    fiber->context_ = boost::context::fiber(
        std::allocator_arg,
        boost::context::preallocated(
            stack.top(), stack.size,
            boost::context::stack_context{stack.size, stack.top()}),
        StackReturn{fiber, &fiber->stack_},
        [fiber](boost::context::fiber&& worker_context) {
          return fiber->entry(std::move(worker_context));
        });
    tsan_switch(tsan_fiber_);
  }
  // The control blocks of the next two green threads may come from
  // another core or from memory (a backlog of spawns): fetch them while
  // this one runs. One ahead was too late to hide the miss: the blocks
  // still missed on arrival (spawn-join@2w 99 -> 89 ns with two).
  if (Fiber* const next = run_queue_.peek(0)) Fiber::prefetch(next);
  if (Fiber* const after = run_queue_.peek(1)) Fiber::prefetch(after);
  current_ = fiber;
  set_running_stack(&fiber->stack_);
  // The exception state travels with the green thread (fiber.h). This
  // frame never leaves the worker's own stack, so the cached pointer to
  // the thread's state is right here.
  Fiber::ExceptionState* const exceptions = exceptions_;
  const Fiber::ExceptionState worker_exceptions = *exceptions;
  *exceptions = fiber->exception_state_;
  tsan_switch(fiber->annotations_);
  asan_start_switch(&asan_fake_stack_, fiber->stack_.limit, fiber->stack_.size);
  boost::context::fiber back = std::move(fiber->context_).resume();
  asan_finish_switch(asan_fake_stack_, nullptr, nullptr);
  // Green threads may have switched to each other directly (switch_directly)
  // since: the one switching back is current_, not necessarily `fiber`.
  fiber = current_;
  fiber->context_ = std::move(back);
  fiber->exception_state_ = *exceptions;
  *exceptions = worker_exceptions;
  set_running_stack(nullptr);
  current_ = nullptr;

  switch (after_switch_) {
    case AfterSwitch::kFinish:
      tsan_switch(tsan_fiber_);  // see the end of Fiber::entry
      tsan_destroy_fiber(fiber->annotations_);
      fiber->release();  // the scheduler's reference
      return;
    case AfterSwitch::kYield:
      if (!canary_intact(fiber->stack_)) report_stack_overflow(fiber->stack_);
      run_queue_.push_back(fiber, scheduler_.global_queue());
      return;
    case AfterSwitch::kPark:
      if (!canary_intact(fiber->stack_)) report_stack_overflow(fiber->stack_);
      // Woken while switching out: queue it, and tell idle workers.
      if (!fiber->commit_park() && schedule_local(fiber, false)) {
        scheduler_.notify_work();
      }
      return;
  }
}

}  // namespace green::detail
