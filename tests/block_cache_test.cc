// Tests for BlockCache (runtime/block_cache.h): reuse on one worker, size
// classes, blocks moving from the worker that frees them to the one that
// allocates in whole magazines, the Depot's bound, and a two-thread
// hand-off stress for TSan. The Depot is process-wide, so each test counts
// only blocks it freed itself.
#include "runtime/block_cache.h"

#include <malloc.h>
#include <tbb/scalable_allocator.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "catch2/catch.hpp"

namespace green::detail {
namespace {

constexpr std::size_t kPerMagazine = BlockCache::kMagazineSize;

// What a block really holds. Under ThreadSanitizer the cache allocates
// with malloc (block_cache.h), elsewhere with oneTBB.
std::size_t usable_size(void* block) {
#if defined(__SANITIZE_THREAD__)
  return malloc_usable_size(block);
#else
  return scalable_msize(block);
#endif
}
constexpr std::size_t kDepotBlocks =
    BlockCache::kMaxFullMagazines * BlockCache::kMagazineSize;

TEST_CASE("BlockCache reuses the block freed last, within a size class",
          "[block_cache]") {
  BlockCache cache;
  void* first = cache.allocate(200);
  std::memset(first, 0xab, 256);  // the whole class: 193-256 bytes
  cache.deallocate(first, 200);
  CHECK(cache.allocate(250) == first);  // same class, most recent first
  cache.deallocate(first, 250);
  void* other_class = cache.allocate(100);  // 65-128: not that block
  CHECK(other_class != first);
  cache.deallocate(other_class, 100);
  // Beyond the largest class: straight to oneTBB and back.
  void* big = cache.allocate(BlockCache::kMaxCachedSize + 1);
  std::memset(big, 0, BlockCache::kMaxCachedSize + 1);
  cache.deallocate(big, BlockCache::kMaxCachedSize + 1);
  cache.flush();
}

TEST_CASE("A block allocated without a cache serves its whole class later",
          "[block_cache]") {
  // A green thread spawned from a plain thread is allocated there and
  // freed on a worker, into that worker's magazine; the block must then
  // be big enough for any request of its class.
  void* block = BlockCache::allocate_uncached(130);  // class 129-192
  CHECK(usable_size(block) >= 192);
  BlockCache cache;
  cache.deallocate(block, 130);
  void* reused = cache.allocate(192);
  CHECK(reused == block);
  cache.deallocate(reused, 192);
}

TEST_CASE("Blocks freed on one thread are allocated on another, bounded",
          "[block_cache]") {
  constexpr std::size_t kBlocks = 10000;
  constexpr std::size_t kSize = 448;  // a class no other test uses
  std::vector<void*> blocks;
  std::thread([&] {
    BlockCache allocating;
    for (std::size_t i = 0; i < kBlocks; ++i) {
      blocks.push_back(allocating.allocate(kSize));
    }
  }).join();
  const std::set<void*> freed(blocks.begin(), blocks.end());
  REQUIRE(freed.size() == kBlocks);
  std::thread([&] {
    BlockCache freeing;
    for (void* block : blocks) freeing.deallocate(block, kSize);
    // The magazine still held here goes to the Depot only if it has room
    // (it does not: the Depot filled up long ago), else back to oneTBB.
  }).join();
  std::vector<void*> again;
  std::thread([&] {
    BlockCache allocating;
    for (std::size_t i = 0; i < kDepotBlocks + kPerMagazine; ++i) {
      again.push_back(allocating.allocate(kSize));
    }
    for (void* block : again) allocating.deallocate(block, kSize);
  }).join();
  // The Depot kept its limit of full magazines, the first kDepotBlocks
  // blocks freed, 64 to a magazine; it hands the newest magazine out
  // first, and a magazine gives its newest block first: in all, exactly
  // the reverse order of those frees. The rest went back to oneTBB.
  std::vector<void*> expected(blocks.rend() - kDepotBlocks, blocks.rend());
  CHECK(std::vector<void*>(again.begin(), again.begin() + kDepotBlocks) ==
        expected);
}

TEST_CASE("Two threads hand blocks to each other without losing one",
          "[block_cache]") {
  // Thread A allocates and fills blocks, thread B checks and frees them,
  // and the other way round: both caches trade magazines through the
  // Depot all along (TSan checks the hand-offs).
  constexpr int kRounds = 20000;
  std::mutex mutex;
  std::vector<std::pair<void*, int>> a_to_b, b_to_a;
  int checked_by_a = 0, checked_by_b = 0;
  auto run = [&mutex](std::vector<std::pair<void*, int>>& out,
                      std::vector<std::pair<void*, int>>& in, int& checked,
                      int seed) {
    BlockCache cache;  // trades magazines with the Depot as it goes
    for (int i = 0; i < kRounds; ++i) {
      void* block = cache.allocate(96);
      const int tag = seed + i;
      std::memcpy(block, &tag, sizeof tag);
      std::vector<std::pair<void*, int>> received;
      {
        std::lock_guard<std::mutex> guard(mutex);
        out.emplace_back(block, tag);
        received.swap(in);
      }
      for (auto& [pointer, expected] : received) {
        int seen;
        std::memcpy(&seen, pointer, sizeof seen);
        checked += seen == expected;
        cache.deallocate(pointer, 96);
      }
    }
  };
  std::thread a([&] { run(a_to_b, b_to_a, checked_by_a, 0); });
  std::thread b([&] { run(b_to_a, a_to_b, checked_by_b, 1 << 20); });
  a.join();
  b.join();
  // What is left in flight was never received; free it here.
  BlockCache rest;
  for (auto* list : {&a_to_b, &b_to_a}) {
    for (auto& [pointer, expected] : *list) {
      int seen;
      std::memcpy(&seen, pointer, sizeof seen);
      CHECK(seen == expected);
      rest.deallocate(pointer, 96);
    }
  }
  CHECK(checked_by_a + checked_by_b + int(a_to_b.size() + b_to_a.size()) ==
        2 * kRounds);
}

}  // namespace
}  // namespace green::detail
