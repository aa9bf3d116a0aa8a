// connect(): see connect.h.
#include "net/connect.h"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <string>
#include <vector>

#include "net/errors.h"

namespace green::net {
namespace {

TcpSocket connect_until(const Endpoint& endpoint, const ConnectOptions& options,
                        detail::Deadline deadline) {
  const std::string what = "green::net::connect " + to_string(endpoint);
  const int fd = ::socket(endpoint.protocol().family(),
                          SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) detail::throw_errno(errno, what);
  // Owns fd from here; an AF_INET/AF_INET6 stream socket of ours: TCP.
  TcpSocket socket = detail::SocketAccess::tcp(fd, nullptr, /*plain_tcp=*/true);
  detail::IoHandle& io = detail::SocketAccess::io(socket, "connect");
  if (options.bind) {
    detail::set_int_option(io, SOL_SOCKET, SO_REUSEADDR, 1, "connect");
    if (::bind(fd, options.bind->data(),
               static_cast<socklen_t>(options.bind->size())) < 0) {
      detail::throw_errno(errno,
                          what + ": bind to " + to_string(*options.bind));
    }
  }
  if (options.nodelay) {
    detail::set_int_option(io, IPPROTO_TCP, TCP_NODELAY, 1, "connect");
  }
  detail::IoHandle::Use use(io, detail::Direction::kWrite, "connect");
  if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) ==
      0) {
    return socket;
  }
  // EINTR: the connect goes on asynchronously, exactly like EINPROGRESS.
  if (errno != EINPROGRESS && errno != EINTR) detail::throw_errno(errno, what);
  for (;;) {
    if (!io.wait(detail::Direction::kWrite, deadline, "connect")) {
      throw TimeoutError(what + ": timed out");
    }
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) < 0) {
      error = errno;
    }
    if (error != 0) detail::throw_errno(error, what);
    // A wake-up is only a hint; connected means the peer has a name.
    sockaddr_storage peer;
    socklen_t peer_length = sizeof peer;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_length) ==
        0) {
      return socket;
    }
    if (errno != ENOTCONN) detail::throw_errno(errno, what);
  }
}

detail::Deadline deadline_for(const ConnectOptions& options) {
  if (!options.timeout) return std::nullopt;
  return std::chrono::steady_clock::now() + *options.timeout;
}

}  // namespace

TcpSocket connect(const Endpoint& endpoint, const ConnectOptions& options) {
  return connect_until(endpoint, options, deadline_for(options));
}

TcpSocket connect(std::string_view host, std::uint16_t port,
                  const ConnectOptions& options) {
  const detail::Deadline deadline = deadline_for(options);
  std::optional<std::chrono::nanoseconds> left;
  if (deadline) {
    left = std::chrono::duration_cast<std::chrono::nanoseconds>(
        *deadline - std::chrono::steady_clock::now());
  }
  const std::vector<Endpoint> endpoints =
      resolve(host, port, options.family, left);
  if (endpoints.empty()) {
    throw std::system_error(
        std::make_error_code(std::errc::address_not_available),
        "green::net::connect " + std::string(host) +
            ": no address of the requested family");
  }
  for (std::size_t i = 0;; ++i) {
    try {
      return connect_until(endpoints[i], options, deadline);
    } catch (const std::system_error&) {
      if (i + 1 == endpoints.size()) throw;
    }
  }
}

}  // namespace green::net
