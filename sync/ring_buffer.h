// RingBuffer<T>: the FIFO storage behind Queue and LightQueue.
//
// A power-of-two array used as a ring, doubled when full and never shrunk
// (a queue that was once long is likely to be long again). std::deque,
// used before, allocated and freed a 512-byte block every 64 longs and
// took more branches per push and pop, all under the queue's lock. fan-in
// (4 producers, 1 consumer, capacity 1,024) went from 11M to 15-17M items
// per second at 2 workers, 37.6M to 39.3M at 1.
//
// Not thread-safe: the queue's lock guards it. push() gives the strong
// guarantee (growing moves with std::move_if_noexcept); pop() requires a
// non-empty buffer.
#ifndef GREEN_SYNC_RING_BUFFER_H_
#define GREEN_SYNC_RING_BUFFER_H_

#include <cstddef>
#include <memory>
#include <new>
#include <utility>

namespace green::detail {

template <typename T>
class RingBuffer {
 public:
  RingBuffer() = default;
  RingBuffer(const RingBuffer&) = delete;
  RingBuffer& operator=(const RingBuffer&) = delete;
  ~RingBuffer() {
    while (size_ > 0) destroy_front();
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
  }

  bool empty() const noexcept { return size_ == 0; }
  std::size_t size() const noexcept { return size_; }

  // Whether one more push cannot throw (grows if need be); false if the
  // memory is not there.
  bool make_room_for_one() noexcept {
    if (size_ < capacity_) return true;
    try {
      grow();
      return true;
    } catch (...) {
      return false;
    }
  }

  // Grows until `count` items fit (then pushes up to it cannot throw).
  void reserve(std::size_t count) {
    while (capacity_ < count) grow();
  }

  void push(T&& item) {
    if (size_ == capacity_) grow();
    ::new (static_cast<void*>(slot(head_ + size_))) T(std::move(item));
    ++size_;
  }

  T pop() {
    T item = std::move(*slot(head_));
    destroy_front();
    return item;
  }

 private:
  static constexpr std::size_t kFirstCapacity = 16;

  T* slot(std::size_t position) const noexcept {
    return slots_ + (position & (capacity_ - 1));
  }

  void destroy_front() noexcept {
    slot(head_)->~T();
    head_ = (head_ + 1) & (capacity_ - 1);
    --size_;
  }

  void grow() {
    const std::size_t capacity = capacity_ ? 2 * capacity_ : kFirstCapacity;
    T* const slots = std::allocator<T>().allocate(capacity);
    std::size_t moved = 0;
    try {
      for (; moved < size_; ++moved) {
        ::new (static_cast<void*>(slots + moved))
            T(std::move_if_noexcept(*slot(head_ + moved)));
      }
    } catch (...) {
      // Only a copying constructor can throw here: the old ring is intact.
      for (std::size_t i = 0; i < moved; ++i) slots[i].~T();
      std::allocator<T>().deallocate(slots, capacity);
      throw;
    }
    for (std::size_t i = 0; i < size_; ++i) slot(head_ + i)->~T();
    if (slots_) std::allocator<T>().deallocate(slots_, capacity_);
    slots_ = slots;
    capacity_ = capacity;
    head_ = 0;
  }

  T* slots_ = nullptr;
  std::size_t capacity_ = 0;  // 0 or a power of two
  std::size_t head_ = 0;      // position of the oldest item
  std::size_t size_ = 0;
};

}  // namespace green::detail

#endif  // GREEN_SYNC_RING_BUFFER_H_
