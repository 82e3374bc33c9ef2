#ifndef BUILDD_GATEWAY_TLS_CONTEXT_H_
#define BUILDD_GATEWAY_TLS_CONTEXT_H_

#include <sys/types.h>

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace buildd::gateway {

// A TLS server context (TLS 1.2 and later) from PEM files: the certificate
// chain, leaf first, and its private key, which must match.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> LoadTlsServerContext(
    const std::string& cert_file, const std::string& key_file);

// The HTTPS server's TLS context, built again when the certificate or key
// file changes, so that a renewed certificate is served without a restart.
// Current() looks at the files (their inode, size and modification time) at
// most once per `check_interval`. A changed pair that does not load (half
// written, or a key that does not match) is logged once and the context in
// use is kept. Connections hold the context they started with, so replacing
// it never touches them. Thread-safe.
class TlsContextSource {
 public:
  // Fails when the files do not load now.
  static absl::StatusOr<std::unique_ptr<TlsContextSource>> Create(
      std::string cert_file, std::string key_file,
      absl::Duration check_interval = absl::Seconds(1));

  std::shared_ptr<boost::asio::ssl::context> Current();

 private:
  // What identifies one version of a file; all zero when it cannot be read.
  struct FileStamp {
    dev_t device = 0;
    ino_t inode = 0;
    off_t size = 0;
    int64_t mtime_ns = 0;
    bool operator==(const FileStamp&) const = default;
  };
  struct PairStamp {
    FileStamp cert;
    FileStamp key;
    bool operator==(const PairStamp&) const = default;
  };
  static FileStamp Stamp(const std::string& path);

  TlsContextSource(std::string cert_file, std::string key_file, absl::Duration check_interval);

  const std::string cert_file_;
  const std::string key_file_;
  const absl::Duration check_interval_;
  absl::Mutex mu_;
  std::shared_ptr<boost::asio::ssl::context> current_ ABSL_GUARDED_BY(mu_);
  // The files as they were when last loaded, or last tried and refused.
  PairStamp tried_ ABSL_GUARDED_BY(mu_);
  absl::Time next_check_ ABSL_GUARDED_BY(mu_);
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_TLS_CONTEXT_H_
