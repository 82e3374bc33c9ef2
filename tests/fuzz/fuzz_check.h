#ifndef BUILDD_TESTS_FUZZ_FUZZ_CHECK_H_
#define BUILDD_TESTS_FUZZ_FUZZ_CHECK_H_

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/message.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/stubs/common.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

// What the fuzz targets share: a check that aborts (libFuzzer then keeps
// the input as a crash), and helpers to compare messages.

// Aborts with `detail` (absl::StrCat arguments) unless `cond` holds.
#define BUILDD_FUZZ_CHECK(cond, ...)                                                         \
  do {                                                                                       \
    if (!(cond)) ::buildd::fuzz::Fail(__FILE__, __LINE__, #cond, absl::StrCat(__VA_ARGS__)); \
  } while (0)

namespace buildd::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* cond,
                              const std::string& detail) {
  std::fprintf(stderr, "%s:%d: check failed: %s\n%s\n", file, line, cond, detail.c_str());
  std::abort();
}

// Whether `s` is UTF-8, as protobuf requires of a string field.
inline bool IsUtf8(const std::string& s) {
  return google::protobuf::internal::IsStructurallyValidUTF8(s.data(), static_cast<int>(s.size()));
}

// `s` with bytes outside printable ASCII escaped, for failure messages.
inline std::string Printable(const std::string& s) { return absl::CHexEscape(s); }

// The wire form of `m` with map entries in key order, so that two equal
// messages give equal bytes (NaN included, unlike field comparison).
inline std::string DeterministicBytes(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

// Takes out of `v` what protobuf's JSON mapping does not carry, so that it
// compares equal to itself printed and parsed again: values of no kind (not
// printed), the sign of zero, and numbers that are not finite (printed as
// "NaN", "Infinity", "-Infinity"). False when `v` has no kind.
// REQUIRES: `v` has no unknown fields (the mapping drops a list that has).
inline bool NormalizeForJson(google::protobuf::Value* v);

inline void NormalizeForJson(google::protobuf::Struct* s) {
  auto& fields = *s->mutable_fields();
  for (auto it = fields.begin(); it != fields.end();) {
    it = NormalizeForJson(&it->second) ? std::next(it) : fields.erase(it);
  }
}

inline bool NormalizeForJson(google::protobuf::Value* v) {
  using google::protobuf::Value;
  switch (v->kind_case()) {
    case Value::KIND_NOT_SET:
      return false;
    case Value::kNullValue:
      v->set_null_value(google::protobuf::NULL_VALUE);
      return true;
    case Value::kNumberValue: {
      const double d = v->number_value();
      if (std::isnan(d)) {
        v->set_string_value("NaN");
      } else if (std::isinf(d)) {
        v->set_string_value(d > 0 ? "Infinity" : "-Infinity");
      } else if (d == 0) {
        v->set_number_value(0);
      }
      return true;
    }
    case Value::kStructValue:
      NormalizeForJson(v->mutable_struct_value());
      return true;
    case Value::kListValue: {
      auto* values = v->mutable_list_value()->mutable_values();
      for (int i = 0; i < values->size();) {
        if (NormalizeForJson(values->Mutable(i))) {
          ++i;
        } else {
          values->DeleteSubrange(i, 1);
        }
      }
      return true;
    }
    default:
      return true;
  }
}

}  // namespace buildd::fuzz

#endif  // BUILDD_TESTS_FUZZ_FUZZ_CHECK_H_
