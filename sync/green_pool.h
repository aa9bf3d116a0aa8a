// GreenPool: bounded concurrency (Eventlet's eventlet.GreenPool).
//
//   green::GreenPool pool(100);              // at most 100 at once
//   for (auto& url : urls) pool.spawn_n(fetch, url);
//   pool.waitall();
//
//   for (int size : pool.imap(fetch_size, urls))   // input order, at most
//     total += size;                               // 100 running at once
//
// spawn() blocks the caller while the pool is full, then starts the
// function in a new green thread and returns its GreenThread<R>; spawn_n()
// does the same without a handle (an exception escaping it is reported on
// stderr and the pool goes on). A slot is released however the function
// ends (return, exception, kill -- even a kill before it started), before
// the green thread's waiters wake. Spawning into a full pool from one of
// the pool's own green threads runs the function inline instead of
// deadlocking (Eventlet's re-entrancy); then spawn() returns a handle
// whose wait() gives the result or rethrows its exception (GreenletExit
// and green::Timeout propagate from spawn() itself: they belong to the
// caller). waitall() from one of the pool's green threads would wait for
// itself: std::logic_error. Default size 1000, like Eventlet. Usable from
// plain OS threads while a runtime runs (spawn blocks the OS thread).
//
// imap(f, ranges...) zips the ranges (stopping at the shortest), calls
// f(a, b, ...) for each tuple in the pool and yields the results in input
// order, with at most size() items spawned but not yet consumed: memory is
// bounded by the pool size, not the input length. An exception in one
// item is thrown when that item is dereferenced; iteration can go on past
// it. starmap(f, range_of_tuples) is the same with pre-built argument
// tuples. Arguments are copied (decayed) into each item's green thread; f
// is shared by all of them and called concurrently. A void f yields
// std::monostate.
//
// Design. The slots are a counter and two wait lists (spawners waiting
// for a slot, waitall() callers) under one SpinLock, in a PoolState that
// members share by shared_ptr, so a member may outlive its GreenPool
// object. A release hands the slot straight to the first waiting spawner
// (FIFO). Membership (for re-entrancy and waitall) is a green::local
// marking each member green thread with its pool.
//
// Invariants (under PoolState::lock_):
//   G1. spawners_ non-empty  =>  running_ >= size_.
//   G2. running_ == 0        =>  waitall_ is empty (woken as it hits 0).
#ifndef GREEN_SYNC_GREEN_POOL_H_
#define GREEN_SYNC_GREEN_POOL_H_

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <deque>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include "runtime/errors.h"
#include "runtime/green_thread.h"
#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/timeout.h"

namespace green {
namespace detail {

class PoolState {
 public:
  explicit PoolState(std::size_t size) : size_(size) {}
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;

  // Takes a slot if one is free and nobody waits for one.
  bool try_acquire();
  // Takes a slot, waiting in FIFO order (a blocking point).
  void acquire();
  // Gives a slot back: to the first waiting spawner, if the size allows.
  void release() noexcept;
  void resize(std::size_t size);
  // Waits until nothing runs; false if `deadline` passed first.
  bool wait_idle(Deadline deadline);

  std::size_t size() const;
  std::size_t running() const;
  std::size_t waiting() const;

 private:
  mutable SpinLock lock_;
  std::size_t size_ GREEN_GUARDED_BY(lock_);
  std::size_t running_ GREEN_GUARDED_BY(lock_) = 0;
  WaitList spawners_ GREEN_GUARDED_BY(lock_);  // payload: bool* granted
  WaitList waitall_ GREEN_GUARDED_BY(lock_);
};

// Marks the calling green thread as a member of `pool` (nullptr: none).
void mark_member(const PoolState* pool);
// Whether the caller is a green thread that is a member of `pool`.
bool is_member(const PoolState* pool);

// One taken slot, released exactly once: explicitly, or on destruction
// (a member killed before it started never runs its release).
class PoolSlot {
 public:
  PoolSlot() = default;
  explicit PoolSlot(std::shared_ptr<PoolState> pool) noexcept
      : pool_(std::move(pool)) {}
  PoolSlot(PoolSlot&&) noexcept = default;
  PoolSlot& operator=(PoolSlot&&) = delete;
  ~PoolSlot() { release(); }
  void release() noexcept {
    if (pool_) std::exchange(pool_, nullptr)->release();
  }

 private:
  std::shared_ptr<PoolState> pool_;
};

// Wraps a member's function: marks the green thread as a member of
// `pool` while it runs, and releases `slot` when it ends, whichever way.
class MemberScope {
 public:
  MemberScope(const PoolState* pool, PoolSlot& slot) : slot_(slot) {
    mark_member(pool);
  }
  MemberScope(const MemberScope&) = delete;
  MemberScope& operator=(const MemberScope&) = delete;
  ~MemberScope() {
    slot_.release();
    mark_member(nullptr);  // its local slot exists: does not allocate
  }

 private:
  PoolSlot& slot_;
};

template <typename Input, typename F>
class PoolMap;
template <typename... Ranges>
class ZipInput;
template <typename Range>
class StarInput;

}  // namespace detail

class GreenPool {
 public:
  static constexpr std::size_t kDefaultSize = 1000;  // as Eventlet

  explicit GreenPool(std::size_t size = kDefaultSize)
      : state_(std::make_shared<detail::PoolState>(size)) {}
  // Does not wait for (or kill) members; they keep running.
  ~GreenPool() = default;
  GreenPool(const GreenPool&) = delete;
  GreenPool& operator=(const GreenPool&) = delete;

  // Runs f(args...) in a new green thread once a slot is free. With
  // SpawnOptions first (a stack size), as green::spawn; a call run inline
  // (re-entrancy, above) runs on the caller's stack and ignores them.
  template <typename F, typename... Args>
  auto spawn(SpawnOptions options, F&& f, Args&&... args)
      -> GreenThread<detail::BoundResult<F, Args...>> {
    using R = detail::BoundResult<F, Args...>;
    auto fn =
        detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    if (!acquire_slot()) return run_inline<R>(std::move(fn));
    // Holds the slot until it is shared, so that a bad_alloc below gives
    // it back instead of shrinking the pool for good.
    detail::PoolSlot held(state_);
    // Shared by the member's wrapper (releases as the function ends) and a
    // link callback (releases if it never started: killed first).
    auto slot = std::make_shared<detail::PoolSlot>(std::move(held));
    GreenThread<R> thread = green::spawn(
        options,
        [slot, pool = state_.get(), fn = std::move(fn)]() mutable -> R {
          detail::MemberScope member(pool, *slot);
          return fn();
        });
    thread.link([slot](const GreenThread<R>&) { slot->release(); });
    return thread;
  }
  template <detail::NotSpawnOptions F, typename... Args>
  auto spawn(F&& f, Args&&... args) {
    return spawn(SpawnOptions{}, std::forward<F>(f),
                 std::forward<Args>(args)...);
  }

  // As spawn(), without a handle: cheaper; exceptions are reported.
  template <typename F, typename... Args>
  void spawn_n(SpawnOptions options, F&& f, Args&&... args) {
    auto fn =
        detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
    if (!acquire_slot()) {
      run_inline_n(fn);
      return;
    }
    green::spawn_n(options,
                   [slot = detail::PoolSlot(state_), pool = state_.get(),
                    fn = std::move(fn)]() mutable {
                     detail::MemberScope member(pool, slot);
                     fn();
                   });
  }
  template <detail::NotSpawnOptions F, typename... Args>
  void spawn_n(F&& f, Args&&... args) {
    spawn_n(SpawnOptions{}, std::forward<F>(f), std::forward<Args>(args)...);
  }

  // Waits until no member runs. From a member: std::logic_error.
  void waitall();
  // The same for at most `timeout`; returns whether the pool is idle.
  bool waitall(std::chrono::nanoseconds timeout);

  // Members running now.
  std::size_t running() const { return state_->running(); }
  // Slots free now: size() - running(); negative after shrinking below
  // running().
  long free() const {
    return static_cast<long>(state_->size()) -
           static_cast<long>(state_->running());
  }
  // Callers blocked in spawn()/spawn_n() waiting for a slot.
  std::size_t waiting() const { return state_->waiting(); }
  std::size_t size() const { return state_->size(); }
  // Changes the size; growing it lets waiting spawners in at once,
  // shrinking it kills nothing (new spawns wait until enough have ended).
  void resize(std::size_t size) { state_->resize(size); }

  template <typename F, typename... Ranges>
  requires(sizeof...(Ranges) > 0 && (std::ranges::input_range<Ranges> &&
                                     ...)) auto imap(F f, Ranges&&... ranges)
      -> detail::PoolMap<detail::ZipInput<Ranges...>, F>;

  template <typename F, typename Range>
  requires std::ranges::input_range<Range>
  auto starmap(F f, Range&& range)
      -> detail::PoolMap<detail::StarInput<Range>, F>;

 private:
  // Takes a slot, waiting if needed; false if the pool is full and the
  // caller is one of its members (then the caller runs the function).
  bool acquire_slot() {
    if (state_->try_acquire()) return true;
    if (detail::is_member(state_.get())) return false;
    state_->acquire();
    return true;
  }

  template <typename R, typename Fn>
  static GreenThread<R> run_inline(Fn fn) {
    using Stored = std::conditional_t<std::is_void_v<R>, std::monostate, R>;
    std::exception_ptr error;
    std::optional<Stored> value;
    try {
      if constexpr (std::is_void_v<R>) {
        fn();
      } else {
        value.emplace(fn());
      }
    } catch (...) {
      detail::rethrow_if_interrupt();
      error = std::current_exception();
    }
    // A handle needs a green thread: one that only hands the result over.
    return green::spawn([error, value = std::move(value)]() mutable -> R {
      if (error) std::rethrow_exception(error);
      if constexpr (!std::is_void_v<R>) return std::move(*value);
    });
  }

  template <typename Fn>
  static void run_inline_n(Fn& fn) {
    try {
      fn();
    } catch (...) {
      detail::rethrow_if_interrupt();
      detail::report_unhandled(green::current().value,
                               std::current_exception());
    }
  }

  std::shared_ptr<detail::PoolState> state_;
};

namespace detail {

// imap's input: several ranges walked in step (Python's zip).
template <typename... Ranges>
class ZipInput {
 public:
  using Args =
      std::tuple<std::decay_t<std::ranges::range_reference_t<Ranges>>...>;

  explicit ZipInput(Ranges&&... ranges)
      : ranges_(std::forward<Ranges>(ranges)...) {}

  // Called once the input sits at its final address (iterators into
  // ranges it owns must not move).
  void start() { start_impl(std::index_sequence_for<Ranges...>{}); }
  bool done() const { return done_impl(std::index_sequence_for<Ranges...>{}); }
  Args next() { return next_impl(std::index_sequence_for<Ranges...>{}); }

 private:
  template <std::size_t... I>
  void start_impl(std::index_sequence<I...>) {
    its_.emplace(std::ranges::begin(std::get<I>(ranges_))...);
    ends_.emplace(std::ranges::end(std::get<I>(ranges_))...);
  }
  template <std::size_t... I>
  bool done_impl(std::index_sequence<I...>) const {
    return ((std::get<I>(*its_) == std::get<I>(*ends_)) || ...);
  }
  template <std::size_t... I>
  Args next_impl(std::index_sequence<I...>) {
    Args args(*std::get<I>(*its_)...);
    (++std::get<I>(*its_), ...);
    return args;
  }

  std::tuple<Ranges...> ranges_;  // lvalue ranges by reference
  std::optional<
      std::tuple<std::ranges::iterator_t<std::remove_reference_t<Ranges>&>...>>
      its_;
  std::optional<
      std::tuple<std::ranges::sentinel_t<std::remove_reference_t<Ranges>&>...>>
      ends_;
};

// starmap's input: one range whose elements are argument tuples.
template <typename Range>
class StarInput {
 public:
  using Args = std::decay_t<std::ranges::range_reference_t<Range>>;

  explicit StarInput(Range&& range) : range_(std::forward<Range>(range)) {}
  void start() {
    it_.emplace(std::ranges::begin(range_));
    end_.emplace(std::ranges::end(range_));
  }
  bool done() const { return *it_ == *end_; }
  Args next() {
    Args args(**it_);
    ++*it_;
    return args;
  }

 private:
  Range range_;
  std::optional<std::ranges::iterator_t<std::remove_reference_t<Range>&>> it_;
  std::optional<std::ranges::sentinel_t<std::remove_reference_t<Range>&>> end_;
};

// What imap()/starmap() return: an input range of results in input order.
// Not copyable or movable (iterators point into it); iterate it where it
// was returned. One consumer at a time.
template <typename Input, typename F>
class PoolMap {
  using Args = typename Input::Args;
  using R = decltype(std::apply(std::declval<F&>(), std::declval<Args&&>()));

 public:
  using value_type = std::conditional_t<std::is_void_v<R>, std::monostate, R>;

  PoolMap(GreenPool& pool, F f, Input input)
      : pool_(&pool),
        f_(std::make_shared<F>(std::move(f))),
        input_(std::move(input)) {}
  PoolMap(const PoolMap&) = delete;
  PoolMap& operator=(const PoolMap&) = delete;

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using difference_type = std::ptrdiff_t;
    using value_type = PoolMap::value_type;

    iterator() = default;
    // Waits for this item; returns its result or throws its exception.
    value_type operator*() const { return map_->window_.front().wait(); }
    iterator& operator++() {
      map_->advance();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return it.at_end();
    }

   private:
    friend class PoolMap;
    bool at_end() const { return map_->window_.empty(); }
    explicit iterator(PoolMap* map) : map_(map) {}
    PoolMap* map_ = nullptr;
  };

  iterator begin() {
    if (!started_) {
      started_ = true;
      // The window: the pool's size (at least one item in flight).
      limit_ = std::max<std::size_t>(pool_->size(), 1);
      input_.start();
      fill();
    }
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  void advance() {
    window_.pop_front();
    fill();
  }
  void fill() {
    while (window_.size() < limit_ && !input_.done()) {
      window_.push_back(
          pool_->spawn([f = f_, args = input_.next()]() mutable -> value_type {
            if constexpr (std::is_void_v<R>) {
              std::apply(*f, std::move(args));
              return {};
            } else {
              return std::apply(*f, std::move(args));
            }
          }));
    }
  }

  GreenPool* const pool_;
  const std::shared_ptr<F> f_;
  Input input_;
  std::deque<GreenThread<value_type>> window_;
  std::size_t limit_ = 0;
  bool started_ = false;
};

}  // namespace detail

template <typename F, typename... Ranges>
requires(sizeof...(Ranges) > 0 &&
         (std::ranges::input_range<Ranges> &&
          ...)) auto GreenPool::imap(F f, Ranges&&... ranges)
    -> detail::PoolMap<detail::ZipInput<Ranges...>, F> {
  return detail::PoolMap<detail::ZipInput<Ranges...>, F>(
      *this, std::move(f),
      detail::ZipInput<Ranges...>(std::forward<Ranges>(ranges)...));
}

template <typename F, typename Range>
requires std::ranges::input_range<Range>
auto GreenPool::starmap(F f, Range&& range)
    -> detail::PoolMap<detail::StarInput<Range>, F> {
  return detail::PoolMap<detail::StarInput<Range>, F>(
      *this, std::move(f),
      detail::StarInput<Range>(std::forward<Range>(range)));
}

}  // namespace green

#endif  // GREEN_SYNC_GREEN_POOL_H_
