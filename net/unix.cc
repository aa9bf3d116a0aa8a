// Unix-domain stream sockets: see unix.h.
#include "net/unix.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>

#include "net/errors.h"
#include "net/socket_name.h"
#include "runtime/green_thread.h"

namespace green::net {
namespace detail {

UnixStream SocketAccess::unix_stream(int fd,
                                     ::green::detail::ReadinessPoller* home) {
  std::unique_ptr<IoHandle> io;
  try {
    io = std::make_unique<IoHandle>(fd, "UnixStream", home);
  } catch (...) {
    ::close(fd);
    throw;
  }
  return UnixStream(std::move(io));
}

IoHandle& SocketAccess::io(UnixListener& listener, const char* call) {
  return listener.io(call);
}

}  // namespace detail

namespace {

UnixEndpoint endpoint_for(std::string_view path, const char* call) {
  if (path.size() >= sizeof(sockaddr_un{}.sun_path)) {
    throw std::invalid_argument(
        std::string("green::net::") + call +
        ": path too long for a Unix socket: " + std::string(path));
  }
  return UnixEndpoint(path);
}

}  // namespace

UnixEndpoint UnixStream::local_endpoint() const {
  return detail::socket_name<UnixEndpoint>(io("local_endpoint"), false,
                                           "local_endpoint");
}

UnixEndpoint UnixStream::peer_endpoint() const {
  return detail::socket_name<UnixEndpoint>(io("peer_endpoint"), true,
                                           "peer_endpoint");
}

UnixListener::UnixListener() noexcept = default;
UnixListener::UnixListener(std::unique_ptr<detail::IoHandle> io) noexcept
    : io_(std::move(io)) {}
UnixListener::UnixListener(UnixListener&&) noexcept = default;
UnixListener& UnixListener::operator=(UnixListener&&) noexcept = default;
UnixListener::~UnixListener() = default;

detail::IoHandle& UnixListener::io(const char* call) const {
  if (!io_) {
    throw std::logic_error(std::string("green::net::UnixListener::") + call +
                           ": the listener is not open");
  }
  return *io_;
}

UnixAccepted UnixListener::accept() {
  detail::AcceptedConnection raw = detail::accept_waiting(io("accept"));
  UnixAccepted accepted{detail::SocketAccess::unix_stream(raw.fd),
                        UnixEndpoint()};
  raw.copy_peer_to(accepted.peer);
  return accepted;
}

UnixEndpoint UnixListener::local_endpoint() const {
  return detail::socket_name<UnixEndpoint>(io("local_endpoint"), false,
                                           "local_endpoint");
}

void UnixListener::close() noexcept {
  if (io_) io_->close();
}

bool UnixListener::is_open() const noexcept { return io_ && !io_->closed(); }

void UnixListener::set_timeout(
    std::optional<std::chrono::nanoseconds> timeout) {
  io("set_timeout").set_timeout(timeout);
}

UnixListener listen_unix(std::string_view path, int backlog,
                         bool unlink_existing) {
  const UnixEndpoint endpoint = endpoint_for(path, "listen_unix");
  if (unlink_existing && !path.empty() && path[0] != '\0') {
    ::unlink(std::string(path).c_str());
  }
  ListenOptions options;
  options.backlog = backlog;
  const int fd = detail::listen_fd(
      endpoint.data(), static_cast<socklen_t>(endpoint.size()), SOCK_STREAM,
      options, "green::net::listen_unix " + to_string(endpoint));
  std::unique_ptr<detail::IoHandle> io;
  try {
    io = std::make_unique<detail::IoHandle>(fd, "UnixListener");
  } catch (...) {
    ::close(fd);
    throw;
  }
  return UnixListener(std::move(io));
}

UnixStream connect_unix(std::string_view path,
                        std::optional<std::chrono::nanoseconds> timeout) {
  const UnixEndpoint endpoint = endpoint_for(path, "connect_unix");
  const std::string what = "green::net::connect_unix " + to_string(endpoint);
  const int fd =
      ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) detail::throw_errno(errno, what);
  UnixStream socket = detail::SocketAccess::unix_stream(fd);
  detail::IoHandle& io = detail::SocketAccess::io(socket, "connect_unix");
  detail::IoHandle::Use use(io, detail::Direction::kWrite, "connect_unix");
  if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) ==
      0) {
    return socket;
  }
  // A Unix listener with a full backlog refuses a non-blocking connect
  // with EAGAIN instead of queueing it, and poll reports the unconnected
  // socket writable at once, so back off and retry (1 ms doubling to 64 ms).
  detail::Deadline deadline;
  if (timeout) deadline = std::chrono::steady_clock::now() + *timeout;
  auto backoff = std::chrono::milliseconds(1);
  for (;;) {
    const int error = errno;
    if (error == EINPROGRESS) {
      if (!io.wait(detail::Direction::kWrite, deadline, "connect_unix")) {
        throw TimeoutError(what + ": timed out");
      }
      int so_error = 0;
      socklen_t length = sizeof so_error;
      ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &length);
      if (so_error != 0) detail::throw_errno(so_error, what);
      return socket;
    }
    if (error != EAGAIN && error != EINTR) detail::throw_errno(error, what);
    if (deadline && std::chrono::steady_clock::now() + backoff > *deadline) {
      throw TimeoutError(what + ": timed out (the listener's backlog is full)");
    }
    if (green::in_green_thread()) {
      green::sleep(backoff);
    } else {
      std::this_thread::sleep_for(backoff);
    }
    backoff = std::min(backoff * 2, std::chrono::milliseconds(64));
    if (::connect(fd, endpoint.data(),
                  static_cast<socklen_t>(endpoint.size())) == 0) {
      return socket;
    }
  }
}

std::pair<UnixStream, UnixStream> unix_stream_pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0,
                   fds) < 0) {
    detail::throw_errno(errno, "green::net::unix_stream_pair");
  }
  UnixStream first;
  try {
    first = detail::SocketAccess::unix_stream(fds[0]);
  } catch (...) {
    ::close(fds[1]);  // unix_stream closed fds[0]
    throw;
  }
  UnixStream second = detail::SocketAccess::unix_stream(fds[1]);
  return {std::move(first), std::move(second)};
}

}  // namespace green::net
