// connect(): client sockets (Eventlet's connect(addr, family, bind)).
//
//   green::net::TcpSocket s = green::net::connect("localhost", 8080);
//   green::net::TcpSocket t = green::net::connect(
//       green::net::endpoint("::1", 8080),
//       {.bind = green::net::endpoint("::1", 0),
//        .timeout = std::chrono::seconds(2)});
//
// The connect itself is non-blocking (EINPROGRESS, then a wait for
// writability in the worker's readiness poller), so only the calling green
// thread waits. A host name is resolved first (net/resolve.h) and its addresses
// are tried in order; the last failure is thrown. A closed port throws
// std::system_error with code std::errc::connection_refused.
#ifndef GREEN_NET_CONNECT_H_
#define GREEN_NET_CONNECT_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>

#include "net/endpoint.h"
#include "net/resolve.h"
#include "net/socket.h"

namespace green::net {

struct ConnectOptions {
  // The local address to bind to first (Eventlet's `bind`).
  std::optional<Endpoint> bind;
  // Bounds the whole connect (resolution included): TimeoutError.
  std::optional<std::chrono::nanoseconds> timeout;
  // TCP_NODELAY on the new socket (Go's default; Eventlet leaves it off).
  bool nodelay = true;
  // Which address families a host name may resolve to.
  Family family = Family::kAny;
};

TcpSocket connect(const Endpoint& endpoint, const ConnectOptions& options = {});
TcpSocket connect(std::string_view host, std::uint16_t port,
                  const ConnectOptions& options = {});

}  // namespace green::net

#endif  // GREEN_NET_CONNECT_H_
