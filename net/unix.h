// Unix-domain stream sockets: the same green socket over a filesystem path.
//
//   green::net::UnixListener server = green::net::listen_unix("/tmp/app.sock");
//   green::net::UnixStream client = green::net::connect_unix("/tmp/app.sock");
//   auto [a, b] = green::net::unix_stream_pair();  // socketpair(2)
//
// UnixStream has every StreamSocket operation (net/socket.h) with the same
// semantics; serve() (net/serve.h) accepts a UnixListener too. A path that
// starts with '\0' names a Linux abstract socket. listen_unix() does not
// remove an existing file at the path (pass unlink_existing to do so).
#ifndef GREEN_NET_UNIX_H_
#define GREEN_NET_UNIX_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string_view>
#include <utility>

#include "net/endpoint.h"
#include "net/io_handle.h"
#include "net/listener.h"
#include "net/socket.h"

namespace green::net {

class UnixStream : public StreamSocket {
 public:
  UnixStream() noexcept = default;
  UnixEndpoint local_endpoint() const;
  UnixEndpoint peer_endpoint() const;

 private:
  friend struct detail::SocketAccess;
  explicit UnixStream(std::unique_ptr<detail::IoHandle> io) noexcept
      : StreamSocket(std::move(io)) {}
};

struct UnixAccepted {
  UnixStream socket;
  UnixEndpoint peer;
};

class UnixListener {
 public:
  UnixListener() noexcept;
  UnixListener(UnixListener&&) noexcept;
  UnixListener& operator=(UnixListener&&) noexcept;
  ~UnixListener();

  UnixAccepted accept();
  UnixEndpoint local_endpoint() const;
  void close() noexcept;
  bool is_open() const noexcept;
  void set_timeout(std::optional<std::chrono::nanoseconds> timeout);

 private:
  friend struct detail::SocketAccess;
  friend UnixListener listen_unix(std::string_view, int, bool);
  explicit UnixListener(std::unique_ptr<detail::IoHandle> io) noexcept;
  detail::IoHandle& io(const char* call) const;

  std::unique_ptr<detail::IoHandle> io_;
};

UnixListener listen_unix(std::string_view path, int backlog = kDefaultBacklog,
                         bool unlink_existing = false);
UnixStream connect_unix(
    std::string_view path,
    std::optional<std::chrono::nanoseconds> timeout = std::nullopt);
// Two connected streams (socketpair(2)).
std::pair<UnixStream, UnixStream> unix_stream_pair();

}  // namespace green::net

#endif  // GREEN_NET_UNIX_H_
