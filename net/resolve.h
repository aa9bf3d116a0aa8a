// resolve(): host names to endpoints without blocking a worker.
//
//   std::vector<green::net::Endpoint> eps = green::net::resolve("localhost",
//   80);
//
// A numeric address is parsed in place. A name goes to Asio's resolver
// (async_resolve): getaddrinfo(3) runs on Asio's resolver thread -- one per
// worker that resolves, so lookups from one worker run one at a time -- and
// the calling green thread parks meanwhile; its worker runs other green
// threads. From a plain OS thread it simply blocks that thread. kill() and
// green::Timeout interrupt the wait (the lookup itself runs to completion
// in the background and is discarded).
#ifndef GREEN_NET_RESOLVE_H_
#define GREEN_NET_RESOLVE_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "net/endpoint.h"

namespace green::net {

enum class Family { kAny, kV4, kV6 };

// Endpoints for (host, port), in the resolver's order of preference.
// Throws std::system_error (e.g. asio::error::host_not_found) naming the
// host, or TimeoutError once `timeout` passed.
std::vector<Endpoint> resolve(
    std::string_view host, std::uint16_t port, Family family = Family::kAny,
    std::optional<std::chrono::nanoseconds> timeout = std::nullopt);

}  // namespace green::net

#endif  // GREEN_NET_RESOLVE_H_
