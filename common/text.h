#ifndef BUILDD_COMMON_TEXT_H_
#define BUILDD_COMMON_TEXT_H_

#include <string>

#include <google/protobuf/message.h>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace buildd {

enum class TextKind {
  // A name, title or label: no control character at all.
  kLine,
  // A prompt, command or message: tab, newline and carriage return allowed.
  kMultiline,
};

// InvalidArgument naming `field` when `value` holds a C0 control character
// (U+0000–U+001F) or DEL that `kind` does not allow. PostgreSQL stores no
// NUL in text or jsonb, and the others have no business in a name.
absl::Status CheckText(absl::string_view field, absl::string_view value,
                       TextKind kind = TextKind::kLine);

// The same for every string inside a google.protobuf.Struct/Value/ListValue
// (or any message): each may hold newlines and tabs, none a NUL.
absl::Status CheckStrings(absl::string_view field, const google::protobuf::Message& message);

// Replaces each NUL in the string fields of `message`, at any depth, with
// U+FFFD (bytes fields are left alone). Returns how many were replaced.
int ReplaceNul(google::protobuf::Message* message);

// `s` (UTF-8) as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view s);
// The same, appended to `out`.
void AppendJsonString(std::string* out, absl::string_view s);

}  // namespace buildd

#endif  // BUILDD_COMMON_TEXT_H_
