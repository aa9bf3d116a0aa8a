// make_self_signed_certificate(): see self_signed.h.
#include "net/self_signed.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>
#include <stdexcept>

namespace green::net {
namespace {

template <auto Free>
struct Deleter {
  template <typename T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};
using Key = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY_free>>;
using Certificate = std::unique_ptr<X509, Deleter<X509_free>>;
using Bio = std::unique_ptr<BIO, Deleter<BIO_free_all>>;
using Extension = std::unique_ptr<X509_EXTENSION, Deleter<X509_EXTENSION_free>>;

[[noreturn]] void fail(const char* step) {
  const unsigned long error = ERR_get_error();
  char reason[256] = "unknown OpenSSL error";
  if (error != 0) ERR_error_string_n(error, reason, sizeof reason);
  throw std::runtime_error(
      std::string("green::net::make_self_signed_certificate: ") + step + ": " +
      reason);
}

void check(int ok, const char* step) {
  if (ok <= 0) fail(step);
}

void add_extension(X509* certificate, int nid, const std::string& value) {
  X509V3_CTX context;
  X509V3_set_ctx_nodb(&context);
  X509V3_set_ctx(&context, certificate, certificate, nullptr, nullptr, 0);
  Extension extension(
      X509V3_EXT_conf_nid(nullptr, &context, nid, value.c_str()));
  if (!extension) fail("X509V3_EXT_conf_nid");
  check(X509_add_ext(certificate, extension.get(), -1), "X509_add_ext");
}

std::string to_pem(Bio& bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(size));
}

}  // namespace

SelfSigned make_self_signed_certificate(
    const std::string& common_name, const std::vector<std::string>& alt_names,
    std::chrono::hours valid_for) {
  ERR_clear_error();
  Key key(EVP_EC_gen("P-256"));
  if (!key) fail("EVP_EC_gen");

  Certificate certificate(X509_new());
  if (!certificate) fail("X509_new");
  check(X509_set_version(certificate.get(), 2), "X509_set_version");  // v3
  // A random positive 127-bit serial, as RFC 5280 asks for uniqueness.
  unsigned char serial_bytes[16];
  check(RAND_bytes(serial_bytes, sizeof serial_bytes), "RAND_bytes");
  serial_bytes[0] &= 0x7f;
  std::unique_ptr<BIGNUM, Deleter<BN_free>> serial(
      BN_bin2bn(serial_bytes, sizeof serial_bytes, nullptr));
  if (!serial || !BN_to_ASN1_INTEGER(
                     serial.get(), X509_get_serialNumber(certificate.get()))) {
    fail("serial number");
  }
  // Valid from an hour ago: tolerates a peer whose clock is a little behind.
  if (!X509_gmtime_adj(X509_getm_notBefore(certificate.get()), -3600) ||
      !X509_gmtime_adj(X509_getm_notAfter(certificate.get()),
                       static_cast<long>(valid_for.count()) * 3600)) {
    fail("validity");
  }
  X509_NAME* name = X509_get_subject_name(certificate.get());
  check(X509_NAME_add_entry_by_txt(
            name, "CN", MBSTRING_UTF8,
            reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1,
            0),
        "subject");
  check(X509_set_issuer_name(certificate.get(), name), "issuer");
  check(X509_set_pubkey(certificate.get(), key.get()), "X509_set_pubkey");

  add_extension(certificate.get(), NID_basic_constraints, "critical,CA:FALSE");
  add_extension(certificate.get(), NID_key_usage,
                "critical,digitalSignature,keyEncipherment");
  add_extension(certificate.get(), NID_ext_key_usage, "serverAuth,clientAuth");
  add_extension(certificate.get(), NID_subject_key_identifier, "hash");
  if (!alt_names.empty()) {
    std::string joined;
    for (const std::string& alt : alt_names) {
      if (!joined.empty()) joined += ",";
      joined += alt;
    }
    add_extension(certificate.get(), NID_subject_alt_name, joined);
  }
  check(X509_sign(certificate.get(), key.get(), EVP_sha256()), "X509_sign");

  Bio certificate_bio(BIO_new(BIO_s_mem()));
  Bio key_bio(BIO_new(BIO_s_mem()));
  if (!certificate_bio || !key_bio) fail("BIO_new");
  check(PEM_write_bio_X509(certificate_bio.get(), certificate.get()),
        "PEM_write_bio_X509");
  check(PEM_write_bio_PrivateKey(key_bio.get(), key.get(), nullptr, nullptr, 0,
                                 nullptr, nullptr),
        "PEM_write_bio_PrivateKey");
  return SelfSigned{to_pem(certificate_bio), to_pem(key_bio)};
}

}  // namespace green::net
