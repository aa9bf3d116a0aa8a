// BoundedRing<T>: the lock-free storage of a bounded FIFO queue
// (Queue(n), LightQueue(n) with 2 <= n <= kMaxRingCapacity; with one cell
// "published at p" and "free for p + 1" would be the same sequence).
//
// Why: with one lock around the buffer, four producers on one worker and a
// consumer on another spent most of their time bouncing that lock's cache
// line between cores (fan-in: 6-14M items/s at 2 workers, 39M at 1). Here
// producers touch `tail_` and consumers `head_`, each on its own cache
// line, and they meet only in the cells, which a streaming consumer reads
// in order.
//
// The algorithm is Dmitry Vyukov's bounded MPMC queue: every cell carries
// a sequence number that says whose turn it is. A producer at position p
// may fill cell p % capacity when its sequence is p; it reserves p with a
// CAS on tail_, fills the cell and publishes sequence p + 1. A consumer at
// p may take the cell when its sequence is p + 1; it reserves p with a CAS
// on head_, moves the item out and frees the cell with sequence
// p + capacity (the producer's turn one lap later).
//
// Reserving and completing are separate steps (Ticket), because the queue
// decides between them whether to complete without its lock (nobody waits)
// or under it (waiters to serve); see sync/queue.h. A reserved cell is
// always completed: filled with an item, or -- when the queue reserved it
// for a waiting putter that timed out a moment earlier -- with a hole,
// which consumers skip.
//
// close() stops new reservations (Queue::resize moves the items into a
// locked buffer and never uses the ring again); quiescent() says whether
// every reservation made before it has been completed.
//
// T's move constructor must not throw: a reserved cell cannot be given
// back.
#ifndef GREEN_SYNC_BOUNDED_RING_H_
#define GREEN_SYNC_BOUNDED_RING_H_

#include <atomic>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <type_traits>
#include <utility>

namespace green::detail {

// Larger bounds keep the locked, growable RingBuffer: a ring allocates all
// its cells up front.
inline constexpr std::size_t kMaxRingCapacity = std::size_t{1} << 16;

template <typename T>
class BoundedRing {
  struct Cell {
    std::atomic<std::size_t> sequence;
    bool hole;  // written before the publishing store, read after it
    alignas(T) unsigned char storage[sizeof(T)];
    T* item() noexcept { return std::launder(reinterpret_cast<T*>(storage)); }
  };

 public:
  struct Ticket {
    Cell* cell = nullptr;
    std::size_t position = 0;
  };

  explicit BoundedRing(std::size_t capacity)
      : capacity_(capacity),
        mask_((capacity & (capacity - 1)) == 0 ? capacity - 1 : 0),
        cells_(new Cell[capacity]) {
    static_assert(std::is_nothrow_move_constructible_v<T>,
                  "BoundedRing<T>: a reserved cell cannot be given back");
    assert(capacity >= 2);
    for (std::size_t i = 0; i < capacity; ++i) {
      // relaxed: the ring is not shared yet.
      cells_[i].sequence.store(i, std::memory_order_relaxed);
      cells_[i].hole = false;
    }
  }
  BoundedRing(const BoundedRing&) = delete;
  BoundedRing& operator=(const BoundedRing&) = delete;
  ~BoundedRing() {
    // Nobody else touches the ring any more: relaxed is enough.
    std::size_t head = head_.value.load(std::memory_order_relaxed) & ~kClosed;
    const std::size_t tail =
        tail_.value.load(std::memory_order_relaxed) & ~kClosed;
    for (; head != tail; ++head) {
      Cell& cell = cell_at(head);
      if (!cell.hole) cell.item()->~T();
    }
  }

  std::size_t capacity() const noexcept { return capacity_; }

  // Reserves the next cell for an item; false if the ring is full (or
  // closed). seq_cst CAS: the putter's half of the queue's parking
  // handshake -- a getter that registered before it is seen by the
  // putter's next seq_cst load, or sees this reservation.
  bool reserve_push(Ticket& ticket) noexcept {
    return reserve(tail_, 0, ticket);  // its turn: sequence == position
  }

  // Completes a reservation with `item` (moved from).
  void publish(const Ticket& ticket, T&& item) noexcept {
    ::new (static_cast<void*>(ticket.cell->storage)) T(std::move(item));
    ticket.cell->hole = false;
    // release: the item is visible to the consumer that acquires this.
    ticket.cell->sequence.store(ticket.position + 1, std::memory_order_release);
  }
  // Completes a reservation with nothing; consumers skip it.
  void publish_hole(const Ticket& ticket) noexcept {
    ticket.cell->hole = true;
    ticket.cell->sequence.store(ticket.position + 1,
                                std::memory_order_release);  // as publish
  }

  // Reserves the oldest published cell; false if there is none (empty,
  // closed, or the oldest reservation is not yet published). seq_cst CAS:
  // the getter's half of the handshake, as reserve_push.
  bool reserve_pop(Ticket& ticket) noexcept {
    return reserve(head_, 1, ticket);  // published: sequence == position + 1
  }

  // Completes a pop: moves the item into `out` (nothing for a hole; then
  // returns false) and frees the cell for the producer one lap later.
  bool take(const Ticket& ticket, std::optional<T>& out) noexcept {
    const bool item = !ticket.cell->hole;
    if (item) {
      out.emplace(std::move(*ticket.cell->item()));
      ticket.cell->item()->~T();
    }
    // release: we are done with the cell before a producer reuses it.
    ticket.cell->sequence.store(ticket.position + capacity_,
                                std::memory_order_release);
    return item;
  }

  // Pops the oldest item, skipping holes; false if none is published.
  bool try_pop(std::optional<T>& out) noexcept {
    Ticket ticket;
    while (reserve_pop(ticket)) {
      if (take(ticket, out)) return true;
    }
    return false;
  }

  // The other halves of the parking handshake (seq_cst loads, after the
  // waiter's seq_cst store of its registration): is an item reserved or
  // published that no getter has reserved yet? Is a cell free or being
  // freed? Head is read first, so tail - head never goes negative.
  bool maybe_nonempty() const noexcept { return reserved_size() > 0; }
  bool maybe_has_room() const noexcept { return reserved_size() < capacity_; }

  // Cells reserved by producers and not yet reserved by consumers (holes
  // included); a snapshot.
  std::size_t reserved_size() const noexcept {
    const std::size_t head =
        head_.value.load(std::memory_order_seq_cst) & ~kClosed;
    const std::size_t tail =
        tail_.value.load(std::memory_order_seq_cst) & ~kClosed;
    return tail - head;
  }

  // Reservations made by producers so far (the queue's count of puts).
  // relaxed: callers hold the queue's lock, and a put they must count
  // happened-before through the item they were handed.
  std::size_t pushes() const noexcept {
    return tail_.value.load(std::memory_order_relaxed) & ~kClosed;
  }

  // No reservation succeeds after this (RMW: one ordered after every
  // reservation CAS that succeeded before it).
  void close() noexcept {
    tail_.value.fetch_or(kClosed, std::memory_order_seq_cst);
    head_.value.fetch_or(kClosed, std::memory_order_seq_cst);
  }
  bool closed() const noexcept {
    // relaxed: only a hint to a completer spinning for the lock.
    return tail_.value.load(std::memory_order_relaxed) & kClosed;
  }

  // After close(): has every reserved cell been published, and every
  // reserved pop freed? Scans the cells between the two ends.
  bool quiescent() const noexcept {
    const std::size_t head =
        head_.value.load(std::memory_order_seq_cst) & ~kClosed;
    const std::size_t tail =
        tail_.value.load(std::memory_order_seq_cst) & ~kClosed;
    // Pops reserved one lap back must have freed their cells...
    for (std::size_t p = (head > capacity_ ? head - capacity_ : 0); p < head;
         ++p) {
      // acquire: pairs with take()'s release.
      // (or later: a producer may have refilled it since).
      const std::size_t sequence =
          cell_at(p).sequence.load(std::memory_order_acquire);
      if (static_cast<std::intptr_t>(sequence - (p + capacity_)) < 0) {
        return false;
      }
    }
    // ...and pushes reserved since must have published theirs.
    for (std::size_t p = head; p < tail; ++p) {
      if (cell_at(p).sequence.load(std::memory_order_acquire) != p + 1) {
        return false;
      }
    }
    return true;
  }

  // After close() and quiescent(): hands every item left, oldest first, to
  // `each(T&&)` and empties the ring. If `each` throws, the item it was
  // given and those after it stay in the ring (destroyed with it).
  template <typename F>
  void drain(F&& each) {
    // relaxed: the ring is quiescent and we hold the queue's lock.
    std::size_t head = head_.value.load(std::memory_order_relaxed) & ~kClosed;
    const std::size_t tail =
        tail_.value.load(std::memory_order_relaxed) & ~kClosed;
    for (; head != tail; ++head) {
      Cell& cell = cell_at(head);
      if (!cell.hole) {
        each(std::move(*cell.item()));
        cell.item()->~T();
      }
      head_.value.store((head + 1) | kClosed, std::memory_order_relaxed);
    }
  }

 private:
  // The top bit of head_ and tail_: closed (positions never get there).
  static constexpr std::size_t kClosed = std::size_t{1}
                                         << (sizeof(std::size_t) * 8 - 1);

  // Each end on its own cache line, so producers and consumers on
  // different cores do not share one.
  struct alignas(64) Position {
    std::atomic<std::size_t> value{0};
  };

  // Reserves the cell at `end` (tail_ for producers, head_ for consumers)
  // once its sequence says it is that side's turn: position + `turn`.
  // False when it is not yet (full for producers, empty or unpublished for
  // consumers) or the ring is closed.
  bool reserve(Position& end, std::size_t turn, Ticket& ticket) noexcept {
    // relaxed: a stale position only fails the CAS below.
    std::size_t position = end.value.load(std::memory_order_relaxed);
    for (;;) {
      if (position & kClosed) return false;
      Cell& cell = cell_at(position);
      // acquire: pairs with the other side's release of the cell (take()
      // for producers: it is done reading; publish() for consumers: the
      // item is visible).
      const std::size_t sequence =
          cell.sequence.load(std::memory_order_acquire);
      const auto lag = static_cast<std::intptr_t>(sequence - (position + turn));
      if (lag == 0) {
        // seq_cst: see reserve_push (the parking handshake).
        if (end.value.compare_exchange_weak(position, position + 1,
                                            std::memory_order_seq_cst,
                                            std::memory_order_relaxed)) {
          ticket = {&cell, position};
          return true;
        }
      } else if (lag < 0) {
        return false;  // the other side has not been through this lap yet
      } else {
        position = end.value.load(std::memory_order_relaxed);  // overtaken
      }
    }
  }

  Cell& cell_at(std::size_t position) const noexcept {
    return cells_[mask_ ? (position & mask_) : (position % capacity_)];
  }

  Position head_;
  Position tail_;
  const std::size_t capacity_;
  const std::size_t mask_;  // capacity - 1 for a power of two, else 0
  const std::unique_ptr<Cell[]> cells_;
};

}  // namespace green::detail

#endif  // GREEN_SYNC_BOUNDED_RING_H_
