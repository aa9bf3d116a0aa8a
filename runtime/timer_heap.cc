// TimerHeap: see timer_heap.h.
#include "runtime/timer_heap.h"

#include <algorithm>

#include "runtime/fiber.h"

namespace green::detail {

void TimerHeap::add(TimerNode& node) {
  node.heap = this;
  std::lock_guard<SpinLock> guard(lock_);
  entries_.push_back(Entry{node.deadline, &node});  // may throw: unlinked
  sift_up(entries_.size() - 1, entries_.back());
  // relaxed: see empty().
  size_.store(entries_.size(), std::memory_order_relaxed);
}

void TimerHeap::cancel(TimerNode& node) noexcept {
  std::lock_guard<SpinLock> guard(lock_);
  if (node.index == TimerNode::kNotInHeap) return;  // expired
  remove_at(node.index);
  size_.store(entries_.size(), std::memory_order_relaxed);  // As in add().
}

std::size_t TimerHeap::expire(Clock::time_point now) noexcept {
  if (empty()) return 0;
  std::size_t expired = 0;
  std::lock_guard<SpinLock> guard(lock_);
  while (!entries_.empty() && entries_.front().deadline <= now) {
    TimerNode* node = entries_.front().node;
    remove_at(0);
    // Under lock_: a fiber woken earlier for another reason waits in
    // cancel() until we are done, so `node` and its fiber are alive. A
    // stale epoch makes the wake a no-op. Nothing touches `node` after it.
    if (node->on_expiry) {
      node->on_expiry(node->context);
    } else {
      node->fiber->wake(node->epoch, WakeReason::kTimedOut, false);
    }
    ++expired;
  }
  size_.store(entries_.size(), std::memory_order_relaxed);  // As in add().
  return expired;
}

std::optional<TimerHeap::Clock::time_point> TimerHeap::earliest() noexcept {
  if (empty()) return std::nullopt;
  std::lock_guard<SpinLock> guard(lock_);
  if (entries_.empty()) return std::nullopt;
  return entries_.front().deadline;
}

void TimerHeap::place(std::size_t i, Entry entry) noexcept {
  entries_[i] = entry;
  entry.node->index = i;
}

void TimerHeap::sift_up(std::size_t i, Entry entry) noexcept {
  while (i > 0) {
    const std::size_t parent = (i - 1) / kArity;
    if (!(entry.deadline < entries_[parent].deadline)) break;
    place(i, entries_[parent]);
    i = parent;
  }
  place(i, entry);
}

void TimerHeap::sift_down(std::size_t i, Entry entry) noexcept {
  const std::size_t n = entries_.size();
  for (;;) {
    const std::size_t first = kArity * i + 1;
    if (first >= n) break;
    const std::size_t end = std::min(first + kArity, n);
    std::size_t smallest = first;
    for (std::size_t c = first + 1; c < end; ++c) {
      if (entries_[c].deadline < entries_[smallest].deadline) smallest = c;
    }
    if (!(entries_[smallest].deadline < entry.deadline)) break;
    place(i, entries_[smallest]);
    i = smallest;
  }
  place(i, entry);
}

void TimerHeap::remove_at(std::size_t i) noexcept {
  TimerNode* const node = entries_[i].node;
  const Entry last = entries_.back();
  entries_.pop_back();
  if (i < entries_.size()) {
    // The last entry fills the hole: it may belong above or below it.
    if (i > 0 && last.deadline < entries_[(i - 1) / kArity].deadline) {
      sift_up(i, last);
    } else {
      sift_down(i, last);
    }
  }
  node->index = TimerNode::kNotInHeap;
}

}  // namespace green::detail
