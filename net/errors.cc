// green::net exceptions: see errors.h.
#include "net/errors.h"

#include <asio/error.hpp>

namespace green::net {

EndOfStream::EndOfStream(const std::string& what)
    : std::system_error(asio::error::make_error_code(asio::error::eof), what) {}

namespace detail {

void throw_errno(int error, const std::string& what) {
  throw std::system_error(error, std::system_category(), what);
}

}  // namespace detail
}  // namespace green::net
