// Clang thread-safety annotations (no-ops elsewhere).
//
// Fields guarded by a lock say so with GREEN_GUARDED_BY; functions that must
// be called with a lock held say GREEN_REQUIRES. A clang build with
// -Wthread-safety checks them; gcc ignores them.
#ifndef GREEN_RUNTIME_THREAD_ANNOTATIONS_H_
#define GREEN_RUNTIME_THREAD_ANNOTATIONS_H_

#if defined(__clang__)
#define GREEN_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define GREEN_THREAD_ANNOTATION(x)
#endif

#define GREEN_CAPABILITY(x) GREEN_THREAD_ANNOTATION(capability(x))
#define GREEN_SCOPED_CAPABILITY GREEN_THREAD_ANNOTATION(scoped_lockable)
#define GREEN_GUARDED_BY(x) GREEN_THREAD_ANNOTATION(guarded_by(x))
#define GREEN_PT_GUARDED_BY(x) GREEN_THREAD_ANNOTATION(pt_guarded_by(x))
#define GREEN_REQUIRES(...) \
  GREEN_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define GREEN_EXCLUDES(...) GREEN_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define GREEN_ACQUIRE(...) \
  GREEN_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define GREEN_RELEASE(...) \
  GREEN_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define GREEN_TRY_ACQUIRE(...) \
  GREEN_THREAD_ANNOTATION(try_acquire_capability(__VA_ARGS__))
#define GREEN_NO_THREAD_SAFETY_ANALYSIS \
  GREEN_THREAD_ANNOTATION(no_thread_safety_analysis)

#endif  // GREEN_RUNTIME_THREAD_ANNOTATIONS_H_
