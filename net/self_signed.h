// make_self_signed_certificate(): a throwaway certificate and key, made in
// memory with the OpenSSL 3 API -- for tests, examples and development
// servers, so that no private key is ever checked in.
//
//   green::net::SelfSigned pair = green::net::make_self_signed_certificate();
//   green::net::TlsContext server = green::net::server_context_from_pem(
//       pair.certificate_pem, pair.private_key_pem);
//   green::net::TlsContext client = green::net::client_context();
//   green::net::trust_certificate(client, pair.certificate_pem);
//
// The key is ECDSA P-256 (fast to make: about a millisecond); the
// certificate is self-issued, valid from an hour ago for `valid_for`, with
// the subject alternative names given (by default localhost, 127.0.0.1 and
// ::1, so a client that checks names can connect over loopback).
#ifndef GREEN_NET_SELF_SIGNED_H_
#define GREEN_NET_SELF_SIGNED_H_

#include <chrono>
#include <string>
#include <vector>

namespace green::net {

struct SelfSigned {
  std::string certificate_pem;
  std::string private_key_pem;  // PKCS#8, unencrypted
};

// `alt_names` in OpenSSL's notation: "DNS:name", "IP:address".
SelfSigned make_self_signed_certificate(
    const std::string& common_name = "localhost",
    const std::vector<std::string>& alt_names = {"DNS:localhost",
                                                 "IP:127.0.0.1", "IP:::1"},
    std::chrono::hours valid_for = std::chrono::hours(24 * 30));

}  // namespace green::net

#endif  // GREEN_NET_SELF_SIGNED_H_
