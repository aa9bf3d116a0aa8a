// Fiber: the control block of one green thread.
//
// A Fiber outlives its stack. It is created by spawn() without a stack
// (spawning is an allocation and a queue push, nothing more), gets a stack
// from the running worker's StackPool the first time a worker resumes it,
// and gives the stack back the moment its function ends. The control block
// itself lives on while anybody holds a reference: the scheduler (until the
// fiber has finished), GreenThread handles, and pending timers.
//
// Where a fiber lives, by phase (the low bits of `state_`):
//   kRunning  runnable or running: in exactly one run queue (a worker's
//             ring or run-next slot, or the global queue), or being run by
//             exactly one worker.
//   kParking  it has decided to block and is switching out; it may already
//             be linked into wait lists or have a timer armed.
//   kParked   switched out completely, in no run queue; wait lists and
//             timers may hold it.
//   kWoken    woken while still kParking; the worker that completes the
//             switch re-queues it (see commit_park()).
//
// The parking protocol (why a fiber is never resumed twice, nor before it
// has fully switched out): a fiber that blocks first calls begin_park(),
// which bumps the 32-bit park epoch and sets kParking, then registers the
// epoch wherever it may be woken from, then switches to its worker. Only
// after the switch has completed -- its continuation stored in `context_` --
// does the worker call commit_park(), which moves kParking -> kParked with
// a release CAS. A waker calls wake(epoch): it succeeds only for the current
// epoch and only once (a CAS on the same word), so stale wake-ups from a
// timer or a list the fiber has left are ignored. A wake that lands in
// kParking does not enqueue (the fiber is still on its way out); it leaves
// kWoken for commit_park() to see, and the worker enqueues the fiber after
// the switch. A wake that lands in kParked enqueues it itself; the acquire
// half of its CAS pairs with commit_park()'s release, so whoever dequeues
// the fiber sees `context_`. Either way exactly one party enqueues it.
//
// Interrupts (kill, Timeout) set kInterruptPending in the same word, so a
// fiber cannot slip into a park after an interrupt was posted: begin_park()
// refuses to park and throws instead. The payload lives under `lock_`.
#ifndef GREEN_RUNTIME_FIBER_H_
#define GREEN_RUNTIME_FIBER_H_

#include <atomic>
#include <boost/context/fiber.hpp>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#include "runtime/sanitizer_hooks.h"
#include "runtime/spin_lock.h"
#include "runtime/stack_pool.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"

namespace green::detail {

class Scheduler;
class LocalStorage;

// Why a parked fiber (or OS thread) was woken.
enum class WakeReason : std::uint8_t {
  kNone = 0,
  kNotified = 1,    // a wait list handed it what it waited for
  kTimedOut = 2,    // its deadline passed
  kInterrupted = 3  // kill() or a Timeout: an exception is pending
};

class Fiber {
 public:
  Fiber(const Fiber&) = delete;
  Fiber& operator=(const Fiber&) = delete;

  std::uint64_t id() const noexcept { return id_; }
  Scheduler& scheduler() const noexcept { return *scheduler_; }

  // --- References (any thread). ---
  void retain() noexcept {
    // relaxed: taking a new reference needs an existing one, which already
    // orders us after the object's construction.
    refs_.fetch_add(1, std::memory_order_relaxed);
  }
  void release() noexcept {
    // acq_rel: the last release must see every other owner's writes (the
    // acquire half) before it deletes; the others publish theirs (release).
    if (refs_.load(std::memory_order_acquire) == 1 ||
        refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      delete this;
    }
  }

  // --- Parking; called only by the fiber itself, on its own stack. ---
  // Starts a park and returns its epoch. Throws a pending interrupt instead
  // of parking. Takes this fiber's own lock_ on those paths, so the caller
  // must hold no lock that anybody holding it could wait for.
  std::uint32_t begin_park();
  // begin_park() for a caller that holds a lock -- a wait list's, perhaps
  // another fiber's lock_, as join() and kill() do: takes no lock of this
  // fiber's (two green threads killing each other would otherwise each
  // wait for the lock the other holds). Returns false, starting no park,
  // if an interrupt is pending or owed (shutdown began before the first
  // block); the caller lets go of its lock and calls raise_interrupt().
  // Kill waiters owed a release (an interrupt was raised since the last
  // blocking point) are the caller's to release once its lock is gone:
  // release_kill_waiters_if_owed().
  bool begin_park_holding_lock(std::uint32_t& epoch) noexcept;
  // Posts a kill owed by begin_park_holding_lock() and throws the pending
  // interrupt; returns only if there was none after all.
  void raise_interrupt();
  void release_kill_waiters_if_owed() noexcept;
  // Switches to the worker; returns once woken. Never throws: the caller
  // decides what an interrupt means after cleaning up (see WaitList).
  WakeReason park() noexcept;
  // Throws the pending interrupt, if any (kill, Timeout) -- unless it is
  // deferred (below): then it stays pending and the call returns.
  void throw_if_interrupted();
  // Whether the pending interrupt, if any, may be thrown now. It may not
  // while an exception unwinds more of the green thread's frames than were
  // unwinding where the interrupt belongs (std::uncaught_exceptions() is
  // per green thread): a destructor is running, and a throw from a
  // blocking call inside it would escape it and call std::terminate. A
  // kill belongs to depth 0, a Timeout to the depth where it was created
  // (so a Timeout inside such a destructor still works there). Deferred,
  // an interrupt lets the destructor's waits work as waits (one that comes
  // while parked wakes them early: a spurious wake-up for their callers)
  // and is raised at the first blocking point back at its depth -- or
  // dropped, if the green thread ends first. C++ cannot have two
  // exceptions in flight in one frame, where Python (Eventlet) would
  // replace the first. Also deferred inside a DeferInterrupts scope.
  bool interrupt_raisable() const noexcept {
    const std::uint64_t s = state_.load(std::memory_order_acquire);
    return (s & kInterruptPending) && !deferred(s);
  }
  // Defers the calling green thread's interrupts (as above) for a scope
  // that must not be cut short: Condition re-taking the user's lock, which
  // std::condition_variable promises is held however wait() ends. A no-op
  // on a plain thread. Not for long waits: a kill waits for it too.
  class DeferInterrupts {
   public:
    DeferInterrupts() noexcept;
    ~DeferInterrupts();
    DeferInterrupts(const DeferInterrupts&) = delete;
    DeferInterrupts& operator=(const DeferInterrupts&) = delete;

   private:
    Fiber* const fiber_;
  };
  // Gives up the worker for a moment: back of the run queue.
  void yield() noexcept;
  // Joins the registry that shutdown sweeps (scheduler.h) at the first
  // block (begin_park) or yield: a green thread that only ever yields must
  // be found and killed too.
  void ensure_registered() {
    if (!registered_) register_for_shutdown();
  }

  // --- Waking (any thread). ---
  // Wakes the fiber if it is still parked in `epoch` and nobody woke it
  // yet; returns whether this call did. `as_next` puts it into the waking
  // worker's run-next slot (a message was just handed to it).
  bool wake(std::uint32_t epoch, WakeReason reason, bool as_next) noexcept;
  // wake() in two steps, for a waker that must be done with a structure
  // (and its lock) before the woken fiber may run and destroy it:
  // claim() decides the wake -- later wakes, timers and interrupts no
  // longer wake the fiber -- but leaves it parked; release_claim() then
  // makes it runnable. Every successful claim() must be released.
  bool claim(std::uint32_t epoch, WakeReason reason) noexcept;
  void release_claim(bool as_next) noexcept;
  // Posts an interrupt; raised at the fiber's current or next blocking
  // point. A kill overrides a pending non-kill interrupt. `depth`: the
  // unwinding depth it belongs to (see interrupt_raisable; a Timeout
  // passes the std::uncaught_exceptions() of its creation).
  void interrupt(std::exception_ptr exception, bool is_kill,
                 unsigned depth = 0);
  // Posts a kill (GreenletExit) without waiting for it to be handled.
  void request_kill();
  // Takes back `exception` if it is still the pending, undelivered
  // interrupt (same exception object); returns whether it was. A Timeout
  // whose scope ends calls this so that a deadline which fired just
  // before cannot strike after the scope.
  bool withdraw_interrupt(const std::exception_ptr& exception) noexcept;
  // Like interrupt(GreenletExit) but only if the fiber has not started its
  // function yet; returns whether it had not.
  bool cancel_if_not_started();

  // --- Completion (any thread). ---
  bool finished() const noexcept {
    // acquire: pairs with the release in finish(); a reader that sees true
    // sees the result.
    return finished_.load(std::memory_order_acquire);
  }
  // Blocks the caller (green thread or OS thread) until finished().
  void join();
  // kill(): interrupt with GreenletExit, then wait until the target has
  // handled it and reached its next blocking point (or ended).
  void kill_and_wait();
  using LinkId = std::uint64_t;
  // Runs `callback` when the fiber ends (at once, in the caller, if it has).
  LinkId link(std::function<void()> callback);
  bool unlink(LinkId id);

  // Green-thread-local storage (green::local<T>), created on demand.
  LocalStorage& locals();

  // --- Called only by the worker that runs the fiber. ---
  // Completes a park after the switch; false if the fiber was woken while
  // switching out and must be re-queued by the caller.
  bool commit_park() noexcept;
  bool started_running() const noexcept { return static_cast<bool>(context_); }
  // Asks the CPU to bring `fiber`'s control block into cache, for writing:
  // the worker calls it for the green thread it will run next, so that a
  // block last touched on another core, or long ago, arrives while the
  // current one runs. Never faults, so `fiber` may be stale or freed.
  static void prefetch(const Fiber* fiber) noexcept {
    constexpr std::uintptr_t kLine = 64;
    const auto begin = reinterpret_cast<std::uintptr_t>(fiber) & ~(kLine - 1);
    const auto end = reinterpret_cast<std::uintptr_t>(fiber) + sizeof(Fiber);
    for (std::uintptr_t line = begin; line < end; line += kLine) {
      __builtin_prefetch(reinterpret_cast<const void*>(line), /*rw=*/1);
    }
  }

  // Control blocks come from the worker's BlockCache (block_cache.h) in
  // front of oneTBB's scalable allocator: a green thread is often spawned
  // on one worker and freed on another, and glibc then takes the
  // allocating arena's lock to free it (30% of spawn-join's samples at two
  // workers), oneTBB a cache miss per block. Derived classes (TaskImpl,
  // DetachedTask) inherit these; the destructor is virtual, so `size` is
  // the whole object's.
  static void* operator new(std::size_t size);
  static void operator delete(void* pointer, std::size_t size) noexcept;
  // A function whose captures need more than the default alignment (an
  // alignas(64) member, say): aligned oneTBB blocks, not cached.
  static void* operator new(std::size_t size, std::align_val_t alignment);
  static void operator delete(void* pointer, std::size_t size,
                              std::align_val_t alignment) noexcept;

 protected:
  Fiber(Scheduler& scheduler, std::uint64_t id, std::size_t stack_size);
  virtual ~Fiber();

  // Runs the user's function and stores its result.
  virtual void run() = 0;
  // Stores (or, with nobody to read it, reports) what escaped run().
  virtual void set_exception(std::exception_ptr exception) noexcept = 0;

 public:
  // spawn_after: sleep this long before the function starts. Set before
  // the fiber is submitted.
  void set_start_delay(std::chrono::nanoseconds delay) noexcept {
    start_delay_ = delay;
  }

 private:
  friend class Worker;

  // State word layout.
  static constexpr std::uint64_t kPhaseMask = 0x3;
  static constexpr std::uint64_t kRunning = 0, kParking = 1, kParked = 2,
                                 kWoken = 3;
  static constexpr int kReasonShift = 2;
  static constexpr std::uint64_t kReasonMask = 0x3ull << kReasonShift;
  static constexpr std::uint64_t kInterruptPending = 1ull << 4;
  // Set once the user's function is about to run (cancel() loses after it).
  static constexpr std::uint64_t kStarted = 1ull << 5;
  // A waker claimed the current park (claim()) and will release it.
  static constexpr std::uint64_t kClaimed = 1ull << 6;
  // The pending interrupt's depth (interrupt_raisable), saturated: set
  // with kInterruptPending, in the same word so the two never disagree.
  static constexpr int kRaiseDepthShift = 8;
  static constexpr std::uint64_t kRaiseDepthMask = 0xfull << kRaiseDepthShift;
  static constexpr unsigned kMaxRaiseDepth = 15;
  static constexpr int kEpochShift = 32;
  static_assert((kPhaseMask & kReasonMask) == 0 &&
                    ((kPhaseMask | kReasonMask) & kInterruptPending) == 0 &&
                    (kStarted >> kEpochShift) == 0 &&
                    (kClaimed >> kEpochShift) == 0 &&
                    (kRaiseDepthMask &
                     (kPhaseMask | kReasonMask | kInterruptPending | kStarted |
                      kClaimed)) == 0 &&
                    (kRaiseDepthMask >> kEpochShift) == 0,
                "state bits overlap");

  static std::uint32_t epoch_of(std::uint64_t s) noexcept {
    return static_cast<std::uint32_t>(s >> kEpochShift);
  }
  static WakeReason reason_of(std::uint64_t s) noexcept {
    return static_cast<WakeReason>((s & kReasonMask) >> kReasonShift);
  }
  static std::uint64_t with_reason(std::uint64_t s, WakeReason r) noexcept {
    return (s & ~kReasonMask) | (static_cast<std::uint64_t>(r) << kReasonShift);
  }

  // The body of the boost::context fiber: runs the function, finishes,
  // and returns to whichever worker resumed it last.
  boost::context::fiber entry(boost::context::fiber&& worker_context);
  // Marks the fiber finished and wakes joiners, kill waiters and links.
  void finish() noexcept;
  // finish(): forgets an interrupt posted too late to be raised.
  void drop_pending_interrupt_locked() noexcept GREEN_REQUIRES(lock_);
  // Clears the pending interrupt -- payload, kill flag and bit together --
  // and returns its payload (null if none). The one place they change
  // back, as post_interrupt() is the one place they are set.
  std::exception_ptr take_interrupt_locked() noexcept GREEN_REQUIRES(lock_);

 public:
  // For a fiber that never got a stack (the pool refused its size, or
  // memory ran out): stores `error` as its outcome and finishes it on the
  // calling worker's own stack; link callbacks that wait for it return.
  void finish_without_stack(std::exception_ptr error) noexcept;

 private:
  // True if no other thread can reach this fiber now (finish() then needs
  // no lock). Called only by the fiber itself.
  bool reachable_only_by_us() const noexcept;
  // Switches back to the worker that resumed this fiber.
  void switch_to_worker() noexcept;
  // After an interrupt was raised, the next blocking point (or the end)
  // releases kill() callers.
  void release_kill_waiters() noexcept;
  void enqueue(bool as_next) noexcept;
  // Whether the interrupt pending in state word `s` must wait (see
  // interrupt_raisable). Called only by the fiber itself.
  bool deferred(std::uint64_t s) const noexcept {
    if (defer_depth_ > 0) return true;
    const auto depth =
        static_cast<unsigned>((s & kRaiseDepthMask) >> kRaiseDepthShift);
    // kMaxRaiseDepth means "that deep or deeper": never deferred for depth
    // (a Timeout made 15 unwindings deep still fires in its own scope).
    if (depth >= kMaxRaiseDepth) return false;
    const auto unwinding = static_cast<unsigned>(std::uncaught_exceptions());
    return unwinding > depth;
  }
  // Sets the interrupt under lock_; `only_if_not_started` makes it fail
  // once the function started. Returns whether it was posted.
  bool post_interrupt(std::exception_ptr exception, bool is_kill,
                      bool only_if_not_started, unsigned depth = 0)
      GREEN_REQUIRES(lock_);

  // Laid out so that the fields every run touches come first and small
  // ones share words: with no padding left, a control block plus a small
  // closure fits oneTBB's 256-byte size class (it took 320 before), which
  // is a fifth less memory to fault in and to move between cores.
  Scheduler* const scheduler_;
  const std::uint64_t id_;
  const std::uint32_t stack_size_;  // 0: the pool's default
  std::atomic<int> refs_{1};        // the scheduler's, until finish
  std::atomic<std::uint64_t> state_{kRunning};
  std::atomic<bool> finished_{false};
  // Touched only by the fiber itself.
  bool interrupt_raised_ = false;  // release kill waiters at next park/end
  bool registered_ = false;        // in the scheduler's registry
  bool kill_owed_ = false;         // begin_park_holding_lock() saw shutdown
  std::uint8_t defer_depth_ = 0;   // DeferInterrupts scopes open
  SpinLock lock_;
  bool interrupt_is_kill_ GREEN_GUARDED_BY(lock_) = false;
  // The function has ended and its result is stored; links may be running
  // (finished_ is set after them).
  bool result_ready_ GREEN_GUARDED_BY(lock_) = false;

 public:
  // Intrusive links: run queues and the scheduler's registry of live
  // fibers. Touched only by the structure that currently holds the fiber.
  Fiber* queue_next = nullptr;
  Fiber* registry_prev = nullptr;
  Fiber* registry_next = nullptr;

 private:
  // Written by the worker after each switch out, read by the next worker
  // to resume the fiber; ordered by the parking protocol / run queues.
  boost::context::fiber context_;
  // While running: the worker context to switch back to.
  boost::context::fiber worker_context_;
  Stack stack_;
  // The C++ runtime's per-thread exception state (__cxa_get_globals: the
  // stack of exceptions being handled, the uncaught count) belongs to the
  // green thread, not the worker: one that parks inside a catch block and
  // comes back on another worker must find its exception there (else
  // `throw;` terminates and two such green threads corrupt each other).
  // Swapped in and out around every resume by Worker::run.
  struct ExceptionState {
    void* caught_exceptions = nullptr;
    unsigned int uncaught_exceptions = 0;
  };
  ExceptionState exception_state_;
  // Sanitizer bookkeeping for the switch annotations (sanitizer_hooks.h);
  // no bytes at all in a plain build.
  [[no_unique_address]] FiberAnnotations annotations_;

  // Joins the shutdown registry; true if shutdown has begun (the caller
  // then owes this fiber a kill).
  bool join_registry() noexcept;
  void register_for_shutdown();
  std::chrono::nanoseconds start_delay_{0};  // touched by the fiber only
  std::unique_ptr<LocalStorage> locals_;     // touched by the fiber only

  std::exception_ptr interrupt_ GREEN_GUARDED_BY(lock_);
  WaitList joiners_ GREEN_GUARDED_BY(lock_);
  WaitList kill_waiters_ GREEN_GUARDED_BY(lock_);
  std::vector<std::pair<LinkId, std::function<void()>>> links_
      GREEN_GUARDED_BY(lock_);
  LinkId next_link_id_ GREEN_GUARDED_BY(lock_) = 1;
};

// A counted reference to a Fiber.
class FiberRef {
 public:
  FiberRef() = default;
  explicit FiberRef(Fiber* fiber) noexcept : fiber_(fiber) {
    if (fiber_) fiber_->retain();
  }
  // Adopts a reference the caller already owns.
  static FiberRef adopt(Fiber* fiber) noexcept {
    FiberRef ref;
    ref.fiber_ = fiber;
    return ref;
  }
  FiberRef(const FiberRef& other) noexcept : FiberRef(other.fiber_) {}
  FiberRef(FiberRef&& other) noexcept
      : fiber_(std::exchange(other.fiber_, nullptr)) {}
  FiberRef& operator=(FiberRef other) noexcept {
    std::swap(fiber_, other.fiber_);
    return *this;
  }
  ~FiberRef() {
    if (fiber_) fiber_->release();
  }
  Fiber* get() const noexcept { return fiber_; }
  Fiber* operator->() const noexcept { return fiber_; }
  explicit operator bool() const noexcept { return fiber_ != nullptr; }

 private:
  Fiber* fiber_ = nullptr;
};

}  // namespace green::detail

#endif  // GREEN_RUNTIME_FIBER_H_
