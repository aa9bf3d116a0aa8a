// resolve(): see resolve.h.
#include "net/resolve.h"

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <memory>
#include <mutex>
#include <string>

#include "net/errors.h"
#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/worker.h"

namespace green::net {
namespace {

namespace rt = ::green::detail;

// Shared by the parked green thread and the resolver's completion handler,
// which may run after the green thread gave up (interrupt, deadline).
struct Lookup {
  rt::SpinLock lock;
  bool done GREEN_GUARDED_BY(lock) = false;
  asio::error_code error GREEN_GUARDED_BY(lock);
  std::vector<Endpoint> endpoints GREEN_GUARDED_BY(lock);
  rt::Fiber* waiter GREEN_GUARDED_BY(lock) = nullptr;
  std::uint32_t epoch GREEN_GUARDED_BY(lock) = 0;
};

// Not address_configured (AI_ADDRCONFIG): it hides IPv4 results, even
// for "localhost", on a machine whose only IPv4 address is loopback.
asio::ip::tcp::resolver::flags flags_for(Family) {
  return asio::ip::tcp::resolver::numeric_service;
}

asio::ip::tcp protocol_for(Family family) {
  return family == Family::kV6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4();
}

std::vector<Endpoint> filter(std::vector<Endpoint> endpoints, Family family) {
  if (family == Family::kAny) return endpoints;
  std::vector<Endpoint> kept;
  for (const Endpoint& endpoint : endpoints) {
    if (endpoint.address().is_v6() == (family == Family::kV6)) {
      kept.push_back(endpoint);
    }
  }
  return kept;
}

std::string describe(std::string_view host, std::uint16_t port) {
  return "green::net::resolve " + std::string(host) + ":" +
         std::to_string(port);
}

std::vector<Endpoint> resolve_blocking(std::string_view host,
                                       std::uint16_t port, Family family) {
  asio::io_context io;
  asio::ip::tcp::resolver resolver(io);
  asio::error_code error;
  auto results =
      family == Family::kAny
          ? resolver.resolve(host, std::to_string(port), flags_for(family),
                             error)
          : resolver.resolve(protocol_for(family), host, std::to_string(port),
                             flags_for(family), error);
  if (error) throw std::system_error(error, describe(host, port));
  std::vector<Endpoint> endpoints;
  for (const auto& entry : results) endpoints.push_back(entry.endpoint());
  return endpoints;
}

}  // namespace

std::vector<Endpoint> resolve(std::string_view host, std::uint16_t port,
                              Family family,
                              std::optional<std::chrono::nanoseconds> timeout) {
  asio::error_code parse_error;
  const Address address =
      asio::ip::make_address(std::string(host), parse_error);
  if (!parse_error) return filter({Endpoint(address, port)}, family);

  rt::Fiber* fiber = rt::current_fiber();
  if (!fiber) return filter(resolve_blocking(host, port, family), family);

  rt::Deadline deadline;
  if (timeout) deadline = std::chrono::steady_clock::now() + *timeout;
  auto lookup = std::make_shared<Lookup>();
  asio::ip::tcp::resolver resolver(rt::current_worker()->io());
  auto handler = [lookup](const asio::error_code& error,
                          asio::ip::tcp::resolver::results_type results) {
    std::vector<Endpoint> endpoints;
    for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    std::lock_guard<rt::SpinLock> guard(lookup->lock);
    lookup->done = true;
    lookup->error = error;
    lookup->endpoints = std::move(endpoints);
    if (lookup->waiter) {
      lookup->waiter->wake(lookup->epoch, rt::WakeReason::kNotified, false);
      lookup->waiter = nullptr;
    }
  };
  if (family == Family::kAny) {
    resolver.async_resolve(host, std::to_string(port), flags_for(family),
                           std::move(handler));
  } else {
    resolver.async_resolve(protocol_for(family), host, std::to_string(port),
                           flags_for(family), std::move(handler));
  }
  for (;;) {
    std::unique_lock<rt::SpinLock> lock(lookup->lock);
    if (lookup->done) {
      if (lookup->error) {
        throw std::system_error(lookup->error, describe(host, port));
      }
      return filter(std::move(lookup->endpoints), family);
    }
    const std::uint32_t epoch = fiber->begin_park();  // may throw: unlocks
    lookup->waiter = fiber;
    lookup->epoch = epoch;
    lock.unlock();
    const rt::WakeReason reason = rt::park_until(fiber, epoch, deadline);
    lock.lock();
    lookup->waiter = nullptr;
    const bool done = lookup->done;
    lock.unlock();
    if (reason == rt::WakeReason::kInterrupted && fiber->interrupt_raisable()) {
      resolver.cancel();
      fiber->throw_if_interrupted();
    } else if (reason == rt::WakeReason::kTimedOut && !done) {
      resolver.cancel();
      throw TimeoutError(describe(host, port) + ": timed out");
    }
  }
}

}  // namespace green::net
