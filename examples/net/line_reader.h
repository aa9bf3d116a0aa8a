// LineReader: reads '\n'-terminated lines from any green stream
// (green::net::TcpSocket, UnixStream, TlsStream) -- what Python's
// socket.makefile().readline() does in the Eventlet examples.
//
//   LineReader reader(socket);
//   while (std::optional<std::string> line = reader.read_line()) use(*line);
#ifndef GREEN_EXAMPLES_NET_LINE_READER_H_
#define GREEN_EXAMPLES_NET_LINE_READER_H_

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace examples {

template <typename Stream>
class LineReader {
 public:
  explicit LineReader(Stream& stream, std::size_t max_line = 64 * 1024)
      : stream_(stream), max_line_(max_line) {}

  // The next line with its '\n' (the last one may lack it); std::nullopt
  // at end of stream. Throws std::length_error past max_line bytes.
  std::optional<std::string> read_line() {
    for (;;) {
      const std::size_t newline = buffer_.find('\n', scanned_);
      if (newline != std::string::npos) {
        std::string line = buffer_.substr(0, newline + 1);
        buffer_.erase(0, newline + 1);
        scanned_ = 0;
        return line;
      }
      scanned_ = buffer_.size();
      if (buffer_.size() > max_line_) {
        throw std::length_error("LineReader: line longer than the limit");
      }
      const std::size_t old = buffer_.size();
      buffer_.resize(old + kChunk);
      const std::size_t n = stream_.read_some(buffer_.data() + old, kChunk);
      buffer_.resize(old + n);
      if (n == 0) {
        if (buffer_.empty()) return std::nullopt;
        std::string last = std::move(buffer_);
        buffer_.clear();
        scanned_ = 0;
        return last;
      }
    }
  }

 private:
  static constexpr std::size_t kChunk = 4096;
  Stream& stream_;
  const std::size_t max_line_;
  std::string buffer_;
  std::size_t scanned_ = 0;
};

}  // namespace examples

#endif  // GREEN_EXAMPLES_NET_LINE_READER_H_
