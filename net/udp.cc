// UdpSocket: see udp.h.
#include "net/udp.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <stdexcept>
#include <string>

#include "net/errors.h"

namespace green::net {
namespace {

// One datagram syscall, parking on EAGAIN. `attempt` returns the syscall's
// result (and leaves errno).
template <typename Attempt>
std::size_t with_waits(detail::IoHandle& io, detail::Direction direction,
                       const char* call, Attempt attempt) {
  detail::IoHandle::Use use(io, direction, call);
  detail::Deadline deadline;
  bool deadline_known = false;
  for (;;) {
    const ssize_t n = attempt(io.fd());
    if (n >= 0) return static_cast<std::size_t>(n);
    const int error = errno;
    if (error == EINTR) continue;
    if (error != EAGAIN && error != EWOULDBLOCK) io.throw_error(error, call);
    if (!deadline_known) {
      deadline = io.deadline_from_now();
      deadline_known = true;
    }
    if (!io.wait(direction, deadline, call)) io.throw_timeout(call);
  }
}

}  // namespace

UdpSocket::UdpSocket() noexcept = default;
UdpSocket::UdpSocket(std::unique_ptr<detail::IoHandle> io) noexcept
    : io_(std::move(io)) {}
UdpSocket::UdpSocket(UdpSocket&&) noexcept = default;
UdpSocket& UdpSocket::operator=(UdpSocket&&) noexcept = default;
UdpSocket::~UdpSocket() = default;

detail::IoHandle& UdpSocket::io(const char* call) const {
  if (!io_) {
    throw std::logic_error(std::string("green::net::UdpSocket::") + call +
                           ": the socket is not open");
  }
  return *io_;
}

std::size_t UdpSocket::send_to(const void* data, std::size_t size,
                               const UdpEndpoint& to) {
  return with_waits(io("send_to"), detail::Direction::kWrite, "send_to",
                    [&](int fd) {
                      return ::sendto(fd, data, size, MSG_NOSIGNAL, to.data(),
                                      static_cast<socklen_t>(to.size()));
                    });
}

UdpSocket::Datagram UdpSocket::receive_from(void* data, std::size_t size) {
  Datagram datagram{0, UdpEndpoint()};
  datagram.size = with_waits(
      io("receive_from"), detail::Direction::kRead, "receive_from",
      [&](int fd) {
        socklen_t length = static_cast<socklen_t>(datagram.from.capacity());
        const ssize_t n =
            ::recvfrom(fd, data, size, 0, datagram.from.data(), &length);
        if (n >= 0) datagram.from.resize(length);
        return n;
      });
  return datagram;
}

void UdpSocket::connect(const UdpEndpoint& peer) {
  detail::IoHandle& handle = io("connect");
  detail::IoHandle::Control control(handle, "connect");
  if (::connect(handle.fd(), peer.data(), static_cast<socklen_t>(peer.size())) <
      0) {
    handle.throw_error(errno, "connect");
  }
}

std::size_t UdpSocket::send(const void* data, std::size_t size) {
  return with_waits(io("send"), detail::Direction::kWrite, "send", [&](int fd) {
    return ::send(fd, data, size, MSG_NOSIGNAL);
  });
}

std::size_t UdpSocket::receive(void* data, std::size_t size) {
  return with_waits(io("receive"), detail::Direction::kRead, "receive",
                    [&](int fd) { return ::recv(fd, data, size, 0); });
}

UdpEndpoint UdpSocket::local_endpoint() const {
  detail::IoHandle& handle = io("local_endpoint");
  detail::IoHandle::Control control(handle, "local_endpoint");
  UdpEndpoint endpoint;
  socklen_t length = static_cast<socklen_t>(endpoint.capacity());
  if (::getsockname(handle.fd(), endpoint.data(), &length) < 0) {
    handle.throw_error(errno, "local_endpoint");
  }
  endpoint.resize(length);
  return endpoint;
}

void UdpSocket::close() noexcept {
  if (io_) io_->close();
}

bool UdpSocket::is_open() const noexcept { return io_ && !io_->closed(); }

void UdpSocket::set_timeout(std::optional<std::chrono::nanoseconds> timeout) {
  io("set_timeout").set_timeout(timeout);
}

int UdpSocket::native_handle() const {
  detail::IoHandle& handle = io("native_handle");
  if (handle.closed()) handle.throw_closed("native_handle");
  return handle.fd();
}

UdpSocket bind_udp(const UdpEndpoint& local) {
  const std::string what = "green::net::bind_udp " + to_string(local);
  const int fd = ::socket(local.protocol().family(),
                          SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) detail::throw_errno(errno, what);
  if (::bind(fd, local.data(), static_cast<socklen_t>(local.size())) < 0) {
    const int error = errno;
    ::close(fd);
    detail::throw_errno(error, what);
  }
  std::unique_ptr<detail::IoHandle> io;
  try {
    io = std::make_unique<detail::IoHandle>(fd, "UdpSocket");
  } catch (...) {
    ::close(fd);
    throw;
  }
  return UdpSocket(std::move(io));
}

}  // namespace green::net
