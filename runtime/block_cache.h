// BlockCache: where green threads' control blocks come from and go back to.
//
// Why not oneTBB's allocator alone
// --------------------------------
// A control block (Fiber plus the function's captures, 100-500 bytes) is
// usually allocated on the worker that spawns and freed on the worker that
// ran the green thread. oneTBB hands such a block back to its owner through
// a linked "public free list" that the owner walks when it next allocates:
// a dependent cache miss per block, on memory the other core wrote. In
// spawn-join at 2 workers that was about a fifth of both workers' time
// (scalable_free pushing, the spawner's walk privatising).
//
// Magazines
// ---------
// Bonwick and Adams' magazine layer (the Solaris slab allocator; tcmalloc's
// transfer cache is the same idea): each worker keeps, per size class, one
// magazine -- an array of up to kMagazineSize blocks. A free pushes onto it,
// an allocation pops from it: no atomics, and the most recently freed block
// (the one most likely in cache) is reused first. A worker whose magazine is
// full hands it to a shared Depot and starts an empty one; a worker whose
// magazine is empty trades it for a full one from the Depot. One short
// critical section moves kMagazineSize blocks between workers, and no block
// is read on the way.
//
// Invariants
// ----------
//   1. Every block of a cacheable size, cached or not, is a oneTBB block of
//      at least its class size (class_size()): threads without a cache
//      allocate with allocate_uncached(), which rounds up the same way, so
//      a block they allocate may be cached when a worker frees it. Any
//      thread may free any block with scalable_free: non-workers, and
//      workers whose magazine has no room and whose Depot is full, do.
//   2. A magazine is owned by exactly one worker or by the Depot; the Depot
//      passes magazines under its lock, whose acquire/release also makes the
//      blocks' last contents (the freeing worker's writes) visible.
//   3. The Depot holds at most kMaxFullMagazines full and kMaxEmptyMagazines
//      empty magazines per class, so cached memory stays bounded: a few
//      hundred KiB per class in use, whatever the spawn rate.
//
// Sanitizer builds do not use the cache for green threads (Fiber's
// operator new/delete stay the global ones), so ASan and TSan keep seeing
// every allocation; under TSan the cache itself (its tests) sits on malloc
// and free instead of oneTBB, which TSan cannot see into.
#ifndef GREEN_RUNTIME_BLOCK_CACHE_H_
#define GREEN_RUNTIME_BLOCK_CACHE_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace green::detail {

struct Magazine;

class BlockCache {
 public:
  // Size classes of kClassGranularity bytes up to kMaxCachedSize; larger
  // blocks go straight to oneTBB.
  static constexpr std::size_t kClassGranularity = 64;
  static constexpr std::size_t kMaxCachedSize = 1024;
  static constexpr std::size_t kClasses = kMaxCachedSize / kClassGranularity;
  static constexpr std::uint32_t kMagazineSize = 64;
  static constexpr std::size_t kMaxFullMagazines = 16;
  static constexpr std::size_t kMaxEmptyMagazines = 16;

  BlockCache() noexcept = default;
  BlockCache(const BlockCache&) = delete;
  BlockCache& operator=(const BlockCache&) = delete;
  // Returns the magazines to the Depot (or frees them, if it is full).
  ~BlockCache() { flush(); }

  // A block of at least `size` bytes. Throws std::bad_alloc. Only the
  // owning worker's thread calls these two.
  void* allocate(std::size_t size);
  // `size`: the size that was asked of allocate() (or of oneTBB directly).
  void deallocate(void* block, std::size_t size) noexcept;
  // Gives every magazine back; the cache stays usable.
  void flush() noexcept;

  // For threads without a cache: a oneTBB block that a cache may take in
  // later (rounded up to its class size, invariant 1). Throws
  // std::bad_alloc. Free it with scalable_free or any cache's deallocate().
  static void* allocate_uncached(std::size_t size);

 private:
  std::array<Magazine*, kClasses> magazines_{};
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_BLOCK_CACHE_H_
