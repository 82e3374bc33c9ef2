#ifndef BUILDD_TESTS_TESTING_FILES_H_
#define BUILDD_TESTS_TESTING_FILES_H_

// Files and shell commands of the tests' own (header-only: for tests that
// link the runner's core).

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/strings/strip.h"
#include "services/runner/process_group.h"

namespace buildd::testing {

// The whole file; "" when it cannot be read.
inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

// Runs a shell command of the test's own (no outside values) in `dir` and
// returns its stdout without trailing blanks; a failure fails the test.
inline std::string Sh(const std::string& command, const std::string& dir = "") {
  runner::SpawnOptions options;
  options.command = command;
  options.working_dir = dir;
  auto result = runner::RunCommand(options, std::chrono::seconds(60));
  EXPECT_TRUE(result.ok()) << command;
  if (!result.ok()) return "";
  EXPECT_TRUE(result->status.success()) << command << ": " << result->stderr_text;
  return std::string(absl::StripTrailingAsciiWhitespace(result->stdout_text));
}

}  // namespace buildd::testing

#endif  // BUILDD_TESTS_TESTING_FILES_H_
