#ifndef BUILDD_GATEWAY_BODY_FIELDS_H_
#define BUILDD_GATEWAY_BODY_FIELDS_H_

// Reading the seeds' JSON bodies field by field (they mix spellings and
// nest objects the protos do not have), and writing the seeds' JSON
// answers. Every error is INVALID_ARGUMENT naming the field by its path in
// the body ("github.repoUrl").

#include <google/protobuf/struct.pb.h>

#include <initializer_list>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace buildd::gateway {

// A body's top-level object, whose fields are read once each.
class BodyFields {
 public:
  // Parses `body` (a JSON object; blank reads as {} when `allow_empty`).
  static absl::StatusOr<BodyFields> Parse(absl::string_view body, std::string prefix = "",
                                          bool allow_empty = false);

  // The first of `names` present (aliases of one field), as a string: ""
  // when absent, an error when it is not a string or holds control
  // characters other than line breaks and tabs (`multiline`), or is longer
  // than `max_bytes`.
  absl::StatusOr<std::string> String(std::initializer_list<const char*> names,
                                     size_t max_bytes = 200, bool multiline = false);
  // The same, required: an error naming the first spelling when absent.
  absl::StatusOr<std::string> RequiredString(std::initializer_list<const char*> names,
                                             size_t max_bytes = 200, bool multiline = false);
  absl::StatusOr<bool> Bool(const char* name, bool fallback);
  // An object field (empty when absent), e.g. providerOptions.
  absl::StatusOr<google::protobuf::Struct> Object(const char* name);
  // An object field read field by field in turn.
  absl::StatusOr<BodyFields> Nested(const char* name);
  // An array of objects (empty when absent), each read field by field and
  // named "name[i]" in errors; an error past `max_items`.
  absl::StatusOr<std::vector<BodyFields>> Objects(const char* name, size_t max_items);
  // The raw value, or null when absent (marks it read).
  const google::protobuf::Value* Raw(const char* name);
  // Marks a field the endpoint accepts and ignores.
  void Ignore(const char* name) { (void)Raw(name); }

  // An error naming the first field that no reader asked for, listing
  // `expected`; OK when every field was read.
  absl::Status NoOthers(absl::string_view expected) const;

  // "prefix.name": how errors name a field.
  std::string Path(absl::string_view name) const;

 private:
  google::protobuf::Struct fields_;
  std::string prefix_;
  std::set<std::string> read_;
};

// Builds the seeds' JSON answers: {"a":1,"b":"x"} in insertion order is not
// kept (protobuf's Struct is a map), which JSON readers do not mind.
class JsonOut {
 public:
  JsonOut& Set(const std::string& name, const std::string& value);
  JsonOut& Set(const std::string& name, const char* value) { return Set(name, std::string(value)); }
  JsonOut& Set(const std::string& name, double value);
  JsonOut& Set(const std::string& name, bool value);
  JsonOut& Set(const std::string& name, const google::protobuf::Struct& value);
  JsonOut& Set(const std::string& name, const google::protobuf::Value& value);
  JsonOut& Set(const std::string& name, const JsonOut& value) { return Set(name, value.data_); }
  google::protobuf::Value* Mutable(const std::string& name) { return &(*data_.mutable_fields())[name]; }
  const google::protobuf::Struct& data() const { return data_; }
  std::string Json() const;

 private:
  google::protobuf::Struct data_;
};

}  // namespace buildd::gateway

#endif  // BUILDD_GATEWAY_BODY_FIELDS_H_
