// Options for green::run().
#ifndef GREEN_RUNTIME_OPTIONS_H_
#define GREEN_RUNTIME_OPTIONS_H_

#include <cstddef>
#include <optional>

namespace green {

// Default stack of a green thread. 64 KiB of address space, committed only
// as touched (a parked green thread typically touches one page). Boost's own
// skynet example crashed with 8 KiB stacks (../shared/notes/peers.md), and
// sanitizers grow every frame, so their builds get 256 KiB.
#if defined(GREEN_SANITIZER_STACKS)
inline constexpr std::size_t kDefaultStackSize = 256 * 1024;
#else
inline constexpr std::size_t kDefaultStackSize = 64 * 1024;
#endif

struct Options {
  // Worker OS threads; 0 means std::thread::hardware_concurrency().
  std::size_t workers = 0;
  // Stack size of every green thread unless spawn() says otherwise.
  std::size_t stack_size = kDefaultStackSize;
  // How many stacks may get their own guard page (each costs two of the
  // kernel's vm.max_map_count mappings). Unset: a quarter of that limit's
  // mappings, i.e. max_map_count / 8 stacks. Stacks beyond it come from
  // slabs and are checked by a canary at every switch instead. 0 disables
  // guard pages. See README, "Stacks".
  std::optional<std::size_t> guarded_stacks;
};

// Per-spawn options: spawn(SpawnOptions{.stack_size = 1 << 20}, f, args...).
struct SpawnOptions {
  // 0: the runtime's Options::stack_size.
  std::size_t stack_size = 0;
};

}  // namespace green

#endif  // GREEN_RUNTIME_OPTIONS_H_
