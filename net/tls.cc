// TlsStream and the TLS contexts: see tls.h.
//
// The engine (asio::ssl::detail::engine: an SSL* on a BIO pair) does the
// cryptography in memory; this file moves its ciphertext to and from the
// green socket. Invariants:
//   * `lock_` guards the engine, `pending_out_` (ciphertext the engine
//     produced, in order, not yet handed to the socket), `flushing_` and
//     `flush_waiters_`. It is never held across a park.
//   * Exactly one green thread at a time -- the flusher, flushing_ == true --
//     writes ciphertext to the socket, and it keeps writing until
//     pending_out_ is empty *as seen under the lock*, where it also clears
//     flushing_. Output appended meanwhile by another green thread is thus
//     sent by the flusher, in the engine's order; nobody needs to wait for
//     it (a reader never waits: a reader blocked behind a writer that waits
//     for its peer to read could deadlock two full-duplex peers). A writer
//     waits for the token, so write_all() returns once its records are in
//     the kernel, and errors reach it.
//   * Only the reader (or the handshake, which holds both slots) reads the
//     socket; `input_` holds ciphertext read but not yet accepted by the
//     BIO pair.
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <asio/ip/address.hpp>
#include <asio/ssl/detail/engine.hpp>
#include <asio/ssl/error.hpp>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include "net/errors.h"
#include "runtime/park.h"
#include "runtime/spin_lock.h"
#include "runtime/thread_annotations.h"
#include "runtime/wait_list.h"
#include "sync/timeout.h"

namespace green::net {
namespace {

namespace rt = ::green::detail;
using Engine = asio::ssl::detail::engine;

// The largest TLS record's plaintext; one engine write at a time.
constexpr std::size_t kMaxRecord = 16 * 1024;
// Ciphertext moved per step: a record plus its overhead, the size of the
// engine's BIO pair buffer (17 KiB in asio::ssl).
constexpr std::size_t kChunk = 17 * 1024;

// A vector of bytes whose resize() does not zero the new bytes (they are
// written by the engine right away).
template <typename T>
struct DefaultInitAllocator : std::allocator<T> {
  template <typename U>
  struct rebind {
    using other = DefaultInitAllocator<U>;
  };
  using std::allocator<T>::allocator;
  template <typename U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <typename U, typename... Args>
  void construct(U* p, Args&&... args) {
    ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
  }
};
using Bytes = std::vector<unsigned char, DefaultInitAllocator<unsigned char>>;

[[noreturn]] void throw_tls(const asio::error_code& error, SSL* ssl,
                            const char* call) {
  std::string what = std::string("green::net::TlsStream::") + call;
  if (ssl) {
    const long verify = SSL_get_verify_result(ssl);
    if (verify != X509_V_OK) {
      what += std::string(" (certificate verification: ") +
              X509_verify_cert_error_string(verify) + ")";
    }
  }
  throw TlsError(error, what);
}

void configure(TlsContext& context) {
  SSL_CTX* native = context.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION);
}

}  // namespace

struct TlsStream::Impl {
  Impl(TcpSocket transport, TlsContext& context, const TlsOptions& options)
      : socket(std::move(transport)),
        server_side(options.server_side),
        allow_ragged_eof(options.allow_ragged_eof),
        engine_(context.native_handle()),
        input_(new unsigned char[kChunk]) {
    SSL* ssl = engine_.native_handle();
    // Asio sets RELEASE_BUFFERS, which frees OpenSSL's record buffers when
    // idle and allocates them again on every read; keep them.
    SSL_clear_mode(ssl, SSL_MODE_RELEASE_BUFFERS);
    SSL_set_options(ssl, SSL_OP_NO_RENEGOTIATION);
    if (!server_side && !options.server_name.empty()) {
      asio::error_code not_ip;
      asio::ip::make_address(options.server_name, not_ip);
      if (not_ip) {
        SSL_set_tlsext_host_name(ssl, options.server_name.c_str());
        SSL_set1_host(ssl, options.server_name.c_str());
      } else {
        X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                      options.server_name.c_str());
      }
    }
  }

  // The TLS-level slots: one reader, one writer.
  class Use {
   public:
    Use(Impl& impl, std::uint32_t bits, const char* call)
        : impl_(impl), bits_(bits) {
      // acquire/release: as IoHandle::Use, whose pattern this repeats.
      const std::uint32_t before =
          impl.slots_.fetch_or(bits, std::memory_order_acquire);
      if (before & bits) {
        impl.slots_.fetch_and(~(bits & ~before), std::memory_order_release);
        throw std::logic_error(
            std::string("green::net::TlsStream::") + call +
            ": another green thread is already using this TLS stream in the "
            "same direction; one reader and one writer may use it at once");
      }
    }
    ~Use() { impl_.slots_.fetch_and(~bits_, std::memory_order_release); }

   private:
    Impl& impl_;
    const std::uint32_t bits_;
  };
  static constexpr std::uint32_t kReading = 1, kWriting = 2;

  void handshake() {
    Use use(*this, kReading | kWriting, "handshake");
    const auto type = server_side ? asio::ssl::stream_base::server
                                  : asio::ssl::stream_base::client;
    for (;;) {
      asio::error_code error;
      Engine::want want;
      {
        std::lock_guard<rt::SpinLock> guard(lock_);
        want = engine_.handshake(type, error);
        collect_output();
      }
      if (error) {
        try {
          flush(true, "handshake");  // e.g. the alert that tells the peer
        } catch (...) {
          // A kill or Timeout is this green thread's, not ours; otherwise
          // the alert is a courtesy: its write failing changes nothing.
          green::detail::rethrow_if_interrupt();
        }
        throw_tls(error, engine_.native_handle(), "handshake");
      }
      flush(true, "handshake");
      if (want == Engine::want_input_and_retry) {
        if (!feed_input("handshake")) {
          throw_tls(asio::error::make_error_code(asio::error::eof), nullptr,
                    "handshake: the peer closed the connection");
        }
      } else if (want != Engine::want_output_and_retry) {
        return;  // want_nothing or want_output (sent): done
      }
    }
  }

  std::size_t read_some(void* data, std::size_t size) {
    Use use(*this, kReading, "read_some");
    if (size == 0) return 0;
    for (;;) {
      asio::error_code error;
      std::size_t n = 0;
      Engine::want want;
      bool output;
      {
        std::lock_guard<rt::SpinLock> guard(lock_);
        want = engine_.read(asio::buffer(data, size), error, n);
        output = collect_output();
      }
      if (output) flush(false, "read_some");
      if (error == asio::error::eof) return 0;  // close_notify
      if (error) throw_tls(error, nullptr, "read_some");
      if (n > 0) return n;
      if (want == Engine::want_input_and_retry && !feed_input("read_some")) {
        // TCP end of stream. Without close_notify it is "truncated".
        asio::error_code eof = asio::error::make_error_code(asio::error::eof);
        {
          std::lock_guard<rt::SpinLock> guard(lock_);
          engine_.map_error_code(eof);
        }
        if (eof == asio::error::eof || allow_ragged_eof) return 0;
        throw_tls(eof, nullptr, "read_some");
      }
    }
  }

  void write_all(const void* data, std::size_t size) {
    Use use(*this, kWriting, "write_all");
    const auto* bytes = static_cast<const unsigned char*>(data);
    while (size > 0) {
      asio::error_code error;
      std::size_t n = 0;
      Engine::want want;
      {
        std::lock_guard<rt::SpinLock> guard(lock_);
        if (write_broken_) {
          throw TlsError(
              asio::error::make_error_code(asio::error::broken_pipe),
              "green::net::TlsStream::write_all: an earlier write was cut "
              "short (interrupted or failed); the TLS stream cannot be "
              "written any more");
        }
        want = engine_.write(asio::buffer(bytes, std::min(size, kMaxRecord)),
                             error, n);
        collect_output();
      }
      flush(true, "write_all");
      if (error) throw_tls(error, nullptr, "write_all");
      if (want == Engine::want_input_and_retry) {
        throw TlsError(
            asio::error::make_error_code(asio::error::operation_not_supported),
            "green::net::TlsStream::write_all: the peer asked for a "
            "renegotiation, which is not supported");
      }
      bytes += n;
      size -= n;
    }
  }

  void shutdown() {
    Use use(*this, kWriting, "shutdown");
    {
      std::lock_guard<rt::SpinLock> guard(lock_);
      asio::error_code ignored;
      engine_.shutdown(ignored);  // queues close_notify; we do not wait for
                                  // the peer's
      collect_output();
    }
    flush(true, "shutdown");
    try {
      socket.shutdown(Shutdown::kWrite);
    } catch (const std::system_error& e) {
      // The peer already closed (or reset) the connection: nothing left to
      // half-close.
      if (e.code() != std::errc::not_connected) throw;
    }
  }

  SSL* ssl() { return engine_.native_handle(); }

  TcpSocket socket;
  const bool server_side;
  const bool allow_ragged_eof;

 private:
  // Moves the engine's output into pending_out_; returns whether any.
  bool collect_output() GREEN_REQUIRES(lock_) {
    bool any = false;
    for (;;) {
      const std::size_t old = pending_out_.size();
      pending_out_.resize(old + kChunk);
      const asio::mutable_buffer got =
          engine_.get_output(asio::buffer(pending_out_.data() + old, kChunk));
      pending_out_.resize(old + got.size());
      if (got.size() == 0) return any;
      any = true;
    }
  }

  // Sends pending_out_ (see the invariants at the top). `wait`: if another
  // green thread is flushing, wait for it (writers) instead of leaving our
  // bytes to it (readers).
  void flush(bool wait, const char* call) {
    std::unique_lock<rt::SpinLock> lock(lock_);
    for (;;) {
      if (pending_out_.empty()) return;
      if (!flushing_) break;
      if (!wait) return;
      rt::Waiter waiter;
      rt::block_on(flush_waiters_, lock, waiter);  // interruptible
      // The flusher we waited for failed and dropped everything pending,
      // our bytes included: they were not sent, so say so (returning
      // would report a write that never happened).
      if (write_broken_) {
        throw TlsError(
            asio::error::make_error_code(asio::error::broken_pipe),
            std::string("green::net::TlsStream::") + call +
                ": another green thread's write on this stream failed "
                "while this one waited to send; its data was not sent");
      }
    }
    flushing_ = true;
    for (;;) {
      pending_out_.swap(flush_buffer_);
      lock.unlock();
      try {
        detail::write_all(detail::SocketAccess::io(socket, call),
                          flush_buffer_.data(), flush_buffer_.size(), call);
      } catch (...) {
        flush_buffer_.clear();
        lock.lock();
        flushing_ = false;
        write_broken_ = true;
        pending_out_.clear();
        flush_waiters_.notify_all();
        throw;
      }
      flush_buffer_.clear();
      lock.lock();
      if (pending_out_.empty()) {
        flushing_ = false;
        flush_waiters_.notify_all();
        return;
      }
    }
  }

  // Gives the engine more ciphertext, reading the socket if none is
  // buffered. False at the socket's end of stream.
  bool feed_input(const char* call) {
    if (input_begin_ == input_end_) {
      const std::size_t n = detail::read_some(
          detail::SocketAccess::io(socket, call), input_.get(), kChunk, call);
      if (n == 0) return false;
      input_begin_ = 0;
      input_end_ = n;
    }
    std::lock_guard<rt::SpinLock> guard(lock_);
    const asio::const_buffer rest = engine_.put_input(
        asio::buffer(input_.get() + input_begin_, input_end_ - input_begin_));
    input_begin_ = input_end_ - rest.size();
    return true;
  }

  std::atomic<std::uint32_t> slots_{0};
  rt::SpinLock lock_;
  Engine engine_ GREEN_GUARDED_BY(lock_);
  Bytes pending_out_ GREEN_GUARDED_BY(lock_);
  bool flushing_ GREEN_GUARDED_BY(lock_) = false;
  bool write_broken_ GREEN_GUARDED_BY(lock_) = false;
  rt::WaitList flush_waiters_ GREEN_GUARDED_BY(lock_);
  Bytes flush_buffer_;  // the flusher's
  // The reader's.
  std::unique_ptr<unsigned char[]> input_;
  std::size_t input_begin_ = 0;
  std::size_t input_end_ = 0;
};

TlsStream::TlsStream() noexcept = default;
TlsStream::TlsStream(std::unique_ptr<Impl> impl) noexcept
    : impl_(std::move(impl)) {}
TlsStream::TlsStream(TlsStream&&) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&&) noexcept = default;
TlsStream::~TlsStream() = default;

TlsStream::Impl& TlsStream::impl(const char* call) const {
  if (!impl_) {
    throw std::logic_error(std::string("green::net::TlsStream::") + call +
                           ": the stream is not open (default-constructed "
                           "or moved-from)");
  }
  return *impl_;
}

void TlsStream::handshake() { impl("handshake").handshake(); }

std::size_t TlsStream::read_some(void* data, std::size_t size) {
  return impl("read_some").read_some(data, size);
}

bool TlsStream::read_exact(void* data, std::size_t size) {
  Impl& i = impl("read_exact");
  auto* bytes = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const std::size_t n = i.read_some(bytes + done, size - done);
    if (n == 0) {
      if (done == 0) return false;
      throw EndOfStream(
          "green::net::TlsStream::read_exact: the stream ended "
          "after " +
          std::to_string(done) + " of " + std::to_string(size) + " bytes");
    }
    done += n;
  }
  return true;
}

void TlsStream::write_all(const void* data, std::size_t size) {
  impl("write_all").write_all(data, size);
}

void TlsStream::shutdown() { impl("shutdown").shutdown(); }

void TlsStream::close() noexcept {
  if (impl_) impl_->socket.close();
}

bool TlsStream::is_open() const noexcept {
  return impl_ && impl_->socket.is_open();
}

TcpSocket& TlsStream::socket() { return impl("socket").socket; }

void TlsStream::set_timeout(std::optional<std::chrono::nanoseconds> timeout) {
  impl("set_timeout").socket.set_timeout(timeout);
}

std::string TlsStream::protocol_version() const {
  return SSL_get_version(impl("protocol_version").ssl());
}

void* TlsStream::native_handle() { return impl("native_handle").ssl(); }

TlsStream wrap_ssl(TcpSocket socket, TlsContext& context,
                   const TlsOptions& options) {
  auto impl =
      std::make_unique<TlsStream::Impl>(std::move(socket), context, options);
  if (options.handshake) impl->handshake();
  return TlsStream(std::move(impl));
}

TlsStream wrap_ssl(TcpSocket socket, TlsContext& context, bool server_side) {
  TlsOptions options;
  options.server_side = server_side;
  return wrap_ssl(std::move(socket), context, options);
}

TlsContext server_context_from_pem_files(
    const std::string& certificate_chain_file,
    const std::string& private_key_file) {
  TlsContext context(TlsContext::tls_server);
  configure(context);
  context.use_certificate_chain_file(certificate_chain_file);
  context.use_private_key_file(private_key_file, TlsContext::pem);
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    throw std::invalid_argument(
        "green::net::server_context_from_pem_files: the private key " +
        private_key_file + " does not match the certificate " +
        certificate_chain_file);
  }
  return context;
}

TlsContext server_context_from_pem(std::string_view certificate_chain_pem,
                                   std::string_view private_key_pem) {
  TlsContext context(TlsContext::tls_server);
  configure(context);
  context.use_certificate_chain(
      asio::buffer(certificate_chain_pem.data(), certificate_chain_pem.size()));
  context.use_private_key(
      asio::buffer(private_key_pem.data(), private_key_pem.size()),
      TlsContext::pem);
  if (SSL_CTX_check_private_key(context.native_handle()) != 1) {
    throw std::invalid_argument(
        "green::net::server_context_from_pem: the private key does not "
        "match the certificate");
  }
  return context;
}

TlsContext client_context() {
  TlsContext context(TlsContext::tls_client);
  configure(context);
  context.set_default_verify_paths();
  context.set_verify_mode(asio::ssl::verify_peer);
  return context;
}

void trust_certificate(TlsContext& context, std::string_view certificate_pem) {
  context.add_certificate_authority(
      asio::buffer(certificate_pem.data(), certificate_pem.size()));
}

}  // namespace green::net
