// ReadinessPoller and ReadinessSlot: see readiness_poller.h for the design.
#include "runtime/readiness_poller.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <mutex>
#include <new>
#include <system_error>

namespace green::detail {
namespace {

// The process-wide table of slots: chunks allocated on demand and never
// freed, so a slot index from a stale epoll event always names valid
// memory. Indexes are recycled through a free list.
class SlotTable {
 public:
  ReadinessSlot* allocate() {
    std::lock_guard<SpinLock> guard(lock_);
    if (free_ != kNoSlot) {
      ReadinessSlot* slot = find(free_);
      free_ = slot->next_free;
      return slot;
    }
    const std::uint32_t index = next_index_;
    if (index / kSlotsPerChunk >= kMaxChunks) throw std::bad_alloc();
    if (index % kSlotsPerChunk == 0) {
      auto* chunk = new ReadinessSlot[kSlotsPerChunk];  // bad_alloc
      for (std::uint32_t i = 0; i < kSlotsPerChunk; ++i) {
        chunk[i].index = index + i;
      }
      // release: a poller that reads this chunk pointer from a tag sees the
      // slots constructed.
      chunks_[index / kSlotsPerChunk].store(chunk, std::memory_order_release);
    }
    ++next_index_;
    return find(index);
  }

  // Invalidates the slot's registration -- events already collected for
  // it are dropped from now on (new generation), nobody is left parked --
  // and puts it on the free list.
  void recycle(ReadinessSlot* slot) noexcept {
    {
      std::lock_guard<SpinLock> guard(slot->lock);
      ++slot->generation;
      slot->waiter[0] = slot->waiter[1] = nullptr;
    }
    std::lock_guard<SpinLock> guard(lock_);
    slot->next_free = free_;
    free_ = slot->index;
  }

  // Any thread; `index` came from a slot that allocate() returned.
  ReadinessSlot* find(std::uint32_t index) const noexcept {
    // acquire: pairs with the release in allocate().
    return chunks_[index / kSlotsPerChunk].load(std::memory_order_acquire) +
           index % kSlotsPerChunk;
  }

 private:
  static constexpr std::uint32_t kSlotsPerChunk = 256;   // 16 KiB
  static constexpr std::uint32_t kMaxChunks = 1u << 16;  // 16M fds
  static constexpr std::uint32_t kNoSlot = UINT32_MAX;

  SpinLock lock_;
  std::uint32_t free_ GREEN_GUARDED_BY(lock_) = kNoSlot;
  std::uint32_t next_index_ GREEN_GUARDED_BY(lock_) = 0;
  std::atomic<ReadinessSlot*> chunks_[kMaxChunks] = {};
};

// Never destroyed: sockets may be closed from static destructors.
SlotTable& slot_table() {
  static SlotTable* const table = new SlotTable;
  return *table;
}

// Under the slot's lock: the poller is its only other writer.
void count_edge(std::atomic<std::uint32_t>& edges) noexcept {
  // release: a user that loads the new count (acquire) and then retries its
  // syscall finds the readiness that epoll reported before this store.
  edges.store(edges.load(std::memory_order_relaxed) + 1,
              std::memory_order_release);
}

}  // namespace

// --- ReadinessSlot ---

void ReadinessSlot::arm(int direction, Fiber* fiber, std::uint32_t epoch,
                        std::uint32_t seen) noexcept {
  std::lock_guard<SpinLock> guard(lock);
  // relaxed: the poller writes edges only under this lock, which we hold.
  if (edges[direction].load(std::memory_order_relaxed) != seen) {
    // An edge came after the caller's syscall began: do not sleep. The
    // fiber is still parking, so this makes its park() return at once.
    fiber->wake(epoch, WakeReason::kNotified, /*as_next=*/false);
    return;
  }
  waiter[direction] = fiber;
  waiter_epoch[direction] = epoch;
}

void ReadinessSlot::disarm(int direction, Fiber* fiber) noexcept {
  std::lock_guard<SpinLock> guard(lock);
  if (waiter[direction] == fiber) waiter[direction] = nullptr;
}

void ReadinessSlot::wake_all() noexcept {
  std::lock_guard<SpinLock> guard(lock);
  signal_locked(0);
  signal_locked(1);
}

bool ReadinessSlot::signal_locked(int direction) noexcept {
  count_edge(edges[direction]);
  Fiber* fiber = std::exchange(waiter[direction], nullptr);
  // Under the slot's lock: the waiter cannot leave (disarm) and end before
  // this wake has looked at its epoch. The lock is held across the enqueue
  // (a notify_work may post to a parked worker); only this socket's own
  // reader and writer contend for it, and claim() under the lock plus
  // release_claim() after would cost a second CAS on every request.
  return fiber &&
         fiber->wake(waiter_epoch[direction], WakeReason::kNotified, false);
}

// --- ReadinessPoller ---

namespace {

int create_epoll() {
  const int fd = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) {
    throw std::system_error(errno, std::system_category(),
                            "green: cannot create a worker's readiness "
                            "poller (epoll_create1)");
  }
  return fd;
}

}  // namespace

ReadinessPoller::ReadinessPoller(asio::io_context& io)
    : epoll_fd_(create_epoll()), descriptor_(io) {
  asio::error_code error;
  descriptor_.assign(epoll_fd_, error);  // EPOLL_CTL_ADD into Asio's set
  if (error) {
    ::close(epoll_fd_);
    throw std::system_error(error,
                            "green: cannot add the readiness poller to the "
                            "worker's reactor");
  }
}

ReadinessPoller::~ReadinessPoller() {
  asio::error_code ignored;
  descriptor_.close(ignored);  // leaves Asio's set, closes epoll_fd_
}

ReadinessSlot* ReadinessPoller::add(int fd) {
  ReadinessSlot* slot = slot_table().allocate();
  std::uint32_t generation;
  {
    std::lock_guard<SpinLock> guard(slot->lock);
    // relaxed: nobody reads a fresh slot's counts before add() returns it
    // (a stale event's generation no longer matches).
    slot->edges[0].store(0, std::memory_order_relaxed);
    slot->edges[1].store(0, std::memory_order_relaxed);
    slot->exceptional.store(false, std::memory_order_relaxed);
    generation = slot->generation;
  }
  epoll_event event{};
  // Edge-triggered: the kernel reports each new arrival (and the current
  // state once, at registration), never the same state twice.
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET;
  event.data.u64 = std::uint64_t{generation} << 32 | slot->index;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    const int error = errno;
    slot_table().recycle(slot);
    throw std::system_error(error, std::system_category());
  }
  registered_.fetch_add(1, std::memory_order_relaxed);  // see the header
  return slot;
}

void ReadinessPoller::remove(int fd, ReadinessSlot* slot) noexcept {
  epoll_event unused{};  // non-null for kernels before 2.6.9
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, &unused);
  registered_.fetch_sub(1, std::memory_order_relaxed);  // see the header
  slot_table().recycle(slot);
}

std::size_t ReadinessPoller::poll() noexcept {
  if (registered_.load(std::memory_order_relaxed) == 0) return 0;
  epoll_event events[kEventsPerPoll];
  const int count = ::epoll_wait(epoll_fd_, events, kEventsPerPoll, 0);
  std::size_t woken = 0;
  for (int i = 0; i < count; ++i) {
    const std::uint64_t tag = events[i].data.u64;
    ReadinessSlot* slot =
        slot_table().find(static_cast<std::uint32_t>(tag & 0xffffffffu));
    const std::uint32_t bits = events[i].events;
    // A hang-up or an error ends waits in both directions: the syscall
    // then reports it.
    const bool ready[2] = {
        (bits & (EPOLLIN | EPOLLRDHUP | EPOLLPRI | EPOLLHUP | EPOLLERR)) != 0,
        (bits & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0};
    std::lock_guard<SpinLock> guard(slot->lock);
    if (slot->generation != static_cast<std::uint32_t>(tag >> 32)) continue;
    if (bits & (EPOLLRDHUP | EPOLLPRI | EPOLLHUP | EPOLLERR)) {
      // relaxed: published by count_edge's release store below.
      slot->exceptional.store(true, std::memory_order_relaxed);
    }
    for (int direction = 0; direction < 2; ++direction) {
      if (ready[direction]) woken += slot->signal_locked(direction);
    }
  }
  return woken;
}

bool ReadinessPoller::prepare_to_park() noexcept {
  if (armed_) return true;
  try {
    // The handler runs on this worker, inside run_one() or poll(); the
    // worker's next poll() collects the edges.
    descriptor_.async_wait(asio::posix::descriptor_base::wait_read,
                           [this](const asio::error_code&) { armed_ = false; });
    armed_ = true;
  } catch (const std::exception&) {
    // Out of memory: the worker sleeps with a short timeout instead.
  }
  return armed_;
}

}  // namespace green::detail
