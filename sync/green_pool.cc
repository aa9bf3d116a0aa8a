// PoolState and pool membership: see green_pool.h.
#include "sync/green_pool.h"

#include <mutex>
#include <stdexcept>

#include "runtime/local.h"
#include "runtime/worker.h"
#include "sync/deadline.h"
#include "sync/spin_guard.h"

namespace green {
namespace detail {
namespace {

// Which pool the calling green thread is a member of (nullptr: none).
// Created on first use, destroyed when the green thread ends.
const PoolState*& membership() {
  static green::local<const PoolState*> pool;
  return *pool;
}

}  // namespace

void mark_member(const PoolState* pool) { membership() = pool; }

bool is_member(const PoolState* pool) {
  return current_fiber() != nullptr && membership() == pool;
}

bool PoolState::try_acquire() {
  SpinGuard guard(lock_);
  // G1 keeps this FIFO: while a spawner waits, running_ >= size_ (a
  // release hands its slot over); spawners_ may only hold waiters that
  // are leaving (killed), which must not keep us out.
  if (running_ >= size_) return false;
  ++running_;
  return true;
}

void PoolState::acquire() {
  SpinUniqueLock lock(lock_);
  for (;;) {
    if (running_ < size_) {  // see try_acquire()
      ++running_;
      return;
    }
    bool granted = false;
    Waiter waiter;
    waiter.payload = &granted;
    block_on(spawners_, lock.get(), waiter);
    if (granted) return;  // the releaser's slot is ours: running_ unchanged
  }
}

void PoolState::release() noexcept {
  SpinGuard guard(lock_);
  if (running_ <= size_) {
    while (Waiter* waiter = spawners_.pop_front()) {
      if (!waiter->notify()) continue;  // it is leaving: next
      *static_cast<bool*>(waiter->payload) = true;
      return;
    }
  }
  if (--running_ == 0) waitall_.notify_all();
}

void PoolState::resize(std::size_t size) {
  SpinGuard guard(lock_);
  size_ = size;
  while (running_ < size_ && !spawners_.empty()) {
    Waiter* waiter = spawners_.pop_front();
    if (!waiter->notify()) continue;
    *static_cast<bool*>(waiter->payload) = true;
    ++running_;
  }
}

bool PoolState::wait_idle(Deadline deadline) {
  SpinUniqueLock lock(lock_);
  while (running_ > 0) {
    if (expired(deadline)) return false;
    Waiter waiter;
    block_on(waitall_, lock.get(), waiter, deadline);
  }
  return true;
}

std::size_t PoolState::size() const {
  SpinGuard guard(lock_);
  return size_;
}

std::size_t PoolState::running() const {
  SpinGuard guard(lock_);
  return running_;
}

std::size_t PoolState::waiting() const {
  SpinGuard guard(lock_);
  return spawners_.size();
}

}  // namespace detail

namespace {

void check_not_member(const detail::PoolState* pool) {
  if (detail::is_member(pool)) {
    throw std::logic_error(
        "green::GreenPool::waitall: called from one of the pool's own green "
        "threads, it would wait for itself forever; wait from outside the "
        "pool (or keep the handles and wait for the others)");
  }
}

}  // namespace

void GreenPool::waitall() {
  check_not_member(state_.get());
  state_->wait_idle(std::nullopt);
}

bool GreenPool::waitall(std::chrono::nanoseconds timeout) {
  check_not_member(state_.get());
  return state_->wait_idle(detail::deadline_after(timeout));
}

}  // namespace green
