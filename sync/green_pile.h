// GreenPile<R>: a batch of work whose results are read back in spawn order
// (Eventlet's eventlet.GreenPile).
//
//   green::GreenPile<std::string> pile(10);    // its own GreenPool(10)
//   for (auto& url : urls) pile.spawn(fetch, url);
//   for (std::string& body : pile) use(body);  // in spawn order
//
// GreenPile(size) runs its work in a GreenPool of its own; GreenPile(pool)
// shares `pool` (several piles may). spawn() blocks while the pool is
// full, like GreenPool::spawn. next() waits for the oldest result not yet
// read and returns it -- or throws its exception, after which next() goes
// on with the following one -- and returns an empty optional (for
// GreenPile<void>: false) once everything spawned so far has been read:
// Eventlet's StopIteration. begin()/end() iterate the same way; operator*
// waits for the item and returns its result or throws its exception. The
// function's result is converted to R (a GreenPile<void> discards it).
//
// spawn() and next() may be called from different green threads or OS
// threads; the order is the order in which spawn() calls handed their
// green thread to the pile. As with Eventlet's counter, next() waits for
// a spawn() that has started (e.g. is blocked on a full pool) but not for
// one that has not been called yet.
#ifndef GREEN_SYNC_GREEN_PILE_H_
#define GREEN_SYNC_GREEN_PILE_H_

#include <atomic>
#include <cstddef>
#include <exception>
#include <iterator>
#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

#include "runtime/green_thread.h"
#include "sync/green_pool.h"
#include "sync/queue.h"

namespace green {

template <typename R>
class GreenPile {
 public:
  // With a GreenPool of its own of `size` slots.
  explicit GreenPile(std::size_t size = GreenPool::kDefaultSize)
      : own_(std::make_unique<GreenPool>(size)), pool_(own_.get()) {}
  // Sharing `pool`, which must outlive the pile.
  explicit GreenPile(GreenPool& pool) : pool_(&pool) {}
  GreenPile(const GreenPile&) = delete;
  GreenPile& operator=(const GreenPile&) = delete;

  GreenPool& pool() const noexcept { return *pool_; }

  // Runs f(args...) in the pool; its result is read back by next().
  // Blocks while the pool is full (a blocking point: if interrupted, the
  // pile stays consistent and nothing was spawned).
  template <typename F, typename... Args>
  void spawn(F&& f, Args&&... args) {
    using Result = detail::BoundResult<F, Args...>;
    static_assert(std::is_void_v<R> || std::is_convertible_v<Result, R>,
                  "green::GreenPile<R>::spawn: the function's result does "
                  "not convert to R");
    // Counted before it may block: a next() running meanwhile waits for
    // this spawn instead of reporting the end (as Eventlet's counter).
    // relaxed: only the count matters; the handle itself travels through
    // handles_, whose lock orders it.
    outstanding_.fetch_add(1, std::memory_order_relaxed);
    std::optional<GreenThread<R>> handle;
    try {
      if constexpr (std::is_same_v<Result, R>) {
        handle = pool_->spawn(std::forward<F>(f), std::forward<Args>(args)...);
      } else {
        auto fn =
            detail::bind_call(std::forward<F>(f), std::forward<Args>(args)...);
        handle = pool_->spawn([fn = std::move(fn)]() mutable -> R {
          if constexpr (std::is_void_v<R>) {
            fn();
          } else {
            return R(fn());
          }
        });
      }
    } catch (...) {
      handles_.put(std::nullopt);  // the counted slot, skipped by next()
      throw;
    }
    handles_.put(std::move(handle));
  }

  // The next result in spawn order (waiting for it), or its exception;
  // empty / false once drained.
  auto next() {
    std::optional<GreenThread<R>> handle = take();
    if constexpr (std::is_void_v<R>) {
      if (!handle) return false;
      handle->wait();
      return true;
    } else {
      if (!handle) return std::optional<R>();
      return std::optional<R>(handle->wait());
    }
  }

  // Spawned (or being spawned) and not yet read.
  std::size_t pending() const {
    // relaxed: a snapshot.
    return outstanding_.load(std::memory_order_relaxed);
  }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using difference_type = std::ptrdiff_t;
    using value_type = R;

    iterator() = default;
    // Waits for the current item; returns its result or throws its
    // exception (++ then goes on with the next item).
    R operator*() const { return handle_->wait(); }
    iterator& operator++() {
      handle_ = pile_->take();
      return *this;
    }
    void operator++(int) { ++*this; }
    friend bool operator==(const iterator& it, std::default_sentinel_t) {
      return !it.handle_;
    }

   private:
    friend class GreenPile;
    explicit iterator(GreenPile* pile) : pile_(pile), handle_(pile->take()) {}
    GreenPile* pile_ = nullptr;
    mutable std::optional<GreenThread<R>> handle_;
  };

  iterator begin() {
    static_assert(!std::is_void_v<R>,
                  "green::GreenPile<void> has no iterator; call next() until "
                  "it returns false");
    return iterator(this);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  // The next handle in spawn order, waiting for a spawn in progress;
  // nullopt once everything spawned has been taken.
  std::optional<GreenThread<R>> take() {
    for (;;) {
      std::size_t n = outstanding_.load(std::memory_order_relaxed);
      do {
        if (n == 0) return std::nullopt;
        // relaxed: as in spawn(); the CAS only claims one counted handle.
      } while (!outstanding_.compare_exchange_weak(
          n, n - 1, std::memory_order_relaxed, std::memory_order_relaxed));
      std::optional<GreenThread<R>> handle;
      try {
        handle = handles_.get();
      } catch (...) {
        // Interrupted (kill, Timeout) before its handle came: the claim
        // goes back, so the next take() waits for that handle again.
        // relaxed: as above.
        outstanding_.fetch_add(1, std::memory_order_relaxed);
        throw;
      }
      if (handle) return handle;
      // A spawn that failed: its place is skipped.
    }
  }

  std::unique_ptr<GreenPool> own_;
  GreenPool* const pool_;
  // Handles in spawn order; nullopt marks a spawn() that threw.
  LightQueue<std::optional<GreenThread<R>>> handles_;
  // Spawns counted (started) minus handles claimed by next().
  std::atomic<std::size_t> outstanding_{0};
};

}  // namespace green

#endif  // GREEN_SYNC_GREEN_PILE_H_
