// TcpSocket: a connected green TCP socket (Eventlet's GreenSocket).
//
//   green::net::TcpSocket s = green::net::connect("127.0.0.1", 8080);
//   s.write_all("ping\n");
//   char buffer[64];
//   std::size_t n = s.read_some(buffer, sizeof buffer);  // 0: peer closed
//
// Calls look blocking and block only the calling green thread: each tries
// the syscall on the non-blocking fd first and parks in the worker's readiness
// poller only when the kernel says EAGAIN (net/io_handle.h has the design, and
// which worker owns a socket). From a plain OS thread the same calls
// block that thread in poll(2).
//
// Concurrency: one green thread may read while another writes (full
// duplex); a second concurrent reader (or writer) gets std::logic_error at
// once -- never a hang. close() may be called from any thread while others
// are blocked: they wake with std::system_error(EBADF). Destroying the
// object while another thread uses it is a bug.
//
// Errors: see net/errors.h. A peer that resets the connection makes the
// pending or next call throw std::system_error with
// std::errc::connection_reset (or broken_pipe on a write); a peer that
// half-closes (shutdown(kWrite), or close) reads as end of stream:
// read_some() returns 0, read_exact() returns false.
//
// Deadlines: green::Timeout (sync/) around any call interrupts it, and
// set_timeout() bounds every later call (TimeoutError); either way nothing
// the call was waiting for is lost and the socket stays usable. A write_all
// cut short may have sent a prefix of its data (how much is unknown).
//
// Lifetime: a socket belongs to the runtime (green::run) it was created in
// and must be destroyed before that run() returns.
#ifndef GREEN_NET_SOCKET_H_
#define GREEN_NET_SOCKET_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

#include "net/endpoint.h"
#include "net/io_handle.h"

namespace green::net {

class Listener;
class UnixListener;
class UnixStream;

namespace detail {
struct SocketAccess;
}

enum class Shutdown { kRead = 0, kWrite = 1, kBoth = 2 };  // SHUT_RD/WR/RDWR

// The operations every connected stream socket has (TcpSocket, UnixStream).
class StreamSocket {
 public:
  StreamSocket() noexcept;  // not open
  StreamSocket(StreamSocket&& other) noexcept;
  StreamSocket& operator=(StreamSocket&& other) noexcept;  // closes ours
  ~StreamSocket();                                         // closes

  // Reads what is available, at least one byte; parks while nothing is.
  // Returns 0 at end of stream (or for an empty buffer).
  std::size_t read_some(void* data, std::size_t size);
  std::size_t read_some(std::span<char> buffer) {
    return read_some(buffer.data(), buffer.size());
  }
  std::size_t read_some(std::span<std::byte> buffer) {
    return read_some(buffer.data(), buffer.size());
  }
  // Fills the whole buffer. Returns false if the stream ended before the
  // first byte (a clean end between messages); throws EndOfStream if it
  // ended after some.
  [[nodiscard]] bool read_exact(void* data, std::size_t size);
  [[nodiscard]] bool read_exact(std::span<char> buffer) {
    return read_exact(buffer.data(), buffer.size());
  }

  // Writes at least one byte (parks while the send buffer is full).
  std::size_t write_some(const void* data, std::size_t size);
  // Writes everything (Python's sendall).
  void write_all(const void* data, std::size_t size);
  void write_all(std::string_view data) { write_all(data.data(), data.size()); }
  void write_all(std::span<const std::byte> data) {
    write_all(data.data(), data.size());
  }

  // shutdown(2): kWrite sends FIN after the queued data (the peer reads
  // end of stream) and keeps reading possible.
  void shutdown(Shutdown how = Shutdown::kWrite);
  // Closes now; idempotent. Green threads blocked on this socket wake with
  // std::system_error(EBADF).
  void close() noexcept;
  bool is_open() const noexcept;

  // Bounds every later blocking call (the whole of a read_exact or
  // write_all); std::nullopt (the default) waits forever. TimeoutError
  // leaves the socket usable.
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout);
  std::optional<std::chrono::nanoseconds> timeout() const;

  // The fd, for setsockopt and friends. Still owned by the socket.
  int native_handle() const;

 protected:
  friend struct detail::SocketAccess;
  explicit StreamSocket(std::unique_ptr<detail::IoHandle> io) noexcept;
  // The handle, or std::logic_error naming `call` for a socket that is not
  // open (default-constructed or moved-from).
  detail::IoHandle& io(const char* call) const;

  std::unique_ptr<detail::IoHandle> io_;
};

class TcpSocket : public StreamSocket {
 public:
  TcpSocket() noexcept = default;
  // Takes ownership of a connected TCP socket made elsewhere; makes it
  // non-blocking.
  static TcpSocket adopt(int fd);

  Endpoint local_endpoint() const;
  Endpoint peer_endpoint() const;

  // TCP_NODELAY: send small writes at once instead of coalescing them
  // (Nagle). connect() and serve() turn it on by default, as Go does.
  void set_nodelay(bool enabled);
  bool nodelay() const;
  // SO_KEEPALIVE, and optionally the idle time before the first probe.
  void set_keepalive(bool enabled,
                     std::optional<std::chrono::seconds> idle = std::nullopt);
  bool keepalive() const;

 private:
  friend struct detail::SocketAccess;
  explicit TcpSocket(std::unique_ptr<detail::IoHandle> io) noexcept
      : StreamSocket(std::move(io)) {}
};

namespace detail {

// Stream operations on a handle, for the socket types and TLS.
// Each takes the direction's slot (IoHandle::Use) for the whole call.
std::size_t read_some(IoHandle& io, void* data, std::size_t size,
                      const char* call);
bool read_exact(IoHandle& io, void* data, std::size_t size, const char* call);
std::size_t write_some(IoHandle& io, const void* data, std::size_t size,
                       const char* call);
void write_all(IoHandle& io, const void* data, std::size_t size,
               const char* call);

// Builds sockets around fds (which they then own) for listen/connect/
// accept/serve without widening the public constructors.
struct SocketAccess {
  // `plain_tcp`: see IoHandle::set_short_reads_drain.
  static TcpSocket tcp(int fd, ::green::detail::ReadinessPoller* home = nullptr,
                       bool plain_tcp = false);
  static IoHandle& io(StreamSocket& socket, const char* call) {
    return socket.io(call);
  }
  static IoHandle& io(Listener& listener, const char* call);
  static Listener listener(std::unique_ptr<IoHandle> io);
  static UnixStream unix_stream(
      int fd, ::green::detail::ReadinessPoller* home = nullptr);
  static IoHandle& io(UnixListener& listener, const char* call);
};

// Whether `fd` is a TCP socket with no upper-layer protocol (kernel TLS):
// one whose short reads drain its receive queue.
bool is_plain_tcp(int fd) noexcept;
// Sets O_NONBLOCK on an adopted fd; throws naming `call`.
void make_non_blocking(int fd, const char* call);
// getsockopt/setsockopt of an int option, throwing naming `call`.
void set_int_option(IoHandle& io, int level, int name, int value,
                    const char* call);
int get_int_option(IoHandle& io, int level, int name, const char* call);

}  // namespace detail
}  // namespace green::net

#endif  // GREEN_NET_SOCKET_H_
