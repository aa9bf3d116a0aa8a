// StreamSocket and TcpSocket: see socket.h.
#include "net/socket.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "net/errors.h"
#include "net/socket_name.h"

namespace green::net {
namespace detail {
namespace {

// The deadline of one call, computed at its first wait (the common call
// never waits and never reads the clock).
class CallDeadline {
 public:
  explicit CallDeadline(const IoHandle& io) : io_(io) {}
  Deadline get() {
    if (!known_) {
      deadline_ = io_.deadline_from_now();
      known_ = true;
    }
    return deadline_;
  }

 private:
  const IoHandle& io_;
  Deadline deadline_;
  bool known_ = false;
};

// Runs `transfer` (a recv or send on io.fd()) until it moves bytes, sees
// end of stream or fails for good: it is skipped while the poller knows the
// fd is still drained, and an EAGAIN parks until the next readiness edge.
template <typename Transfer>
std::size_t transfer_when_ready(IoHandle& io, Direction direction,
                                CallDeadline& deadline, const char* call,
                                Transfer transfer) {
  for (;;) {
    if (io.worth_trying(direction)) {
      const ssize_t n = transfer();
      if (n >= 0) return static_cast<std::size_t>(n);
      const int error = errno;
      if (error == EINTR) continue;
      if (error != EAGAIN && error != EWOULDBLOCK) io.throw_error(error, call);
      io.note_drained(direction);
    }
    if (!io.wait(direction, deadline.get(), call)) io.throw_timeout(call);
  }
}

// Stream sockets (TCP, Unix). On TCP a read shorter than asked emptied the
// receive queue (io_handle.h, note_short_read), so the next read parks
// without first paying for a recv that would return EAGAIN; data that
// arrives later is a new edge for the poller.
std::size_t recv_some(IoHandle& io, void* data, std::size_t size,
                      CallDeadline& deadline, const char* call) {
  const std::size_t n =
      transfer_when_ready(io, Direction::kRead, deadline, call,
                          [&] { return ::recv(io.fd(), data, size, 0); });
  if (n > 0 && n < size) io.note_short_read();
  return n;
}

std::size_t send_some(IoHandle& io, const void* data, std::size_t size,
                      CallDeadline& deadline, const char* call) {
  // MSG_NOSIGNAL: a reset peer is an EPIPE exception, not SIGPIPE.
  return transfer_when_ready(io, Direction::kWrite, deadline, call, [&] {
    return ::send(io.fd(), data, size, MSG_NOSIGNAL);
  });
}

}  // namespace

std::size_t read_some(IoHandle& io, void* data, std::size_t size,
                      const char* call) {
  IoHandle::Use use(io, Direction::kRead, call);
  if (size == 0) return 0;
  CallDeadline deadline(io);
  return recv_some(io, data, size, deadline, call);
}

bool read_exact(IoHandle& io, void* data, std::size_t size, const char* call) {
  IoHandle::Use use(io, Direction::kRead, call);
  CallDeadline deadline(io);
  auto* bytes = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const std::size_t n =
        recv_some(io, bytes + done, size - done, deadline, call);
    if (n == 0) {
      if (done == 0) return false;
      throw EndOfStream(io.describe(call) + ": the stream ended after " +
                        std::to_string(done) + " of " + std::to_string(size) +
                        " bytes");
    }
    done += n;
  }
  return true;
}

std::size_t write_some(IoHandle& io, const void* data, std::size_t size,
                       const char* call) {
  IoHandle::Use use(io, Direction::kWrite, call);
  if (size == 0) return 0;
  CallDeadline deadline(io);
  return send_some(io, data, size, deadline, call);
}

void write_all(IoHandle& io, const void* data, std::size_t size,
               const char* call) {
  IoHandle::Use use(io, Direction::kWrite, call);
  CallDeadline deadline(io);
  const auto* bytes = static_cast<const char*>(data);
  while (size > 0) {
    const std::size_t n = send_some(io, bytes, size, deadline, call);
    bytes += n;
    size -= n;
  }
}

TcpSocket SocketAccess::tcp(int fd, ::green::detail::ReadinessPoller* home,
                            bool plain_tcp) {
  std::unique_ptr<IoHandle> io;
  try {
    io = std::make_unique<IoHandle>(fd, "TcpSocket", home);
    if (plain_tcp) io->set_short_reads_drain();
  } catch (...) {
    ::close(fd);
    throw;
  }
  return TcpSocket(std::move(io));
}

bool is_plain_tcp(int fd) noexcept {
  int protocol = 0;
  socklen_t length = sizeof protocol;
  if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &length) != 0 ||
      protocol != IPPROTO_TCP) {
    return false;
  }
  char upper_layer[16] = {};
  length = sizeof upper_layer;
  // TCP_ULP names an upper-layer protocol ("tls"); empty for plain TCP.
  return ::getsockopt(fd, IPPROTO_TCP, TCP_ULP, upper_layer, &length) == 0 &&
         upper_layer[0] == '\0';
}

void make_non_blocking(int fd, const char* call) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
    throw_errno(errno, std::string(call) + ": cannot make fd " +
                           std::to_string(fd) + " non-blocking");
  }
}

void set_int_option(IoHandle& io, int level, int name, int value,
                    const char* call) {
  IoHandle::Control control(io, call);
  if (::setsockopt(io.fd(), level, name, &value, sizeof value) < 0) {
    io.throw_error(errno, call);
  }
}

int get_int_option(IoHandle& io, int level, int name, const char* call) {
  IoHandle::Control control(io, call);
  int value = 0;
  socklen_t length = sizeof value;
  if (::getsockopt(io.fd(), level, name, &value, &length) < 0) {
    io.throw_error(errno, call);
  }
  return value;
}

}  // namespace detail

// --- StreamSocket ---

StreamSocket::StreamSocket() noexcept = default;
StreamSocket::StreamSocket(std::unique_ptr<detail::IoHandle> io) noexcept
    : io_(std::move(io)) {}
StreamSocket::StreamSocket(StreamSocket&& other) noexcept = default;
StreamSocket& StreamSocket::operator=(StreamSocket&& other) noexcept = default;
StreamSocket::~StreamSocket() = default;

detail::IoHandle& StreamSocket::io(const char* call) const {
  if (!io_) {
    throw std::logic_error(
        std::string("green::net::") + call +
        ": the socket is not open (default-constructed or moved-from)");
  }
  return *io_;
}

std::size_t StreamSocket::read_some(void* data, std::size_t size) {
  return detail::read_some(io("read_some"), data, size, "read_some");
}

bool StreamSocket::read_exact(void* data, std::size_t size) {
  return detail::read_exact(io("read_exact"), data, size, "read_exact");
}

std::size_t StreamSocket::write_some(const void* data, std::size_t size) {
  return detail::write_some(io("write_some"), data, size, "write_some");
}

void StreamSocket::write_all(const void* data, std::size_t size) {
  detail::write_all(io("write_all"), data, size, "write_all");
}

void StreamSocket::shutdown(Shutdown how) {
  detail::IoHandle& handle = io("shutdown");
  detail::IoHandle::Control control(handle, "shutdown");
  if (::shutdown(handle.fd(), static_cast<int>(how)) < 0) {
    handle.throw_error(errno, "shutdown");
  }
}

void StreamSocket::close() noexcept {
  if (io_) io_->close();
}

bool StreamSocket::is_open() const noexcept { return io_ && !io_->closed(); }

void StreamSocket::set_timeout(
    std::optional<std::chrono::nanoseconds> timeout) {
  io("set_timeout").set_timeout(timeout);
}

std::optional<std::chrono::nanoseconds> StreamSocket::timeout() const {
  return io("timeout").timeout();
}

int StreamSocket::native_handle() const {
  detail::IoHandle& handle = io("native_handle");
  if (handle.closed()) handle.throw_closed("native_handle");
  return handle.fd();
}

// --- TcpSocket ---

TcpSocket TcpSocket::adopt(int fd) {
  detail::make_non_blocking(fd, "green::net::TcpSocket::adopt");
  return detail::SocketAccess::tcp(fd, nullptr, detail::is_plain_tcp(fd));
}

Endpoint TcpSocket::local_endpoint() const {
  return detail::socket_name<Endpoint>(io("local_endpoint"), false,
                                       "local_endpoint");
}

Endpoint TcpSocket::peer_endpoint() const {
  return detail::socket_name<Endpoint>(io("peer_endpoint"), true,
                                       "peer_endpoint");
}

void TcpSocket::set_nodelay(bool enabled) {
  detail::set_int_option(io("set_nodelay"), IPPROTO_TCP, TCP_NODELAY,
                         enabled ? 1 : 0, "set_nodelay");
}

bool TcpSocket::nodelay() const {
  return detail::get_int_option(io("nodelay"), IPPROTO_TCP, TCP_NODELAY,
                                "nodelay") != 0;
}

void TcpSocket::set_keepalive(bool enabled,
                              std::optional<std::chrono::seconds> idle) {
  detail::IoHandle& handle = io("set_keepalive");
  detail::set_int_option(handle, SOL_SOCKET, SO_KEEPALIVE, enabled ? 1 : 0,
                         "set_keepalive");
  if (enabled && idle) {
    detail::set_int_option(handle, IPPROTO_TCP, TCP_KEEPIDLE,
                           static_cast<int>(idle->count()), "set_keepalive");
  }
}

bool TcpSocket::keepalive() const {
  return detail::get_int_option(io("keepalive"), SOL_SOCKET, SO_KEEPALIVE,
                                "keepalive") != 0;
}

}  // namespace green::net
