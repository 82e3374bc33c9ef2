#ifndef BUILDD_COMMON_TLS_H_
#define BUILDD_COMMON_TLS_H_

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>

#include "absl/status/statusor.h"

namespace buildd {

// What a server presents: PEM files, watched for changes (a rotated
// certificate is served without a restart). No cert: plaintext.
struct TlsServerFiles {
  std::string cert;       // --tls_cert: certificate chain
  std::string key;        // --tls_key: its private key
  std::string client_ca;  // --tls_client_ca: when set, clients need a certificate it signed
  bool enabled() const { return !cert.empty() || !key.empty(); }
};

// How a client dials: TLS verifying the server against `ca` (the system's
// roots when empty), presenting `cert`/`key` when a server asks for one.
struct TlsClientFiles {
  bool tls = false;
  std::string ca;    // --tls_ca
  std::string cert;  // --tls_client_cert
  std::string key;   // --tls_client_key
};

// The --tls_* flags of this process (BUILDD_TLS_CERT… in the environment,
// see ParseFlagsWithEnv). A client dials with TLS when --tls_ca or a client
// certificate is given.
TlsServerFiles TlsServerFlags();
TlsClientFiles TlsClientFlags();

// Server credentials for `files`: insecure ones when TLS is off. An error
// names the flag whose file is missing or unreadable.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentials(
    const TlsServerFiles& files);
// Channel credentials for `files`: insecure ones unless `files.tls`.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> ChannelCredentials(
    const TlsClientFiles& files);

}  // namespace buildd

#endif  // BUILDD_COMMON_TLS_H_
