// Sanitizer annotations for stack switches, kept in one place so the asan
// and tsan builds share the same switch code (runtime/fiber.cc and
// runtime/worker.cc call these at every switch; they compile to nothing in
// a plain build).
//
// ThreadSanitizer: every green thread is a TSan "fiber"; call
// tsan_switch(target) immediately before each resume(). The one exception
// is a fiber's end: Boost.Context runs instrumented frames of the dead
// fiber after its function returns (fiber_record::run, fiber_entry), so the
// worker switches TSan back right after resume() returns instead, and only
// then destroys the TSan fiber (destroying it while TSan still believes it
// runs there crashes inside TSan; ../shared/notes/sanitizers.md).
//
// AddressSanitizer: asan_start_switch() before a switch names the stack we
// go to; asan_finish_switch() right after arriving reports the stack we
// came from. A fiber that ends passes a null fake-stack slot so ASan frees
// its fake frames. detect_stack_use_after_return is kept off in .bazelrc:
// its per-thread fake stack does not follow a fiber that migrates.
#ifndef GREEN_RUNTIME_SANITIZER_HOOKS_H_
#define GREEN_RUNTIME_SANITIZER_HOOKS_H_

#include <cstddef>

#if defined(__SANITIZE_THREAD__)
#define GREEN_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define GREEN_TSAN 1
#endif
#endif

#if defined(__SANITIZE_ADDRESS__)
#define GREEN_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GREEN_ASAN 1
#endif
#endif

#if defined(GREEN_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(GREEN_ASAN)
#include <sanitizer/common_interface_defs.h>
#endif

namespace green::detail {

inline void* tsan_current_fiber() noexcept {
#if defined(GREEN_TSAN)
  return __tsan_get_current_fiber();
#else
  return nullptr;
#endif
}

inline void* tsan_create_fiber() noexcept {
#if defined(GREEN_TSAN)
  return __tsan_create_fiber(0);
#else
  return nullptr;
#endif
}

inline void tsan_switch(void* target) noexcept {
#if defined(GREEN_TSAN)
  __tsan_switch_to_fiber(target, 0);
#else
  (void)target;
#endif
}

inline void tsan_destroy_fiber(void* fiber) noexcept {
#if defined(GREEN_TSAN)
  if (fiber) __tsan_destroy_fiber(fiber);
#else
  (void)fiber;
#endif
}

inline void asan_start_switch(void** fake_stack_save, const void* bottom,
                              std::size_t size) noexcept {
#if defined(GREEN_ASAN)
  __sanitizer_start_switch_fiber(fake_stack_save, bottom, size);
#else
  (void)fake_stack_save, (void)bottom, (void)size;
#endif
}

inline void asan_finish_switch(void* fake_stack_save, const void** old_bottom,
                               std::size_t* old_size) noexcept {
#if defined(GREEN_ASAN)
  __sanitizer_finish_switch_fiber(fake_stack_save, old_bottom, old_size);
#else
  (void)fake_stack_save, (void)old_bottom, (void)old_size;
#endif
}

// What the annotations remember per green thread (runtime/fiber.h holds
// one). Empty in a plain build, where [[no_unique_address]] makes it free:
// the control block is 32 bytes smaller, which is a tenth of its memory.
struct FiberAnnotations {
#if defined(GREEN_TSAN) || defined(GREEN_ASAN)
  void* tsan_fiber = nullptr;
  void* asan_fake_stack = nullptr;
  const void* asan_worker_stack_bottom = nullptr;
  std::size_t asan_worker_stack_size = 0;
#endif
};

// The same hooks, for a green thread's side of the switch.
inline void tsan_create_fiber(FiberAnnotations& fiber) noexcept {
#if defined(GREEN_TSAN)
  fiber.tsan_fiber = tsan_create_fiber();
#else
  (void)fiber;
#endif
}

inline void tsan_switch(FiberAnnotations& fiber) noexcept {
#if defined(GREEN_TSAN)
  tsan_switch(fiber.tsan_fiber);
#else
  (void)fiber;
#endif
}

inline void tsan_destroy_fiber(FiberAnnotations& fiber) noexcept {
#if defined(GREEN_TSAN)
  tsan_destroy_fiber(fiber.tsan_fiber);
  fiber.tsan_fiber = nullptr;
#else
  (void)fiber;
#endif
}

// The green thread switches to its worker; `ending`: for the last time.
inline void asan_start_switch_to_worker(FiberAnnotations& fiber,
                                        bool ending) noexcept {
#if defined(GREEN_ASAN)
  asan_start_switch(ending ? nullptr : &fiber.asan_fake_stack,
                    fiber.asan_worker_stack_bottom,
                    fiber.asan_worker_stack_size);
#else
  (void)fiber, (void)ending;
#endif
}

// The green thread runs again, maybe on another worker: learn that
// worker's stack for the next switch. `first`: its first run.
inline void asan_finish_switch_from_worker(FiberAnnotations& fiber,
                                           bool first) noexcept {
#if defined(GREEN_ASAN)
  asan_finish_switch(first ? nullptr : fiber.asan_fake_stack,
                     &fiber.asan_worker_stack_bottom,
                     &fiber.asan_worker_stack_size);
#else
  (void)fiber, (void)first;
#endif
}

}  // namespace green::detail

#endif  // GREEN_RUNTIME_SANITIZER_HOOKS_H_
