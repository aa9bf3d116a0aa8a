// Timeout: the timer, the per-green-thread chain of live timeouts, and the
// race-free cancel. See timeout.h for the contract.
//
// Where things live.
//   * The guard (green::Timeout) is on its green thread's stack and owns
//     the shared state, whose TimerNode sits in the timer heap
//     (runtime/timer_heap.h) of the worker where the Timeout was created:
//     no system call to arm or cancel it (an asio::steady_timer, used
//     before, re-armed a timerfd each time). Only the guard adds and
//     cancels the node, from whichever worker its green thread runs on by
//     then; after the heap's cancel() returns, expiry no longer touches
//     the state, so the guard may let it go.
//   * The guard also owns the exception_ptr to throw; the state only
//     points at it. So whichever thread drops the state last, the
//     exception object is freed by the green thread's side (the guard, the
//     exception in flight, or the fiber's interrupt slot), never by the
//     handler (which also keeps TSan's view of the uninstrumented
//     exception_ptr refcount simple).
//   * Expiry runs on that worker's thread, under the heap's lock (the
//     guard's cancel keeps the state alive until it is done); it never
//     resumes the fiber: it posts an interrupt (Fiber::interrupt wakes it
//     if parked). Lock order: heap, then chain, then fiber; the guard
//     never holds the chain's lock while it calls into the heap.
//   * Every live Timeout of one green thread is linked, outermost first,
//     in that green thread's TimeoutChain (reached through green::local),
//     whose SpinLock serialises the handlers, the constructors and the
//     cancels of that green thread's timeouts.
//
// Phases of a TimeoutState (under chain->lock):
//   kPending    armed; in the chain.
//   kFired      the handler posted its interrupt; in the chain. The
//               interrupt is pending in the fiber until raised; once we
//               learn it was raised, `delivered` is set.
//   kDeferred   the handler ran while an enclosing timeout's interrupt was
//               posted and not known to be raised; it posted nothing (the
//               fiber has one interrupt slot, and the enclosing exception
//               unwinds through this scope anyway). If that enclosing
//               timeout is cancelled before its exception was raised, the
//               outermost deferred timeout inside it is posted then.
//   kCancelled  scope ended or cancel(); unlinked; the timer is cancelled
//               and an undelivered interrupt of ours was withdrawn.
// The race the lock closes: the handler may run on another thread at the
// very moment the green thread ends the scope. The handler flips
// kPending -> kFired and posts the interrupt in one critical section;
// cancel() flips to kCancelled in the same lock and, if it saw kFired,
// withdraws: the interrupt is then either still pending (withdrawn) or was
// raised already (inside the scope, where it belongs). Nothing can post
// after the flip, since the handler checks the phase under the lock.
//
// Why "delivered" must be learned: the runtime keeps ONE pending non-kill
// interrupt per fiber, and a later interrupt() replaces it. A fired outer
// timeout whose exception was raised and caught inside its scope (the
// scope goes on) must not block inner timeouts created later; one whose
// exception is still pending must not be replaced by an inner one. A new
// Timeout (constructed on the fiber, so nothing else races with it on the
// fiber's interrupt slot except handlers, which take the chain lock, and
// kill(), which wins anyway) resolves it: it withdraws each fired,
// unresolved enclosing interrupt and, if it was still pending, posts it
// again at once; otherwise marks it delivered.
#include "sync/timeout.h"

#include <mutex>
#include <stdexcept>

#include "runtime/fiber.h"
#include "runtime/local.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/timer_heap.h"
#include "runtime/worker.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {

struct TimeoutChain {
  explicit TimeoutChain(Fiber* f) : fiber(f) {}
  const FiberRef fiber;
  SpinLock lock;
  TimeoutState* innermost GREEN_GUARDED_BY(lock) = nullptr;
};

enum class TimeoutPhase : std::uint8_t {
  kPending,
  kFired,
  kDeferred,
  kCancelled
};

struct TimeoutState {
  // Set before the state is shared, constant afterwards.
  std::shared_ptr<TimeoutChain> chain;
  // The guard's exception; the guard outlives every use of it: it is read
  // only under chain->lock while the phase is not kCancelled (the guard
  // sets kCancelled under that lock before it dies), or by the guard.
  const std::exception_ptr* exception = nullptr;
  // std::uncaught_exceptions() where the guard was made: its exception may
  // be thrown at that unwinding depth (Fiber::interrupt_raisable), so a
  // Timeout inside a destructor that runs during unwinding still works.
  unsigned depth = 0;
  // In a worker's timer heap while armed; only the guard adds and cancels
  // it (see the file comment).
  TimerNode timer;

  // Under chain->lock. Every state of one chain shares that lock, which
  // the analysis cannot see through `o->chain` (so the functions walking
  // the chain below opt out of it, GREEN_NO_THREAD_SAFETY_ANALYSIS).
  TimeoutPhase phase GREEN_GUARDED_BY(chain->lock) = TimeoutPhase::kPending;
  bool delivered GREEN_GUARDED_BY(chain->lock) = false;
  TimeoutState* outer GREEN_GUARDED_BY(chain->lock) = nullptr;
  TimeoutState* inner GREEN_GUARDED_BY(chain->lock) = nullptr;

  // The timer heap's expiry (TimerNode::on_expiry); `self` is the state.
  static void on_expiry(void* self) noexcept {
    static_cast<TimeoutState*>(self)->expire();
  }

  // Expiry: on the creating worker's thread, under its heap's lock.
  void expire() noexcept GREEN_NO_THREAD_SAFETY_ANALYSIS {
    SpinGuard guard(chain->lock);
    if (phase != TimeoutPhase::kPending) return;  // cancelled first
    for (TimeoutState* o = outer; o; o = o->outer) {
      if (o->phase == TimeoutPhase::kFired && !o->delivered) {
        phase = TimeoutPhase::kDeferred;
        return;
      }
    }
    phase = TimeoutPhase::kFired;
    chain->fiber->interrupt(*exception, false, depth);
  }
};

namespace {

// The calling green thread's chain, created on first use.
green::local<std::shared_ptr<TimeoutChain>>& chains() {
  static green::local<std::shared_ptr<TimeoutChain>> per_green_thread;
  return per_green_thread;
}

std::shared_ptr<TimeoutChain>& current_chain(Fiber* fiber) {
  std::shared_ptr<TimeoutChain>& chain = *chains();
  if (!chain) chain = std::make_shared<TimeoutChain>(fiber);
  return chain;
}

// On the fiber, under chain.lock: learns which fired enclosing timeouts
// had their exception raised (see the file comment).
void resolve_enclosing(TimeoutChain& chain, Fiber* fiber)
    GREEN_REQUIRES(chain.lock) GREEN_NO_THREAD_SAFETY_ANALYSIS {
  for (TimeoutState* o = chain.innermost; o; o = o->outer) {
    if (o->phase != TimeoutPhase::kFired || o->delivered) continue;
    if (fiber->withdraw_interrupt(*o->exception)) {
      fiber->interrupt(*o->exception, false, o->depth);  // still pending
    } else {
      o->delivered = true;
    }
  }
}

// On the fiber: makes `state` its innermost live timeout.
void link_innermost(TimeoutState& state,
                    Fiber* fiber) GREEN_NO_THREAD_SAFETY_ANALYSIS {
  TimeoutChain& chain = *state.chain;
  SpinGuard guard(chain.lock);
  resolve_enclosing(chain, fiber);
  state.outer = chain.innermost;
  if (state.outer) state.outer->inner = &state;
  chain.innermost = &state;
}

// On the fiber: moves `state` to kCancelled and out of the chain, taking
// back its interrupt if it was posted and not raised; returns the phase it
// was in.
TimeoutPhase cancel_and_unlink(TimeoutState& state)
    GREEN_NO_THREAD_SAFETY_ANALYSIS {
  TimeoutChain& chain = *state.chain;
  SpinGuard guard(chain.lock);
  const TimeoutPhase old = state.phase;
  if (old == TimeoutPhase::kCancelled) return old;
  state.phase = TimeoutPhase::kCancelled;
  if (old == TimeoutPhase::kFired && !state.delivered &&
      chain.fiber->withdraw_interrupt(*state.exception)) {
    // Ours never struck; a timeout inside that deferred to it must.
    for (TimeoutState* s = state.inner; s; s = s->inner) {
      if (s->phase == TimeoutPhase::kDeferred) {
        s->phase = TimeoutPhase::kFired;
        chain.fiber->interrupt(*s->exception, false, s->depth);
        break;
      }
    }
  }
  if (state.outer) state.outer->inner = state.inner;
  if (state.inner) {
    state.inner->outer = state.outer;
  } else {
    chain.innermost = state.outer;
  }
  state.outer = state.inner = nullptr;
  return old;
}

bool is_pending(TimeoutState& state) GREEN_NO_THREAD_SAFETY_ANALYSIS {
  SpinGuard guard(state.chain->lock);
  return state.phase == TimeoutPhase::kPending;
}

}  // namespace

bool is_live_timeout_exception(const std::exception_ptr& exception)
    GREEN_NO_THREAD_SAFETY_ANALYSIS {
  Fiber* fiber = current_fiber();
  if (!fiber || !exception) return false;
  // Looked up, not made: a green thread that never armed a Timeout has
  // none live (and a chain made after its locals were destroyed, in a
  // link callback, would keep the green thread alive through its FiberRef).
  const std::shared_ptr<TimeoutChain>* found = chains().find();
  if (!found || !*found) return false;
  TimeoutChain& chain = **found;
  SpinGuard guard(chain.lock);
  for (const TimeoutState* state = chain.innermost; state;
       state = state->outer) {
    // The guard is alive while its state is linked here, so its exception
    // may be read (see TimeoutState::exception). Same object: the runtime
    // rethrows the posted exception_ptr itself, no copy.
    if (state->phase == TimeoutPhase::kFired &&
        *state->exception == exception) {
      return true;
    }
  }
  return false;
}
}  // namespace detail

Timeout::Timeout(std::optional<std::chrono::nanoseconds> duration)
    : duration_(duration) {
  arm(nullptr);
}

Timeout::Timeout(std::optional<std::chrono::nanoseconds> duration,
                 std::exception_ptr exception)
    : duration_(duration) {
  arm(std::move(exception));
}

void Timeout::arm(std::exception_ptr custom) {
  if (!duration_) return;
  detail::Fiber* fiber = detail::current_fiber();
  if (!fiber) {
    throw std::logic_error(
        "green::Timeout: created outside a green thread; a Timeout "
        "interrupts the green thread that creates it. On a plain thread use "
        "the timeout arguments of Queue::get, Event::wait, "
        "Semaphore::acquire, ...");
  }
  auto state = std::make_shared<detail::TimeoutState>();
  state->chain = detail::current_chain(fiber);
  id_ = state;
  exception_ = custom ? std::move(custom)
                      : std::make_exception_ptr(Expired(id_, duration_));
  state->exception = &exception_;
  state->depth = static_cast<unsigned>(std::uncaught_exceptions());
  using Clock = std::chrono::steady_clock;
  const Clock::time_point now = Clock::now();
  // A duration too long for the clock never fires (no overflow).
  const Clock::time_point expiry = *duration_ >= Clock::time_point::max() - now
                                       ? Clock::time_point::max()
                                       : now + *duration_;
  detail::link_innermost(*state, fiber);
  state->timer.deadline = expiry;
  state->timer.on_expiry = &detail::TimeoutState::on_expiry;
  state->timer.context = state.get();
  try {
    detail::current_worker()->timers().add(state->timer);  // bad_alloc
  } catch (...) {
    detail::cancel_and_unlink(*state);  // no guard will: we throw
    throw;
  }
  state_ = std::move(state);
}

Timeout::~Timeout() { cancel(); }

void Timeout::cancel() noexcept {
  if (!state_) return;
  const detail::TimeoutPhase old = detail::cancel_and_unlink(*state_);
  if (old == detail::TimeoutPhase::kCancelled) return;  // done before
  // Only this guard touches the node. An expiry under way finishes first
  // (it then saw kCancelled and did nothing); none starts afterwards.
  state_->timer.heap->cancel(state_->timer);
}

bool Timeout::pending() const noexcept {
  std::shared_ptr<detail::TimeoutState> state = id_.lock();
  return state && detail::is_pending(*state);
}

bool operator==(const Timeout& a, const Timeout& b) noexcept {
  const std::weak_ptr<detail::TimeoutState> none;
  const bool a_empty = !a.id_.owner_before(none) && !none.owner_before(a.id_);
  const bool b_empty = !b.id_.owner_before(none) && !none.owner_before(b.id_);
  if (a_empty || b_empty) return &a == &b;  // never-armed timeouts
  return !a.id_.owner_before(b.id_) && !b.id_.owner_before(a.id_);
}

}  // namespace green
