// BlockCache and its Depot: see block_cache.h.
#include "runtime/block_cache.h"

#include <tbb/scalable_allocator.h>

#include <atomic>
#include <cassert>
#include <cstdlib>
#include <mutex>
#include <new>

#include "runtime/sanitizer_hooks.h"  // GREEN_TSAN
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"

namespace green::detail {

namespace {

// oneTBB is not instrumented: a block one thread frees and another gets
// back from scalable_malloc (or carved out of a recycled slab) would look,
// to ThreadSanitizer, like memory shared with no synchronisation. Under
// TSan the cache sits on malloc, which TSan understands, instead.
void* tbb_malloc(std::size_t size) noexcept {
#if defined(GREEN_TSAN)
  return std::malloc(size);
#else
  return scalable_malloc(size);
#endif
}

void tbb_free(void* block) noexcept {
#if defined(GREEN_TSAN)
  std::free(block);
#else
  scalable_free(block);
#endif
}

}  // namespace

struct Magazine {
  Magazine* next = nullptr;  // in a Depot stack
  std::uint32_t count = 0;   // blocks[0, count) hold blocks
  void* blocks[BlockCache::kMagazineSize];
};

namespace {

constexpr std::size_t class_of(std::size_t size) noexcept {
  return size == 0 ? 0 : (size - 1) / BlockCache::kClassGranularity;
}

constexpr std::size_t class_size(std::size_t size_class) noexcept {
  return (size_class + 1) * BlockCache::kClassGranularity;
}

Magazine* new_magazine() noexcept {
  void* memory = tbb_malloc(sizeof(Magazine));
  return memory ? new (memory) Magazine : nullptr;
}

// Gives the magazine's blocks back to oneTBB; it stays, empty.
void free_blocks(Magazine* magazine) noexcept {
  for (std::uint32_t i = 0; i < magazine->count; ++i) {
    tbb_free(magazine->blocks[i]);
  }
  magazine->count = 0;
}

void free_magazine(Magazine* magazine) noexcept {
  free_blocks(magazine);
  tbb_free(magazine);
}

// Magazines in transit between workers, per size class (invariant 3).
class Depot {
 public:
  static Depot& instance() noexcept {
    // Built in static storage, never destroyed: a worker may flush into it
    // during static destruction, and what it holds stays reachable until
    // exit. No allocation, so first use cannot fail.
    alignas(Depot) static unsigned char storage[sizeof(Depot)];
    static Depot* const depot = new (storage) Depot;
    return *depot;
  }

  // A full magazine, or nullptr.
  Magazine* take_full(std::size_t size_class) noexcept {
    return classes_[size_class].take(/*full=*/true);
  }
  // An empty magazine, or nullptr.
  Magazine* take_empty(std::size_t size_class) noexcept {
    return classes_[size_class].take(/*full=*/false);
  }
  // Keeps `magazine` if there is room; false if the caller keeps it.
  bool give(std::size_t size_class, Magazine* magazine) noexcept {
    return classes_[size_class].give(magazine);
  }

 private:
  struct Stack {
    Magazine* head = nullptr;
    std::size_t count = 0;
  };
  // Own cache lines: workers allocating in one class do not slow another.
  class alignas(64) Class {
   public:
    Magazine* take(bool full) noexcept GREEN_EXCLUDES(lock_) {
      // A worker that allocates faster than others free (a spawn storm)
      // finds the Depot empty every time: it must not pay the lock too.
      // relaxed: a hint; the lock below decides.
      if (full && full_count_.load(std::memory_order_relaxed) == 0) {
        return nullptr;
      }
      std::lock_guard<SpinLock> guard(lock_);
      Stack& stack = full ? full_ : empty_;
      Magazine* const magazine = stack.head;
      if (magazine != nullptr) {
        stack.head = magazine->next;
        --stack.count;
        magazine->next = nullptr;
        if (full) full_count_.store(stack.count, std::memory_order_relaxed);
      }
      return magazine;
    }
    bool give(Magazine* magazine) noexcept GREEN_EXCLUDES(lock_) {
      const bool full = magazine->count > 0;
      std::lock_guard<SpinLock> guard(lock_);
      Stack& stack = full ? full_ : empty_;
      if (stack.count >= (full ? BlockCache::kMaxFullMagazines
                               : BlockCache::kMaxEmptyMagazines)) {
        return false;
      }
      magazine->next = stack.head;
      stack.head = magazine;
      ++stack.count;
      // relaxed: a hint for take(), written under lock_ only.
      if (full) full_count_.store(stack.count, std::memory_order_relaxed);
      return true;
    }

   private:
    SpinLock lock_;
    // "full" holds magazines with at least one block (a flush may give
    // back a partly used one); "empty" holds magazines with none.
    Stack full_ GREEN_GUARDED_BY(lock_);
    Stack empty_ GREEN_GUARDED_BY(lock_);
    std::atomic<std::size_t> full_count_{0};  // full_.count, read unlocked
  };

  Class classes_[BlockCache::kClasses];
};

}  // namespace

void* BlockCache::allocate(std::size_t size) {
  const std::size_t size_class = class_of(size);
  if (size_class < kClasses) {
    Magazine*& magazine = magazines_[size_class];
    if (magazine == nullptr || magazine->count == 0) {
      Depot& depot = Depot::instance();
      if (Magazine* full = depot.take_full(size_class)) {
        if (magazine != nullptr && !depot.give(size_class, magazine)) {
          free_magazine(magazine);
        }
        magazine = full;
      }
    }
    if (magazine != nullptr && magazine->count > 0) {
      return magazine->blocks[--magazine->count];
    }
  }
  return allocate_uncached(size);  // its class's size: invariant 1
}

void* BlockCache::allocate_uncached(std::size_t size) {
  const std::size_t size_class = class_of(size);
  if (size_class < kClasses) size = class_size(size_class);
  if (void* block = tbb_malloc(size)) return block;
  throw std::bad_alloc();
}

void BlockCache::deallocate(void* block, std::size_t size) noexcept {
  const std::size_t size_class = class_of(size);
  if (size_class >= kClasses) {
    tbb_free(block);
    return;
  }
  Magazine*& magazine = magazines_[size_class];
  if (magazine != nullptr && magazine->count == kMagazineSize) {
    Depot& depot = Depot::instance();
    if (depot.give(size_class, magazine)) {
      magazine = depot.take_empty(size_class);
    } else {
      // The Depot is full: nobody needs blocks of this class now. Give
      // this magazine's blocks back to oneTBB and start it over.
      free_blocks(magazine);
    }
  }
  if (magazine == nullptr && (magazine = new_magazine()) == nullptr) {
    tbb_free(block);  // no memory for a magazine: do without
    return;
  }
  magazine->blocks[magazine->count++] = block;
}

void BlockCache::flush() noexcept {
  Depot& depot = Depot::instance();
  for (std::size_t size_class = 0; size_class < kClasses; ++size_class) {
    Magazine*& magazine = magazines_[size_class];
    if (magazine == nullptr) continue;
    if (!depot.give(size_class, magazine)) free_magazine(magazine);
    magazine = nullptr;
  }
}

}  // namespace green::detail
