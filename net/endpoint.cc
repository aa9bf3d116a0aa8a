// Endpoint helpers: see endpoint.h.
#include "net/endpoint.h"

#include <stdexcept>

namespace green::net {
namespace {

std::string address_and_port(const Address& address, std::uint16_t port) {
  if (address.is_v6()) {
    return "[" + address.to_string() + "]:" + std::to_string(port);
  }
  return address.to_string() + ":" + std::to_string(port);
}

}  // namespace

Endpoint endpoint(std::string_view numeric_address, std::uint16_t port) {
  asio::error_code error;
  const Address address =
      asio::ip::make_address(std::string(numeric_address), error);
  if (error) {
    throw std::invalid_argument(
        "green::net::endpoint: \"" + std::string(numeric_address) +
        "\" is not a numeric IPv4/IPv6 address; resolve host names with "
        "green::net::resolve() or pass them to connect(host, port)");
  }
  return Endpoint(address, port);
}

std::string to_string(const Endpoint& endpoint) {
  return address_and_port(endpoint.address(), endpoint.port());
}

std::string to_string(const UdpEndpoint& endpoint) {
  return address_and_port(endpoint.address(), endpoint.port());
}

std::string to_string(const UnixEndpoint& endpoint) {
  std::string path = endpoint.path();
  if (!path.empty() && path[0] == '\0') path[0] = '@';
  return path;
}

}  // namespace green::net
