#include "common/secret_box.h"

#include <sodium.h>

namespace buildd {

absl::StatusOr<SecretBox> SecretBox::FromHex(const std::string& key_hex) {
  if (sodium_init() < 0) return absl::InternalError("libsodium failed to initialise");
  SecretBox box;
  box.key_.resize(crypto_aead_xchacha20poly1305_ietf_KEYBYTES);
  size_t len = 0;
  if (key_hex.size() != box.key_.size() * 2 ||
      sodium_hex2bin(reinterpret_cast<unsigned char*>(box.key_.data()), box.key_.size(),
                     key_hex.data(), key_hex.size(), nullptr, &len,
                     nullptr) != 0 ||
      len != box.key_.size()) {
    return absl::InvalidArgumentError("the key must be 64 hex digits (32 bytes)");
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
    return absl::DataLossError("sealed data is truncated");
  }
  std::string plain(sealed.size() - header - crypto_aead_xchacha20poly1305_ietf_ABYTES, '\0');
  unsigned long long plen = 0;
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(
          reinterpret_cast<unsigned char*>(plain.data()), &plen, nullptr, nonce + header,
          sealed.size() - header, reinterpret_cast<const unsigned char*>(context.data()),
          context.size(), nonce, reinterpret_cast<const unsigned char*>(key_.data())) != 0) {
    return absl::DataLossError("sealed data does not decrypt under this key");
  }
  plain.resize(plen);
  return plain;
}

}  // namespace buildd
