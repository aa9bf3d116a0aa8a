// make_certificate DIR: writes a fresh self-signed certificate and key for
// 127.0.0.1 (cert.pem, key.pem) into DIR, for the TLS workloads. The
// driver runs it at start, so no private key is kept in the repository.
#include <cstdio>
#include <fstream>
#include <string>

#include "net/self_signed.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_certificate DIR\n");
    return 2;
  }
  const std::string dir = argv[1];
  const green::net::SelfSigned pair = green::net::make_self_signed_certificate(
      "127.0.0.1", {"IP:127.0.0.1", "DNS:localhost"}, std::chrono::hours(24));
  std::ofstream(dir + "/cert.pem") << pair.certificate_pem;
  std::ofstream(dir + "/key.pem") << pair.private_key_pem;
  std::ifstream check(dir + "/key.pem");
  return check.good() ? 0 : 1;
}
