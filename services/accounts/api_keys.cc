#include "services/accounts/api_keys.h"

#include <sodium.h>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/ids.h"

namespace buildd::accounts {

std::string KeyHasher::NewKey(const std::string& account_type) {
  return absl::StrCat("buildd_", account_type, "_", RandomBase64Url(32));
}

std::string KeyHasher::Hash(const std::string& key) const {
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(pepper_.data()),
                              pepper_.size());
  crypto_auth_hmacsha256_update(&state, reinterpret_cast<const unsigned char*>(key.data()),
                                key.size());
  crypto_auth_hmacsha256_final(&state, mac);
  char hex[sizeof mac * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return std::string(hex, sizeof mac * 2);
}

bool KeyHasher::Equal(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool LooksLikeKey(const std::string& key) {
  if (!absl::StartsWith(key, "buildd_")) return false;
  const size_t second = key.find('_', 7);
  return second != std::string::npos && second > 7 && key.size() - second > 16;
}

bool IsSessionToken(const std::string& key) {
  return LooksLikeKey(key) && absl::StartsWith(key, absl::StrCat("buildd_", kSessionTokenType, "_"));
}

}  // namespace buildd::accounts
