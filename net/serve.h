// serve(): one green thread per client (Eventlet's serve() and StopServe).
//
//   void handle(green::net::TcpSocket& client, const green::net::Endpoint&
//   peer) {
//     char buffer[4096];
//     while (std::size_t n = client.read_some(buffer, sizeof buffer)) {
//       client.write_all(buffer, n);
//     }
//   }  // returning closes the client
//
//   green::run([] {
//     green::net::serve(green::net::listen("0.0.0.0", 6000), handle);
//   });
//
// Semantics (Eventlet's, made safe for C++ lifetimes):
//   * Each accepted client runs `handler(socket, peer)` in its own green
//     thread (`handler(socket)` is accepted too). The socket is closed when
//     the handler returns; the handler may also move it away (wrap_ssl).
//     The handler object is shared by all those green threads and called
//     concurrently, from several workers.
//   * At `concurrency` running handlers serve() stops accepting until one
//     ends; clients meanwhile wait in the listen backlog.
//   * A handler that throws green::net::StopServe ends serve() gracefully:
//     accepting stops at once, handlers still running get `stop_grace` to
//     finish, then are killed (GreenletExit), and serve() returns normally.
//   * Any other exception escaping a handler (HandlerErrors::kStop, the
//     default, as in Eventlet) ends the server: the other handlers are
//     killed at once and serve() rethrows it. HandlerErrors::kReport
//     instead reports it (ServeOptions::report, default stderr) and goes on
//     -- what a production server wants.
//   * Killing the green thread that runs serve() (or a green::Timeout
//     around it, or closing the listener) kills the handlers too; serve()
//     returns only after every handler green thread it started has ended,
//     so nothing outlives the handler object or the listener.
//   * Accepting survives running out of file descriptors (EMFILE, ENFILE,
//     ENOBUFS, ENOMEM): serve() reports it once, backs off (5 ms doubling
//     to 1 s, as Go's net/http does) and retries; connections aborted while
//     queued (ECONNABORTED) are skipped silently.
//   * Accepted clients are spread over the workers by hand-off, not
//     SO_REUSEPORT: one green thread accepts, and each new socket is
//     registered with the next worker's poller in turn (round-robin). The
//     handler's green thread starts wherever the scheduler puts it; once it
//     first waits for I/O, the socket's home poller wakes it on that worker, so
//     connections settle evenly over the workers (work stealing evens out
//     the rest). One listening socket keeps StopServe and kill simple: no
//     queued connection is stranded in a per-worker backlog.
#ifndef GREEN_NET_SERVE_H_
#define GREEN_NET_SERVE_H_

#include <sys/socket.h>

#include <chrono>
#include <cstddef>
#include <cstring>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include "net/endpoint.h"
#include "net/io_handle.h"
#include "net/listener.h"
#include "net/socket.h"
#include "net/unix.h"

namespace green::net {

// Thrown by a handler to end serve() gracefully. Like GreenletExit it is
// control flow, not an error: it does not derive from std::exception, so a
// handler's `catch (const std::exception&)` does not swallow it.
class StopServe {
 public:
  const char* what() const noexcept { return "green::net::StopServe"; }
};

enum class HandlerErrors {
  kStop,    // an exception escaping a handler ends serve() and is rethrown
  kReport,  // it is reported and serving goes on
};

struct ServeOptions {
  // Handlers running at once; at the limit, accepting pauses. >= 1.
  std::size_t concurrency = 1000;
  HandlerErrors handler_errors = HandlerErrors::kStop;
  // Called (on the failing handler's green thread, or serve()'s) with a
  // handler's exception under kReport, and once with the first
  // out-of-descriptors accept error. `where` is e.g. "handler for
  // 127.0.0.1:5555". Default: a line on stderr. Must not throw (what it
  // throws is dropped). It may block; a kill or green::Timeout aimed at
  // its green thread then goes through it (killing serve() stops serve()).
  std::function<void(std::exception_ptr error, const std::string& where)>
      report;
  // After StopServe: how long running handlers may go on before they are
  // killed.
  std::chrono::nanoseconds stop_grace = std::chrono::seconds(1);
  // Register accepted sockets with the workers' pollers round-robin
  // (false: with the poller of whichever worker first waits on each).
  bool spread_across_workers = true;
  // TCP_NODELAY on accepted TCP sockets (ignored for Unix sockets).
  bool nodelay = true;
  // set_timeout() on every accepted socket.
  std::optional<std::chrono::nanoseconds> client_timeout;
};

namespace detail {

// One accepted connection on its way to a handler.
struct AcceptedFd {
  int fd = -1;  // owned until a socket takes it (then -1)
  sockaddr_storage address{};
  socklen_t length = 0;
  ::green::detail::ReadinessPoller* home = nullptr;
};

// Runs the handler for one client; takes accepted.fd (sets it to -1).
using ClientMain = std::function<void(AcceptedFd& accepted)>;

// The accept loop behind serve(), for any listening socket.
void serve_loop(IoHandle& listener, ClientMain client_main,
                const ServeOptions& options);

// "127.0.0.1:80", "[::1]:80", a Unix path, or "unknown peer".
std::string describe_peer(const sockaddr_storage& address, socklen_t length);

template <typename Handler, typename Socket, typename Peer>
void call_handler(Handler& handler, Socket& socket, const Peer& peer) {
  if constexpr (std::is_invocable_v<Handler&, Socket&, const Peer&>) {
    handler(socket, peer);
  } else {
    static_assert(std::is_invocable_v<Handler&, Socket&>,
                  "green::net::serve: the handler must be callable as "
                  "handler(socket&, const peer&) or handler(socket&)");
    handler(socket);
  }
}

}  // namespace detail

// Serves TCP clients of `listener` until StopServe, an error, or a kill.
template <typename Handler>
void serve(Listener& listener, Handler handler, ServeOptions options = {}) {
  const bool nodelay = options.nodelay;
  const auto timeout = options.client_timeout;
  detail::IoHandle& listening = detail::SocketAccess::io(listener, "serve");
  const bool plain_tcp = listening.short_reads_drain();
  detail::serve_loop(
      listening,
      [handler = std::move(handler), nodelay, timeout,
       plain_tcp](detail::AcceptedFd& accepted) mutable {
        TcpSocket socket = detail::SocketAccess::tcp(
            std::exchange(accepted.fd, -1), accepted.home, plain_tcp);
        if (nodelay) socket.set_nodelay(true);
        if (timeout) socket.set_timeout(timeout);
        Endpoint peer;
        std::memcpy(peer.data(), &accepted.address, accepted.length);
        peer.resize(accepted.length);
        detail::call_handler(handler, socket, peer);
      },
      options);
}

// Eventlet's serve(sock, handle, concurrency).
template <typename Handler>
void serve(Listener& listener, Handler handler, std::size_t concurrency) {
  ServeOptions options;
  options.concurrency = concurrency;
  serve(listener, std::move(handler), std::move(options));
}

// Takes the listener by value: serve(listen(...), handler) as in Eventlet.
template <typename Handler>
void serve(Listener&& listener, Handler handler, ServeOptions options = {}) {
  Listener owned = std::move(listener);
  serve(owned, std::move(handler), std::move(options));
}

// Serves Unix-domain stream clients; handler(UnixStream&, const
// UnixEndpoint&) or handler(UnixStream&).
template <typename Handler>
void serve(UnixListener& listener, Handler handler, ServeOptions options = {}) {
  const auto timeout = options.client_timeout;
  detail::serve_loop(
      detail::SocketAccess::io(listener, "serve"),
      [handler = std::move(handler),
       timeout](detail::AcceptedFd& accepted) mutable {
        UnixStream socket = detail::SocketAccess::unix_stream(
            std::exchange(accepted.fd, -1), accepted.home);
        if (timeout) socket.set_timeout(timeout);
        UnixEndpoint peer;
        std::memcpy(peer.data(), &accepted.address, accepted.length);
        peer.resize(accepted.length);
        detail::call_handler(handler, socket, peer);
      },
      options);
}

}  // namespace green::net

#endif  // GREEN_NET_SERVE_H_
