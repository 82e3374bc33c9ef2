#include "gateway/body_fields.h"

#include "absl/strings/str_cat.h"
#include "common/text.h"
#include "gateway/json_codec.h"

namespace buildd::gateway {

using google::protobuf::Struct;
using google::protobuf::Value;

absl::StatusOr<BodyFields> BodyFields::Parse(absl::string_view body, std::string prefix,
                                             bool allow_empty) {
  BodyFields fields;
  fields.prefix_ = std::move(prefix);
  absl::Status parsed = ParseJsonBody(body, &fields.fields_, allow_empty);
  if (!parsed.ok()) return parsed;
  return fields;
}

std::string BodyFields::Path(absl::string_view name) const {
  return prefix_.empty() ? std::string(name) : absl::StrCat(prefix_, ".", name);
}

const Value* BodyFields::Raw(const char* name) {
  read_.insert(name);
  auto it = fields_.fields().find(name);
  if (it == fields_.fields().end() || it->second.kind_case() == Value::kNullValue) return nullptr;
  return &it->second;
}

absl::StatusOr<std::string> BodyFields::String(std::initializer_list<const char*> names,
                                               size_t max_bytes, bool multiline) {
  for (const char* name : names) read_.insert(name);
  for (const char* name : names) {
    const Value* v = Raw(name);
    if (v == nullptr) continue;
    if (v->kind_case() != Value::kStringValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value for field ", Path(name), " (expected a string)"));
    }
    if (v->string_value().size() > max_bytes) {
      return absl::InvalidArgumentError(
          absl::StrCat("field ", Path(name), " is longer than ", max_bytes, " bytes"));
    }
    absl::Status text =
        CheckText(Path(name), v->string_value(), multiline ? TextKind::kMultiline : TextKind::kLine);
    if (!text.ok()) return text;
    return v->string_value();
  }
  return std::string();
}

absl::StatusOr<std::string> BodyFields::RequiredString(std::initializer_list<const char*> names,
                                                       size_t max_bytes, bool multiline) {
  absl::StatusOr<std::string> value = String(names, max_bytes, multiline);
  if (value.ok() && value->empty()) {
    return absl::InvalidArgumentError(absl::StrCat("field ", Path(*names.begin()), " is required"));
  }
  return value;
}

absl::StatusOr<bool> BodyFields::Bool(const char* name, bool fallback) {
  const Value* v = Raw(name);
  if (v == nullptr) return fallback;
  if (v->kind_case() != Value::kBoolValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid value for field ", Path(name), " (expected true or false)"));
  }
  return v->bool_value();
}

absl::StatusOr<Struct> BodyFields::Object(const char* name) {
  const Value* v = Raw(name);
  if (v == nullptr) return Struct();
  if (v->kind_case() != Value::kStructValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid value for field ", Path(name), " (expected an object)"));
  }
  return v->struct_value();
}

absl::StatusOr<BodyFields> BodyFields::Nested(const char* name) {
  absl::StatusOr<Struct> object = Object(name);
  if (!object.ok()) return object.status();
  BodyFields nested;
  nested.fields_ = *std::move(object);
  nested.prefix_ = Path(name);
  return nested;
}

absl::StatusOr<std::vector<BodyFields>> BodyFields::Objects(const char* name, size_t max_items) {
  const Value* v = Raw(name);
  std::vector<BodyFields> items;
  if (v == nullptr) return items;
  if (v->kind_case() != Value::kListValue) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid value for field ", Path(name), " (expected a list of objects)"));
  }
  if (static_cast<size_t>(v->list_value().values_size()) > max_items) {
    return absl::InvalidArgumentError(
        absl::StrCat("field ", Path(name), " has more than ", max_items, " items"));
  }
  for (const Value& item : v->list_value().values()) {
    BodyFields fields;
    fields.prefix_ = absl::StrCat(Path(name), "[", items.size(), "]");
    if (item.kind_case() != Value::kStructValue) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid value for field ", fields.prefix_, " (expected an object)"));
    }
    fields.fields_ = item.struct_value();
    items.push_back(std::move(fields));
  }
  return items;
}

absl::Status BodyFields::NoOthers(absl::string_view expected) const {
  for (const auto& [name, value] : fields_.fields()) {
    if (read_.count(name) == 0) {
      return absl::InvalidArgumentError(absl::StrCat("unknown field ", JsonQuote(Path(name)),
                                                     " (expected ", expected, ")"));
    }
  }
  return absl::OkStatus();
}

JsonOut& JsonOut::Set(const std::string& name, const std::string& value) {
  Mutable(name)->set_string_value(value);
  return *this;
}

JsonOut& JsonOut::Set(const std::string& name, double value) {
  Mutable(name)->set_number_value(value);
  return *this;
}

JsonOut& JsonOut::Set(const std::string& name, bool value) {
  Mutable(name)->set_bool_value(value);
  return *this;
}

JsonOut& JsonOut::Set(const std::string& name, const Struct& value) {
  *Mutable(name)->mutable_struct_value() = value;
  return *this;
}

JsonOut& JsonOut::Set(const std::string& name, const Value& value) {
  *Mutable(name) = value;
  return *this;
}

std::string JsonOut::Json() const { return ToJson(data_); }

}  // namespace buildd::gateway
