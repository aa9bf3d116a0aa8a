// Event<T>: a one-shot result that any number of waiters receive (Eventlet's
// eventlet.event.Event). Event<void> carries no value.
//
//   green::Event<int> done;
//   green::spawn([&] { done.send(42); });
//   int v = done.wait();                   // every waiter gets 42
//   std::optional<int> w = done.wait(10ms);  // empty if not sent in time
//
// send() and send_exception() wake every current waiter; later waiters
// return at once until reset(). Sending twice without reset(), or reset()
// before anything was sent, is a usage error: std::logic_error (Eventlet
// asserts both). Any thread may send and wait; a green thread parks, an OS
// thread blocks. wait() is a blocking point (kill(), green::Timeout).
//
// Design. The result (value or exception) is published as one immutable
// shared object. send() stores it and, under the lock, hands a reference
// to each waiter through its Waiter payload and claims its wake; the
// waiters are woken once send() has let go of the lock (WakeBatch), and a
// woken waiter reads only its reference and never touches the event
// again. So the event may be destroyed by a waiter as soon as its wait()
// returns, or by the sender as soon as send() returns. So a waiter
// woken by a send() gets that send's result even if reset() and another send()
// happen before it runs, and copying the value happens outside the lock, in the
// waiter.
//
// Invariants (under lock_): result_ == nullptr <=> not ready; waiters_ is
// empty whenever result_ != nullptr (send() wakes them all).
#ifndef GREEN_SYNC_EVENT_H_
#define GREEN_SYNC_EVENT_H_

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/deadline.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {

// The state shared by Event<T> and Event<void>. Result is what send()
// publishes: {std::exception_ptr error; ...value}.
template <typename Result>
class EventCore {
 public:
  using ResultPtr = std::shared_ptr<const Result>;

  void publish(ResultPtr result, const char* call) {
    // Declared first: the waiters are woken after the guard lets go, when
    // this call no longer touches the event (runtime/wait_list.h).
    WakeBatch wakes;
    SpinGuard guard(lock_);
    if (result_) {
      throw std::logic_error(std::string(call) +
                             ": the event was already sent; call reset() "
                             "before sending again");
    }
    result_ = std::move(result);
    while (Waiter* waiter = waiters_.pop_front()) {
      // Hand the result over, then claim the wake. A waiter that is
      // leaving (timed out, interrupted) gets nothing.
      auto* handed = static_cast<ResultPtr*>(waiter->payload);
      *handed = result_;
      // as_next false: a broadcast, not a message to one receiver.
      if (!wakes.claim(waiter, false)) handed->reset();
    }
  }

  // The result, or nullptr once `deadline` passed.
  ResultPtr wait(Deadline deadline) {
    SpinUniqueLock lock(lock_);
    for (;;) {
      if (result_) return result_;
      if (expired(deadline)) return nullptr;
      ResultPtr handed;
      Waiter waiter;
      waiter.payload = &handed;
      // Woken only after publish() let go of the event, and returns
      // without touching it again: the event may be destroyed by whichever
      // side owns it as soon as its own call returns.
      if (block_on_handoff(waiters_, lock.get(), waiter, deadline) ==
          WakeReason::kNotified) {
        return handed;
      }
    }
  }

  ResultPtr peek() const {
    SpinGuard guard(lock_);
    return result_;
  }

  void reset() {
    SpinGuard guard(lock_);
    if (!result_) {
      throw std::logic_error(
          "green::Event::reset: nothing was sent since construction or the "
          "last reset()");
    }
    result_.reset();
  }

  std::size_t waiting() const {
    SpinGuard guard(lock_);
    return waiters_.size();
  }

 private:
  mutable SpinLock lock_;
  ResultPtr result_ GREEN_GUARDED_BY(lock_);
  WaitList waiters_ GREEN_GUARDED_BY(lock_);  // payload: ResultPtr*
};

template <typename T>
struct EventResult {
  std::exception_ptr error;
  std::optional<T> value;
};
template <>
struct EventResult<void> {
  std::exception_ptr error;
};

// What Event<T> and Event<void> share: everything but send() and wait().
template <typename T>
class EventBase {
 public:
  EventBase() = default;
  EventBase(const EventBase&) = delete;
  EventBase& operator=(const EventBase&) = delete;

  // Makes every waiter (current and later, until reset()) throw `error`.
  // Throws std::logic_error if the event was sent already (reset() first).
  void send_exception(std::exception_ptr error) {
    auto result = std::make_shared<Result>();
    result->error = std::move(error);
    core_.publish(std::move(result), "green::Event::send_exception");
  }
  template <typename E>
  void send_exception(E error) {
    send_exception(std::make_exception_ptr(std::move(error)));
  }

  bool ready() const { return core_.peek() != nullptr; }
  bool has_value() const {
    auto result = core_.peek();
    return result && !result->error;
  }
  bool has_exception() const {
    auto result = core_.peek();
    return result && result->error;
  }
  // Makes the event sendable again. Throws std::logic_error if it was not
  // sent. Waiters already woken keep the result they were handed.
  void reset() { core_.reset(); }
  // How many callers are blocked in wait().
  std::size_t waiting() const { return core_.waiting(); }

 protected:
  using Result = EventResult<T>;
  using ResultPtr = typename EventCore<Result>::ResultPtr;

  // The result, or nullptr if `timeout` passed first; rethrows a sent
  // exception.
  ResultPtr wait_for_result(std::optional<std::chrono::nanoseconds> timeout) {
    ResultPtr result =
        core_.wait(timeout ? deadline_after(*timeout) : Deadline(std::nullopt));
    if (result && result->error) std::rethrow_exception(result->error);
    return result;
  }

  EventCore<Result> core_;
};

}  // namespace detail

template <typename T>
class Event : public detail::EventBase<T> {
 public:
  static_assert(std::is_copy_constructible_v<T>,
                "green::Event<T>: every waiter gets a copy, so T must be "
                "copyable (use std::shared_ptr<U> for a move-only U)");

  // Makes the event ready with `value` and wakes every waiter. Throws
  // std::logic_error if it was sent already (reset() first).
  void send(T value) {
    auto result = std::make_shared<typename Event::Result>();
    result->value.emplace(std::move(value));
    this->core_.publish(std::move(result), "green::Event::send");
  }

  // Blocks until sent; returns (a copy of) the value or throws the sent
  // exception.
  T wait() { return *this->wait_for_result(std::nullopt)->value; }
  // Waits at most `timeout`; empty if the event was not sent in time.
  std::optional<T> wait(std::chrono::nanoseconds timeout) {
    auto result = this->wait_for_result(timeout);
    if (!result) return std::nullopt;
    return *result->value;
  }
};

template <>
class Event<void> : public detail::EventBase<void> {
 public:
  // Makes the event ready and wakes every waiter. Throws std::logic_error
  // if it was sent already (reset() first).
  void send() {
    core_.publish(std::make_shared<Result>(), "green::Event::send");
  }

  // Blocks until sent; throws the sent exception.
  void wait() { wait_for_result(std::nullopt); }
  // Returns false if the event was not sent within `timeout`.
  bool wait(std::chrono::nanoseconds timeout) {
    return wait_for_result(timeout) != nullptr;
  }
};

}  // namespace green

#endif  // GREEN_SYNC_EVENT_H_
