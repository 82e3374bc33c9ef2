#ifndef BUILDD_COMMON_SECRET_BOX_H_
#define BUILDD_COMMON_SECRET_BOX_H_

#include <string>

#include "absl/status/statusor.h"

namespace buildd {

// Authenticated encryption (XChaCha20-Poly1305 from libsodium) of data at
// rest under a 32-byte key; `context` (the id of the row's owner) is bound
// as additional data, so a ciphertext cannot be moved to another row.
class SecretBox {
 public:
  // `key_hex`: 64 hex digits.
  static absl::StatusOr<SecretBox> FromHex(const std::string& key_hex);

  std::string Seal(const std::string& plaintext, const std::string& context) const;
  absl::StatusOr<std::string> Open(const std::string& sealed, const std::string& context) const;

 private:
  std::string key_;
};

}  // namespace buildd

#endif  // BUILDD_COMMON_SECRET_BOX_H_
