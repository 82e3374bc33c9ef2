#include "common/text.h"

#include <cstdio>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/reflection.h>

#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"

namespace buildd {
namespace {

using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

bool Allowed(unsigned char c, TextKind kind) {
  if (c >= 0x20 && c != 0x7f) return true;
  return kind == TextKind::kMultiline && (c == '\t' || c == '\n' || c == '\r');
}

// Calls `fn(value)` on every string field of `message` and of the messages
// in it; `fn` returns false to stop (Visit then returns false), and may
// change the value through the pointer it gets, which is then written back.
template <typename Fn>
bool Visit(Message* message, Fn& fn) {
  const Reflection* reflection = message->GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(*message, &fields);
  std::string scratch;
  for (const FieldDescriptor* field : fields) {
    const bool text = field->type() == FieldDescriptor::TYPE_STRING;
    const bool nested = field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE;
    if (!text && !nested) continue;
    const int n = field->is_repeated() ? reflection->FieldSize(*message, field) : 1;
    for (int i = 0; i < n; ++i) {
      if (nested) {
        Message* inner = field->is_repeated() ? reflection->MutableRepeatedMessage(message, field, i)
                                              : reflection->MutableMessage(message, field);
        if (!Visit(inner, fn)) return false;
        continue;
      }
      const std::string& value =
          field->is_repeated() ? reflection->GetRepeatedStringReference(*message, field, i, &scratch)
                               : reflection->GetStringReference(*message, field, &scratch);
      std::string changed;
      if (!fn(value, &changed)) return false;
      if (changed.empty()) continue;
      if (field->is_repeated()) {
        reflection->SetRepeatedString(message, field, i, std::move(changed));
      } else {
        reflection->SetString(message, field, std::move(changed));
      }
    }
  }
  return true;
}

}  // namespace

absl::Status CheckText(absl::string_view field, absl::string_view value, TextKind kind) {
  for (size_t i = 0; i < value.size(); ++i) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (Allowed(c, kind)) continue;
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s must not contain control characters (U+%04X at byte %d)%s", field, c, i,
        kind == TextKind::kMultiline ? ": only tab, newline and carriage return are allowed" : ""));
  }
  return absl::OkStatus();
}

absl::Status CheckStrings(absl::string_view field, const Message& message) {
  std::unique_ptr<Message> copy(message.New());
  copy->CopyFrom(message);
  absl::Status status;
  auto check = [&](const std::string& value, std::string*) {
    status = CheckText(field, value, TextKind::kMultiline);
    return status.ok();
  };
  Visit(copy.get(), check);
  return status;
}

int ReplaceNul(Message* message) {
  int replaced = 0;
  auto replace = [&](const std::string& value, std::string* changed) {
    if (value.find('\0') == std::string::npos) return true;
    for (char c : value) replaced += c == '\0';
    *changed = absl::StrReplaceAll(value, {{absl::string_view("\0", 1), "\xEF\xBF\xBD"}});
    return true;
  };
  Visit(message, replace);
  return replaced;
}

void AppendJsonString(std::string* out, absl::string_view s) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
      case '"':
        *out += "\\\"";
        break;
      case '\\':
        *out += "\\\\";
        break;
      case '\n':
        *out += "\\n";
        break;
      case '\r':
        *out += "\\r";
        break;
      case '\t':
        *out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          *out += buf;
        } else {
          out->push_back(c);
        }
    }
  }
  out->push_back('"');
}

std::string JsonQuote(absl::string_view s) {
  std::string out;
  AppendJsonString(&out, s);
  return out;
}

}  // namespace buildd
