#include "gateway/tls_context.h"

#include <openssl/ssl.h>
#include <sys/stat.h>

#include <boost/asio/ssl/context.hpp>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace buildd::gateway {

namespace ssl = boost::asio::ssl;

absl::StatusOr<std::shared_ptr<ssl::context>> LoadTlsServerContext(const std::string& cert_file,
                                                                   const std::string& key_file) {
  auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* native = context->native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  // Client-initiated renegotiation costs the server a handshake per request.
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  boost::system::error_code ec;
  context->use_certificate_chain_file(cert_file, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the TLS certificate ", cert_file, ": ", ec.message()));
  }
  context->use_private_key_file(key_file, ssl::context::pem, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot load the TLS key ", key_file, ": ", ec.message()));
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("the TLS key ", key_file, " does not match the certificate ", cert_file));
  }
  return context;
}

absl::StatusOr<std::unique_ptr<TlsContextSource>> TlsContextSource::Create(
    std::string cert_file, std::string key_file, absl::Duration check_interval) {
  std::unique_ptr<TlsContextSource> source(
      new TlsContextSource(std::move(cert_file), std::move(key_file), check_interval));
  const PairStamp stamp{Stamp(source->cert_file_), Stamp(source->key_file_)};
  absl::StatusOr<std::shared_ptr<ssl::context>> context =
      LoadTlsServerContext(source->cert_file_, source->key_file_);
  if (!context.ok()) return context.status();
  absl::MutexLock lock(&source->mu_);
  source->current_ = *std::move(context);
  source->tried_ = stamp;
  source->next_check_ = absl::Now() + check_interval;
  return source;
}

TlsContextSource::TlsContextSource(std::string cert_file, std::string key_file,
                                   absl::Duration check_interval)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      check_interval_(check_interval) {}

TlsContextSource::FileStamp TlsContextSource::Stamp(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return {};
  return FileStamp{st.st_dev, st.st_ino, st.st_size,
                   static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

std::shared_ptr<ssl::context> TlsContextSource::Current() {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  if (now < next_check_) return current_;
  next_check_ = now + check_interval_;
  const PairStamp stamp{Stamp(cert_file_), Stamp(key_file_)};
  if (stamp == tried_) return current_;
  tried_ = stamp;
  absl::StatusOr<std::shared_ptr<ssl::context>> context =
      LoadTlsServerContext(cert_file_, key_file_);
  if (!context.ok()) {
    Log()->warn("https: keeping the certificate in use: {}", context.status().message());
    return current_;
  }
  Log()->info("https: loaded the changed certificate {} and key {}", cert_file_, key_file_);
  current_ = *std::move(context);
  return current_;
}

}  // namespace buildd::gateway
