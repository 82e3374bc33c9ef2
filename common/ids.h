#ifndef BUILDD_COMMON_IDS_H_
#define BUILDD_COMMON_IDS_H_

#include <string>

#include "absl/status/status.h"

namespace buildd {

// `n` random bytes from libsodium, as lower-case hex / URL-safe base64
// without padding. Thread-safe.
std::string RandomHex(size_t n);
std::string RandomBase64Url(size_t n);

// A random (version 4) UUID string.
std::string NewUuid();

// True for the 8-4-4-4-12 hex form of a UUID.
bool IsUuid(const std::string& s);

// InvalidArgument naming `field` (as clients spell it) unless `id` is a
// UUID: "<field> is required" or "<field> must be a UUID".
absl::Status CheckUuid(const std::string& id, const char* field);

// Now, as RFC 3339 UTC with milliseconds.
std::string NowRfc3339();

}  // namespace buildd

#endif  // BUILDD_COMMON_IDS_H_
