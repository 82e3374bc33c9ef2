#include "gateway/json_codec.h"

#include "common/text.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/stubs/common.h>
#include <google/protobuf/util/json_util.h>

#include <cstdio>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace buildd::gateway {

namespace protobuf = google::protobuf;

namespace {

constexpr size_t kMaxQuotedValue = 80;

std::string Truncated(absl::string_view s) {
  if (s.size() <= kMaxQuotedValue) return std::string(s);
  // Between characters: UTF-8 continuation bytes are 10xxxxxx.
  size_t cut = kMaxQuotedValue;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return absl::StrCat(s.substr(0, cut), "...");
}

// Finds the first syntax error in a JSON text and where it is: the field
// being parsed, or the last one completed. json_util's own syntax errors
// echo the input but name no field.
class JsonScanner {
 public:
  explicit JsonScanner(absl::string_view text) : s_(text) {}

  // Returns "" when `text` is well-formed JSON.
  std::string FirstError() {
    SkipSpace();
    if (!Value(0)) return error_;
    SkipSpace();
    if (pos_ != s_.size()) {
      Fail("unexpected text after the end of the JSON value");
      return error_;
    }
    return "";
  }

 private:
  static constexpr int kMaxDepth = 64;

  bool Fail(absl::string_view what) {
    size_t line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < s_.size(); ++i) {
      if (s_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    std::string where;
    if (!after_.empty()) {
      where = absl::StrCat(" after field ", JsonQuote(after_));
    } else if (!path_.empty()) {
      where = absl::StrCat(" in field ", JsonQuote(Path()));
    }
    error_ =
        absl::StrCat("malformed JSON", where, " at line ", line, ", column ", column, ": ", what);
    return false;
  }

  std::string Path(absl::string_view last = "") const {
    std::string out;
    auto append = [&out](absl::string_view segment) {
      if (!out.empty() && !absl::StartsWith(segment, "[")) out += '.';
      absl::StrAppend(&out, segment);
    };
    for (const std::string& segment : path_) append(segment);
    if (!last.empty()) append(last);
    return out;
  }

  void SkipSpace() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool AtEnd() const { return pos_ >= s_.size(); }
  char Peek() const { return AtEnd() ? '\0' : s_[pos_]; }

  bool Value(int depth) {
    if (depth > kMaxDepth) return Fail("nested too deeply");
    if (AtEnd()) return Fail("unexpected end of the body, expected a value");
    switch (Peek()) {
      case '{':
        return Object(depth);
      case '[':
        return Array(depth);
      case '"': {
        std::string ignored;
        return String(&ignored);
      }
      case 't':
        return Literal("true");
      case 'f':
        return Literal("false");
      case 'n':
        return Literal("null");
      default:
        if (Peek() == '-' || absl::ascii_isdigit(Peek())) return Number();
        return Fail("expected a value");
    }
  }

  bool Object(int depth) {
    ++pos_;
    SkipSpace();
    if (Peek() == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      if (AtEnd()) return Fail("unexpected end of the body, expected a field name");
      if (Peek() != '"') return Fail("expected a field name in double quotes");
      std::string key;
      if (!String(&key)) return false;
      path_.push_back(key);
      after_.clear();
      SkipSpace();
      if (Peek() != ':') return Fail("expected ':' after the field name");
      ++pos_;
      SkipSpace();
      if (!Value(depth + 1)) return false;
      path_.pop_back();
      after_ = Path(key);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        SkipSpace();
        continue;
      }
      if (Peek() == '}') {
        ++pos_;
        after_.clear();
        return true;
      }
      return Fail(AtEnd() ? "unexpected end of the body, expected ',' or '}'"
                          : "expected ',' or '}'");
    }
  }

  bool Array(int depth) {
    ++pos_;
    SkipSpace();
    if (Peek() == ']') {
      ++pos_;
      return true;
    }
    for (int i = 0;; ++i) {
      const std::string index = absl::StrCat("[", i, "]");
      path_.push_back(index);
      after_.clear();
      if (!Value(depth + 1)) return false;
      path_.pop_back();
      after_ = Path(index);
      SkipSpace();
      if (Peek() == ',') {
        ++pos_;
        SkipSpace();
        continue;
      }
      if (Peek() == ']') {
        ++pos_;
        after_.clear();
        return true;
      }
      return Fail(AtEnd() ? "unexpected end of the body, expected ',' or ']'"
                          : "expected ',' or ']'");
    }
  }

  bool String(std::string* out) {
    ++pos_;  // The opening quote.
    while (!AtEnd()) {
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (static_cast<unsigned char>(c) < 0x20) return Fail("control character in a string");
      if (c == '\\') {
        ++pos_;
        if (AtEnd()) break;
        const char e = s_[pos_];
        if (e == 'u') {
          for (int i = 1; i <= 4; ++i) {
            if (pos_ + i >= s_.size() || !absl::ascii_isxdigit(s_[pos_ + i])) {
              return Fail("malformed \\u escape in a string");
            }
          }
          pos_ += 5;
          continue;
        }
        static constexpr absl::string_view kEscapes = "\"\\/bfnrt";
        if (kEscapes.find(e) == absl::string_view::npos) return Fail("unknown escape in a string");
        out->push_back(e);
        ++pos_;
        continue;
      }
      out->push_back(c);
      ++pos_;
    }
    return Fail("unterminated string");
  }

  bool Number() {
    const size_t start = pos_;
    if (Peek() == '-') ++pos_;
    if (Peek() == '0') {
      ++pos_;
    } else if (absl::ascii_isdigit(Peek())) {
      while (absl::ascii_isdigit(Peek())) ++pos_;
    } else {
      pos_ = start;
      return Fail("malformed number");
    }
    if (Peek() == '.') {
      ++pos_;
      if (!absl::ascii_isdigit(Peek())) return Fail("malformed number");
      while (absl::ascii_isdigit(Peek())) ++pos_;
    }
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!absl::ascii_isdigit(Peek())) return Fail("malformed number");
      while (absl::ascii_isdigit(Peek())) ++pos_;
    }
    return true;
  }

  bool Literal(absl::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return Fail("expected a value");
    pos_ += word.size();
    return true;
  }

  absl::string_view s_;
  size_t pos_ = 0;
  std::vector<std::string> path_;
  std::string after_;
  std::string error_;
};

// "task.required_labels[1]" -> "task.requiredLabels[1]".
std::string JsonPath(absl::string_view proto_path) {
  std::vector<std::string> segments;
  for (absl::string_view segment : absl::StrSplit(proto_path, '.')) {
    const size_t bracket = segment.find('[');
    segments.push_back(
        absl::StrCat(ToJsonName(segment.substr(0, bracket)),
                     bracket == absl::string_view::npos ? "" : segment.substr(bracket)));
  }
  return absl::StrJoin(segments, ".");
}

// What json_util's type in "invalid value X for type T" asks for.
std::string Expected(absl::string_view type) {
  static constexpr absl::string_view kTypeUrl = "type.googleapis.com/";
  if (absl::StartsWith(type, kTypeUrl)) {
    const std::string full_name(type.substr(kTypeUrl.size()));
    const protobuf::DescriptorPool* pool = protobuf::DescriptorPool::generated_pool();
    if (const protobuf::EnumDescriptor* e = pool->FindEnumTypeByName(full_name)) {
      std::vector<std::string> names;
      for (int i = 0; i < e->value_count(); ++i) {
        // The zero value of most enums means "unset"; do not offer it.
        if (absl::EndsWith(e->value(i)->name(), "_unspecified")) continue;
        names.push_back(e->value(i)->name());
      }
      return absl::StrCat("one of: ", absl::StrJoin(names, ", "));
    }
    if (full_name == "google.protobuf.Value") return "a JSON value";
    if (full_name == "google.protobuf.ListValue") return "an array";
    return "an object";
  }
  if (type == "TYPE_STRING" || type == "TYPE_BYTES") return "a string";
  if (type == "TYPE_BOOL") return "true or false";
  if (type == "TYPE_INT32" || type == "TYPE_SINT32" || type == "TYPE_SFIXED32") {
    return "a 32-bit integer";
  }
  if (type == "TYPE_UINT32" || type == "TYPE_FIXED32") return "an unsigned 32-bit integer";
  if (type == "TYPE_INT64" || type == "TYPE_SINT64" || type == "TYPE_SFIXED64") {
    return "a 64-bit integer";
  }
  if (type == "TYPE_UINT64" || type == "TYPE_FIXED64") return "an unsigned 64-bit integer";
  if (type == "TYPE_DOUBLE" || type == "TYPE_FLOAT") return "a number";
  return std::string(type);
}

std::string FirstLine(absl::string_view s) {
  return std::string(absl::StripAsciiWhitespace(s.substr(0, s.find('\n'))));
}

bool IsBlank(absl::string_view s) { return absl::StripAsciiWhitespace(s).empty(); }

}  // namespace

std::string ToJsonName(absl::string_view proto_name) {
  std::string out;
  bool upper_next = false;
  for (char c : proto_name) {
    if (c == '_') {
      upper_next = true;
    } else if (upper_next) {
      out.push_back(absl::ascii_toupper(c));
      upper_next = false;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string DescribeJsonError(absl::string_view body, absl::string_view json_util_message,
                              const protobuf::Descriptor* descriptor) {
  const absl::string_view message = json_util_message;
  // "(runner_preference): invalid value "sometimes" for type type.googleapis.com/..."
  static constexpr absl::string_view kInvalidValue = "): invalid value ";
  static constexpr absl::string_view kForType = " for type ";
  if (absl::StartsWith(message, "(")) {
    const size_t close = message.find(kInvalidValue);
    const size_t for_type = message.rfind(kForType);
    if (close != absl::string_view::npos && for_type != absl::string_view::npos &&
        for_type > close) {
      const absl::string_view path = message.substr(1, close - 1);
      const size_t value_start = close + kInvalidValue.size();
      const absl::string_view value = message.substr(value_start, for_type - value_start);
      const absl::string_view type = message.substr(for_type + kForType.size());
      return absl::StrCat("invalid value ", Truncated(value), " for field ", JsonPath(path),
                          " (expected ", Expected(type), ")");
    }
  }
  // "bogus: Cannot find field." or "(task) bogus: Cannot find field."
  static constexpr absl::string_view kCannotFind = ": Cannot find field.";
  if (absl::EndsWith(message, kCannotFind)) {
    absl::string_view field = message.substr(0, message.size() - kCannotFind.size());
    std::string parent;
    if (absl::StartsWith(field, "(")) {
      const size_t close = field.find(") ");
      if (close != absl::string_view::npos) {
        parent = JsonPath(field.substr(1, close - 1));
        field = field.substr(close + 2);
      }
    }
    const std::string name = parent.empty() ? std::string(field) : absl::StrCat(parent, ".", field);
    return absl::StrCat("unknown field ", JsonQuote(Truncated(name)), " in ", descriptor->name());
  }
  if (absl::StrContains(message, "Root element must be a message")) {
    return "the request body must be a JSON object";
  }
  if (absl::StrContains(message, "non UTF-8")) return "the request body is not valid UTF-8";
  std::string syntax = JsonScanner(body).FirstError();
  if (!syntax.empty()) return syntax;
  return absl::StrCat("malformed JSON: ", FirstLine(message));
}

absl::Status ParseJsonBody(absl::string_view body, protobuf::Message* message, bool allow_empty) {
  if (IsBlank(body)) {
    if (allow_empty) return absl::OkStatus();
    return absl::InvalidArgumentError("the request body must be a JSON object");
  }
  // Before json_util: it may find a syntax error ahead of the bad bytes, and
  // its description would quote them.
  if (!protobuf::internal::IsStructurallyValidUTF8(body.data(), static_cast<int>(body.size()))) {
    return absl::InvalidArgumentError("the request body is not valid UTF-8");
  }
  protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = protobuf::util::JsonStringToMessage(
      protobuf::StringPiece(body.data(), body.size()), message, options);
  if (status.ok()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      DescribeJsonError(body, absl::string_view(status.message().data(), status.message().size()),
                        message->GetDescriptor()));
}

std::string ToJson(const protobuf::Message& message) {
  protobuf::util::JsonPrintOptions options;
  options.always_print_primitive_fields = true;
  options.preserve_proto_field_names = false;
  std::string out;
  if (!protobuf::util::MessageToJsonString(message, &out, options).ok()) return "{}";
  return out;
}

absl::Status QueryToMessage(const QueryParams& query, protobuf::Message* message) {
  const protobuf::Descriptor* descriptor = message->GetDescriptor();
  const protobuf::Reflection* reflection = message->GetReflection();
  for (const auto& param : query) {
    // Named references, not a structured binding: clang 15 cannot capture
    // one in the lambda below.
    const std::string& name = param.first;
    const std::string& value = param.second;
    const protobuf::FieldDescriptor* field = descriptor->FindFieldByName(name);
    for (int i = 0; field == nullptr && i < descriptor->field_count(); ++i) {
      if (descriptor->field(i)->json_name() == name) field = descriptor->field(i);
    }
    if (field == nullptr || field->is_repeated() ||
        field->cpp_type() == protobuf::FieldDescriptor::CPPTYPE_MESSAGE) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown query parameter ", JsonQuote(Truncated(name))));
    }
    if (value.empty()) continue;
    auto invalid = [&](absl::string_view expected) {
      return absl::InvalidArgumentError(absl::StrCat("invalid value ", JsonQuote(Truncated(value)),
                                                     " for field ", field->json_name(),
                                                     " (expected ", expected, ")"));
    };
    switch (field->cpp_type()) {
      case protobuf::FieldDescriptor::CPPTYPE_STRING:
        reflection->SetString(message, field, value);
        break;
      case protobuf::FieldDescriptor::CPPTYPE_INT32: {
        int32_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("a 32-bit integer");
        reflection->SetInt32(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_INT64: {
        int64_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("a 64-bit integer");
        reflection->SetInt64(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_UINT32: {
        uint32_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("an unsigned 32-bit integer");
        reflection->SetUInt32(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_UINT64: {
        uint64_t v;
        if (!absl::SimpleAtoi(value, &v)) return invalid("an unsigned 64-bit integer");
        reflection->SetUInt64(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_BOOL: {
        bool v;
        if (!absl::SimpleAtob(value, &v)) return invalid("true or false");
        reflection->SetBool(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_DOUBLE: {
        double v;
        if (!absl::SimpleAtod(value, &v)) return invalid("a number");
        reflection->SetDouble(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_FLOAT: {
        float v;
        if (!absl::SimpleAtof(value, &v)) return invalid("a number");
        reflection->SetFloat(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_ENUM: {
        const protobuf::EnumValueDescriptor* v = field->enum_type()->FindValueByName(value);
        if (v == nullptr) {
          std::vector<std::string> names;
          for (int i = 0; i < field->enum_type()->value_count(); ++i) {
            if (absl::EndsWith(field->enum_type()->value(i)->name(), "_unspecified")) continue;
            names.push_back(field->enum_type()->value(i)->name());
          }
          return invalid(absl::StrCat("one of: ", absl::StrJoin(names, ", ")));
        }
        reflection->SetEnum(message, field, v);
        break;
      }
      case protobuf::FieldDescriptor::CPPTYPE_MESSAGE:
        break;
    }
  }
  return absl::OkStatus();
}

}  // namespace buildd::gateway
