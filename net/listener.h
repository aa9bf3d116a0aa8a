// listen() and Listener: server sockets (Eventlet's listen()).
//
//   green::net::Listener server = green::net::listen("127.0.0.1", 0);
//   std::uint16_t port = server.local_endpoint().port();  // port 0: the
//                                                          // kernel's pick
//   for (;;) {
//     green::net::Accepted client = server.accept();  // parks until one
//     green::spawn_n(handle, std::move(client.socket), client.peer);
//   }
//
// or let green::net::serve() (net/serve.h) run that loop. listen() sets
// SO_REUSEADDR, as Eventlet does. IPv4 and IPv6: pass "::" or "::1"; an
// IPv6 wildcard also takes IPv4 clients unless ListenOptions::v6_only.
//
// accept() honours set_timeout(), green::Timeout and kill(); it retries by
// itself when a connection was aborted while queued (ECONNABORTED, and the
// network errors Linux's accept(2) passes through) and throws the rest:
// EMFILE/ENFILE (out of file descriptors) are std::system_error, which
// serve() survives by backing off.
#ifndef GREEN_NET_LISTENER_H_
#define GREEN_NET_LISTENER_H_

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string_view>

#include "net/endpoint.h"
#include "net/io_handle.h"
#include "net/socket.h"

namespace green::net {

// The default backlog: the kernel's maximum (net.core.somaxconn caps it).
// Eventlet uses 50; a green server accepts fast, but a burst of a thousand
// connects would otherwise overflow the queue and cost SYN retransmits.
inline constexpr int kDefaultBacklog = SOMAXCONN;

struct ListenOptions {
  int backlog = kDefaultBacklog;
  // SO_REUSEPORT: several listeners (processes) share the port.
  bool reuse_port = false;
  // IPV6_V6ONLY for IPv6 addresses; unset: the system default.
  std::optional<bool> v6_only;
};

struct Accepted {
  TcpSocket socket;
  Endpoint peer;
};

class Listener {
 public:
  Listener() noexcept;  // not open
  Listener(Listener&&) noexcept;
  Listener& operator=(Listener&&) noexcept;
  ~Listener();

  // Takes ownership of a bound, listening TCP socket made elsewhere (e.g.
  // inherited from a parent process); makes it non-blocking.
  static Listener adopt(int fd);

  // Parks until a client connects.
  Accepted accept();

  Endpoint local_endpoint() const;
  // Closes the socket; an accept() blocked in another green thread (or a
  // serve() loop) wakes with std::system_error(EBADF).
  void close() noexcept;
  bool is_open() const noexcept;
  // Bounds each later accept(); TimeoutError.
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout);
  int native_handle() const;

 private:
  friend struct detail::SocketAccess;
  explicit Listener(std::unique_ptr<detail::IoHandle> io) noexcept;
  detail::IoHandle& io(const char* call) const;

  std::unique_ptr<detail::IoHandle> io_;
};

// Eventlet's listen(addr, backlog).
Listener listen(const Endpoint& endpoint, const ListenOptions& options = {});
Listener listen(const Endpoint& endpoint, int backlog);
// A numeric address or a host name (resolved; the first address is used).
Listener listen(std::string_view host, std::uint16_t port,
                const ListenOptions& options = {});

namespace detail {

// Accepts one connection: the new fd (non-blocking, close-on-exec), its
// peer address in `address`/`length`. Returns std::nullopt when `hook` was
// signalled while waiting. The caller holds the read slot (IoHandle::Use).
// Retries aborted connections; throws other errors.
std::optional<int> accept_fd(IoHandle& io, sockaddr_storage& address,
                             socklen_t& length, Deadline deadline,
                             WakeHook* hook, const char* call);

// A descriptor accept_waiting() returned, with its peer's address.
struct AcceptedConnection {
  int fd = -1;
  sockaddr_storage address;
  socklen_t length = 0;
  // Into an Endpoint or UnixEndpoint (data() and resize()).
  template <typename EndpointType>
  void copy_peer_to(EndpointType& peer) const {
    std::memcpy(peer.data(), &address, length);
    peer.resize(length);
  }
};
// The body of Listener::accept and UnixListener::accept: takes the read
// slot and waits (the handle's timeout applies) for one connection. The
// caller owns the fd from then on.
AcceptedConnection accept_waiting(IoHandle& handle);

// Creates a bound, listening socket; the fd.
int listen_fd(const sockaddr* address, socklen_t length, int type,
              const ListenOptions& options, const std::string& description);

}  // namespace detail
}  // namespace green::net

#endif  // GREEN_NET_LISTENER_H_
