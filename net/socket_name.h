// socket_name(): the local or peer address of a green socket, for every
// endpoint type (TCP/UDP `Endpoint`, `UnixEndpoint`); one body for
// getsockname/getpeername and their error handling.
#ifndef GREEN_NET_SOCKET_NAME_H_
#define GREEN_NET_SOCKET_NAME_H_

#include <sys/socket.h>

#include <cerrno>

#include "net/io_handle.h"

namespace green::net::detail {

// EndpointType: a sockaddr buffer with data(), capacity() and resize(n),
// as Endpoint and UnixEndpoint. Throws a socket error naming `call`.
template <typename EndpointType>
EndpointType socket_name(IoHandle& io, bool peer, const char* call) {
  IoHandle::Control control(io, call);
  EndpointType endpoint;
  socklen_t length = static_cast<socklen_t>(endpoint.capacity());
  const int result = peer ? ::getpeername(io.fd(), endpoint.data(), &length)
                          : ::getsockname(io.fd(), endpoint.data(), &length);
  if (result < 0) io.throw_error(errno, call);
  endpoint.resize(length);
  return endpoint;
}

}  // namespace green::net::detail

#endif  // GREEN_NET_SOCKET_NAME_H_
