// RunQueue<T>: a worker's bounded lock-free run queue, stolen from by others.
//
// Design
// ------
// Each worker owns one RunQueue: a ring of Capacity slots plus a one-item
// "run-next" slot. Only the owner pushes; the owner pops from the head, and
// idle workers ("thieves") steal the older half from the head too. This is
// Go's per-P run queue, transcribed from src/runtime/proc.go (runqput,
// runqputslow, runqget, runqgrab, runqsteal); Tokio's
// runtime/scheduler/multi_thread/queue.rs is the same idea (Tokio packs a
// second "steal" head into the head word so a thief can copy outside its CAS;
// we keep Go's simpler single head, whose cost is that a thief copies its
// batch before the CAS and may have to redo the copy).
//
//   positions:  head_ ......... tail_        (uint32 counters, wrap freely)
//   slot index: position & (Capacity - 1)
//   head_: next position to consume; advanced by ANY consumer with a CAS.
//   tail_: next position to fill; stored ONLY by the owner.
//   next_: the run-next slot (Go's runnext): a green thread just woken by the
//          running one, run next while the data it was sent is in cache.
//
// A full ring never blocks the owner: push_back moves the oldest half plus the
// new item to the GlobalQueue (Go's runqputslow). A thief copies about half of
// a victim's ring into its own ring and runs one of them (Go's runqsteal).
//
// Invariants
// ----------
//   1. 0 <= tail_ - head_ <= Capacity (modulo 2^32); positions [head_, tail_)
//      hold queued items.
//   2. Only the owner stores tail_, writes slots_ (also when its queue is the
//      destination of a steal), and stores a non-null next_.
//   3. head_ changes only by CAS, never a plain store, so every later value
//      of head_ is in the release sequence of every earlier release CAS.
//   4. Capacity is a power of two <= 2^31, so uint32 position differences are
//      exact across wraparound and `& (Capacity - 1)` indexes the ring.
//      (A thief stalled for 2^32 pushes between its load of head_ and its CAS
//      could be fooled by the wrapped value, ABA; Go accepts the same risk.)
//   5. An item is in at most one place: a ring, a run-next slot, the global
//      queue, or a worker's hands.
//
// Memory order (each atomic operation below names its pair)
// ------------
//   * Publish: the owner writes a slot (relaxed), then stores tail_ with
//     release; a thief loads tail_ with acquire, so the slot and the item's
//     contents are visible to it.
//   * Consume: a thief reads slots, then CASes head_ with release; the owner
//     loads head_ with acquire before overwriting a slot, so every read of the
//     old value happens before the overwrite. By invariant 3 that holds even
//     when the owner reads a later head_ value written by another CAS.
//   * Why slots are atomics: a thief may read a slot just as the owner
//     overwrites it with a newer lap (the thief's head_ was stale). The thief
//     then fails its CAS and discards what it read, but with plain pointers
//     that read would still be a data race, i.e. undefined behaviour. Relaxed
//     atomics make it a benign race and cost nothing on x86 or ARM.
//   * The owner's own reads of slots and of tail_ need no ordering: it wrote
//     them. Its pop therefore uses relaxed order throughout; the CAS only
//     arbitrates with thieves (and, being an RMW, does not break the release
//     sequence of invariant 3).
//   * A thief loads head_ relaxed (Go: load-acquire): it reads no data through
//     head_, its CAS validates the value, and a head/tail pair read at
//     different times is rejected by the "more than half a ring" check.
//   * Run-next: the owner publishes with an exchange(release); a thief takes
//     it with a CAS(acquire).
//
// Usage (scheduler side):
//   RunQueue<GreenThread> local;                 // one per worker
//   local.push_back(t, global);                  // owner
//   T* t = local.pop();                          // owner
//   T* t = victim.steal_into(local, last_round); // owner of `local`
#ifndef GREEN_RUNTIME_RUN_QUEUE_H_
#define GREEN_RUNTIME_RUN_QUEUE_H_

#include <array>
#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>

#include "runtime/global_queue.h"

namespace green::detail {

// Ring size per worker: 256 as Go's p.runq and Tokio's LOCAL_QUEUE_CAPACITY.
// Tests instantiate 4 to make overflow and steal races frequent.
inline constexpr std::size_t kDefaultRunQueueCapacity = 256;

// Assumed cache line size (x86-64 and common AArch64 cores). Not
// std::hardware_destructive_interference_size: gcc warns that its value may
// change between compiler versions, which would make the layout ABI-fragile.
inline constexpr std::size_t kRunQueueCacheLine = 64;

template <typename T, std::size_t Capacity = kDefaultRunQueueCapacity>
class RunQueue {
  static_assert(Capacity >= 2 && (Capacity & (Capacity - 1)) == 0,
                "RunQueue capacity must be a power of two >= 2");
  static_assert(Capacity <= (std::size_t{1} << 31),
                "uint32 positions need Capacity <= 2^31 (invariant 4)");

 public:
  static constexpr std::size_t kCapacity = Capacity;

  // `initial_position` starts head_ and tail_ somewhere other than 0; tests
  // start just below 2^32 to exercise wraparound.
  explicit RunQueue(std::uint32_t initial_position = 0) noexcept
      : head_(initial_position), tail_(initial_position) {}
  RunQueue(const RunQueue&) = delete;
  RunQueue& operator=(const RunQueue&) = delete;
  ~RunQueue() = default;  // Does not own its items.

  // ---- Owner only: called only by the worker that owns this queue. ----

  // Pushes `item` at the tail. If the ring is full, moves its oldest
  // Capacity / 2 items, then `item`, to `overflow` as one FIFO batch (Go's
  // runqputslow). Never fails.
  void push_back(T* item, GlobalQueue<T>& overflow) noexcept {
    assert(item != nullptr);
    for (;;) {
      // acquire: pairs with the release CAS of consumers (steal_into), so their
      // reads of the slot we may overwrite happen before our store.
      const std::uint32_t head = head_.load(std::memory_order_acquire);
      // relaxed: only this thread stores tail_ (invariant 2).
      const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
      if (tail - head < Capacity) {
        // relaxed: published by the release store of tail_ just below.
        slots_[tail & kMask].store(item, std::memory_order_relaxed);
        // release: pairs with the acquire load of tail_ in steal_into; makes
        // the slot and the item's contents visible to thieves.
        tail_.store(tail + 1, std::memory_order_release);
        return;
      }
      if (move_half_to(overflow, item, head)) return;
      // A thief took items meanwhile: the ring has room now; retry.
    }
  }

  // Makes `item` the next to run. A previous run-next item is pushed to the
  // back (as push_back), where it keeps its turn in FIFO order. Returns
  // whether the slot held an item, which then moved to the ring.
  bool push_next(T* item, GlobalQueue<T>& overflow) noexcept {
    assert(item != nullptr);
    // release: pairs with the acquire CAS in steal_into, publishing the item's
    // contents to a thief that takes it. The old value needs no acquire: only
    // this thread stores non-null values (invariant 2).
    T* const previous = next_.exchange(item, std::memory_order_release);
    if (previous == nullptr) return false;
    push_back(previous, overflow);
    return true;
  }

  // The next item to run: the run-next slot first, then the ring's head
  // (FIFO). nullptr if both are empty.
  T* pop() noexcept {
    // relaxed: only this thread stores non-null values in next_; a thief
    // can only clear it, and then the exchange below returns nullptr.
    if (next_.load(std::memory_order_relaxed) != nullptr) {
      // relaxed: as above; we wrote whatever non-null value we take.
      T* const item = next_.exchange(nullptr, std::memory_order_relaxed);
      if (item != nullptr) return item;
    }
    return pop_ring();
  }

  // Like pop() but ignores the run-next slot: the scheduler calls it after a
  // streak of run-next picks so two green threads waking each other cannot
  // starve the ring.
  T* pop_ring() noexcept {
    // relaxed: the value is only a guess that the CAS below validates.
    std::uint32_t head = head_.load(std::memory_order_relaxed);
    // relaxed: only this thread stores tail_.
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    while (head != tail) {
      // relaxed: this thread wrote the slot, and only it will overwrite it.
      T* const item = slots_[head & kMask].load(std::memory_order_relaxed);
      // relaxed: only arbitrates with thieves. We read nothing a thief wrote,
      // and our slot read is ordered before our own later overwrite by
      // program order. On failure `head` is reloaded and we retry.
      if (head_.compare_exchange_weak(head, head + 1, std::memory_order_relaxed,
                                      std::memory_order_relaxed)) {
        return item;
      }
    }
    return nullptr;
  }

  // The item pop() would return after `ahead` more pops (0: the next one),
  // left in place, for a prefetch; nullptr if there is none. Counts the
  // run-next slot first, as pop() does. Owner only, and only a hint: a
  // thief may take the item meanwhile, and it may even have finished and
  // been freed by the time the caller looks, so the caller must not
  // dereference it.
  T* peek(std::uint32_t ahead = 0) const noexcept {
    // relaxed (all): a hint; nothing is read through the pointer.
    if (T* const next = next_.load(std::memory_order_relaxed)) {
      if (ahead == 0) return next;
      --ahead;
    }
    const std::uint32_t head = head_.load(std::memory_order_relaxed);
    const std::uint32_t size = tail_.load(std::memory_order_relaxed) - head;
    if (size <= ahead || size > Capacity) return nullptr;
    return slots_[(head + ahead) & kMask].load(std::memory_order_relaxed);
  }

  // True if the ring (not counting the run-next slot) is empty. Owner
  // only: exact for the owner, as only thieves can change head_ meanwhile,
  // and they only make the ring emptier.
  bool ring_empty() const noexcept {
    // relaxed (both): a snapshot; no item is read through it.
    return head_.load(std::memory_order_relaxed) ==
           tail_.load(std::memory_order_relaxed);
  }

  // ---- Any thread. ----

  // Steals about half of this (victim) queue's ring, n = size - size / 2
  // items, oldest first. The first n - 1 go to the tail of `destination`,
  // which must be owned by the calling worker (its ring is ideally empty; at
  // most its free room is filled); the n-th is returned to run directly.
  // Takes the victim's run-next item only when the ring is empty and
  // `take_next` is set (Go does so only on its last steal round). nullptr if
  // there was nothing to steal. Go's runqsteal + runqgrab.
  T* steal_into(RunQueue& destination, bool take_next) noexcept {
    assert(&destination != this);
    // relaxed: we own `destination`, so only we store its tail_.
    const std::uint32_t dest_tail =
        destination.tail_.load(std::memory_order_relaxed);
    // acquire: pairs with the release CAS of the destination's other
    // consumers, so their reads of slots we are about to overwrite are done.
    // Its head only grows, so the room computed here can only grow.
    const std::uint32_t dest_head =
        destination.head_.load(std::memory_order_acquire);
    const std::uint32_t dest_room =
        static_cast<std::uint32_t>(Capacity) - (dest_tail - dest_head);
    for (;;) {
      // relaxed: the CAS below validates it; a stale or too-new value only
      // makes the count inconsistent, which the check below rejects.
      std::uint32_t head = head_.load(std::memory_order_relaxed);
      // acquire: pairs with the owner's release store in push_back; slots in
      // [head, tail) and their items' contents are visible.
      const std::uint32_t tail = tail_.load(std::memory_order_acquire);
      const std::uint32_t available = tail - head;
      std::uint32_t n = available - available / 2;
      if (n == 0) {
        if (!take_next) return nullptr;
        // relaxed: a guess; the CAS below validates it.
        T* item = next_.load(std::memory_order_relaxed);
        if (item == nullptr) return nullptr;
        // acquire: pairs with the release exchange in push_next, making the
        // item's contents visible. Failure: the owner ran or replaced it.
        if (next_.compare_exchange_weak(item, nullptr,
                                        std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
          return item;
        }
        continue;
      }
      // head and tail were read at different times (head may even be newer
      // than tail): more than half a ring cannot be real. Go does the same.
      if (n > kHalf) continue;
      if (n > dest_room + 1) n = dest_room + 1;
      for (std::uint32_t i = 0; i + 1 < n; ++i) {
        // relaxed: visible through the acquire load of tail_ above; if the
        // owner overwrote the slot since, our CAS below fails.
        T* const item =
            slots_[(head + i) & kMask].load(std::memory_order_relaxed);
        // relaxed: published by the release store of destination.tail_ below.
        destination.slots_[(dest_tail + i) & kMask].store(
            item, std::memory_order_relaxed);
      }
      // relaxed: as the loads in the loop above.
      T* const run_now =
          slots_[(head + n - 1) & kMask].load(std::memory_order_relaxed);
      // release: pairs with the owner's acquire load of head_ in push_back,
      // so our slot reads above happen before it overwrites those slots.
      if (head_.compare_exchange_weak(head, head + n, std::memory_order_release,
                                      std::memory_order_relaxed)) {
        if (n > 1) {
          // release: pairs with the acquire load of tail_ in steal_into by
          // thieves of `destination`; publishes the copied slots.
          destination.tail_.store(dest_tail + (n - 1),
                                  std::memory_order_release);
        }
        return run_now;
      }
    }
  }

  // Items in the ring plus the run-next slot. Exact for the owner when no
  // thief is active; otherwise a snapshot that may be stale (a hint for
  // choosing a victim or checking for idleness; pair with the scheduler's
  // seq_cst fences as for GlobalQueue::size()).
  std::size_t size() const noexcept {
    // relaxed (all three): a hint; no data is read through these values.
    const std::uint32_t head = head_.load(std::memory_order_relaxed);
    const std::uint32_t tail = tail_.load(std::memory_order_relaxed);
    const bool has_next = next_.load(std::memory_order_relaxed) != nullptr;
    // A non-owner may see a head newer than its tail (difference "negative",
    // i.e. huge) or a stale head (difference > Capacity); clamp both.
    const std::uint32_t diff = tail - head;
    const std::size_t ring = diff > kMaxDifference ? 0
                             : diff > Capacity     ? Capacity
                                                   : diff;
    return ring + (has_next ? 1 : 0);
  }
  bool empty() const noexcept { return size() == 0; }

 private:
  static constexpr std::uint32_t kMask =
      static_cast<std::uint32_t>(Capacity - 1);
  // Overflow batch and the largest steal: half a ring, as Go.
  static constexpr std::uint32_t kHalf =
      static_cast<std::uint32_t>(Capacity / 2);
  // Position differences above this are negative in two's complement: a
  // non-owner read a head newer than its tail.
  static constexpr std::uint32_t kMaxDifference = std::uint32_t{1} << 31;

  // Owner only. The ring was full at `head`: claims its kHalf oldest items
  // and pushes them, then `item`, to `overflow`. False if a thief moved head_
  // first (the ring then has room). Go's runqputslow, except that the batch
  // travels as an array (GlobalQueue::push_array), not linked through the
  // items: whoever takes it then reads no item.
  bool move_half_to(GlobalQueue<T>& overflow, T* item,
                    std::uint32_t head) noexcept {
    // relaxed: only arbitrates with thieves. Unlike Go we read the slots after
    // the CAS: once claimed, only this thread writes them (invariant 2).
    if (!head_.compare_exchange_strong(head, head + kHalf,
                                       std::memory_order_relaxed,
                                       std::memory_order_relaxed)) {
      return false;
    }
    overflow.push_array(kHalf + 1, [this, item, head](std::size_t i) {
      // relaxed: this thread wrote these slots.
      return i < kHalf
                 ? slots_[(head + i) & kMask].load(std::memory_order_relaxed)
                 : item;
    });
    return true;
  }

  // head_ and tail_ share a line: every consumer reads both. The alignment
  // keeps them off whatever object precedes this queue.
  alignas(kRunQueueCacheLine) std::atomic<std::uint32_t> head_;
  std::atomic<std::uint32_t> tail_;
  std::atomic<T*> next_{nullptr};
  std::array<std::atomic<T*>, Capacity> slots_{};
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_RUN_QUEUE_H_
