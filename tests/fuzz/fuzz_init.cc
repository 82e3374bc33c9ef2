// libFuzzer's start-up hook, shared by every target.

#include <google/protobuf/stubs/logging.h>

// Protobuf logs (e.g. each string field that is not UTF-8) would flood the
// run; the targets' checks say what matters.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}
