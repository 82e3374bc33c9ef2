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

absl::StatusOr<SecretBox> SecretBox::FromHex(const std::string& master_key_hex) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  SecretBox box;
  box.key_.resize(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  size_t len = 0;
  if (master_key_hex.size() != box.key_.size() * 2 ||
      sodium_hex2bin(reinterpret_cast<unsigned char*>(box.key_.data()), box.key_.size(),
                     master_key_hex.data(), master_key_hex.size(), nullptr, &len,
                     nullptr) != 0 ||
      len != box.key_.size()) {
    return absl::InvalidArgumentError("master_key must be 64 hex digits (32 bytes)");
  }
  return box;
}

std::string SecretBox::Seal(const std::string& plaintext, const std::string& context) const {
  std::string out(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + plaintext.size() +
                      crypto_aead_xchacha20poly1305_ietf_ABYTES,
                  '\0');
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  randombytes_buf(nonce, crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
  unsigned long long clen = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(
      nonce + crypto_aead_xchacha20poly1305_ietf_NPUBBYTES, &clen,
      reinterpret_cast<const unsigned char*>(plaintext.data()), plaintext.size(),
      reinterpret_cast<const unsigned char*>(context.data()), context.size(), nullptr, nonce,
      reinterpret_cast<const unsigned char*>(key_.data()));
  out.resize(crypto_aead_xchacha20poly1305_ietf_NPUBBYTES + clen);
  return out;
}

absl::StatusOr<std::string> SecretBox::Open(const std::string& sealed,
                                            const std::string& context) const {
  const size_t header = crypto_aead_xchacha20poly1305_ietf_NPUBBYTES;
  if (sealed.size() < header + crypto_aead_xchacha20poly1305_ietf_ABYTES) {
    return absl::DataLossError("sealed credentials are truncated");
  }
  std::string plain(sealed.size() - header - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long plen = 0;
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &plen, nullptr, nonce + header,
          sealed.size() - header, reinterpret_cast<const unsigned char*>(context.data()),
          context.size(), nonce, reinterpret_cast<const unsigned char*>(key_.data())) != 0) {
    return absl::DataLossError("credentials do not decrypt under this master key");
  }
  plain.resize(plen);
  return plain;
}

}  // namespace buildd::accounts
