// The free functions of the public API (green_thread.h, run.h, local.h).
#include <atomic>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "runtime/green_thread.h"
#include "runtime/local.h"
#include "runtime/park.h"
#include "runtime/run.h"
#include "runtime/scheduler.h"
#include "runtime/worker.h"

namespace green {
namespace detail {
namespace {

[[noreturn]] void throw_outside(const char* call, const char* needs) {
  throw std::logic_error(std::string(call) + " called outside " + needs +
                         "; call it from code started by green::run()");
}

Fiber* fiber_for(const char* call) {
  Fiber* fiber = current_fiber();
  if (!fiber) throw_outside(call, "a green thread");
  return fiber;
}

}  // namespace

SpawnTarget::SpawnTarget(const char* call) {
  if (Fiber* fiber = current_fiber()) {
    scheduler_ = &fiber->scheduler();
    return;
  }
  Scheduler::outside_spawn_mutex().lock_shared();
  scheduler_ = Scheduler::running();
  if (!scheduler_ || scheduler_->closed_to_outside()) {
    Scheduler::outside_spawn_mutex().unlock_shared();
    throw_outside(call, "a running green runtime");
  }
  external_ = true;
}

SpawnTarget::~SpawnTarget() {
  if (external_) Scheduler::outside_spawn_mutex().unlock_shared();
}

void submit(Scheduler& scheduler, Fiber* fiber) noexcept {
  scheduler.submit(fiber);
}

std::uint64_t next_fiber_id(Scheduler& scheduler) noexcept {
  return scheduler.next_fiber_id();
}

void report_unhandled(std::uint64_t id, std::exception_ptr error) noexcept {
  try {
    std::rethrow_exception(error);
  } catch (const GreenletExit&) {
    // Killed: the normal way for a green thread to end early.
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "green: exception escaped green thread #%llu (spawn_n): %s\n",
                 static_cast<unsigned long long>(id), e.what());
  } catch (...) {
    std::fprintf(stderr,
                 "green: non-standard exception escaped green thread #%llu "
                 "(spawn_n)\n",
                 static_cast<unsigned long long>(id));
  }
}

std::uint64_t next_local_key() noexcept {
  static std::atomic<std::uint64_t> next{1};
  // relaxed: keys only need to be unique.
  return next.fetch_add(1, std::memory_order_relaxed);
}

LocalStorage& current_locals(const char* call) {
  return fiber_for(call)->locals();
}

Runtime::Runtime(const Options& options)
    : scheduler_(std::make_unique<Scheduler>(options)) {}

Runtime::~Runtime() {
  scheduler_->shutdown();
  scheduler_.reset();
}

}  // namespace detail

void sleep(std::chrono::nanoseconds duration) {
  detail::Fiber* fiber = detail::fiber_for("green::sleep");
  if (duration.count() <= 0) {  // a yield (green::yield)
    fiber->ensure_registered();
    fiber->throw_if_interrupted();
    fiber->yield();
    fiber->throw_if_interrupted();
    return;
  }
  const auto deadline = std::chrono::steady_clock::now() + duration;
  const std::uint32_t epoch = fiber->begin_park();
  if (detail::park_until(fiber, epoch, deadline) ==
      detail::WakeReason::kInterrupted) {
    fiber->throw_if_interrupted();
  }
}

GreenThreadId current() { return {detail::fiber_for("green::current")->id()}; }

std::size_t worker_id() {
  detail::fiber_for("green::worker_id");
  return detail::current_worker()->index();
}

bool in_green_thread() noexcept { return detail::current_fiber() != nullptr; }

}  // namespace green
