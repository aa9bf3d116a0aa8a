// loadgen: the one load generator the echo workloads use against every
// server (greenrt, Go), so that its costs are the same for all of them.
//
//   loadgen -port P [-conns 50] [-seconds 5] [-size 64]
//           [-tls 0|1] [-mode echo|handshake]
//
// One thread, one epoll set, non-blocking sockets to 127.0.0.1:P (loopback
// only). The driver pins it to its own core, away from the server's.
//
//   echo       C connections are opened (and, with TLS, handshaken) first,
//              and each echoes one message (a warm-up, not measured);
//              then each sends a `size`-byte message, waits for the whole
//              echo, checks it byte for byte and sends the next (closed
//              loop, one request in flight per connection) for `seconds`.
//   handshake  (TLS) each of C slots loops: connect, handshake, one
//              echoed message, close -- the handshake rate.
//
// Prints "RESULT value=<requests or handshakes per second> check=<errors>
// requests=... p50_us=... p99_us=... client_cpu=..." where latencies are
// per request (echo) or per connection (handshake), for requests that
// started and ended inside the measured window plus, as lower bounds, the
// ages of requests still waiting when it closed; client_cpu is this
// process's CPU time over the window (1.0 = one core busy: then the
// load generator, not the server, may be the limit). Connections are
// closed with SO_LINGER 0 (a reset) so that thousands of runs leave no
// TIME_WAIT sockets holding ephemeral ports; servers see ECONNRESET.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "bench/common/bench_util.h"

namespace {

using bench::Clock;

// Setup (all connections open) must finish within this, or the run fails.
constexpr auto kSetupLimit = std::chrono::seconds(20);
// After the window, requests in flight get this long to complete.
constexpr auto kDrainLimit = std::chrono::seconds(2);
constexpr std::size_t kMaxMessage = 1 << 16;

enum class State {
  kConnecting,
  kHandshaking,
  kIdle,
  kWriting,
  kReading,
  kDead
};

struct Conn {
  int index = 0;
  int fd = -1;
  SSL* ssl = nullptr;
  State state = State::kDead;
  std::uint32_t interest = 0;  // current epoll events
  // Bumped per socket: an event still queued for a closed socket (whose
  // slot already holds a new one) is recognised and dropped.
  std::uint32_t generation = 0;
  std::size_t done = 0;  // bytes written or read of the message
  std::uint64_t sequence = 0;
  bool warmed = false;        // its warm-up message came back (echo)
  long completed = 0;         // requests completed inside the window
  Clock::time_point started;  // request (echo) or connection (handshake)
  std::vector<unsigned char> out, in;
};

double cpu_seconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_utime.tv_sec + usage.ru_stime.tv_sec +
         (usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
}

class LoadGenerator {
 public:
  LoadGenerator(int port, int conns, double seconds, std::size_t size, bool tls,
                bool handshake_mode)
      : port_(port),
        seconds_(seconds),
        size_(size),
        tls_(tls),
        handshake_mode_(handshake_mode),
        conns_(conns) {
    epoll_ = epoll_create1(EPOLL_CLOEXEC);
    if (tls_) {
      ssl_context_ = SSL_CTX_new(TLS_client_method());
      // A benchmark against our own self-signed certificate: no chain to
      // verify. Every connection makes a full handshake (no resumption).
      SSL_CTX_set_verify(ssl_context_, SSL_VERIFY_NONE, nullptr);
      SSL_CTX_set_session_cache_mode(ssl_context_, SSL_SESS_CACHE_OFF);
    }
    for (int i = 0; i < conns; ++i) {
      conns_[i].index = i;
      conns_[i].out.resize(size_);
      conns_[i].in.resize(size_);
    }
  }

  // Polls until `count` reaches the number of connections; false (after
  // saying so) on an error or once the setup limit has passed.
  bool setup_until(const int& count, const char* what,
                   Clock::time_point setup_start) {
    while (count < static_cast<int>(conns_.size())) {
      if (Clock::now() - setup_start > kSetupLimit || errors_ > 0) {
        std::fprintf(stderr,
                     "loadgen: only %d of %zu connections %s (%ld errors)\n",
                     count, conns_.size(), what, errors_);
        return false;
      }
      poll_once(100);
    }
    return true;
  }

  int run() {
    const auto setup_start = Clock::now();
    for (Conn& c : conns_) open(c);
    if (!handshake_mode_) {
      // Echo: the window starts once every connection is ready.
      if (!setup_until(ready_, "ready", setup_start)) return 1;
      // Then one echoed message per connection, not measured: the window
      // measures servers that have started every connection's handler. A
      // server still starting handlers when the window opened put its
      // start-up into the p99.9 of 1,000 connections (about one request
      // in 450), which then said little about serving under load.
      warming_ = true;
      for (Conn& c : conns_) step(c);
      if (!setup_until(warmed_, "warmed up", setup_start)) return 1;
      warming_ = false;
    }
    window_start_ = Clock::now();
    window_end_ = window_start_ + std::chrono::duration_cast<Clock::duration>(
                                      std::chrono::duration<double>(seconds_));
    const double cpu_start = cpu_seconds();
    measuring_ = true;
    for (Conn& c : conns_) step(c);
    while (Clock::now() < window_end_) poll_once(10);
    const double cpu = cpu_seconds() - cpu_start;
    record_unfinished();
    stopping_ = true;
    const auto drain_end = Clock::now() + kDrainLimit;
    while (in_flight() > 0 && Clock::now() < drain_end) poll_once(10);
    for (Conn& c : conns_) close_conn(c);
    report(cpu);
    return 0;
  }

 private:
  int in_flight() const {
    int n = 0;
    for (const Conn& c : conns_) {
      n += c.state != State::kIdle && c.state != State::kDead;
    }
    return n;
  }

  void poll_once(int timeout_ms) {
    epoll_event events[256];
    const int n = epoll_wait(epoll_, events, 256, timeout_ms);
    for (int i = 0; i < n; ++i) {
      Conn& c = conns_[events[i].data.u64 & 0xffffffffu];
      if (c.fd >= 0 && c.generation == events[i].data.u64 >> 32) step(c);
    }
  }

  void open(Conn& c) {
    c.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port_));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    c.started = Clock::now();
    c.state = State::kConnecting;
    c.interest = EPOLLOUT;
    ++c.generation;
    epoll_event event{};
    event.events = c.interest;
    event.data.u64 = tag(c);
    epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &event);
    if (connect(c.fd, reinterpret_cast<sockaddr*>(&address), sizeof address) !=
            0 &&
        errno != EINPROGRESS) {
      fail(c, "connect");
    }
  }

  void close_conn(Conn& c) {
    if (c.ssl) SSL_free(c.ssl);
    c.ssl = nullptr;
    if (c.fd >= 0) {
      const linger reset{1, 0};
      setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
      close(c.fd);  // also leaves the epoll set
    }
    c.fd = -1;
    c.state = State::kDead;
  }

  void fail(Conn& c, const char* what) {
    if (errors_++ < 5) {
      std::fprintf(stderr, "loadgen: connection %d: %s failed: %s\n", c.index,
                   what, errno ? std::strerror(errno) : "protocol");
    }
    close_conn(c);
  }

  void want(Conn& c, std::uint32_t events) {
    if (c.interest == events) return;
    c.interest = events;
    epoll_event event{};
    event.events = events;
    event.data.u64 = tag(c);
    epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &event);
  }

  static std::uint64_t tag(const Conn& c) {
    return (std::uint64_t{c.generation} << 32) |
           static_cast<std::uint32_t>(c.index);
  }

  // For an SSL call that returned r <= 0: arms the right event and returns
  // true if the call should be retried later, false on a real error.
  bool ssl_would_block(Conn& c, int r) {
    switch (SSL_get_error(c.ssl, r)) {
      case SSL_ERROR_WANT_READ:
        want(c, EPOLLIN);
        return true;
      case SSL_ERROR_WANT_WRITE:
        want(c, EPOLLOUT);
        return true;
      default:
        ERR_clear_error();
        return false;
    }
  }

  // Advances one connection as far as it goes without blocking.
  void step(Conn& c) {
    for (;;) {
      switch (c.state) {
        case State::kDead:
          if (handshake_mode_ && measuring_ && !stopping_) {
            open(c);
            continue;
          }
          return;
        case State::kConnecting: {
          // Connected once the socket is writable (or failed): poll(0)
          // rather than trusting SO_ERROR alone, which reads 0 while the
          // connect is still in progress.
          pollfd check{c.fd, POLLOUT, 0};
          if (::poll(&check, 1, 0) == 0) return want(c, EPOLLOUT);
          int error = 0;
          socklen_t length = sizeof error;
          getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &length);
          if (error != 0) {
            errno = error;
            return fail(c, "connect");
          }
          if (tls_) {
            c.ssl = SSL_new(ssl_context_);
            SSL_set_fd(c.ssl, c.fd);
            c.state = State::kHandshaking;
          } else {
            c.state = State::kIdle;
            ++ready_;
          }
          want(c, EPOLLIN);
          continue;
        }
        case State::kHandshaking: {
          errno = 0;
          const int r = SSL_connect(c.ssl);
          if (r != 1) {
            if (ssl_would_block(c, r)) return;
            return fail(c, "TLS handshake");
          }
          c.state = State::kIdle;
          ++ready_;
          want(c, EPOLLIN);
          continue;
        }
        case State::kIdle:
          if (warming_ && !c.warmed) {
            begin_request(c);
            continue;
          }
          if (!measuring_ || stopping_) return;
          begin_request(c);
          continue;
        case State::kWriting: {
          errno = 0;
          const std::size_t left = size_ - c.done;
          long n;
          if (c.ssl) {
            n = SSL_write(c.ssl, c.out.data() + c.done, static_cast<int>(left));
            if (n <= 0) {
              if (ssl_would_block(c, static_cast<int>(n))) return;
              return fail(c, "TLS write");
            }
          } else {
            n = send(c.fd, c.out.data() + c.done, left, MSG_NOSIGNAL);
            if (n < 0) {
              if (errno == EAGAIN) return want(c, EPOLLOUT);
              return fail(c, "send");
            }
          }
          c.done += static_cast<std::size_t>(n);
          if (c.done == size_) {
            c.state = State::kReading;
            c.done = 0;
            want(c, EPOLLIN);
            // Plain TCP: the echo cannot be back a few instructions after
            // the send (the server runs on another core), so a recv now
            // would only return EAGAIN -- a third syscall per request that
            // every server would pay for in throughput. The level-triggered
            // epoll set reports the echo when it arrives. (TLS keeps going:
            // OpenSSL may hold already-read records that epoll cannot see.)
            if (!c.ssl) return;
          }
          continue;
        }
        case State::kReading: {
          errno = 0;
          const std::size_t left = size_ - c.done;
          long n;
          if (c.ssl) {
            n = SSL_read(c.ssl, c.in.data() + c.done, static_cast<int>(left));
            if (n <= 0) {
              if (ssl_would_block(c, static_cast<int>(n))) return;
              return fail(c, "TLS read");
            }
          } else {
            n = recv(c.fd, c.in.data() + c.done, left, 0);
            if (n < 0 && errno == EAGAIN) return want(c, EPOLLIN);
            if (n <= 0) return fail(c, n == 0 ? "read (early end)" : "recv");
          }
          c.done += static_cast<std::size_t>(n);
          if (c.done < size_) continue;
          finish_request(c);
          continue;
        }
      }
    }
  }

  void begin_request(Conn& c) {
    // Connection index, sequence number, then a pattern: an echo that
    // mixes up connections or messages fails the comparison.
    std::uint64_t header[2] = {static_cast<std::uint64_t>(c.index),
                               c.sequence++};
    std::memcpy(c.out.data(), header, std::min(size_, sizeof header));
    for (std::size_t i = sizeof header; i < size_; ++i) {
      c.out[i] = static_cast<unsigned char>(i * 31 + c.sequence);
    }
    if (!handshake_mode_) c.started = Clock::now();
    c.done = 0;
    c.state = State::kWriting;
  }

  void finish_request(Conn& c) {
    if (std::memcmp(c.in.data(), c.out.data(), size_) != 0) {
      errno = 0;
      return fail(c, "echo comparison");
    }
    if (warming_) {
      c.warmed = true;
      ++warmed_;
      c.state = State::kIdle;
      return;
    }
    const auto now = Clock::now();
    if (now <= window_end_ && c.started >= window_start_) {
      ++completed_;
      ++c.completed;
      const double ns = bench::ns_between(c.started, now);
      latencies_ns_.push_back(static_cast<std::uint32_t>(std::min(ns, 4.0e9)));
    } else if (now <= window_end_ && handshake_mode_) {
      ++completed_;  // connected just before the window opened
    }
    if (handshake_mode_) {
      close_conn(c);  // kDead: step() reconnects while measuring
    } else {
      c.state = State::kIdle;
    }
  }

  double percentile_us(double p) {
    if (latencies_ns_.empty()) return 0;
    const std::size_t k =
        std::min(latencies_ns_.size() - 1,
                 static_cast<std::size_t>(
                     p * static_cast<double>(latencies_ns_.size())));
    std::nth_element(latencies_ns_.begin(), latencies_ns_.begin() + k,
                     latencies_ns_.end());
    return latencies_ns_[k] / 1e3;
  }

  // A request still waiting when the window closes has waited at least
  // this long: its age goes into the latency distribution (as a lower
  // bound), else a connection the server starves would vanish from the
  // percentiles instead of dominating them.
  void record_unfinished() {
    const auto now = Clock::now();
    for (const Conn& c : conns_) {
      const bool waiting =
          c.state == State::kWriting || c.state == State::kReading ||
          (handshake_mode_ &&
           (c.state == State::kConnecting || c.state == State::kHandshaking));
      if (!waiting || c.started < window_start_) continue;
      ++unfinished_;
      latencies_ns_.push_back(static_cast<std::uint32_t>(
          std::min(bench::ns_between(c.started, now), 4.0e9)));
    }
  }

  // Echo: connections that completed no request in the whole window.
  long starved_conns() const {
    if (handshake_mode_) return 0;
    long n = 0;
    for (const Conn& c : conns_) n += c.completed == 0;
    return n;
  }

  double mean_us() const {
    if (latencies_ns_.empty()) return 0;
    double sum = 0;
    for (std::uint32_t ns : latencies_ns_) sum += ns;
    return sum / static_cast<double>(latencies_ns_.size()) / 1e3;
  }

  void report(double cpu) {
    const double window =
        std::chrono::duration<double>(window_end_ - window_start_).count();
    bench::print_result({{"value", completed_ / window},
                         {"check", double(errors_)},
                         {"requests", double(completed_)},
                         {"p50_us", percentile_us(0.50)},
                         {"p99_us", percentile_us(0.99)},
                         {"p999_us", percentile_us(0.999)},
                         {"max_us", percentile_us(1.0)},
                         {"mean_us", mean_us()},
                         {"unfinished", double(unfinished_)},
                         {"starved_conns", double(starved_conns())},
                         {"client_cpu", cpu / window}});
  }

  const int port_;
  const double seconds_;
  const std::size_t size_;
  const bool tls_;
  const bool handshake_mode_;
  int epoll_ = -1;
  SSL_CTX* ssl_context_ = nullptr;
  std::vector<Conn> conns_;
  int ready_ = 0;
  long errors_ = 0;
  long completed_ = 0;
  long unfinished_ = 0;  // requests still waiting when the window closed
  bool measuring_ = false;
  bool stopping_ = false;
  bool warming_ = false;  // echo: the warm-up round before the window
  int warmed_ = 0;
  Clock::time_point window_start_, window_end_;
  std::vector<std::uint32_t> latencies_ns_;
};

}  // namespace

int main(int argc, char** argv) {
  bench::Flags flags(argc, argv, 1);
  const long port = flags.get("port", 0);
  const long conns = flags.get("conns", 50);
  const double seconds = flags.get_double("seconds", 5);
  const long size = flags.get("size", 64);
  const bool tls = flags.get("tls", 0) != 0;
  const std::string mode = flags.get_string("mode", "echo");
  flags.check_all_used("loadgen");
  if (port <= 0 || conns <= 0 || size < 16 ||
      static_cast<std::size_t>(size) > kMaxMessage ||
      (mode != "echo" && mode != "handshake")) {
    std::fprintf(stderr,
                 "usage: loadgen -port P [-conns C] [-seconds S] "
                 "[-size 16..65536] [-tls 0|1] [-mode echo|handshake]\n");
    return 2;
  }
  LoadGenerator generator(static_cast<int>(port), static_cast<int>(conns),
                          seconds, static_cast<std::size_t>(size), tls,
                          mode == "handshake");
  return generator.run();
}
