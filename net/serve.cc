// The accept loop behind serve(): see serve.h for the semantics.
//
// Who runs where. The green thread that calls serve() is the acceptor; each
// client gets a green thread of its own (spawn_n). They share one
// ServeState (a shared_ptr, so that even a handler that outlives an
// interrupted serve() touches live memory). The acceptor parks in exactly
// two places -- accept's readiness wait and, at the concurrency limit, its
// WakeHook -- and both wake on the hook, which handlers signal when they
// stop the server or free a slot at the limit. No interrupt is sent to
// the acceptor for that, so an interrupt meant for it (kill, Timeout) is
// never confused with one of ours.
//
// Accounting. `active_` counts reserved slots: the acceptor reserves one
// before accepting and hands it to the client's green thread, whose
// ClientTicket gives it back when destroyed -- after the handler ran, or
// with the never-started task if the runtime killed it first -- so the
// count cannot leak and the drain at the end cannot hang on a lost slot.
// Running handlers link an intrusive node (on their own stack) into the
// state so that serve() can kill them; the node is unlinked under the
// lock before the green thread ends.
#include "net/serve.h"

#include <netinet/in.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "net/errors.h"
#include "runtime/green_thread.h"
#include "runtime/park.h"
#include "runtime/scheduler.h"
#include "runtime/worker.h"
#include "sync/timeout.h"

namespace green::net::detail {
namespace {

// Back-off after EMFILE and friends: Go's net/http values.
constexpr auto kFirstBackoff = std::chrono::milliseconds(5);
constexpr auto kMaxBackoff = std::chrono::seconds(1);

bool out_of_descriptors(const std::error_code& code) {
  if (code.category() != std::system_category()) return false;
  const int error = code.value();
  return error == EMFILE || error == ENFILE || error == ENOBUFS ||
         error == ENOMEM;
}

void report_to_stderr(std::exception_ptr error, const std::string& where) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "green::net::serve: %s: %s\n", where.c_str(),
                 e.what());
  } catch (...) {
    std::fprintf(stderr, "green::net::serve: %s: non-standard exception\n",
                 where.c_str());
  }
}

// A running handler, linked into ServeState so that serve() can kill it.
struct HandlerNode {
  rt::Fiber* fiber = nullptr;
  HandlerNode* prev = nullptr;
  HandlerNode* next = nullptr;
};

class ServeState {
 public:
  ServeState(ClientMain client_main, const ServeOptions& options)
      : client_main_(std::move(client_main)),
        concurrency_(options.concurrency),
        kill_others_on_error_(options.handler_errors == HandlerErrors::kStop),
        report_(options.report ? options.report : report_to_stderr) {}

  enum class Stop { kNone, kStopServe, kError };

  WakeHook& acceptor() noexcept { return acceptor_; }
  ClientMain& client_main() noexcept { return client_main_; }
  bool kill_others_on_error() const noexcept { return kill_others_on_error_; }

  // Throws only an interrupt (GreenletExit, green::Timeout) that reached
  // the hook while it blocked: that one is meant for the green thread
  // (serve() itself, or a handler), and swallowing it here would let a
  // killed serve() go on accepting.
  void report(std::exception_ptr error, const std::string& where) {
    try {
      report_(std::move(error), where);
    } catch (...) {
      green::detail::rethrow_if_interrupt();
      // Anything else a report hook throws must not take the server down.
    }
  }

  Stop stop_reason() {
    std::lock_guard<rt::SpinLock> guard(lock_);
    return stop_;
  }
  std::exception_ptr error() {
    std::lock_guard<rt::SpinLock> guard(lock_);
    return error_;
  }

  // A handler asks the server to stop (the first reason wins).
  void stop(Stop reason, std::exception_ptr error) {
    {
      std::lock_guard<rt::SpinLock> guard(lock_);
      if (stop_ == Stop::kNone) {
        stop_ = reason;
        error_ = std::move(error);
      }
    }
    acceptor_.signal();
  }

  // The acceptor takes a slot, or learns that it must wait for one.
  bool reserve_slot() {
    std::lock_guard<rt::SpinLock> guard(lock_);
    if (active_ < concurrency_) {
      ++active_;
      return true;
    }
    acceptor_wants_slot_ = true;
    return false;
  }

  // Gives a slot back (a handler ended, or the acceptor did not use it).
  void release_slot() noexcept {
    bool wake_acceptor;
    {
      std::lock_guard<rt::SpinLock> guard(lock_);
      --active_;
      wake_acceptor = std::exchange(acceptor_wants_slot_, false);
      if (active_ == 0) idle_.notify_all();
    }
    if (wake_acceptor) acceptor_.signal();
  }

  // A handler's green thread starts: false if serve() is already killing
  // its handlers (then it must not run the handler).
  bool link(HandlerNode& node) {
    std::lock_guard<rt::SpinLock> guard(lock_);
    if (killing_) return false;
    node.next = handlers_;
    if (handlers_) handlers_->prev = &node;
    handlers_ = &node;
    return true;
  }

  void unlink(HandlerNode& node) noexcept {
    std::lock_guard<rt::SpinLock> guard(lock_);
    (node.prev ? node.prev->next : handlers_) = node.next;
    if (node.next) node.next->prev = node.prev;
  }

  // Kills every running handler (GreenletExit at its blocking point) and
  // keeps new ones from starting theirs.
  void kill_handlers() {
    std::vector<rt::FiberRef> running;
    {
      std::lock_guard<rt::SpinLock> guard(lock_);
      killing_ = true;
      for (HandlerNode* node = handlers_; node; node = node->next) {
        running.emplace_back(node->fiber);
      }
    }
    for (rt::FiberRef& fiber : running) fiber->request_kill();
  }

  // Waits until no slot is taken; false if `deadline` passed first.
  bool wait_idle(Deadline deadline) {
    std::unique_lock<rt::SpinLock> lock(lock_);
    while (active_ > 0) {
      rt::Waiter waiter;
      if (rt::block_on(idle_, lock, waiter, deadline) ==
              rt::WakeReason::kTimedOut &&
          active_ > 0) {
        return false;
      }
    }
    return true;
  }

 private:
  ClientMain client_main_;
  const std::size_t concurrency_;
  const bool kill_others_on_error_;
  const std::function<void(std::exception_ptr, const std::string&)> report_;
  WakeHook acceptor_;

  rt::SpinLock lock_;
  std::size_t active_ GREEN_GUARDED_BY(lock_) = 0;
  bool acceptor_wants_slot_ GREEN_GUARDED_BY(lock_) = false;
  Stop stop_ GREEN_GUARDED_BY(lock_) = Stop::kNone;
  std::exception_ptr error_ GREEN_GUARDED_BY(lock_);
  bool killing_ GREEN_GUARDED_BY(lock_) = false;
  HandlerNode* handlers_ GREEN_GUARDED_BY(lock_) = nullptr;
  rt::WaitList idle_ GREEN_GUARDED_BY(lock_);
};

// What a client's green thread owns: its slot and its fd. Both are given
// back by the destructor, whether or not the green thread ever ran.
class ClientTicket {
 public:
  ClientTicket(std::shared_ptr<ServeState> state, const AcceptedFd& accepted)
      : state_(std::move(state)), accepted_(accepted) {}
  ClientTicket(ClientTicket&& other) noexcept
      : state_(std::move(other.state_)), accepted_(other.accepted_) {
    other.accepted_.fd = -1;
  }
  ClientTicket& operator=(ClientTicket&&) = delete;
  ~ClientTicket() {
    if (accepted_.fd >= 0) ::close(accepted_.fd);
    if (state_) state_->release_slot();
  }

  void run() {
    HandlerNode node;
    node.fiber = rt::current_fiber();
    if (!state_->link(node)) return;
    // Unlinked however run() ends: the report hook may block and be killed
    // (GreenletExit), and a node left linked would be a pointer into a
    // stack that the next green thread reuses.
    struct Unlink {
      ServeState& state;
      HandlerNode& node;
      ~Unlink() { state.unlink(node); }
    } unlink{*state_, node};
    bool stop = false;
    std::exception_ptr failure;
    try {
      state_->client_main()(accepted_);
    } catch (const StopServe&) {
      stop = true;
    } catch (const GreenletExit&) {
      // Killed (by serve() shutting down, or by the runtime): normal.
    } catch (...) {
      failure = std::current_exception();
    }
    // Outside the handlers: the report hook may block (see serve_loop).
    if (stop) state_->stop(ServeState::Stop::kStopServe, nullptr);
    if (failure) handler_failed(std::move(failure));
  }

 private:
  void handler_failed(std::exception_ptr error) {
    if (state_->kill_others_on_error()) {
      state_->stop(ServeState::Stop::kError, std::move(error));
    } else {
      state_->report(
          std::move(error),
          "handler for " + describe_peer(accepted_.address, accepted_.length));
    }
  }

  std::shared_ptr<ServeState> state_;
  AcceptedFd accepted_;
};

// Ends the handlers after the accept loop: kill, then wait for all of them.
void kill_and_drain(ServeState& state) {
  state.kill_handlers();
  state.wait_idle(std::nullopt);
}

}  // namespace

std::string describe_peer(const sockaddr_storage& address, socklen_t length) {
  if (address.ss_family == AF_INET || address.ss_family == AF_INET6) {
    Endpoint endpoint;
    std::memcpy(endpoint.data(), &address, length);
    endpoint.resize(length);
    return to_string(endpoint);
  }
  if (address.ss_family == AF_UNIX) {
    const auto& un = reinterpret_cast<const sockaddr_un&>(address);
    const std::size_t path_length =
        length > offsetof(sockaddr_un, sun_path)
            ? length - offsetof(sockaddr_un, sun_path)
            : 0;
    if (path_length == 0) return "unix peer (unnamed)";
    return "unix peer " +
           std::string(un.sun_path, strnlen(un.sun_path, path_length));
  }
  return "unknown peer";
}

void serve_loop(IoHandle& listener, ClientMain client_main,
                const ServeOptions& options) {
  if (!rt::current_fiber()) {
    throw std::logic_error(
        "green::net::serve called outside a green thread; call it from "
        "code started by green::run()");
  }
  if (options.concurrency == 0) {
    throw std::invalid_argument(
        "green::net::serve: ServeOptions::concurrency must be at least 1");
  }
  auto state = std::make_shared<ServeState>(std::move(client_main), options);
  rt::Scheduler& scheduler = rt::current_worker()->scheduler();
  std::size_t next_worker = 0;
  auto backoff =
      std::chrono::duration_cast<std::chrono::nanoseconds>(kFirstBackoff);
  bool exhaustion_reported = false;
  // Nothing below parks inside a catch handler: the C++ runtime keeps the
  // "currently caught" exceptions per OS thread, and a green thread that
  // parks there may resume on another worker, where `throw;` and the end
  // of the handler would find that thread's list instead (README,
  // "Exceptions and blocking"). Exceptions are taken out as exception_ptr
  // and dealt with after the handler.
  std::exception_ptr failure;
  try {
    // The acceptor holds the listener's read slot while it accepts: a
    // second serve() or accept() on it is an error, not a silent race. It
    // lets go before draining, so once a kill() of serve() has returned the
    // caller may close or destroy the listener.
    IoHandle::Use use(listener, Direction::kRead, "serve");
    while (state->stop_reason() == ServeState::Stop::kNone) {
      if (!state->reserve_slot()) {
        state->acceptor().wait(std::nullopt);
        continue;
      }
      // The slot goes back unless a client's ticket takes it over -- also
      // when accept() is interrupted (kill, Timeout) or fails.
      struct SlotGuard {
        ServeState* state;
        ~SlotGuard() {
          if (state) state->release_slot();
        }
      } slot{state.get()};
      AcceptedFd accepted;
      std::optional<int> fd;
      std::exception_ptr exhausted;
      try {
        fd = accept_fd(listener, accepted.address, accepted.length,
                       std::nullopt, &state->acceptor(), "serve");
      } catch (const std::system_error& e) {
        if (!out_of_descriptors(e.code())) throw;
        exhausted = std::current_exception();
      }
      if (exhausted) {
        if (!exhaustion_reported) {
          exhaustion_reported = true;
          state->report(exhausted,
                        "accept is out of file descriptors; backing off "
                        "(up to 1 s) and retrying; reported once");
        }
        state->release_slot();
        slot.state = nullptr;
        state->acceptor().wait(std::chrono::steady_clock::now() + backoff);
        backoff = std::min<std::chrono::nanoseconds>(backoff * 2, kMaxBackoff);
        continue;
      }
      if (!fd) continue;
      backoff = kFirstBackoff;
      accepted.fd = *fd;
      if (options.spread_across_workers) {
        accepted.home =
            &scheduler.worker(next_worker++ % scheduler.worker_count())
                 .poller();
      }
      slot.state = nullptr;
      ClientTicket ticket(state, accepted);  // owns the slot and the fd now
      green::spawn_n([ticket = std::move(ticket)]() mutable { ticket.run(); });
    }
  } catch (...) {
    failure = std::current_exception();
  }
  if (failure) {
    // Interrupted (kill, Timeout) or the listener failed for good (closed,
    // say). If the drain is interrupted too, the handlers still end on
    // their own: they share the state, not our frame.
    kill_and_drain(*state);
    std::rethrow_exception(failure);
  }
  if (state->stop_reason() == ServeState::Stop::kStopServe) {
    if (!state->wait_idle(std::chrono::steady_clock::now() +
                          options.stop_grace)) {
      kill_and_drain(*state);
    }
    return;
  }
  kill_and_drain(*state);
  std::rethrow_exception(state->error());
}

}  // namespace green::net::detail
