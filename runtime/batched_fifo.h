// BatchedFifo<T>: a FIFO of items kept both as single linked items and as
// arrays ("batches"), for the global run queue (runtime/global_queue.h).
//
// Why two kinds of storage
// ------------------------
// Items reach the global queue one at a time (a wake from a timer or a
// foreign thread) or a hundred at a time (a worker's full ring hands over
// its older half). Single items are linked through their own `queue_next`
// member, so pushing one never allocates and never fails. A batch used to
// be linked the same way, and a worker that took it walked the links:
// one cache miss per item, in a dependent chain, under the queue's lock.
// Those items are the oldest work in the process -- under a spawn storm,
// hundreds of thousands of control blocks back -- so every link was a miss
// to memory, and that walk took 25-40% of the consuming worker's time in
// spawn-join. A batch is now an array of pointers: taking 128 items reads
// 1 KiB of contiguous pointers, and the items themselves are first touched
// when they run, where the worker prefetches the next one (Worker::run)
// so the misses overlap with useful work. spawn-join at 2 workers went
// from ~150 to ~120 ns per green thread, skynet from ~330 to ~285 ms.
//
// Order across the two kinds
// --------------------------
// The FIFO is exact: items leave in the order they were pushed, whichever
// kind holds them. Singles form one intrusive list, batches another; each
// batch remembers how many singles were pushed just before it
// (`singles_before`: pushed after the previous batch, or, if no batch was
// queued, all singles then queued). pop_front() takes a single while the
// head batch still has singles before it (counting them down), else the
// head batch's next item; with no batch queued, singles are all there is.
//
// Invariants (whoever owns the FIFO serialises all calls)
// ----------
//   1. single_head_ == nullptr <=> single_tail_ == nullptr; following
//      queue_next from single_head_ reaches single_tail_, whose queue_next
//      is nullptr; single_count_ is that list's length.
//   2. Every queued batch holds at least one item (begin < end).
//   3. The sum of singles_before over queued batches <= single_count_; the
//      singles beyond that sum were pushed after the last batch, and
//      singles_since_batch_ counts them while a batch is queued.
//   4. size_ == single_count_ + the items left in all queued batches.
//
// Not thread-safe: GlobalQueue holds its lock around every call. Batches
// are allocated and freed outside that lock (ItemBatch::create, retired
// chains), so the lock never waits on the allocator.
#ifndef GREEN_RUNTIME_BATCHED_FIFO_H_
#define GREEN_RUNTIME_BATCHED_FIFO_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>

namespace green::detail {

// An array of item pointers, filled once by its creator and then consumed
// from the front. Lives in one allocation: the header, then the pointers.
template <typename T>
class ItemBatch {
 public:
  // A batch with room for `capacity` items, or nullptr if memory is short
  // (the caller then links its items one by one instead).
  static ItemBatch* create(std::uint32_t capacity) noexcept {
    assert(capacity > 0);
    void* memory =
        ::operator new(sizeof(ItemBatch) + capacity * sizeof(T*), std::nothrow);
    return memory ? new (memory) ItemBatch(capacity) : nullptr;
  }
  // Frees a chain of batches linked through next().
  static void destroy_chain(ItemBatch* batch) noexcept {
    while (batch != nullptr) {
      ItemBatch* const next = batch->next_;
      batch->~ItemBatch();
      ::operator delete(batch);
      batch = next;
    }
  }

  // Appends an item; only before the batch is queued, and only while
  // size() < capacity.
  void add(T* item) noexcept {
    assert(end_ < capacity_);
    items()[end_++] = item;
  }
  std::uint32_t size() const noexcept { return end_ - begin_; }

 private:
  template <typename>
  friend class BatchedFifo;

  explicit ItemBatch(std::uint32_t capacity) noexcept : capacity_(capacity) {}
  ~ItemBatch() = default;

  T** items() noexcept { return reinterpret_cast<T**>(this + 1); }
  T* take_front() noexcept {
    assert(begin_ < end_);
    return items()[begin_++];
  }

  ItemBatch* next_ = nullptr;       // the next batch in a FIFO or retired chain
  std::size_t singles_before_ = 0;  // see "Order across the two kinds"
  const std::uint32_t capacity_;
  std::uint32_t begin_ = 0;  // next item to take
  std::uint32_t end_ = 0;    // one past the last item added
};

template <typename T>
class BatchedFifo {
 public:
  using Batch = ItemBatch<T>;

  BatchedFifo() noexcept = default;
  BatchedFifo(const BatchedFifo&) = delete;
  BatchedFifo& operator=(const BatchedFifo&) = delete;
  // Frees the batches still queued; the items are not owned, only forgotten.
  ~BatchedFifo() { Batch::destroy_chain(batch_head_); }

  std::size_t size() const noexcept { return size_; }
  bool empty() const noexcept { return size_ == 0; }

  // Appends the chain first -> ... -> last, linked through queue_next and
  // `count` long (last->queue_next must be nullptr).
  void push_chain(T* first, T* last, std::size_t count) noexcept {
    static_assert(std::is_same_v<decltype(T::queue_next), T*>,
                  "BatchedFifo<T> needs a member `T* queue_next`");
    assert(first != nullptr && last != nullptr && count > 0);
    assert(last->queue_next == nullptr);
    if (single_tail_ == nullptr) {
      single_head_ = first;
    } else {
      single_tail_->queue_next = first;
    }
    single_tail_ = last;
    single_count_ += count;
    if (batch_head_ != nullptr) singles_since_batch_ += count;
    size_ += count;
  }

  // Appends one item.
  void push_back(T* item) noexcept {
    item->queue_next = nullptr;
    push_chain(item, item, 1);
  }

  // Appends a filled, non-empty batch and takes ownership of it.
  void push_batch(Batch* batch) noexcept {
    assert(batch != nullptr && batch->size() > 0 && batch->next_ == nullptr);
    // Invariant 3: with no batch queued, every queued single comes first.
    batch->singles_before_ =
        batch_head_ == nullptr ? single_count_ : singles_since_batch_;
    singles_since_batch_ = 0;
    if (batch_tail_ == nullptr) {
      batch_head_ = batch;
    } else {
      batch_tail_->next_ = batch;
    }
    batch_tail_ = batch;
    size_ += batch->size();
  }

  // Removes and returns the oldest item. The FIFO must not be empty. A
  // batch this empties is linked onto `retired`, for the caller to free
  // (Batch::destroy_chain) once it has let go of its lock.
  T* pop_front(Batch*& retired) noexcept {
    assert(size_ > 0);
    --size_;
    Batch* const batch = batch_head_;
    if (batch == nullptr || batch->singles_before_ > 0) {
      if (batch != nullptr) --batch->singles_before_;
      return pop_single();
    }
    T* const item = batch->take_front();
    if (batch->size() == 0) {
      batch_head_ = batch->next_;
      if (batch_head_ == nullptr) batch_tail_ = nullptr;
      batch->next_ = retired;
      retired = batch;
    }
    return item;
  }

 private:
  T* pop_single() noexcept {
    T* const item = single_head_;
    assert(item != nullptr);
    single_head_ = item->queue_next;
    if (single_head_ == nullptr) single_tail_ = nullptr;
    item->queue_next = nullptr;
    --single_count_;
    return item;
  }

  T* single_head_ = nullptr;  // oldest single item
  T* single_tail_ = nullptr;  // newest single item
  std::size_t single_count_ = 0;
  Batch* batch_head_ = nullptr;  // oldest batch
  Batch* batch_tail_ = nullptr;  // newest batch
  // Singles pushed since the newest batch; meaningful only while a batch is
  // queued (push_batch starts it afresh).
  std::size_t singles_since_batch_ = 0;
  std::size_t size_ = 0;  // every item, single or batched
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_BATCHED_FIFO_H_
