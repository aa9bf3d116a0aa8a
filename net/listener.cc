// Listener and listen(): see listener.h.
#include "net/listener.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>

#include "net/errors.h"
#include "net/resolve.h"

namespace green::net {
namespace detail {

std::optional<int> accept_fd(IoHandle& io, sockaddr_storage& address,
                             socklen_t& length, Deadline deadline,
                             WakeHook* hook, const char* call) {
  for (;;) {
    length = sizeof address;
    const int fd = ::accept4(io.fd(), reinterpret_cast<sockaddr*>(&address),
                             &length, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) return fd;
    const int error = errno;
    switch (error) {
      case EAGAIN:
#if EWOULDBLOCK != EAGAIN
      case EWOULDBLOCK:
#endif
        break;
      // A connection that died in the queue; the listener is fine. Linux
      // also passes the new socket's pending network errors through
      // accept(2), which its man page says to treat like EAGAIN (as Go
      // does); EPERM is a firewall refusing that one connection.
      case EINTR:
      case ECONNABORTED:
      case EPROTO:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case EOPNOTSUPP:
      case ENETUNREACH:
      case EPERM:
        continue;
      default:  // EMFILE, ENFILE, ENOBUFS, ENOMEM, EBADF, EINVAL...
        io.throw_error(error, call);
    }
    if (!io.wait(Direction::kRead, deadline, call, hook)) {
      io.throw_timeout(call);
    }
    if (hook && hook->take()) return std::nullopt;
  }
}

int listen_fd(const sockaddr* address, socklen_t length, int type,
              const ListenOptions& options, const std::string& description) {
  const int fd =
      ::socket(address->sa_family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(errno, description);
  auto fail = [&](int error, const char* step) {
    ::close(fd);
    throw_errno(error, description + ": " + step);
  };
  const int one = 1;
  if (address->sa_family == AF_INET || address->sa_family == AF_INET6) {
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
      fail(errno, "SO_REUSEADDR");
    }
    if (options.reuse_port &&
        ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
      fail(errno, "SO_REUSEPORT");
    }
    if (address->sa_family == AF_INET6 && options.v6_only) {
      const int v6_only = *options.v6_only ? 1 : 0;
      if (::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6_only,
                       sizeof v6_only) < 0) {
        fail(errno, "IPV6_V6ONLY");
      }
    }
  }
  if (::bind(fd, address, length) < 0) fail(errno, "bind");
  if (type == SOCK_STREAM && ::listen(fd, options.backlog) < 0) {
    fail(errno, "listen");
  }
  return fd;
}

IoHandle& SocketAccess::io(Listener& listener, const char* call) {
  return listener.io(call);
}

Listener SocketAccess::listener(std::unique_ptr<IoHandle> io) {
  return Listener(std::move(io));
}

AcceptedConnection accept_waiting(IoHandle& handle) {
  IoHandle::Use use(handle, Direction::kRead, "accept");
  AcceptedConnection raw;
  raw.fd = *accept_fd(handle, raw.address, raw.length,
                      handle.deadline_from_now(), nullptr, "accept");
  return raw;
}

}  // namespace detail

Listener::Listener() noexcept = default;
Listener::Listener(std::unique_ptr<detail::IoHandle> io) noexcept
    : io_(std::move(io)) {}
Listener::Listener(Listener&&) noexcept = default;
Listener& Listener::operator=(Listener&&) noexcept = default;
Listener::~Listener() = default;

detail::IoHandle& Listener::io(const char* call) const {
  if (!io_) {
    throw std::logic_error(
        std::string("green::net::Listener::") + call +
        ": the listener is not open (default-constructed or moved-from)");
  }
  return *io_;
}

Listener Listener::adopt(int fd) {
  detail::make_non_blocking(fd, "green::net::Listener::adopt");
  std::unique_ptr<detail::IoHandle> io;
  try {
    io = std::make_unique<detail::IoHandle>(fd, "Listener");
    // Its accepted sockets get the short-read rule only if it is TCP.
    if (detail::is_plain_tcp(fd)) io->set_short_reads_drain();
  } catch (...) {
    ::close(fd);
    throw;
  }
  return Listener(std::move(io));
}

Accepted Listener::accept() {
  detail::IoHandle& handle = io("accept");
  detail::AcceptedConnection raw = detail::accept_waiting(handle);
  Accepted accepted{
      detail::SocketAccess::tcp(raw.fd, nullptr, handle.short_reads_drain()),
      Endpoint()};
  raw.copy_peer_to(accepted.peer);
  return accepted;
}

Endpoint Listener::local_endpoint() const {
  detail::IoHandle& handle = io("local_endpoint");
  detail::IoHandle::Control control(handle, "local_endpoint");
  Endpoint endpoint;
  socklen_t length = static_cast<socklen_t>(endpoint.capacity());
  if (::getsockname(handle.fd(), endpoint.data(), &length) < 0) {
    handle.throw_error(errno, "local_endpoint");
  }
  endpoint.resize(length);
  return endpoint;
}

void Listener::close() noexcept {
  if (io_) io_->close();
}

bool Listener::is_open() const noexcept { return io_ && !io_->closed(); }

void Listener::set_timeout(std::optional<std::chrono::nanoseconds> timeout) {
  io("set_timeout").set_timeout(timeout);
}

int Listener::native_handle() const {
  detail::IoHandle& handle = io("native_handle");
  if (handle.closed()) handle.throw_closed("native_handle");
  return handle.fd();
}

Listener listen(const Endpoint& endpoint, const ListenOptions& options) {
  const int fd = detail::listen_fd(
      endpoint.data(), static_cast<socklen_t>(endpoint.size()), SOCK_STREAM,
      options, "green::net::listen " + to_string(endpoint));
  std::unique_ptr<detail::IoHandle> io;
  try {
    io = std::make_unique<detail::IoHandle>(fd, "Listener");
    io->set_short_reads_drain();  // a TCP listener of ours
  } catch (...) {
    ::close(fd);
    throw;
  }
  return detail::SocketAccess::listener(std::move(io));
}

Listener listen(const Endpoint& endpoint, int backlog) {
  ListenOptions options;
  options.backlog = backlog;
  return listen(endpoint, options);
}

Listener listen(std::string_view host, std::uint16_t port,
                const ListenOptions& options) {
  const std::vector<Endpoint> endpoints = resolve(host, port);
  if (endpoints.empty()) {
    throw std::system_error(
        std::make_error_code(std::errc::address_not_available),
        "green::net::listen " + std::string(host) + ": no address");
  }
  return listen(endpoints.front(), options);
}

}  // namespace green::net
