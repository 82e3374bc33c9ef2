#ifndef BUILDD_SERVICES_ACCOUNTS_API_KEYS_H_
#define BUILDD_SERVICES_ACCOUNTS_API_KEYS_H_

#include <string>

#include "absl/status/statusor.h"

namespace buildd::accounts {

// API keys look like `buildd_<type>_<random>`: 32 random bytes (256 bits) in
// URL-safe base64. Only an HMAC-SHA256 of the key under a server pepper is
// stored; a leaked table does not reveal keys.
class KeyHasher {
 public:
  // REQUIRES: pepper is at least 16 bytes.
  explicit KeyHasher(std::string pepper) : pepper_(std::move(pepper)) {}

  static std::string NewKey(const std::string& account_type);

  // The stored form of `key`: 32 bytes HMAC-SHA256(pepper, key), as hex.
  std::string Hash(const std::string& key) const;

  // Constant-time comparison of two hashes.
  static bool Equal(const std::string& a, const std::string& b);

 private:
  std::string pepper_;
};

// True when `key` has the `buildd_<type>_<random>` shape.
bool LooksLikeKey(const std::string& key);

// Dashboard session tokens look like keys of the type "session" (no account
// has that type).
inline constexpr char kSessionTokenType[] = "session";
bool IsSessionToken(const std::string& key);

}  // namespace buildd::accounts

#endif  // BUILDD_SERVICES_ACCOUNTS_API_KEYS_H_
