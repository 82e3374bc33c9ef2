#include "common/tls.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_credentials_options.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain the server presents; with --tls_key it serves TLS only");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle: clients must present a certificate it signed (mutual TLS)");
ABSL_FLAG(std::string, tls_ca, "",
          "PEM CA bundle that the servers this process dials are verified against; "
          "setting it (or a client certificate) dials with TLS");
ABSL_FLAG(std::string, tls_client_cert, "",
          "PEM certificate this process presents to servers that ask for one");
ABSL_FLAG(std::string, tls_client_key, "", "PEM private key of --tls_client_cert");
ABSL_FLAG(int, tls_reload_s, 10, "how often (seconds) the certificate files are read again");

namespace buildd {
namespace {

absl::Status CheckReadable(const std::string& path, const char* flag) {
  if (access(path.c_str(), R_OK) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, ": cannot read ", path, ": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

unsigned ReloadSeconds() { return static_cast<unsigned>(std::max(1, absl::GetFlag(FLAGS_tls_reload_s))); }

}  // namespace

TlsServerFiles TlsServerFlags() {
  return TlsServerFiles{absl::GetFlag(FLAGS_tls_cert), absl::GetFlag(FLAGS_tls_key),
                        absl::GetFlag(FLAGS_tls_client_ca)};
}

TlsClientFiles TlsClientFlags() {
  TlsClientFiles files;
  files.ca = absl::GetFlag(FLAGS_tls_ca);
  files.cert = absl::GetFlag(FLAGS_tls_client_cert);
  files.key = absl::GetFlag(FLAGS_tls_client_key);
  files.tls = !files.ca.empty() || !files.cert.empty() || !files.key.empty();
  return files;
}

absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsServerFiles& files) {
  if (!files.enabled()) return grpc::InsecureServerCredentials();
  if (files.cert.empty() || files.key.empty()) {
    return absl::InvalidArgumentError("--tls_cert and --tls_key go together");
  }
  if (absl::Status st = CheckReadable(files.cert, "tls_cert"); !st.ok()) return st;
  if (absl::Status st = CheckReadable(files.key, "tls_key"); !st.ok()) return st;
  if (!files.client_ca.empty()) {
    if (absl::Status st = CheckReadable(files.client_ca, "tls_client_ca"); !st.ok()) return st;
  }
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      files.key, files.cert, files.client_ca, ReloadSeconds());
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (files.client_ca.empty()) {
    options.set_cert_request_type(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  } else {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  return grpc::experimental::TlsServerCredentials(options);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsClientFiles& files) {
  if (!files.tls) return grpc::InsecureChannelCredentials();
  if (files.cert.empty() != files.key.empty()) {
    return absl::InvalidArgumentError("--tls_client_cert and --tls_client_key go together");
  }
  if (!files.ca.empty()) {
    if (absl::Status st = CheckReadable(files.ca, "tls_ca"); !st.ok()) return st;
  }
  if (!files.cert.empty()) {
    if (absl::Status st = CheckReadable(files.cert, "tls_client_cert"); !st.ok()) return st;
    if (absl::Status st = CheckReadable(files.key, "tls_client_key"); !st.ok()) return st;
  }
  grpc::experimental::TlsChannelCredentialsOptions options;
  if (!files.ca.empty() || !files.cert.empty()) {
    auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
        files.key, files.cert, files.ca, ReloadSeconds());
    options.set_certificate_provider(provider);
    if (!files.ca.empty()) options.watch_root_certs();
    if (!files.cert.empty()) options.watch_identity_key_cert_pairs();
  }
  options.set_verify_server_certs(true);
  return grpc::experimental::TlsCredentials(options);
}

}  // namespace buildd
